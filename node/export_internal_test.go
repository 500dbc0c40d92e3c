package node

import "github.com/keyd/keyd/keyring"

// Test hooks for the external node_test package.

// RelayPeers returns the ids this node relays shares and seals to.
func (n *Node) RelayPeers() []string {
	var ids []string
	for _, p := range n.relayTargets() {
		ids = append(ids, p.ID)
	}
	return ids
}

// NodeShareCounters returns how often the node-share loop ran and how many
// dealings it started.
func (n *Node) NodeShareCounters() (ticks, attempts int64) {
	return n.sealer.dealing.Ticks.Load(), n.sealer.dealing.Attempts.Load()
}

// SetKeyZeroHook calls f (nil: nothing) with every customer key whose
// material the keystore zeroes.
func SetKeyZeroHook(f func(*keyring.Key)) {
	if f == nil {
		keyZeroHook.Store(nil)
		return
	}
	keyZeroHook.Store(&f)
}

// SetShareRelayHook calls f (nil: nothing) in each share relay before it
// is sent, with the target peer's id; the func f returns is called when
// that relay has ended.
func (n *Node) SetShareRelayHook(f func(peer string) func()) {
	if f == nil {
		n.shareRelayHook.Store(nil)
		return
	}
	n.shareRelayHook.Store(&f)
}

// LastSealIndex is the log index of the last operator seal this node
// applied.
func (n *Node) LastSealIndex() uint64 { return n.fsm.LastSealIndex() }

// RootCommitments returns the custodian dealing's commitments (what the
// replicated state on any node's disk holds in the clear).
func (n *Node) RootCommitments() ([]byte, error) {
	_, c, err := n.commitments()
	if err != nil {
		return nil, err
	}
	return c.MarshalBinary()
}

// Tombstoned reports whether node id is removed for good in this node's
// replicated state.
func (n *Node) Tombstoned(id string) bool { return n.fsm.Removed(id) }
