package node

import (
	"context"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
)

// propose is the leader's propose path for lifecycle writes (keys,
// tokens, identities, policies). A sealed node proposes none of them: the
// HTTP layer already refuses them, and this check holds for every other
// caller too (a write forwarded by an unsealed follower reaches the
// leader's HTTP layer, which refuses it; code calling the node directly
// meets this check). Init, node-share dealing, membership and root
// rotation commands have their own rules and use apply.
func (n *Node) propose(ctx context.Context, c fsm.Command) (*fsm.Result, error) {
	if n.Sealed() {
		return nil, api.ErrSealed
	}
	return n.apply(ctx, c)
}

// notLeaderOrSealed is the leader's precheck before it reads the state a
// write is decided on.
func (n *Node) notLeaderOrSealed() error {
	if n.Sealed() {
		return api.ErrSealed
	}
	if !n.IsLeader() {
		return n.notLeader()
	}
	return nil
}
