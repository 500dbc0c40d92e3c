package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
)

// fakeAdmin is the fake node's identity and policy state. The zero value
// is empty; maps are made on first write.
type fakeAdmin struct {
	policies   map[string][]byte
	tokens     map[string]api.TokenInfo // by accessor, without the token
	byToken    map[string]string        // token -> accessor
	identities map[string]api.IdentityInfo
	auditLog   []byte
}

// fakeAuditKey is the fake node's audit public key.
const fakeAuditKey = "aa11bb22cc33dd44ee55ff6600112233445566778899aabbccddeeff00112233"

// tokenReplayConflict is keyd's answer to a replayed token create.
var tokenReplayConflict = func() []byte {
	b, _ := json.Marshal(&api.Error{Code: api.CodeConflict, Message: "this request id already created a token; its value cannot be shown again"})
	return append([]byte(strconv.Itoa(api.StatusFor(api.CodeConflict))), b...)
}()

// isAdminWrite reports the admin routes that go through Raft.
func isAdminWrite(r *http.Request) bool {
	p := r.URL.Path
	switch r.Method {
	case http.MethodPut:
		return strings.HasPrefix(p, api.PathPolicies+"/")
	case http.MethodDelete:
		return strings.HasPrefix(p, api.PathPolicies+"/") || strings.HasPrefix(p, api.PathIdentities+"/")
	case http.MethodPost:
		return p == api.PathTokens || p == api.PathTokenRevoke || p == api.PathIdentities
	}
	return false
}

// applyAdminLocked applies an admin write; handled is false for other paths.
func (n *fakeNode) applyAdminLocked(r *http.Request, body []byte, idx uint64, ok func(any) []byte, fail func(api.Code, string) []byte) (reply []byte, handled bool) {
	a := &n.admin
	if a.policies == nil {
		a.policies = map[string][]byte{}
		a.tokens = map[string]api.TokenInfo{}
		a.byToken = map[string]string{}
		a.identities = map[string]api.IdentityInfo{}
	}
	p := r.URL.Path
	switch {
	case r.Method == http.MethodPut && strings.HasPrefix(p, api.PathPolicies+"/"):
		name := strings.TrimPrefix(p, api.PathPolicies+"/")
		if !json.Valid(body) {
			return fail(api.CodeBadRequest, "bad policy"), true
		}
		a.policies[name] = append([]byte(nil), body...)
		return ok(&api.PolicyInfo{Name: name, Document: body, Index: idx}), true
	case r.Method == http.MethodDelete && strings.HasPrefix(p, api.PathPolicies+"/"):
		name := strings.TrimPrefix(p, api.PathPolicies+"/")
		if _, found := a.policies[name]; !found {
			return fail(api.CodeNotFound, "no such policy"), true
		}
		delete(a.policies, name)
		return ok(&api.WriteResponse{Index: idx}), true
	case p == api.PathTokens:
		var req api.CreateTokenRequest
		if json.Unmarshal(body, &req) != nil || len(req.Policies) == 0 {
			return fail(api.CodeBadRequest, "bad token request"), true
		}
		var raw [16]byte
		rand.Read(raw[:])
		tok := "kd_" + hex.EncodeToString(raw[:])
		h := sha256.Sum256([]byte(tok))
		info := api.TokenInfo{Accessor: hex.EncodeToString(h[:])[:16], Name: req.Name, Policies: req.Policies}
		a.tokens[info.Accessor] = info
		a.byToken[tok] = info.Accessor
		info.Token, info.Index = tok, idx
		return ok(&info), true
	case p == api.PathTokenRevoke:
		var req api.RevokeTokenRequest
		json.Unmarshal(body, &req)
		if _, found := a.tokens[req.Accessor]; !found {
			return fail(api.CodeNotFound, "no token with this accessor"), true
		}
		delete(a.tokens, req.Accessor)
		return ok(&api.WriteResponse{Index: idx}), true
	case r.Method == http.MethodPost && p == api.PathIdentities:
		var req api.CreateIdentityRequest
		json.Unmarshal(body, &req)
		id := req.ID
		if req.Certificate != "" {
			h := sha256.Sum256([]byte(req.Certificate))
			id = hex.EncodeToString(h[:])
		}
		info := api.IdentityInfo{ID: id, Name: req.Name, Policies: req.Policies}
		a.identities[id] = info
		info.Index = idx
		return ok(&info), true
	case r.Method == http.MethodDelete && strings.HasPrefix(p, api.PathIdentities+"/"):
		id := strings.TrimPrefix(p, api.PathIdentities+"/")
		if _, found := a.identities[id]; !found {
			return fail(api.CodeNotFound, "no such identity"), true
		}
		delete(a.identities, id)
		return ok(&api.WriteResponse{Index: idx}), true
	}
	return nil, false
}

