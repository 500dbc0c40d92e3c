package node_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/audit"
	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/policy"
)

type raw struct {
	t  *testing.T
	c  *testcluster.Cluster
	hc *http.Client
}

// do sends one request to slot i and returns the status and error code.
func (r *raw) do(i int, method, path, token string, body any, out any) (int, api.Code) {
	r.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "https://"+r.c.Slot(i).APIAddr+path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		_ = json.Unmarshal(data, &e)
		return resp.StatusCode, e.Code
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			r.t.Fatalf("decode %s: %v", path, err)
		}
	}
	return resp.StatusCode, ""
}

func (r *raw) token(policies ...string) (string, string) {
	r.t.Helper()
	var info api.TokenInfo
	if st, code := r.do(0, "POST", api.PathTokens, r.c.Token, api.CreateTokenRequest{Policies: policies}, &info); st != 200 {
		r.t.Fatalf("create token %v: %d %s", policies, st, code)
	}
	r.c.WaitApplied(r.t, info.Index)
	return info.Token, info.Accessor
}

// TestRolesEndToEnd tries each built-in role and an app policy against
// each operation class, as a new user would.
func TestRolesEndToEnd(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	r := &raw{t: t, c: c, hc: hc}

	app1, err := policy.AppPolicy("app1", "app1-*")
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := app1.Marshal()
	if st, code := r.do(0, "PUT", api.PathPolicies+"/app1", c.Token, doc, nil); st != 200 {
		t.Fatalf("write policy: %d %s", st, code)
	}
	keyAdmin, _ := r.token(policy.RoleKeyAdmin)
	app, appAccessor := r.token("app1")
	operator, _ := r.token(policy.RoleOperator)
	auditor, _ := r.token(policy.RoleAuditor)

	for _, name := range []string{"app1-orders", "app2-billing"} {
		var info api.KeyInfo
		if st, code := r.do(0, "POST", api.PathKeys, keyAdmin, api.CreateKeyRequest{Name: name}, &info); st != 200 {
			t.Fatalf("key-admin create %s: %d %s", name, st, code)
		}
		// Every node serves the key before the table below uses it.
		c.WaitApplied(t, info.Index)
	}
	var enc api.EncryptResponse
	c.Eventually(t, 5*time.Second, func() error {
		if st, code := r.do(1, "POST", api.KeyPath("app1-orders", "encrypt"), app, api.EncryptRequest{Plaintext: []byte("APP-SECRET")}, &enc); st != 200 {
			return &api.Error{Code: code}
		}
		return nil
	})

	enc1 := api.EncryptRequest{Plaintext: []byte("x")}
	dec := api.DecryptRequest{Ciphertext: enc.Ciphertext}
	tests := []struct {
		name, who, method, path string
		body                    any
		want                    int
	}{
		{"app encrypts its key", app, "POST", api.KeyPath("app1-orders", "encrypt"), enc1, 200},
		{"app decrypts its key", app, "POST", api.KeyPath("app1-orders", "decrypt"), dec, 200},
		{"app cannot use another app's key", app, "POST", api.KeyPath("app2-billing", "encrypt"), enc1, 403},
		{"app cannot read another app's key", app, "GET", api.KeyPath("app2-billing"), nil, 403},
		{"app cannot create keys", app, "POST", api.PathKeys, api.CreateKeyRequest{Name: "app1-new"}, 403},
		{"app cannot rotate", app, "POST", api.KeyPath("app1-orders", "rotate"), nil, 403},
		{"app cannot see the cluster", app, "GET", api.PathCluster, nil, 403},
		{"key-admin rotates", keyAdmin, "POST", api.KeyPath("app1-orders", "rotate"), nil, 200},
		{"key-admin reads metadata", keyAdmin, "GET", api.KeyPath("app1-orders"), nil, 200},
		{"key-admin cannot encrypt", keyAdmin, "POST", api.KeyPath("app1-orders", "encrypt"), enc1, 403},
		{"key-admin cannot decrypt", keyAdmin, "POST", api.KeyPath("app1-orders", "decrypt"), dec, 403},
		{"key-admin cannot mint tokens", keyAdmin, "POST", api.PathTokens, api.CreateTokenRequest{Policies: []string{"admin"}}, 403},
		{"operator sees the cluster", operator, "GET", api.PathCluster, nil, 200},
		{"operator cannot read keys", operator, "GET", api.KeyPath("app1-orders"), nil, 403},
		{"operator cannot decrypt", operator, "POST", api.KeyPath("app1-orders", "decrypt"), dec, 403},
		{"operator cannot write policies", operator, "PUT", api.PathPolicies + "/evil", []byte(`{"name":"evil","rules":[{"effect":"allow","capabilities":["decrypt"],"keys":["*"]}]}`), 403},
		{"operator token cannot unseal (shares only)", operator, "POST", api.PathUnseal, api.UnsealRequest{Share: "keyd-share-v1-AAAA"}, 400},
		{"auditor reads the audit key", auditor, "GET", api.PathAuditKey, nil, 200},
		{"auditor cannot encrypt", auditor, "POST", api.KeyPath("app1-orders", "encrypt"), enc1, 403},
		{"auditor cannot see the cluster", auditor, "GET", api.PathCluster, nil, 403},
		{"admin can do it all", c.Token, "POST", api.KeyPath("app2-billing", "encrypt"), enc1, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if st, code := r.do(2, tt.method, tt.path, tt.who, tt.body, nil); st != tt.want {
				t.Fatalf("got %d %s, want %d", st, code, tt.want)
			}
		})
	}

	// Listing shows only the keys the caller may read.
	var list api.KeyList
	r.do(0, "GET", api.PathKeys, app, nil, &list)
	if len(list.Keys) != 1 || list.Keys[0] != "app1-orders" {
		t.Fatalf("app lists %v", list.Keys)
	}

	// A revoked token fails on every node as soon as each applied the
	// revocation.
	var wr api.WriteResponse
	if st, code := r.do(0, "POST", api.PathTokenRevoke, c.Token, api.RevokeTokenRequest{Accessor: appAccessor}, &wr); st != 200 {
		t.Fatalf("revoke: %d %s", st, code)
	}
	c.WaitApplied(t, wr.Index)
	for i := 0; i < 3; i++ {
		if st, _ := r.do(i, "POST", api.KeyPath("app1-orders", "encrypt"), app, enc1, nil); st != 401 {
			t.Fatalf("node %d accepts a revoked token: %d", i, st)
		}
	}

	// Reading the audit trail is itself audited.
	if st, code := r.do(2, "GET", api.PathAuditLog, auditor, nil, nil); st != 200 {
		t.Fatalf("auditor reads the audit log: %d %s", st, code)
	}

	// The audit trail: every node's file verifies, records the app's
	// identity, and holds no plaintext or token.
	c.Close()
	for i := 0; i < 3; i++ {
		dir := c.Slot(i).Dir
		data, err := os.ReadFile(filepath.Join(dir, "audit.log"))
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{"APP-SECRET", app, keyAdmin, operator, auditor, c.Token, enc.Ciphertext} {
			if strings.Contains(string(data), secret) {
				t.Fatalf("node %d audit log holds a secret", i)
			}
		}
		pub := auditPublicKey(t, dir)
		rep, err := audit.Verify(bytes.NewReader(data), pub)
		if err != nil {
			t.Fatalf("node %d audit log: %v", i, err)
		}
		if rep.Records == 0 {
			t.Fatalf("node %d audit log is empty", i)
		}
	}
	all, _ := os.ReadFile(filepath.Join(c.Slot(2).Dir, "audit.log"))
	if !strings.Contains(string(all), `"token:`+appAccessor+`"`) || !strings.Contains(string(all), `"outcome":"forbidden"`) {
		t.Fatal("audit log lacks the app's identity or the refused calls")
	}
	if !strings.Contains(string(all), `"op":"audit.read"`) {
		t.Fatal("audit log lacks the auditor's read of the audit log")
	}
}

