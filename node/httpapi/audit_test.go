package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
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
