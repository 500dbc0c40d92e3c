package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keyd/keyd/api"
)

// Limits checked locally before a request is sent. They mirror the
// server's rules so a typo fails fast and so nothing a caller passes can
// change the route: names and ids go into the URL path.
const (
	maxPolicyName = 64
	// maxPolicyDoc is the largest policy document the server accepts
	// (policy.MaxDocSize; the client does not import the policy package).
	maxPolicyDoc = 64 << 10
	accessorLen  = 16 // hex digits
	identityLen  = 64 // hex digits of a SHA-256
)

// checkPolicyName accepts 1 to 64 characters from [a-z0-9_-], the policy
// name syntax; built-in role names pass (they can be read, not written).
func checkPolicyName(name string) error {
	if len(name) == 0 || len(name) > maxPolicyName {
		return fmt.Errorf("client: policy name must be 1 to %d characters: %w", maxPolicyName, api.ErrBadRequest)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("client: invalid policy name (want [a-z0-9_-]): %w", api.ErrBadRequest)
		}
	}
	return nil
}

// checkHex accepts exactly n hex digits. The value is not echoed: an
// accessor names a token.
func checkHex(what, s string, n int) error {
	if len(s) != n {
		return fmt.Errorf("client: %s must be %d hex digits: %w", what, n, api.ErrBadRequest)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return fmt.Errorf("client: %s must be %d hex digits: %w", what, n, api.ErrBadRequest)
		}
	}
	return nil
}

// PutPolicy creates or replaces the policy name with the JSON policy
// document doc ({"rules":[{"effect":"allow","capabilities":[...],
// "keys":["app1-*"]}]}; a "name" field, if present, must equal name). It
// is a write routed to the leader; retries reuse one request id. The
// caller needs rights over doc and over the stored document it replaces
// (docs/API.md, Policy changes). Errors: api.ErrBadRequest (bad name
// or non-JSON doc, checked locally; an invalid document, from the
// server), api.ErrForbidden, ...
func (c *Client) PutPolicy(ctx context.Context, name string, doc []byte) (*api.PolicyInfo, error) {
	if err := checkPolicyName(name); err != nil {
		return nil, err
	}
	if len(doc) > maxPolicyDoc {
		return nil, fmt.Errorf("client: policy document larger than %d bytes: %w", maxPolicyDoc, api.ErrBadRequest)
	}
	if !json.Valid(doc) {
		return nil, fmt.Errorf("client: policy document is not JSON: %w", api.ErrBadRequest)
	}
	var p api.PolicyInfo
	err := c.do(ctx, call{pol: polWrite, method: http.MethodPut, path: api.PathPolicies + "/" + name,
		in: json.RawMessage(doc), out: &p})
	if err != nil {
		return nil, err
	}
	c.observeIndex(p.Index)
	return &p, nil
}

// Policy returns the stored or built-in policy name (PolicyInfo.Builtin
// tells which) from any node. Errors: api.ErrNotFound, api.ErrBadRequest
// (bad name, checked locally), ...
func (c *Client) Policy(ctx context.Context, name string) (*api.PolicyInfo, error) {
	if err := checkPolicyName(name); err != nil {
		return nil, err
	}
	var p api.PolicyInfo
	if err := c.do(ctx, call{pol: polRead, method: http.MethodGet, path: api.PathPolicies + "/" + name, out: &p}); err != nil {
		return nil, err
	}
	return &p, nil
}

// ListPolicies names the stored and the built-in policies, from any node.
func (c *Client) ListPolicies(ctx context.Context) (*api.PolicyList, error) {
	var l api.PolicyList
	if err := c.do(ctx, call{pol: polRead, method: http.MethodGet, path: api.PathPolicies, out: &l}); err != nil {
		return nil, err
	}
	return &l, nil
}

// DeletePolicy deletes a stored policy. It is a write routed to the
// leader; LastIndex afterwards is at least its Raft index. Tokens and
// identities bound to the policy keep their other policies. Errors:
// api.ErrNotFound, api.ErrBadRequest (a built-in role), ...
func (c *Client) DeletePolicy(ctx context.Context, name string) error {
	if err := checkPolicyName(name); err != nil {
		return err
	}
	var r api.WriteResponse
	return c.do(ctx, call{pol: polWrite, method: http.MethodDelete, path: api.PathPolicies + "/" + name, out: &r, emptyOK: true})
}