func auditPublicKey(t *testing.T, dir string) ed25519.PublicKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "audit.key"))
	if err != nil {
		t.Fatal(err)
	}
	// The node keeps its signing seed wrapped; the public key is beside it.
	var k struct{ Pub string }
	if err := json.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	pub, err := hex.DecodeString(k.Pub)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		t.Fatalf("audit.key holds no public key: %v", err)
	}
	return ed25519.PublicKey(pub)
}

// TestCertIdentityThroughFollower: a caller authenticated by client
// certificate can write through a follower (forwarded to the leader with
// its identity), and a caller cannot claim another identity by sending the
// forwarding header itself.
func TestCertIdentityThroughFollower(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	cert, err := c.CA.IssueClient("app")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	admin := &raw{t: t, c: c, hc: hc}
	var id api.IdentityInfo
	pemCert := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}))
	if st, code := admin.do(0, "POST", api.PathIdentities, c.Token, api.CreateIdentityRequest{Certificate: pemCert, Policies: []string{"admin"}}, &id); st != 200 {
		t.Fatalf("create identity: %d %s", st, code)
	}
	c.WaitApplied(t, id.Index)

	tc := c.TLS()
	tc.Certificates = []tls.Certificate{cert}
	certHC := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	t.Cleanup(certHC.CloseIdleConnections)
	app := &raw{t: t, c: c, hc: certHC}
	follower := (c.WaitLeader(t) + 1) % 3
	if st, code := app.do(follower, "POST", api.PathKeys, "", api.CreateKeyRequest{Name: "by-cert"}, nil); st != 200 {
		t.Fatalf("write through a follower with a client certificate: %d %s", st, code)
	}

	// A plain TLS caller sending the forwarding header gets nothing.
	anon := &raw{t: t, c: c, hc: hc}
	for i := 0; i < 3; i++ {
		req, _ := http.NewRequest("GET", "https://"+c.Slot(i).APIAddr+api.PathWhoAmI, nil)
		req.Header.Set("X-Keyd-Cert-Identity", id.ID)
		resp, err := anon.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("node %d accepted a forged identity header: %d", i, resp.StatusCode)
		}
	}
}
