package client

import (
	"context"
	"net/http"

	"github.com/keyd/keyd/api"
)

// InitWith initializes the cluster with the full request: custodian keys
// (each share is encrypted by the leader to its custodian's age public key,
// and the reply carries only api.InitResponse.EncryptedShares), an admin
// key, or PlaintextShares for dev mode and rehearsals. It is a write like
// Init: retries reuse one request id. The caller owns the reply and must
// never log it.
func (c *Client) InitWith(ctx context.Context, req api.InitRequest) (*api.InitResponse, error) {
	var r api.InitResponse
	if err := c.do(ctx, call{pol: polWrite, method: http.MethodPost, path: api.PathInit, in: req, out: &r}); err != nil {
		return nil, err
	}
	return &r, nil
}

// StartRootRotationWith opens a rotation session with the full request:
// the new shares are encrypted to req.CustodianKeys, or returned in the
// clear only with req.PlaintextShares.
func (c *Client) StartRootRotationWith(ctx context.Context, req api.RotateRootStart) (*api.RotateRootStatus, error) {
	var st api.RotateRootStatus
	if err := c.do(ctx, call{pol: polWrite, method: http.MethodPost, path: api.PathRotateRootStart, in: req, out: &st}); err != nil {
		return nil, err
	}
	return &st, nil
}
