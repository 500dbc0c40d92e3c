package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/audit"
	"github.com/keyd/keyd/keyring"
	"github.com/keyd/keyd/policy"
)

// fakeAuditor records what it is asked to log and can fail.
type fakeAuditor struct {
	healthy atomic.Bool
	failLog atomic.Bool
	records []audit.Record
}

func (f *fakeAuditor) Log(_ context.Context, r audit.Record) error {
	if f.failLog.Load() {
		return audit.ErrSinkFailed
	}
	f.records = append(f.records, r)
	return nil
}
func (f *fakeAuditor) HMAC(v []byte) string { return "hmac" }
func (f *fakeAuditor) Healthy() bool        { return f.healthy.Load() }

type allowAll struct{}

func (allowAll) ID() string                                    { return "token:test" }
func (allowAll) Policies() []string                            { return []string{"admin"} }
func (allowAll) Allowed(policy.Capability, string) bool        { return true }
func (allowAll) AllowedPattern(policy.Capability, string) bool { return true }

type authAll struct{}

func (authAll) Authenticate(*http.Request) (Principal, error) { return allowAll{}, nil }

type oneKey struct {
	k     *keyring.Key
	calls atomic.Int64
}

func (o *oneKey) AcquireCryptoKey(string) (*keyring.Key, func(), error) {
	o.calls.Add(1)
	return o.k, func() {}, nil
}

type leaderCluster struct{}

func (leaderCluster) IsLeader() bool                                           { return true }
func (leaderCluster) Forward(http.ResponseWriter, *http.Request, []byte) error { return nil }
func (leaderCluster) WaitApplied(context.Context, uint64) error                { return nil }
func (leaderCluster) AppliedIndex() uint64                                     { return 1 }