// CreateToken creates a bearer token bound to req.Policies (each a
// built-in role or a stored policy), expiring after req.TTL when set. It
// is a write routed to the leader and needs token-admin.
//
// The token is in the reply only (TokenInfo.Token), shown once: the
// cluster stores its hash. The caller owns it and must never log it. A
// retry with the same request id, whether made by this call after a lost
// reply or by the caller through WithRequestID, cannot show it again and
// fails with api.ErrConflict; the token then exists but is unknown, so
// revoke it (ListTokens shows its accessor and req.Name) and create
// another. Other errors: api.ErrBadRequest (unknown policy, bad TTL),
// api.ErrForbidden, ...
func (c *Client) CreateToken(ctx context.Context, req api.CreateTokenRequest) (*api.TokenInfo, error) {
	if len(req.Policies) == 0 {
		return nil, fmt.Errorf("client: a token needs at least one policy: %w", api.ErrBadRequest)
	}
	var t api.TokenInfo
	if err := c.do(ctx, call{pol: polWrite, method: http.MethodPost, path: api.PathTokens, in: req, out: &t}); err != nil {
		return nil, err
	}
	c.observeIndex(t.Index)
	return &t, nil
}

// ListTokens lists the tokens by accessor, from any node; it never
// returns a token's value. Needs token-admin.
func (c *Client) ListTokens(ctx context.Context) (*api.TokenList, error) {
	var l api.TokenList
	if err := c.do(ctx, call{pol: polRead, method: http.MethodGet, path: api.PathTokens, out: &l}); err != nil {
		return nil, err
	}
	return &l, nil
}

// RevokeToken revokes the token whose accessor (16 hex digits) is given.
// It is a write routed to the leader; each node refuses the token once it
// has applied the revocation, so a caller that needs it refused
// everywhere waits for LastIndex on every node. Errors: api.ErrNotFound,
// api.ErrBadRequest (malformed accessor, checked locally), ...
func (c *Client) RevokeToken(ctx context.Context, accessor string) error {
	_, err := c.RevokeTokenReport(ctx, accessor)
	return err
}

// RevokeTokenReport is RevokeToken returning the leader's reply: its
// NotApplied names the nodes that had not applied the revocation when the
// leader answered (unreachable, or cut off from the leader); every other
// node already refuses the token.
func (c *Client) RevokeTokenReport(ctx context.Context, accessor string) (*api.WriteResponse, error) {
	if err := checkHex("accessor", accessor, accessorLen); err != nil {
		return nil, err
	}
	var r api.WriteResponse
	in := api.RevokeTokenRequest{Accessor: accessor}
	if err := c.do(ctx, call{pol: polWrite, method: http.MethodPost, path: api.PathTokenRevoke, in: in, out: &r, emptyOK: true}); err != nil {
		return nil, err
	}
	return &r, nil
}

// CreateIdentity binds a client certificate (req.Certificate, PEM) or a
// public-key hash (req.ID, 64 hex digits) to req.Policies. A caller
// presenting that certificate, or any certificate for the same key, in
// the TLS handshake then authenticates without a token. It is a write
// routed to the leader and needs token-admin; creating an existing id
// replaces its name and policies. Errors: api.ErrBadRequest, ...
func (c *Client) CreateIdentity(ctx context.Context, req api.CreateIdentityRequest) (*api.IdentityInfo, error) {
	if len(req.Policies) == 0 {
		return nil, fmt.Errorf("client: an identity needs at least one policy: %w", api.ErrBadRequest)
	}
	if req.Certificate == "" && req.ID == "" {
		return nil, fmt.Errorf("client: an identity needs a certificate or an id: %w", api.ErrBadRequest)
	}
	var id api.IdentityInfo
	if err := c.do(ctx, call{pol: polWrite, method: http.MethodPost, path: api.PathIdentities, in: req, out: &id}); err != nil {
		return nil, err
	}
	c.observeIndex(id.Index)
	return &id, nil
}

// ListIdentities lists the certificate identities, from any node. Needs
// token-admin.
func (c *Client) ListIdentities(ctx context.Context) (*api.IdentityList, error) {
	var l api.IdentityList
	if err := c.do(ctx, call{pol: polRead, method: http.MethodGet, path: api.PathIdentities, out: &l}); err != nil {
		return nil, err
	}
	return &l, nil
}

