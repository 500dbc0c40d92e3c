package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/keyd/keyd/api"
)

// checkName rejects a name that is not a valid key name. Names go into the
// URL path unescaped, so this also keeps a name from changing the route.
// The name is not echoed: a caller may pass the wrong variable.
func checkName(name string) error {
	if !api.ValidKeyName(name) {
		return fmt.Errorf("client: invalid key name: %w", api.ErrBadRequest)
	}
	return nil
}

// keyWrite runs a key lifecycle write and returns the key's new metadata.
func (c *Client) keyWrite(ctx context.Context, name, op string, in any) (*api.KeyInfo, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if in == nil {
		in = struct{}{}
	}
	var k api.KeyInfo
	if err := c.do(ctx, call{pol: polWrite, method: http.MethodPost, path: api.KeyPath(name, op), in: in, out: &k}); err != nil {
		return nil, err
	}
	return &k, nil
}

// CreateKey creates a key. It is a write routed to the leader; retries
// reuse one request id, so a retried create is applied once. Errors:
// api.ErrBadRequest (invalid name, checked locally), api.ErrExists, ...
func (c *Client) CreateKey(ctx context.Context, req api.CreateKeyRequest) (*api.KeyInfo, error) {
	if err := checkName(req.Name); err != nil {
		return nil, err
	}
	var k api.KeyInfo
	if err := c.do(ctx, call{pol: polWrite, method: http.MethodPost, path: api.PathKeys, in: req, out: &k}); err != nil {
		return nil, err
	}
	return &k, nil
}

// ReadKey returns a key's metadata from any node, at least as fresh as the
// client's last write. consistent asks the node for a linearizable read
// (served after confirming leadership), at the cost of a round trip to the
// leader. Errors: api.ErrNotFound, ...
func (c *Client) ReadKey(ctx context.Context, name string, consistent bool) (*api.KeyInfo, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	p := api.KeyPath(name)
	if consistent {
		p += "?consistent=true"
	}
	var k api.KeyInfo
	if err := c.do(ctx, call{pol: polRead, method: http.MethodGet, path: p, out: &k}); err != nil {
		return nil, err
	}
	return &k, nil
}

// ListKeys returns one page of key names after the name after ("" for the
// first page); limit <= 0 lets the server choose. Pass the reply's Next as
// after to continue.
func (c *Client) ListKeys(ctx context.Context, after string, limit int) (*api.KeyList, error) {
	q := url.Values{}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	p := api.PathKeys
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var l api.KeyList
	if err := c.do(ctx, call{pol: polRead, method: http.MethodGet, path: p, out: &l}); err != nil {
		return nil, err
	}
	return &l, nil
}

// RotateKey adds a new version to the key and makes it the active one.
func (c *Client) RotateKey(ctx context.Context, name string) (*api.KeyInfo, error) {
	return c.keyWrite(ctx, name, "rotate", nil)
}

// EnableKey re-enables a disabled key.
func (c *Client) EnableKey(ctx context.Context, name string) (*api.KeyInfo, error) {
	return c.keyWrite(ctx, name, "enable", nil)
}

// DisableKey disables a key: crypto calls with it fail with
// api.ErrKeyDisabled until it is enabled again.
func (c *Client) DisableKey(ctx context.Context, name string) (*api.KeyInfo, error) {
	return c.keyWrite(ctx, name, "disable", nil)
}

// CancelDeletion cancels a scheduled deletion; the key returns to disabled
// or enabled as the server defines.
func (c *Client) CancelDeletion(ctx context.Context, name string) (*api.KeyInfo, error) {
	return c.keyWrite(ctx, name, "cancel-deletion", nil)
}

// ConfigureKey changes a key's settings; nil fields of req are unchanged.
func (c *Client) ConfigureKey(ctx context.Context, name string, req api.KeyConfigRequest) (*api.KeyInfo, error) {
	return c.keyWrite(ctx, name, "config", req)
}

// ScheduleDeletion schedules the key's deletion after window (24h to 720h;
// 0 picks the server's default of 168h). The key is unusable meanwhile and
// can be recovered with CancelDeletion.
func (c *Client) ScheduleDeletion(ctx context.Context, name string, window time.Duration) (*api.KeyInfo, error) {
	var in api.ScheduleDeletionRequest
	if window > 0 {
		in.PendingWindow = window.String()
	}
	return c.keyWrite(ctx, name, "schedule-deletion", in)
}
