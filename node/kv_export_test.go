package node

import "time"

// TokensExpiredBy exposes the vault's expiry index to the external tests.
func (n *Node) TokensExpiredBy(t time.Time) bool { return n.fsm.TokensExpiredBy(t) }
