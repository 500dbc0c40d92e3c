package client

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/keyd/keyd/api"
)

// KeyUsage returns a key's recorded usage: last use and count per
// version and per identity. Uses reach the replicated state when the
// serving node flushes (every minute by default), so the most recent
// ones may be missing. Needs read on the key.
func (c *Client) KeyUsage(ctx context.Context, name string) (*api.KeyUsage, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	var u api.KeyUsage
	if err := c.do(ctx, call{pol: polRead, method: http.MethodGet, path: api.KeyPath(name, "usage"), out: &u}); err != nil {
		return nil, err
	}
	return &u, nil
}

// KeyReport returns the key report: keys unused for unusedFor (0: the
// server's default, 720h) or never used, versions still needed, keys
// due for rotation and, for a caller with token-admin, tokens and
// identities unused for unusedFor. Needs audit-read; lists the keys the
// caller may read.
func (c *Client) KeyReport(ctx context.Context, unusedFor time.Duration) (*api.KeyReport, error) {
	p := api.PathKeyReport
	if unusedFor > 0 {
		p += "?" + url.Values{"unused_for": {unusedFor.String()}}.Encode()
	}
	var r api.KeyReport
	if err := c.do(ctx, call{pol: polRead, method: http.MethodGet, path: p, out: &r}); err != nil {
		return nil, err
	}
	return &r, nil
}
