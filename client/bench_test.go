package client

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/keyd/keyd/api"
)

// benchServer is a minimal in-process TLS node answering encrypt with a
// fixed-size fake ciphertext, so the benchmarks measure the client side:
// the same work for both, except what the client adds.
func benchServer(b *testing.B) (*httptest.Server, *tls.Config) {
	b.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != api.KeyPath("k", "encrypt") {
			http.NotFound(w, r)
			return
		}
		var req api.EncryptRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(&api.EncryptResponse{Ciphertext: fakeSeal(req.Plaintext, req.Context), Version: 1})
	}))
	b.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return srv, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

var benchPlaintext = bytes.Repeat([]byte("p"), 256)

// BenchmarkClientEncrypt is one Encrypt through the client: routing,
// headers, per-attempt timeout, reply checks.
func BenchmarkClientEncrypt(b *testing.B) {
	srv, tc := benchServer(b)
	c, err := New(b.Context(), Config{Addrs: []string{srv.URL}, Token: "bench-token", TLS: tc})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r, err := c.Encrypt(b.Context(), "k", benchPlaintext, nil)
			if err != nil || r.Version != 1 {
				b.Errorf("Encrypt: got %+v, %v", r, err)
				return
			}
		}
	})
}

// BenchmarkRawHTTPEncrypt is the same call by hand with net/http over an
// identical transport: the floor the client's overhead is measured from.
func BenchmarkRawHTTPEncrypt(b *testing.B) {
	srv, tc := benchServer(b)
	hc := &http.Client{Transport: newTransport(tc)}
	defer hc.CloseIdleConnections()
	url := srv.URL + api.KeyPath("k", "encrypt")
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body, err := json.Marshal(api.EncryptRequest{Plaintext: benchPlaintext})
			if err != nil {
				b.Error(err)
				return
			}
			req, err := http.NewRequestWithContext(b.Context(), http.MethodPost, url, bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(api.HeaderAuthorization, "Bearer bench-token")
			resp, err := hc.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			data, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			var r api.EncryptResponse
			if err != nil || resp.StatusCode != http.StatusOK || json.Unmarshal(data, &r) != nil || r.Version != 1 {
				b.Errorf("encrypt: status %d, %v", resp.StatusCode, err)
				return
			}
		}
	})
}
