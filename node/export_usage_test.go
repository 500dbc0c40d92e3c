package node

// UsageFlushes is how many usage commands this node committed as leader.
func (n *Node) UsageFlushes() uint64 { return n.usage.flushes.Load() }

// UsagePending reports whether this node holds unflushed uses.
func (n *Node) UsagePending() bool {
	n.usage.mu.Lock()
	defer n.usage.mu.Unlock()
	return len(n.usage.keys) > 0 || len(n.usage.principals) > 0
}