// readAdminLocked answers the admin reads; it reports whether it did.
func (n *fakeNode) readAdminLocked(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	a := &n.admin
	p := r.URL.Path
	auth := r.Header.Get(api.HeaderAuthorization)
	switch {
	case p == api.PathPolicies:
		l := &api.PolicyList{Policies: []string{}, Builtin: []string{"admin", "auditor", "key-admin", "operator"}}
		for name := range a.policies {
			l.Policies = append(l.Policies, name)
		}
		sort.Strings(l.Policies)
		writeJSON(w, 200, l)
	case strings.HasPrefix(p, api.PathPolicies+"/"):
		name := strings.TrimPrefix(p, api.PathPolicies+"/")
		doc, found := a.policies[name]
		if !found {
			writeErr(w, api.CodeNotFound, "no such policy", "")
			return true
		}
		writeJSON(w, 200, &api.PolicyInfo{Name: name, Document: doc, Index: n.index})
	case p == api.PathTokens:
		l := &api.TokenList{Tokens: []api.TokenInfo{}}
		for _, t := range a.tokens {
			l.Tokens = append(l.Tokens, t)
		}
		writeJSON(w, 200, l)
	case p == api.PathIdentities:
		l := &api.IdentityList{Identities: []api.IdentityInfo{}}
		for _, id := range a.identities {
			l.Identities = append(l.Identities, id)
		}
		writeJSON(w, 200, l)
	case p == api.PathWhoAmI:
		tok, _ := strings.CutPrefix(auth, "Bearer ")
		if acc, found := a.byToken[tok]; found {
			if t, live := a.tokens[acc]; live {
				writeJSON(w, 200, &api.WhoAmI{Identity: "token:" + acc, Policies: t.Policies})
				return true
			}
		}
		if tok == "s3cret-token" {
			writeJSON(w, 200, &api.WhoAmI{Identity: "root", Policies: []string{"admin"}})
			return true
		}
		writeErr(w, api.CodeUnauthorized, "missing or invalid token", "")
	case p == api.PathAuditKey || p == api.PathAuditLog:
		if auth != "Bearer s3cret-token" {
			writeErr(w, api.CodeForbidden, "missing capability audit-read", "")
			return true
		}
		if p == api.PathAuditKey {
			writeJSON(w, 200, &api.AuditKey{Node: n.hostPort(), PublicKey: fakeAuditKey})
			return true
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Write(a.auditLog)
	default:
		return false
	}
	return true
}

func TestPolicyRoundTrip(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)
	c := newTestClient(t, Config{RefreshInterval: -1}, n)
	ctx := t.Context()
	doc := []byte(`{"rules":[{"effect":"allow","capabilities":["encrypt"],"keys":["app1-*"]}]}`)

	p, err := c.PutPolicy(ctx, "app1", doc)
	if err != nil {
		t.Fatalf("PutPolicy: %v", err)
	}
	if p.Name != "app1" || p.Index == 0 || c.LastIndex() < p.Index {
		t.Fatalf("got %+v, LastIndex %d, want app1 with its index observed", p, c.LastIndex())
	}
	puts := n.requests(http.MethodPut, api.PathPolicies+"/app1")
	if len(puts) != 1 || puts[0].RequestID == "" || !bytes.Equal(puts[0].Body, doc) {
		t.Fatalf("got PUT requests %+v, want one with a request id and the raw document as body", puts)
	}

	got, err := c.Policy(ctx, "app1")
	if err != nil || !bytes.Equal(got.Document, doc) {
		t.Fatalf("Policy: got %+v, %v, want the document back", got, err)
	}
	l, err := c.ListPolicies(ctx)
	if err != nil || len(l.Policies) != 1 || l.Policies[0] != "app1" || len(l.Builtin) == 0 {
		t.Fatalf("ListPolicies: got %+v, %v, want [app1] and the built-ins", l, err)
	}
	before := c.LastIndex()
	if err := c.DeletePolicy(ctx, "app1"); err != nil {
		t.Fatalf("DeletePolicy: %v", err)
	}
	if c.LastIndex() <= before {
		t.Fatalf("got LastIndex %d after delete, want above %d", c.LastIndex(), before)
	}
	if _, err := c.Policy(ctx, "app1"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("Policy after delete: got %v, want %v", err, api.ErrNotFound)
	}
	if err := c.DeletePolicy(ctx, "app1"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("DeletePolicy twice: got %v, want %v", err, api.ErrNotFound)
	}
}

