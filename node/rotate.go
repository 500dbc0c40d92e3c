package node

import (
	"context"

	"github.com/keyd/keyd/api"
)

// Root rotation is a custodian ceremony: package seal runs the session on
// the leader (seal.Custodians); these methods serve the HTTP API.

// RotateRootStatus reports the session on this node (the leader).
func (n *Node) RotateRootStatus() (*api.RotateRootStatus, error) {
	return n.sealer.cust.RotateRootStatus()
}

// StartRootRotation opens a session; it needs a current custodian share.
func (n *Node) StartRootRotation(ctx context.Context, req api.RotateRootStart) (*api.RotateRootStatus, error) {
	return n.sealer.cust.StartRootRotation(ctx, req)
}

// SubmitRotationShare takes one current custodian share.
func (n *Node) SubmitRotationShare(ctx context.Context, req api.RotateRootSubmit) (*api.RotateRootStatus, error) {
	return n.sealer.cust.SubmitRotationShare(ctx, req)
}

// CancelRootRotation ends the running session; it needs a current share.
func (n *Node) CancelRootRotation(ctx context.Context, req api.RotateRootCancel) (*api.RotateRootStatus, error) {
	return n.sealer.cust.CancelRootRotation(ctx, req)
}

// onRootRotated drops a non-leader's copy of the old secret: it can no
// longer deal node shares for the new root (the leader re-deals).
func (n *Node) onRootRotated() {
	if n.IsLeader() {
		return
	}
	n.sealer.mu.Lock()
	if n.sealer.secret != nil {
		n.sealer.secret.Destroy()
		n.sealer.secret = nil
	}
	n.sealer.mu.Unlock()
}
