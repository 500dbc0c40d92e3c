package node_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/policy"
)

// vaultRaw sends one transit request with X-Vault-Token and returns the
// status and the raw body.
func (r *raw) vaultRaw(method, path, token, body string) (int, string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "https://"+r.c.Slot(0).APIAddr+path, strings.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", token)
	resp, err := r.hc.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(bytes.TrimSpace(data))
}

// TestTransitCreateExistingNeedsRead: Vault answers a create of an
// existing key with the key's metadata. A token holding create but not
// read must not get that metadata (versions, creation times, state,
// public keys) through the transit create route: it is refused as on
// keyd's own create, while a token with read too still gets Vault's
// answer.
func TestTransitCreateExistingNeedsRead(t *testing.T) {
	r := newPIICluster(t)
	r.createKey("app1-ed", "ed25519")
	r.rotate("app1-ed")
	for name, caps := range map[string][]policy.Capability{
		"creator":        {policy.Create},
		"creator-reader": {policy.Create, policy.Read},
	} {
		pol := &policy.Policy{Name: name, Rules: []policy.Rule{{Effect: policy.Allow, Capabilities: caps, Keys: []string{"app1-*"}}}}
		doc, _ := pol.Marshal()
		if st, code := r.do(0, "PUT", api.PathPolicies+"/"+name, r.c.Token, doc, nil); st != 200 {
			t.Fatalf("write policy %s: %d %s", name, st, code)
		}
	}
	creator, _ := r.token("creator")
	reader, _ := r.token("creator-reader")

	st, body := r.vaultRaw("PUT", "/v1/transit/keys/app1-ed", creator, `{"type":"ed25519"}`)
	if st == 200 || strings.Contains(body, "latest_version") || strings.Contains(body, "public_key") {
		t.Fatalf("create-only token got an existing key's metadata: %d %s", st, body)
	}
	if st != 400 || !strings.Contains(body, string(api.CodeExists)) {
		t.Fatalf("create-only token on an existing key: %d %s, want 400 %s", st, body, api.CodeExists)
	}
	// A new key is still created for the create-only token.
	if st, body := r.vaultRaw("PUT", "/v1/transit/keys/app1-new", creator, `{}`); st != 200 {
		t.Fatalf("create-only token, new key: %d %s", st, body)
	}
	// With read, Vault's answer: the existing key.
	st, body = r.vaultRaw("PUT", "/v1/transit/keys/app1-ed", reader, `{"type":"ed25519"}`)
	if st != 200 || !strings.Contains(body, `"latest_version":2`) {
		t.Fatalf("create+read token on an existing key: %d %s", st, body)
	}
}