func newAuditServer(t *testing.T) (*Server, *fakeAuditor, *oneKey) {
	t.Helper()
	m, err := keyring.GenerateMaterial(keyring.AES256GCM, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := keyring.NewKey("k", keyring.AES256GCM, []keyring.Version{{Number: 1, Material: m}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	fa := &fakeAuditor{}
	fa.healthy.Store(true)
	ok := &oneKey{k: k}
	s := New(Config{Crypto: ok, Cluster: leaderCluster{}, Auth: authAll{}, Audit: fa,
		IsPeer: func(*http.Request) (string, bool) { return "", false }})
	return s, fa, ok
}

func post(s *Server, path, body string) (*httptest.ResponseRecorder, api.Error) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	s.ServeHTTP(rec, req)
	var e api.Error
	b, _ := io.ReadAll(rec.Result().Body)
	_ = json.Unmarshal(b, &e)
	return rec, e
}

// TestAuditRefusesWhenSinkDown: with the audit sink failed, key
// operations are refused before they run; a record that cannot be written
// turns the reply into an error; a healthy sink gets one record per
// request with the body only as an HMAC.
func TestAuditRefusesWhenSinkDown(t *testing.T) {
	t.Parallel()
	s, fa, key := newAuditServer(t)
	rec, _ := post(s, "/v1/keys/k/encrypt", `{"plaintext":"c2VjcmV0"}`)
	if rec.Code != 200 || len(fa.records) != 1 {
		t.Fatalf("healthy: got %d with %d records", rec.Code, len(fa.records))
	}
	r := fa.records[0]
	if r.Op != "key.encrypt" || r.Key != "k" || r.Version != 1 || r.Outcome != "ok" || r.Identity != "token:test" || r.Hashed["request"] != "hmac" {
		t.Fatalf("record %+v", r)
	}

	fa.healthy.Store(false)
	before := key.calls.Load()
	rec, e := post(s, "/v1/keys/k/encrypt", `{"plaintext":"c2VjcmV0"}`)
	if rec.Code != 503 || e.Code != api.CodeUnavailable || key.calls.Load() != before {
		t.Fatalf("sink down: got %d %s, key used %d times", rec.Code, e.Code, key.calls.Load()-before)
	}

	fa.healthy.Store(true)
	fa.failLog.Store(true)
	rec, e = post(s, "/v1/keys/k/encrypt", `{"plaintext":"c2VjcmV0"}`)
	if rec.Code != 503 || e.Code != api.CodeUnavailable || strings.Contains(rec.Body.String(), "ciphertext") {
		t.Fatalf("record not written: got %d %s %q", rec.Code, e.Code, rec.Body.String())
	}
}

// fakeAdmin answers admin calls without state.
type fakeAdmin struct{}

func (fakeAdmin) PutPolicy(_ context.Context, _ string, p *policy.Policy, _ func(*policy.Policy) error) (*api.PolicyInfo, error) {
	return &api.PolicyInfo{Name: p.Name}, nil
}
func (fakeAdmin) Policy(name string) (*api.PolicyInfo, error) {
	return &api.PolicyInfo{Name: name}, nil
}
func (fakeAdmin) ListPolicies() (*api.PolicyList, error) { return &api.PolicyList{}, nil }
func (fakeAdmin) DeletePolicy(context.Context, string, string, func(*policy.Policy) error) error {
	return nil
}
func (fakeAdmin) CreateToken(_ context.Context, _ string, req api.CreateTokenRequest, _ func(*policy.Policy) error) (*api.TokenInfo, error) {
	return &api.TokenInfo{Accessor: "0123456789abcdef", Policies: req.Policies, Token: "kd_secret"}, nil
}
func (fakeAdmin) ListTokens() (*api.TokenList, error) { return &api.TokenList{}, nil }
func (fakeAdmin) RevokeToken(context.Context, string, string, func(*policy.Policy) error) (*api.WriteResponse, error) {
	return &api.WriteResponse{}, nil
}
func (fakeAdmin) CreateIdentity(_ context.Context, _ string, req api.CreateIdentityRequest, _ func(*policy.Policy) error) (*api.IdentityInfo, error) {
	return &api.IdentityInfo{ID: req.ID}, nil
}
func (fakeAdmin) ListIdentities() (*api.IdentityList, error) { return &api.IdentityList{}, nil }
func (fakeAdmin) DeleteIdentity(context.Context, string, string, func(*policy.Policy) error) error {
	return nil
}
func (fakeAdmin) AuditPublicKey() *api.AuditKey { return &api.AuditKey{} }
func (fakeAdmin) WriteAuditLog(io.Writer) error { return nil }

func do(s *Server, method, path, body string, hdr map[string]string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	s.ServeHTTP(rec, req)
	return rec
}

// TestAuditRecordsSayWhatHappened: a batch record names its
// sub-operation, item count, failures and versions; policy and token
// records name the policy and the token accessor; a refused internal
// route and an over-long request id are audited. They used to be one
// bare "key.batch" record, records without a target, and nothing.
func TestAuditRecordsSayWhatHappened(t *testing.T) {
	t.Parallel()
	s, fa, _ := newAuditServer(t)
	s.cfg.Admin = fakeAdmin{}
	s = New(s.cfg)
	last := func() audit.Record {
		t.Helper()
		if len(fa.records) == 0 {
			t.Fatal("no audit record")
		}
		return fa.records[len(fa.records)-1]
	}
	if rec := do(s, "POST", "/v1/keys/k/batch/encrypt", `{"items":[{"plaintext":"YQ=="},{"plaintext":"Yg=="}]}`, nil); rec.Code != 200 {
		t.Fatalf("batch encrypt: %d %s", rec.Code, rec.Body)
	}
	if r := last(); r.Op != "key.batch.encrypt" || r.Key != "k" || r.Items != 2 || r.Failed != 0 || !slices.Equal(r.Versions, []uint32{1}) || r.Outcome != "ok" {
		t.Fatalf("batch encrypt record %+v", r)
	}
	if rec := do(s, "POST", "/v1/keys/k/batch/decrypt", `{"items":[{"ciphertext":"keyd:v1:AAAA"}]}`, nil); rec.Code != 200 {
		t.Fatalf("batch decrypt: %d %s", rec.Code, rec.Body)
	}
	if r := last(); r.Op != "key.batch.decrypt" || r.Items != 1 || r.Failed != 1 {
		t.Fatalf("batch decrypt record %+v", r)
	}
	doc := `{"rules":[{"effect":"allow","capabilities":["encrypt"],"keys":["app1-*"]}]}`
	if rec := do(s, "PUT", "/v1/policies/app1", doc, nil); rec.Code != 200 {
		t.Fatalf("policy write: %d %s", rec.Code, rec.Body)
	}
	if r := last(); r.Op != "policy.write" || r.Target != "policy:app1" || r.Outcome != "ok" {
		t.Fatalf("policy record %+v", r)
	}
	if rec := do(s, "POST", "/v1/tokens", `{"policies":["app1"]}`, nil); rec.Code != 200 {
		t.Fatalf("token create: %d %s", rec.Code, rec.Body)
	}
	if r := last(); r.Op != "token.create" || r.Target != "token:0123456789abcdef" {
		t.Fatalf("token record %+v", r)
	}
	if rec := do(s, "POST", "/v1/tokens/revoke", `{"accessor":"0123456789abcdef"}`, nil); rec.Code != 200 {
		t.Fatalf("token revoke: %d %s", rec.Code, rec.Body)
	}
	if r := last(); r.Op != "token.revoke" || r.Target != "token:0123456789abcdef" {
		t.Fatalf("revoke record %+v", r)
	}
	n := len(fa.records)
	if rec := do(s, "POST", "/v1/internal/node-share", `{}`, nil); rec.Code != 403 {
		t.Fatalf("internal route without a node certificate: %d", rec.Code)
	}
	if r := last(); len(fa.records) != n+1 || r.Op != "sys.node_share" || r.Outcome != string(api.CodeForbidden) || r.Identity != "anonymous" {
		t.Fatalf("refused internal route: %d records, last %+v", len(fa.records)-n, r)
	}
	long := strings.Repeat("r", 200)
	if rec := do(s, "POST", "/v1/keys/k/encrypt", `{"plaintext":"YQ=="}`, map[string]string{api.HeaderRequestID: long}); rec.Code != 400 {
		t.Fatalf("long request id: %d", rec.Code)
	}
	if r := last(); r.Op != "key.encrypt" || r.Outcome != string(api.CodeBadRequest) || r.Hashed["request_id"] == "" || r.RequestID != "" {
		t.Fatalf("long request id record %+v", r)
	}
	for _, r := range fa.records {
		if r.Op == "" || r.Outcome == "" || r.Key == "" && r.Target == "" {
			t.Fatalf("record without op, target or outcome: %+v", r)
		}
	}
}
