package node

// RaftTimeouts returns the node's profile with the heartbeat and election
// timeouts raft uses now (fastelect.go lowers them for a while).
func (n *Node) RaftTimeouts() Timing {
	rc := n.raft.raft.ReloadableConfig()
	t := n.cfg.Timing
	t.Heartbeat, t.Election = rc.HeartbeatTimeout, rc.ElectionTimeout
	return t
}
