package client

import (
	"context"
	"net/http"

	"github.com/keyd/keyd/api"
)

// Root rotation is a custodian action: it needs a quorum of current
// custodian shares and no token. The calls go to the leader, which holds
// the session in memory.

// RotateRootStatus reports the leader's rotation session.
func (c *Client) RotateRootStatus(ctx context.Context) (*api.RotateRootStatus, error) {
	var st api.RotateRootStatus
	if err := c.do(ctx, call{pol: polWrite, method: http.MethodGet, path: api.PathRotateRoot, out: &st}); err != nil {
		return nil, err
	}
	return &st, nil
}

// StartRootRotation opens a session that will deal custodians new shares
// with the given threshold.
// Servers refuse a start without a current share: use
// StartRootRotationWith.
func (c *Client) StartRootRotation(ctx context.Context, custodians, threshold int) (*api.RotateRootStatus, error) {
	return c.StartRootRotationWith(ctx, api.RotateRootStart{Custodians: custodians, Threshold: threshold})
}

// StartRootRotationWith opens a session as in asks. in.Share (a current
// custodian share) is required and counts as the first submission;
// in.CustodianKeys (or in.PlaintextShares) choose how the new shares are
// handed out. in.Approve is required: api.RotationDigest over the current
// root's commitments fingerprint (RotateRootStatus.PrevFingerprint) and
// these parameters. Only the reply to the start carries the session's
// nonce.
func (c *Client) StartRootRotationWith(ctx context.Context, in api.RotateRootStart) (*api.RotateRootStatus, error) {
	var st api.RotateRootStatus
	if err := c.do(ctx, call{pol: polWrite, method: http.MethodPost, path: api.PathRotateRootStart, in: in, out: &st}); err != nil {
		return nil, err
	}
	return &st, nil
}

// SubmitRotationShare submits one current custodian share (in.Share) to
// the session in.Nonce. in.Approve must be the session's digest as the
// submitter computed it from the parameters they checked
// (api.RotationDigest over RotateRootStatus.PrevFingerprint, Custodians,
// Threshold, CustodianKeys and PlaintextShares); the server refuses a
// share approving another dealing (conflict) and does not count it. The
// reply to the share that completes the quorum carries the new shares,
// once.
func (c *Client) SubmitRotationShare(ctx context.Context, in api.RotateRootSubmit) (*api.RotateRootStatus, error) {
	var st api.RotateRootStatus
	if err := c.do(ctx, call{pol: polWrite, method: http.MethodPost, path: api.PathRotateRootSubmit, in: in, out: &st}); err != nil {
		return nil, err
	}
	return &st, nil
}

// CancelRootRotation ends the running session; share must be a current
// custodian share.
func (c *Client) CancelRootRotation(ctx context.Context, share string) (*api.RotateRootStatus, error) {
	var st api.RotateRootStatus
	in := api.RotateRootCancel{Share: share}
	if err := c.do(ctx, call{pol: polWrite, method: http.MethodPost, path: api.PathRotateRootCancel, in: in, out: &st}); err != nil {
		return nil, err
	}
	return &st, nil
}
