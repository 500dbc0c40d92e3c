package node

import (
	"context"

	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/node/errs"
	"github.com/keyd/keyd/node/httpapi"
)

// propose is the leader's propose path for lifecycle writes (keys,
// tokens, identities, policies). In order:
//
//   - a sealed node proposes none of them (the HTTP layer refuses them
//     first; this holds for every other caller too);
//   - the request id is scoped to the HTTP caller and its request
//     (httpapi.RequestScope): a retry answers with the first write's
//     index (Result.Duplicate) without proposing, and the same caller's
//     id reused for another request is refused with fsm.ErrRequestReused;
//   - the command is checked against the leader's state (fsm.Check), so
//     what the state already refuses never enters the log. Apply checks
//     again.
//
// Init, node-share dealing, membership and root rotation commands have
// their own rules and use apply.
func (n *Node) propose(ctx context.Context, c fsm.Command) (*fsm.Result, error) {
	if err := n.notLeaderOrSealed(); err != nil {
		return nil, err
	}
	m := fsm.MetaOf(c)
	n.scope(ctx, m)
	if idx, ok, err := n.fsm.Request(*m); err != nil {
		return nil, err
	} else if ok {
		return &fsm.Result{Index: idx, Duplicate: true}, nil
	}
	if err := n.fsm.Check(c); err != nil {
		return nil, err
	}
	return n.apply(ctx, c)
}

// scope scopes m's request id to the HTTP caller of ctx, if any.
func (n *Node) scope(ctx context.Context, m *fsm.Meta) {
	if m.RequestID == "" {
		return
	}
	if s, ok := httpapi.RequestScopeFrom(ctx); ok {
		m.Scope, m.Digest = s.Identity, append([]byte(nil), s.Digest[:]...)
	}
}

// scopedMeta is meta(rid) scoped to the HTTP caller of ctx.
func (n *Node) scopedMeta(ctx context.Context, rid string) fsm.Meta {
	m := n.meta(rid)
	n.scope(ctx, &m)
	return m
}

// notLeaderOrSealed is the leader's precheck before it reads the state a
// write is decided on.
func (n *Node) notLeaderOrSealed() error {
	if n.Sealed() {
		return errs.ErrSealed
	}
	if !n.IsLeader() {
		return n.notLeader()
	}
	return nil
}
