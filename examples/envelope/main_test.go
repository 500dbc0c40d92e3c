package main

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
)

// fakeKeyd wraps data keys by prefixing the context (not encryption; the
// test is about the envelope format, not keyd's cryptography).
func fakeKeyd(t *testing.T) *client.Client {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case api.KeyPath("k", "datakey"):
			var req api.DataKeyRequest
			json.NewDecoder(r.Body).Decode(&req)
			dk := make([]byte, req.Bytes)
			rand.Read(dk)
			ct := "keyd:v1:" + base64.StdEncoding.EncodeToString(append(append([]byte{}, req.Context...), dk...))
			json.NewEncoder(w).Encode(&api.DataKeyResponse{Ciphertext: ct, Plaintext: dk, Version: 1})
		case api.KeyPath("k", "decrypt"):
			var req api.DecryptRequest
			json.NewDecoder(r.Body).Decode(&req)
			b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(req.Ciphertext, "keyd:v1:"))
			if err != nil || !bytes.HasPrefix(b, req.Context) {
				w.WriteHeader(http.StatusBadRequest)
				json.NewEncoder(w).Encode(&api.Error{Code: api.CodeDecrypt, Message: "decryption failed"})
				return
			}
			json.NewEncoder(w).Encode(&api.DecryptResponse{Plaintext: b[len(req.Context):], Version: 1})
		default:
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(&api.Error{Code: api.CodeNotFound, Message: "not found"})
		}
	}))
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	c, err := client.New(t.Context(), client.Config{Addrs: []string{srv.URL}, Token: "t", MaxRetries: -1,
		TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestSealOpen(t *testing.T) {
	c := fakeKeyd(t)
	plain := []byte("the quarterly report")
	env, err := seal(t.Context(), c, "k", []byte("ctx"), plain)
	if err != nil {
		t.Fatalf("seal: %v", err)
	}
	if bytes.Contains(env, plain) {
		t.Fatalf("envelope contains the plaintext")
	}
	got, err := open(t.Context(), c, "k", env)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open: got %q, %v; want %q", got, err, plain)
	}
	tests := []struct {
		name   string
		mutate func([]byte) []byte
	}{
		{"context edited", func(b []byte) []byte { b[len(magic)+2] ^= 1; return b }},
		{"body flipped", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-20] }},
		{"bad magic", func(b []byte) []byte { b[0] = 'X'; return b }},
		{"short header", func(b []byte) []byte { return b[:len(magic)+1] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := open(t.Context(), c, "k", tt.mutate(bytes.Clone(env))); err == nil {
				t.Fatalf("open of a %s envelope: got nil error, want one", tt.name)
			}
		})
	}
}

func FuzzReadField(f *testing.F) {
	f.Add([]byte{0, 3, 'a', 'b', 'c', 'd'})
	f.Add([]byte{0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		field, rest, ok := readField(b)
		if ok && len(field)+len(rest)+2 != len(b) {
			t.Fatalf("readField: got %d+%d+2 bytes, want %d", len(field), len(rest), len(b))
		}
	})
}
