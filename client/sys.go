package client

import (
	"context"
	"fmt"
	"net/http"

	"github.com/keyd/keyd/api"
)

// HealthAlways200 is the query that makes GET /v1/sys/health answer 200
// in every state, for callers that read the body rather than the code.
const HealthAlways200 = "?standbyok=true&sealedcode=200&uninitcode=200"

// Health asks the node at addr ("host:port" or "https://host:port") for its
// health, in one attempt with no retry, so a probe reports a down node
// quickly. Errors: ErrInvalidAddr, *ConnError, *api.Error.
func (c *Client) Health(ctx context.Context, addr string) (*api.Health, error) {
	u, err := normalizeAddr(addr)
	if err != nil {
		return nil, err
	}
	var h api.Health
	// The node answers 429, 503 or 501 for a follower, a sealed or an
	// uninitialized node (codes for load balancers); the client wants the
	// body in every state, so it asks for 200 throughout.
	if err := c.do(ctx, call{pol: polNode, addr: u, method: http.MethodGet, path: api.PathHealth + HealthAlways200, out: &h}); err != nil {
		return nil, err
	}
	return &h, nil
}

// Status returns the seal status of any reachable node, retrying others on
// failure. As a side effect the client learns the leader and the peers'
// API addresses from the reply.
func (c *Client) Status(ctx context.Context) (*api.SealStatus, error) {
	var st api.SealStatus
	if err := c.do(ctx, call{pol: polStatus, method: http.MethodGet, path: api.PathStatus, out: &st}); err != nil {
		return nil, err
	}
	return &st, nil
}

// StatusOf returns the seal status of the node at addr, in one attempt.
func (c *Client) StatusOf(ctx context.Context, addr string) (*api.SealStatus, error) {
	u, err := normalizeAddr(addr)
	if err != nil {
		return nil, err
	}
	var st api.SealStatus
	if err := c.do(ctx, call{pol: polNode, addr: u, method: http.MethodGet, path: api.PathStatus, out: &st}); err != nil {
		return nil, err
	}
	return &st, nil
}

// Init initializes the cluster with custodians shares of which threshold
// unseal it. It is a write: retries reuse one request id, so a lost reply
// is answered again rather than failing with api.ErrAlreadyInitialized.
// The reply holds the shares and the admin token; the caller owns them and
// must show them once and never log them.
//
// Init sends neither custodian keys nor plaintext_shares, which servers
// refuse: use InitWith to choose.
func (c *Client) Init(ctx context.Context, custodians, threshold int) (*api.InitResponse, error) {
	return c.InitWith(ctx, api.InitRequest{Custodians: custodians, Threshold: threshold})
}

// InitWith initializes the cluster as req asks: with req.CustodianKeys the
// reply carries each share encrypted to its custodian (EncryptedShares);
// plaintext shares need req.PlaintextShares. Retries reuse one request id
// (see WithRequestID), and the server answers a retry with the same reply.
func (c *Client) InitWith(ctx context.Context, in api.InitRequest) (*api.InitResponse, error) {
	var r api.InitResponse
	if err := c.do(ctx, call{pol: polWrite, method: http.MethodPost, path: api.PathInit, in: in, out: &r}); err != nil {
		return nil, err
	}
	return &r, nil
}

// Unseal submits one custodian share to the first reachable node; the node
// relays it to its peers. It moves to another node only when a connection
// could not be opened, so a share is never submitted twice. Errors:
// api.ErrInvalidShare, *ConnError, ... The share never appears in an error.
func (c *Client) Unseal(ctx context.Context, share string) (*api.SealStatus, error) {
	var st api.SealStatus
	in := api.UnsealRequest{Share: share}
	if err := c.do(ctx, call{pol: polUnseal, method: http.MethodPost, path: api.PathUnseal, in: in, out: &st}); err != nil {
		return nil, err
	}
	return &st, nil
}

// UnsealAt submits one custodian share to the node at addr, in one attempt.
func (c *Client) UnsealAt(ctx context.Context, addr, share string) (*api.SealStatus, error) {
	u, err := normalizeAddr(addr)
	if err != nil {
		return nil, err
	}
	var st api.SealStatus
	in := api.UnsealRequest{Share: share}
	if err := c.do(ctx, call{pol: polNode, addr: u, method: http.MethodPost, path: api.PathUnseal, in: in, out: &st}); err != nil {
		return nil, err
	}
	return &st, nil
}

// Seal seals every reachable node. It is a write routed to the leader.
func (c *Client) Seal(ctx context.Context) error {
	var r api.WriteResponse
	return c.do(ctx, call{pol: polWrite, method: http.MethodPost, path: api.PathSeal, in: struct{}{}, out: &r})
}

// Join asks the node at addr, a new node, to join the cluster through the
// gossip addresses in seeds (host:port of existing members). It goes to
// that node only, in one attempt: a join is an operator action whose
// outcome should be seen, not retried elsewhere. The token is sent when
// set; a fresh node accepts the call without one. Errors: ErrInvalidAddr,
// api.ErrBadRequest (no seeds), *ConnError, *api.Error.
func (c *Client) Join(ctx context.Context, addr string, seeds []string) (*api.JoinResponse, error) {
	u, err := normalizeAddr(addr)
	if err != nil {
		return nil, err
	}
	if len(seeds) == 0 {
		return nil, fmt.Errorf("client: join needs at least one seed: %w", api.ErrBadRequest)
	}
	var r api.JoinResponse
	in := api.JoinRequest{Seeds: seeds}
	if err := c.do(ctx, call{pol: polNode, addr: u, method: http.MethodPost, path: api.PathJoin, in: in, out: &r}); err != nil {
		return nil, err
	}
	c.kick() // the topology is about to change
	return &r, nil
}

// Remove removes the node nodeID from the cluster. It is a write routed
// to the leader with the usual retries; every retry carries the same
// request id, so it is applied once. The client keeps the node's address
// (ranked last once the topology reports it left). Errors: api.ErrBadRequest
// (empty id, checked locally), *api.Error from the server, *ConnError.
func (c *Client) Remove(ctx context.Context, nodeID string) error {
	if nodeID == "" {
		return fmt.Errorf("client: empty node id: %w", api.ErrBadRequest)
	}
	var r api.WriteResponse
	in := api.RemoveRequest{NodeID: nodeID}
	if err := c.do(ctx, call{pol: polWrite, method: http.MethodPost, path: api.PathRemove, in: in, out: &r, emptyOK: true}); err != nil {
		return err
	}
	c.kick()
	return nil
}
