package httpapi

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/keyring"
)

func transitServer(tb testing.TB) (*Server, *fakeAuditor, *oneKey) {
	tb.Helper()
	m, err := keyring.GenerateMaterial(keyring.AES256GCM, rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	k, err := keyring.NewKey("k", keyring.AES256GCM, []keyring.Version{{Number: 1, Material: m}}, 1)
	if err != nil {
		tb.Fatal(err)
	}
	fa := &fakeAuditor{}
	fa.healthy.Store(true)
	ok := &oneKey{k: k}
	s := New(Config{Crypto: ok, Cluster: leaderCluster{}, Auth: authAll{}, Audit: fa,
		IsPeer: func(*http.Request) (string, bool) { return "", false }})
	return s, fa, ok
}

func transitDo(s *Server, method, path, body string) (*httptest.ResponseRecorder, map[string]any) {
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec, out
}

// TestTransitShapesAndAudit: Vault's envelope and error body, Vault's
// statuses, keyd's audit records under transit.* names, and the body
// limit of the route table.
func TestTransitShapesAndAudit(t *testing.T) {
	t.Parallel()
	s, fa, _ := transitServer(t)
	rec, out := transitDo(s, "PUT", "/v1/transit/encrypt/k", `{"plaintext":"c2VjcmV0","context":"Yw=="}`)
	data, _ := out["data"].(map[string]any)
	if rec.Code != 200 || data == nil || !strings.HasPrefix(data["ciphertext"].(string), "vault:v1:") || data["key_version"] != 1.0 {
		t.Fatalf("encrypt: %d %s", rec.Code, rec.Body)
	}
	if r := fa.records[len(fa.records)-1]; r.Op != "transit.encrypt" || r.Key != "k" || r.Outcome != "ok" || len(r.Versions) != 1 || r.Hashed["request"] != "hmac" {
		t.Fatalf("audit record %+v", r)
	}
	if rec.Header().Get(transitStatusHeader) != "" {
		t.Fatal("internal status header leaked")
	}

	ct := data["ciphertext"].(string)
	body := `{"batch_input":[{"ciphertext":"` + ct + `","context":"Yw=="},{"ciphertext":"vault:v1:AAAA"}]}`
	rec, out = transitDo(s, "POST", "/v1/transit/decrypt/k", body)
	if rec.Code != 400 || rec.Header().Get(transitStatusHeader) != "" {
		t.Fatalf("batch with a bad item: %d %v", rec.Code, rec.Header())
	}
	res := out["data"].(map[string]any)["batch_results"].([]any)
	if res[0].(map[string]any)["plaintext"] != base64.StdEncoding.EncodeToString([]byte("secret")) || !strings.HasPrefix(res[1].(map[string]any)["error"].(string), "decrypt_failed: ") {
		t.Fatalf("batch results %v", res)
	}
	if r := fa.records[len(fa.records)-1]; r.Op != "transit.batch.decrypt" || r.Items != 2 || r.Failed != 1 {
		t.Fatalf("batch audit record %+v", r)
	}

	for _, tt := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"POST", "/v1/transit/decrypt/k", `{"ciphertext":"keyd:v1:AAAA"}`, 400, "decrypt_failed"},
		{"POST", "/v1/transit/decrypt/k", `{"ciphertext":"nonsense"}`, 400, "vault:vN:"},
		{"POST", "/v1/transit/encrypt/k", `{"plaintext":"eA==","key_version":2}`, 400, "key_version"},
		{"POST", "/v1/transit/encrypt/k", `{"plaintext":"eA==","nonce":"eA=="}`, 400, "nonce"},
		{"POST", "/v1/transit/encrypt/k", `{"plaintext":"eA==","bogus":1}`, 400, "unknown field"},
		{"POST", "/v1/transit/encrypt/k", `{"batch_input":[]}`, 400, "items is empty"},
		{"POST", "/v1/transit/sign/k", `{"input":"eA=="}`, 400, "unsupported_operation"},
		{"POST", "/v1/transit/sign/k/sha2-384", `{"input":"eA=="}`, 400, "sha2-384"},
		{"POST", "/v1/transit/datakey/both/k", `{}`, 400, "plaintext or wrapped"},
		{"POST", "/v1/transit/datakey/plaintext/k", `{"bits":512}`, 400, "bits"},
		{"POST", "/v1/transit/verify/k", `{"input":"eA=="}`, 400, "exactly one"},
		{"POST", "/v1/transit/encrypt/k", `{"plaintext":"` + strings.Repeat("A", api.MaxBatchBodyBytes) + `"}`, 413, "request_too_large"},
	} {
		rec, out := transitDo(s, tt.method, tt.path, tt.body)
		errs, _ := out["errors"].([]any)
		if rec.Code != tt.status || len(errs) != 1 || !strings.Contains(errs[0].(string), tt.want) {
			t.Errorf("%s %s: %d %.200s, want %d with %q", tt.method, tt.path, rec.Code, rec.Body, tt.status, tt.want)
		}
	}
}

// BenchmarkTransitVsKeydEncrypt compares one 1 KiB encrypt through
// keyd's route and through the transit route, HTTP layer included (no
// network, no TLS): the difference is the transit adapter's cost.
func BenchmarkTransitVsKeydEncrypt(b *testing.B) {
	s, fa, _ := transitServer(b)
	fa.healthy.Store(true)
	pt := base64.StdEncoding.EncodeToString(make([]byte, 1024))
	for _, bc := range []struct{ name, path, body string }{
		{"keyd", "/v1/keys/k/encrypt", `{"plaintext":"` + pt + `"}`},
		{"transit", "/v1/transit/encrypt/k", `{"plaintext":"` + pt + `"}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				fa.records = fa.records[:0]
				rec := httptest.NewRecorder()
				s.ServeHTTP(rec, httptest.NewRequest("POST", bc.path, strings.NewReader(bc.body)))
				if rec.Code != 200 {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}

// TestTransitRefusesResponseWrapping: a client that asks for response
// wrapping (X-Vault-Wrap-TTL) expects a wrapping token; keyd has none, so
// it refuses instead of returning the plaintext unwrapped.
func TestTransitRefusesResponseWrapping(t *testing.T) {
	t.Parallel()
	s, _, _ := transitServer(t)
	for path, body := range map[string]string{"/v1/transit/datakey/plaintext/k": `{}`, "/v1/transit/encrypt/k": `{"plaintext":"c2VjcmV0"}`} {
		req := httptest.NewRequest("POST", path, strings.NewReader(body))
		req.Header.Set("X-Vault-Wrap-TTL", "60s")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest || strings.Contains(rec.Body.String(), `"plaintext"`) || !strings.Contains(rec.Body.String(), "wrapping") {
			t.Fatalf("%s with X-Vault-Wrap-TTL: %d %s", path, rec.Code, rec.Body)
		}
	}
}