// TestAdminLocalValidation: malformed input fails with ErrBadRequest
// before anything is sent, so nothing can change the route.
func TestAdminLocalValidation(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)
	c := newTestClient(t, Config{RefreshInterval: -1}, n)
	good := []byte(`{"rules":[]}`)
	tests := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"empty policy name", func(ctx context.Context) error { _, err := c.PutPolicy(ctx, "", good); return err }},
		{"policy name with slash", func(ctx context.Context) error { _, err := c.Policy(ctx, "a/../b"); return err }},
		{"upper-case policy name", func(ctx context.Context) error { return c.DeletePolicy(ctx, "App") }},
		{"long policy name", func(ctx context.Context) error { _, err := c.PutPolicy(ctx, strings.Repeat("a", 65), good); return err }},
		{"non-JSON document", func(ctx context.Context) error { _, err := c.PutPolicy(ctx, "p", []byte("rules: []")); return err }},
		{"huge document", func(ctx context.Context) error {
			_, err := c.PutPolicy(ctx, "p", append(append([]byte(`"`), bytes.Repeat([]byte("a"), 64<<10)...), '"'))
			return err
		}},
		{"token without policy", func(ctx context.Context) error { _, err := c.CreateToken(ctx, api.CreateTokenRequest{}); return err }},
		{"short accessor", func(ctx context.Context) error { return c.RevokeToken(ctx, "abc") }},
		{"non-hex accessor", func(ctx context.Context) error { return c.RevokeToken(ctx, "zzzzzzzzzzzzzzzz") }},
		{"identity without cert or id", func(ctx context.Context) error {
			_, err := c.CreateIdentity(ctx, api.CreateIdentityRequest{Policies: []string{"auditor"}})
			return err
		}},
		{"identity without policy", func(ctx context.Context) error {
			_, err := c.CreateIdentity(ctx, api.CreateIdentityRequest{ID: strings.Repeat("a", 64)})
			return err
		}},
		{"identity id with path", func(ctx context.Context) error { return c.DeleteIdentity(ctx, "../sys/seal"+strings.Repeat("a", 53)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(t.Context()); !errors.Is(err, api.ErrBadRequest) {
				t.Fatalf("got %v, want %v", err, api.ErrBadRequest)
			}
		})
	}
	for _, m := range []string{http.MethodPut, http.MethodPost, http.MethodDelete} {
		if got := n.requests(m, "/v1/"); len(got) != 0 {
			t.Fatalf("got %d %s requests, want none", len(got), m)
		}
	}
}