// DeleteIdentity removes the certificate identity id (64 hex digits). It
// is a write routed to the leader. Errors: api.ErrNotFound,
// api.ErrBadRequest (malformed id, checked locally), ...
func (c *Client) DeleteIdentity(ctx context.Context, id string) error {
	if err := checkHex("identity id", id, identityLen); err != nil {
		return err
	}
	var r api.WriteResponse
	return c.do(ctx, call{pol: polWrite, method: http.MethodDelete, path: api.PathIdentities + "/" + strings.ToLower(id), out: &r, emptyOK: true})
}

// WhoAmI returns the identity the cluster sees for this client's
// credentials (token, else client certificate) and its policies.
// Errors: api.ErrUnauthorized, ...
func (c *Client) WhoAmI(ctx context.Context) (*api.WhoAmI, error) {
	var w api.WhoAmI
	if err := c.do(ctx, call{pol: polRead, method: http.MethodGet, path: api.PathWhoAmI, out: &w}); err != nil {
		return nil, err
	}
	return &w, nil
}

// AuditPublicKey returns the audit checkpoint verification key of the
// node at addr ("host:port" or "https://host:port"), in one attempt:
// every node signs its own audit file with its own key. Needs
// audit-read. Errors: ErrInvalidAddr, *ConnError, *api.Error.
func (c *Client) AuditPublicKey(ctx context.Context, addr string) (*api.AuditKey, error) {
	u, err := normalizeAddr(addr)
	if err != nil {
		return nil, err
	}
	var k api.AuditKey
	if err := c.do(ctx, call{pol: polNode, addr: u, method: http.MethodGet, path: api.PathAuditKey, out: &k}); err != nil {
		return nil, err
	}
	return &k, nil
}

// AuditLog streams the audit file of the node at addr to w, in one
// attempt with no retry (a partial copy must not be mistaken for a whole
// one). The file is newline-delimited JSON; verify it offline with the
// key from AuditPublicKey. Only the wait for the reply's headers is
// bounded by Config.Timeout; the copy itself runs until it ends or ctx
// does, since a log may be large.
//
// On an error after the copy started, w holds a prefix of the file and
// the error is a *ConnError (or w's own error, wrapped). The node is
// appending while it streams, so the last line may be incomplete; callers
// that verify should drop a final line without a newline. Other errors:
// ErrInvalidAddr, ErrClosed, *api.Error (api.ErrForbidden without
// audit-read, ...).
func (c *Client) AuditLog(ctx context.Context, addr string, w io.Writer) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	u, err := normalizeAddr(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+api.PathAuditLog, nil)
	if err != nil {
		return fmt.Errorf("client: build request: %w", err)
	}
	req.Header.Set("Accept", "application/x-ndjson, application/json")
	req.Header["User-Agent"] = hdrUserAgent
	if c.auth != nil {
		req.Header[api.HeaderAuthorization] = c.auth
	}
	// A node that accepts the connection but never answers must not hang
	// the caller: cancel unless the headers arrive in time.
	headerTimer := time.AfterFunc(c.timeout, cancel)
	resp, err := c.hc.Do(req)
	stopped := headerTimer.Stop()
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if !stopped && ctx.Err() != nil && errors.Is(err, context.Canceled) {
			err = fmt.Errorf("no reply headers within %s: %w", c.timeout, context.DeadlineExceeded)
		}
		return &ConnError{Addr: u, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		if err != nil {
			return &ConnError{Addr: u, Err: err}
		}
		if err := decodeReply(resp.StatusCode, resp.Header.Get("Content-Type"), data, nil); err != nil {
			var ae *api.Error
			if errors.As(err, &ae) {
				return ae
			}
			return fmt.Errorf("client: reply from %s: %w", u, err)
		}
	}
	if _, err := io.Copy(w, &connReader{r: resp.Body, addr: u}); err != nil {
		var ce *ConnError
		if errors.As(err, &ce) {
			return ce
		}
		return fmt.Errorf("client: write audit log: %w", err)
	}
	return nil
}

// maxErrorBody caps an error reply read by the streaming call; an
// api.Error is far smaller.
const maxErrorBody = 64 << 10

// connReader marks read errors from a reply body as *ConnError, so a
// streaming copy can tell a broken connection from a failing writer.
type connReader struct {
	r    io.Reader
	addr string
}

func (r *connReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = &ConnError{Addr: r.addr, Err: err}
	}
	return n, err
}
