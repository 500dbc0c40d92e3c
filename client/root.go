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
func (c *Client) StartRootRotation(ctx context.Context, custodians, threshold int) (*api.RotateRootStatus, error) {
	var st api.RotateRootStatus
	in := api.RotateRootStart{Custodians: custodians, Threshold: threshold}
	if err := c.do(ctx, call{pol: polWrite, method: http.MethodPost, path: api.PathRotateRootStart, in: in, out: &st}); err != nil {
		return nil, err
	}
	return &st, nil
}

// SubmitRotationShare submits one current custodian share. The reply to
// the share that completes the quorum carries the new shares, once.
func (c *Client) SubmitRotationShare(ctx context.Context, nonce, share string) (*api.RotateRootStatus, error) {
	var st api.RotateRootStatus
	in := api.RotateRootSubmit{Nonce: nonce, Share: share}
	if err := c.do(ctx, call{pol: polWrite, method: http.MethodPost, path: api.PathRotateRootSubmit, in: in, out: &st}); err != nil {
		return nil, err
	}
	return &st, nil
}