func TestTokenLifecycle(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)
	c := newTestClient(t, Config{RefreshInterval: -1}, n)
	ctx := t.Context()
	tok, err := c.CreateToken(ctx, api.CreateTokenRequest{Name: "ci", Policies: []string{"auditor"}, TTL: "1h"})
	if err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	if !strings.HasPrefix(tok.Token, "kd_") || len(tok.Accessor) != 16 || c.LastIndex() < tok.Index {
		t.Fatalf("got %+v, want a token, its accessor and the index observed", tok)
	}
	l, err := c.ListTokens(ctx)
	if err != nil || len(l.Tokens) != 1 || l.Tokens[0].Accessor != tok.Accessor || l.Tokens[0].Token != "" {
		t.Fatalf("ListTokens: got %+v, %v, want the accessor without the token", l, err)
	}

	// The new token authenticates.
	tc := newTestClient(t, Config{RefreshInterval: -1, Token: tok.Token}, n)
	who, err := tc.WhoAmI(ctx)
	if err != nil || who.Identity != "token:"+tok.Accessor {
		t.Fatalf("WhoAmI with the new token: got %+v, %v", who, err)
	}

	if err := c.RevokeToken(ctx, tok.Accessor); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	if _, err := tc.WhoAmI(ctx); !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("WhoAmI after revoke: got %v, want %v", err, api.ErrUnauthorized)
	}
	if err := c.RevokeToken(ctx, tok.Accessor); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("RevokeToken twice: got %v, want %v", err, api.ErrNotFound)
	}
}

// TestCreateTokenLostReply: the token create is applied but its reply is
// lost; the retry carries the same request id and gets a conflict, never
// a second token.
func TestCreateTokenLostReply(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)
	n.dropAfterApply = 1
	c := newTestClient(t, Config{RefreshInterval: -1}, n)
	_, err := c.CreateToken(t.Context(), api.CreateTokenRequest{Name: "lost", Policies: []string{"auditor"}})
	if !errors.Is(err, api.ErrConflict) {
		t.Fatalf("got %v, want %v", err, api.ErrConflict)
	}
	reqs := n.requests(http.MethodPost, api.PathTokens)
	if len(reqs) != 2 || reqs[0].RequestID == "" || reqs[0].RequestID != reqs[1].RequestID {
		t.Fatalf("got %d requests %+v, want 2 with one request id", len(reqs), reqs)
	}
	n.mu.Lock()
	applied, tokens := n.applied[reqs[0].RequestID], len(n.admin.tokens)
	n.mu.Unlock()
	if applied != 1 || tokens != 1 {
		t.Fatalf("got applied %d, tokens %d, want 1 and 1", applied, tokens)
	}
}

func TestIdentityLifecycle(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)
	c := newTestClient(t, Config{RefreshInterval: -1}, n)
	ctx := t.Context()
	id, err := c.CreateIdentity(ctx, api.CreateIdentityRequest{Name: "svc", Certificate: "-----BEGIN CERTIFICATE-----\n...", Policies: []string{"auditor"}})
	if err != nil {
		t.Fatalf("CreateIdentity: %v", err)
	}
	if len(id.ID) != 64 || id.Index == 0 || c.LastIndex() < id.Index {
		t.Fatalf("got %+v, want a 64-hex id and its index observed", id)
	}
	l, err := c.ListIdentities(ctx)
	if err != nil || len(l.Identities) != 1 || l.Identities[0].ID != id.ID {
		t.Fatalf("ListIdentities: got %+v, %v", l, err)
	}
	// Ids are matched case-insensitively and sent lower-case.
	if err := c.DeleteIdentity(ctx, strings.ToUpper(id.ID)); err != nil {
		t.Fatalf("DeleteIdentity: %v", err)
	}
	if err := c.DeleteIdentity(ctx, id.ID); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("DeleteIdentity twice: got %v, want %v", err, api.ErrNotFound)
	}
}

