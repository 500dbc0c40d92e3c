package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/keyd/keyd/api"
)

// AuditAnchors returns node's audit public key and the chain heads it
// committed through Raft, as the node at addr holds them in its replicated
// state ("" for node: the answering node's own). Ask a node other than
// the audited one: every node holds every node's anchors. Needs
// audit-read. Errors: ErrInvalidAddr, *ConnError, *api.Error.
func (c *Client) AuditAnchors(ctx context.Context, addr, node string) (*api.AuditAnchors, error) {
	u, err := normalizeAddr(addr)
	if err != nil {
		return nil, err
	}
	path := api.PathAuditAnchors
	if node != "" {
		path += "?node=" + url.QueryEscape(node)
	}
	var out api.AuditAnchors
	if err := c.do(ctx, call{pol: polNode, addr: u, method: http.MethodGet, path: path, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}