func TestAuditLog(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)
	other := newFakeNode(t)
	logData := []byte(`{"seq":1,"op":"key.encrypt"}` + "\n" + `{"seq":2,"op":"checkpoint"}` + "\n")
	n.mu.Lock()
	n.admin.auditLog = logData
	n.mu.Unlock()
	c := newTestClient(t, Config{RefreshInterval: -1}, n, other)
	ctx := t.Context()

	k, err := c.AuditPublicKey(ctx, n.hostPort())
	if err != nil || k.PublicKey != fakeAuditKey || k.Node != n.hostPort() {
		t.Fatalf("AuditPublicKey: got %+v, %v", k, err)
	}
	var buf bytes.Buffer
	if err := c.AuditLog(ctx, n.addr(), &buf); err != nil {
		t.Fatalf("AuditLog: %v", err)
	}
	if !bytes.Equal(buf.Bytes(), logData) {
		t.Fatalf("got log %q, want %q", buf.Bytes(), logData)
	}
	// One node only: the other node was not asked.
	if got := other.requests(http.MethodGet, api.PathAuditLog); len(got) != 0 {
		t.Fatalf("got %d audit requests on the other node, want 0", len(got))
	}

	weak := newTestClient(t, Config{RefreshInterval: -1, Token: "weak"}, n)
	if err := weak.AuditLog(ctx, n.addr(), &buf); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("AuditLog without audit-read: got %v, want %v", err, api.ErrForbidden)
	}
	if _, err := weak.AuditPublicKey(ctx, n.addr()); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("AuditPublicKey without audit-read: got %v, want %v", err, api.ErrForbidden)
	}
	if err := c.AuditLog(ctx, "http://"+n.hostPort(), &buf); !errors.Is(err, ErrInvalidAddr) {
		t.Fatalf("AuditLog over http: got %v, want %v", err, ErrInvalidAddr)
	}
}

// TestAuditLogBrokenStream: a stream cut in the middle is a *ConnError,
// with the prefix already written.
func TestAuditLogBrokenStream(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)
	n.setHook(func(n *fakeNode, w http.ResponseWriter, r *http.Request, body []byte) bool {
		if r.URL.Path != api.PathAuditLog {
			return false
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Write([]byte(`{"seq":1}` + "\n"))
		w.(http.Flusher).Flush()
		dropConn()
		return true
	})
	c := newTestClient(t, Config{RefreshInterval: -1}, n)
	var buf bytes.Buffer
	err := c.AuditLog(t.Context(), n.addr(), &buf)
	var ce *ConnError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a *ConnError", err)
	}
	if buf.String() != `{"seq":1}`+"\n" {
		t.Fatalf("got %q, want the prefix", buf.String())
	}
}

// TestAuditLogNoHeaders: a node that accepts the request but never
// answers fails after Config.Timeout instead of hanging.
func TestAuditLogNoHeaders(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)
	n.setHook(func(n *fakeNode, w http.ResponseWriter, r *http.Request, body []byte) bool {
		if r.URL.Path != api.PathAuditLog {
			return false
		}
		select {
		case <-n.release:
		case <-r.Context().Done():
		}
		return true
	})
	c := newTestClient(t, Config{RefreshInterval: -1, Timeout: 100 * time.Millisecond}, n)
	err := c.AuditLog(t.Context(), n.addr(), &bytes.Buffer{})
	var ce *ConnError
	if !errors.As(err, &ce) || !ce.Timeout() {
		t.Fatalf("got %v, want a timeout *ConnError", err)
	}
}

func TestAuditLogClosed(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)
	c := newTestClient(t, Config{RefreshInterval: -1}, n)
	c.Close()
	if err := c.AuditLog(t.Context(), n.addr(), &bytes.Buffer{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v, want %v", err, ErrClosed)
	}
}

// FuzzCheckPolicyName: whatever checkPolicyName accepts is safe as one
// URL path segment.
func FuzzCheckPolicyName(f *testing.F) {
	for _, s := range []string{"app1", "key-admin", "a_b", "", "../x", "A", "a/b", "a%2f", strings.Repeat("a", 65)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := checkPolicyName(name)
		if err != nil {
			if !errors.Is(err, api.ErrBadRequest) {
				t.Fatalf("got %v, want %v", err, api.ErrBadRequest)
			}
			return
		}
		if name == "" || len(name) > 64 || strings.ContainsAny(name, "/?#%.\\ ") || url.PathEscape(name) != name {
			t.Fatalf("accepted %q, which is not a plain path segment", name)
		}
	})
}
