package node_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/policy"
)

// vaultClient returns Vault's official client pointed at slot i, with
// token tok (sent as X-Vault-Token, as Vault's client always does).
func vaultClient(t *testing.T, c *testcluster.Cluster, i int, tok string) *vault.Client {
	t.Helper()
	cfg := vault.DefaultConfig()
	cfg.Address = "https://" + c.Slot(i).APIAddr
	tr := &http.Transport{TLSClientConfig: c.TLS()}
	t.Cleanup(tr.CloseIdleConnections)
	cfg.HttpClient = &http.Client{Transport: tr, Timeout: testcluster.Scaled(10 * time.Second)}
	cfg.MaxRetries = 0
	vc, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	vc.SetToken(tok)
	return vc
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// vaultStatus returns the HTTP status of a vault client error (0 if none).
func vaultStatus(err error) int {
	var re *vault.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

func str(t *testing.T, s *vault.Secret, field string) string {
	t.Helper()
	if s == nil {
		t.Fatalf("no secret for %s", field)
	}
	v, ok := s.Data[field].(string)
	if !ok {
		t.Fatalf("field %s: %#v", field, s.Data[field])
	}
	return v
}

func TestVaultTransitClient(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	ctx := ctxT(t)
	t.Setenv("VAULT_TOKEN", "")
	leader := c.WaitLeader(t)
	follower := (leader + 1) % 3
	// The admin client talks to a follower: key writes are forwarded.
	vc := vaultClient(t, c, follower, c.Token)
	l := vc.Logical()

	// Key create (Vault types), read, and refusals of what keyd lacks.
	for name, typ := range map[string]string{"app1-aes": "aes256-gcm96", "app1-chacha": "chacha20-poly1305", "app1-ed": "ed25519", "app1-ec": "ecdsa-p256", "app1-mac": "hmac"} {
		s, err := l.WriteWithContext(ctx, "transit/keys/"+name, map[string]any{"type": typ})
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		if got := str(t, s, "type"); got != typ {
			t.Fatalf("create %s: type %q", name, got)
		}
	}
	if _, err := l.WriteWithContext(ctx, "transit/keys/app1-rsa", map[string]any{"type": "rsa-2048"}); vaultStatus(err) != 400 || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("rsa-2048: %v", err)
	}
	if _, err := l.WriteWithContext(ctx, "transit/keys/app1-x", map[string]any{"exportable": true}); vaultStatus(err) != 400 {
		t.Fatalf("exportable: %v", err)
	}
	if s, err := l.ReadWithContext(ctx, "transit/keys/no-such-key"); err != nil || s != nil {
		t.Fatalf("read of a missing key: %v %v (Vault's client maps 404 to nil)", s, err)
	}
	// Create of an existing key answers that key, as Vault does.
	if s, err := l.WriteWithContext(ctx, "transit/keys/app1-aes", map[string]any{"type": "ed25519"}); err != nil || str(t, s, "type") != "aes256-gcm96" {
		t.Fatalf("re-create: %v %v", s, err)
	}

	// Encrypt / decrypt round trip with context; the follower may not
	// have applied the create yet.
	var ct string
	c.Eventually(t, 10*time.Second, func() error {
		s, err := l.WriteWithContext(ctx, "transit/encrypt/app1-aes", map[string]any{"plaintext": b64("hello vault"), "context": b64("tenant-1")})
		if err != nil {
			return err
		}
		ct = str(t, s, "ciphertext")
		return nil
	})
	if !strings.HasPrefix(ct, "vault:v1:") {
		t.Fatalf("ciphertext %q", ct)
	}
	decrypt := func(ct, ctxt string) (string, error) {
		s, err := l.WriteWithContext(ctx, "transit/decrypt/app1-aes", map[string]any{"ciphertext": ct, "context": b64(ctxt)})
		if err != nil {
			return "", err
		}
		pt, err := base64.StdEncoding.DecodeString(str(t, s, "plaintext"))
		return string(pt), err
	}
	if pt, err := decrypt(ct, "tenant-1"); err != nil || pt != "hello vault" {
		t.Fatalf("decrypt: %q %v", pt, err)
	}
	// keyd's own text form is accepted too.
	if pt, err := decrypt("keyd:"+strings.TrimPrefix(ct, "vault:"), "tenant-1"); err != nil || pt != "hello vault" {
		t.Fatalf("decrypt keyd form: %q %v", pt, err)
	}
	if _, err := decrypt(ct, "tenant-2"); vaultStatus(err) != 400 {
		t.Fatalf("wrong context: %v", err)
	}

	// batch_input, with references echoed.
	s, err := l.WriteWithContext(ctx, "transit/encrypt/app1-aes", map[string]any{"batch_input": []map[string]any{
		{"plaintext": b64("one"), "reference": "r1"}, {"plaintext": b64("two"), "reference": "r2"}, {"plaintext": ""},
	}})
	if err != nil {
		t.Fatal(err)
	}
	items := s.Data["batch_results"].([]any)
	if len(items) != 3 {
		t.Fatalf("batch results: %v", s.Data)
	}
	var batchIn []map[string]any
	for i, it := range items {
		m := it.(map[string]any)
		if m["error"] != nil || !strings.HasPrefix(m["ciphertext"].(string), "vault:v1:") {
			t.Fatalf("batch item %d: %v", i, m)
		}
		batchIn = append(batchIn, map[string]any{"ciphertext": m["ciphertext"], "reference": m["reference"]})
	}
	if items[0].(map[string]any)["reference"] != "r1" {
		t.Fatalf("reference not echoed: %v", items[0])
	}
	s, err = l.WriteWithContext(ctx, "transit/decrypt/app1-aes", map[string]any{"batch_input": batchIn})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{b64("one"), b64("two"), ""}
	for i, it := range s.Data["batch_results"].([]any) {
		if got := it.(map[string]any)["plaintext"]; got != want[i] {
			t.Fatalf("batch decrypt %d: %v, want %q", i, got, want[i])
		}
	}
	// One bad item: 400 for the whole reply (Vault's rule), or the
	// partial_failure_response_code with each item's result.
	bad := append(append([]map[string]any(nil), batchIn[:2]...), map[string]any{"ciphertext": "vault:v1:AAAA"})
	if _, err := l.WriteWithContext(ctx, "transit/decrypt/app1-aes", map[string]any{"batch_input": bad}); vaultStatus(err) != 400 {
		t.Fatalf("batch with a bad item: %v", err)
	}
	s, err = l.WriteWithContext(ctx, "transit/decrypt/app1-aes", map[string]any{"batch_input": bad, "partial_failure_response_code": 200})
	if err != nil {
		t.Fatal(err)
	}
	res := s.Data["batch_results"].([]any)
	if res[0].(map[string]any)["plaintext"] != b64("one") || !strings.HasPrefix(res[2].(map[string]any)["error"].(string), "decrypt_failed") {
		t.Fatalf("partial batch: %v", res)
	}

	// Rotate, then the v1 ciphertext still decrypts; rewrap moves it to v2.
	s, err = l.WriteWithContext(ctx, "transit/keys/app1-aes/rotate", nil)
	if err != nil || s.Data["latest_version"].(json.Number) != "2" {
		t.Fatalf("rotate: %v %v", s, err)
	}
	var ct2 string
	c.Eventually(t, 10*time.Second, func() error {
		s, err := l.WriteWithContext(ctx, "transit/rewrap/app1-aes", map[string]any{"ciphertext": ct, "context": b64("tenant-1")})
		if err != nil {
			return err
		}
		if ct2 = str(t, s, "ciphertext"); !strings.HasPrefix(ct2, "vault:v2:") {
			return errors.New("rewrap still at v1: " + ct2[:9])
		}
		return nil
	})
	for _, x := range []string{ct, ct2} {
		if pt, err := decrypt(x, "tenant-1"); err != nil || pt != "hello vault" {
			t.Fatalf("decrypt %s after rotate: %q %v", x[:9], pt, err)
		}
	}
	// Raising min_decryption_version retires v1.
	if _, err := l.WriteWithContext(ctx, "transit/keys/app1-aes/config", map[string]any{"min_decryption_version": 2}); err != nil {
		t.Fatal(err)
	}
	c.Eventually(t, 10*time.Second, func() error {
		if _, err := decrypt(ct, "tenant-1"); vaultStatus(err) != 400 {
			return errors.New("v1 still decrypts")
		}
		return nil
	})

	// Data keys, both kinds.
	s, err = l.WriteWithContext(ctx, "transit/datakey/plaintext/app1-aes", map[string]any{"bits": 256})
	if err != nil {
		t.Fatal(err)
	}
	dk, _ := base64.StdEncoding.DecodeString(str(t, s, "plaintext"))
	if len(dk) != 32 {
		t.Fatalf("data key of %d bytes", len(dk))
	}
	if s2, err := l.WriteWithContext(ctx, "transit/decrypt/app1-aes", map[string]any{"ciphertext": str(t, s, "ciphertext")}); err != nil || str(t, s2, "plaintext") != base64.StdEncoding.EncodeToString(dk) {
		t.Fatalf("wrapped data key does not decrypt to the plaintext one: %v", err)
	}
	s, err = l.WriteWithContext(ctx, "transit/datakey/wrapped/app1-aes", map[string]any{"bits": 128})
	if err != nil || s.Data["plaintext"] != nil || !strings.HasPrefix(str(t, s, "ciphertext"), "vault:v2:") {
		t.Fatalf("wrapped data key: %v %v", s, err)
	}

	// Sign / verify; an Ed25519 signature verifies with the public key
	// the key read shows, as in Vault.
	for _, k := range []string{"app1-ed", "app1-ec"} {
		s, err := l.WriteWithContext(ctx, "transit/sign/"+k, map[string]any{"input": b64("message")})
		if err != nil {
			t.Fatalf("sign %s: %v", k, err)
		}
		sig := str(t, s, "signature")
		for input, valid := range map[string]bool{"message": true, "massage": false} {
			s, err := l.WriteWithContext(ctx, "transit/verify/"+k, map[string]any{"input": b64(input), "signature": sig})
			if err != nil || s.Data["valid"] != valid {
				t.Fatalf("verify %s %q: %v %v", k, input, s, err)
			}
		}
		if k == "app1-ed" {
			info, err := l.ReadWithContext(ctx, "transit/keys/"+k)
			if err != nil {
				t.Fatal(err)
			}
			pub, _ := base64.StdEncoding.DecodeString(info.Data["keys"].(map[string]any)["1"].(map[string]any)["public_key"].(string))
			raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(sig, "vault:v1:"))
			if !ed25519.Verify(pub, []byte("message"), raw) {
				t.Fatal("signature does not verify with the published public key")
			}
		}
	}
	if _, err := l.WriteWithContext(ctx, "transit/sign/app1-ec/sha2-512", map[string]any{"input": b64("m")}); vaultStatus(err) != 400 {
		t.Fatalf("sha2-512: %v", err)
	}

	// HMAC / verify with hmac.
	s, err = l.WriteWithContext(ctx, "transit/hmac/app1-mac", map[string]any{"input": b64("message")})
	if err != nil {
		t.Fatal(err)
	}
	mac := str(t, s, "hmac")
	for input, valid := range map[string]bool{"message": true, "massage": false} {
		s, err := l.WriteWithContext(ctx, "transit/verify/app1-mac", map[string]any{"input": b64(input), "hmac": mac})
		if err != nil || s.Data["valid"] != valid {
			t.Fatalf("verify hmac %q: %v %v", input, s, err)
		}
	}

	// A token lacking a capability gets 403 (here: decrypt), on transit
	// exactly as on keyd's routes.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	r := &raw{t: t, c: c, hc: hc}
	encOnly := &policy.Policy{Name: "enc-only", Rules: []policy.Rule{{Effect: policy.Allow, Capabilities: []policy.Capability{policy.Encrypt}, Keys: []string{"app1-*"}}}}
	doc, err := encOnly.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if st, code := r.do(0, "PUT", api.PathPolicies+"/enc-only", c.Token, doc, nil); st != 200 {
		t.Fatalf("write policy: %d %s", st, code)
	}
	tok, _ := r.token("enc-only")
	app := vaultClient(t, c, follower, tok).Logical()
	c.Eventually(t, 10*time.Second, func() error {
		_, err := app.WriteWithContext(ctx, "transit/encrypt/app1-aes", map[string]any{"plaintext": b64("x")})
		return err
	})
	for _, path := range []string{"transit/decrypt/app1-aes", "transit/keys/app1-new", "transit/keys/app1-aes/rotate"} {
		if _, err := app.WriteWithContext(ctx, path, map[string]any{"ciphertext": ct2}); vaultStatus(err) != 403 {
			t.Fatalf("%s with an encrypt-only token: %v", path, err)
		}
	}
	if _, err := app.WriteWithContext(ctx, "transit/encrypt/other-key", map[string]any{"plaintext": b64("x")}); vaultStatus(err) != 403 {
		t.Fatalf("encrypt outside the policy's keys: %v", err)
	}
	// Both token headers, different tokens: refused.
	req, _ := http.NewRequestWithContext(ctx, "POST", "https://"+c.Slot(follower).APIAddr+"/v1/transit/encrypt/app1-aes", strings.NewReader(`{"plaintext":"eA=="}`))
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set(api.HeaderVaultToken, tok)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !bytes.Contains(body, []byte(`"errors"`)) {
		t.Fatalf("two different tokens: %d %s", resp.StatusCode, body)
	}

	// Tampered and truncated vault: ciphertexts get 400 and change nothing.
	before := stateWithoutAudit(t, c)
	raw := strings.TrimPrefix(ct2, "vault:v2:")
	flipped := []byte(raw)
	if flipped[5] == 'A' {
		flipped[5] = 'B'
	} else {
		flipped[5] = 'A'
	}
	for name, x := range map[string]string{
		"tampered":         "vault:v2:" + string(flipped),
		"truncated":        ct2[:len(ct2)-12],
		"header only":      "vault:v2:",
		"unknown version":  "vault:v99:" + raw,
		"leading zero":     "vault:v02:" + raw,
		"other prefix":     "vault2:v2:" + raw,
		"no prefix":        raw,
		"base64 with junk": "vault:v2:" + raw + "\n",
	} {
		if _, err := decrypt(x, "tenant-1"); vaultStatus(err) != 400 {
			t.Fatalf("%s ciphertext: %v", name, err)
		}
		if _, err := l.WriteWithContext(ctx, "transit/rewrap/app1-aes", map[string]any{"ciphertext": x, "context": b64("tenant-1")}); vaultStatus(err) != 400 {
			t.Fatalf("%s ciphertext on rewrap: %v", name, err)
		}
	}
	if after := stateWithoutAudit(t, c); after != before {
		t.Fatal("bad ciphertexts changed the replicated state")
	}
	if pt, err := decrypt(ct2, "tenant-1"); err != nil || pt != "hello vault" {
		t.Fatalf("the good ciphertext after the bad ones: %q %v", pt, err)
	}

	// A sealed node answers 503 in Vault's error shape.
	c.Node(follower).SealLocal()
	_, err = decrypt(ct2, "tenant-1")
	var re *vault.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 503 || len(re.Errors) != 1 || !strings.HasPrefix(re.Errors[0], "sealed: ") {
		t.Fatalf("sealed node: %v", err)
	}
}

// stateWithoutAudit is the replicated state but the audit anchors,
// which the audit records of the refused requests themselves advance
// (on a timer): what a bad request must not change.
func stateWithoutAudit(t *testing.T, c *testcluster.Cluster) string {
	t.Helper()
	var keep []string
	for _, line := range strings.Split(stateOf(t, c), "\n") {
		if !strings.HasPrefix(line, "audit") {
			keep = append(keep, line)
		}
	}
	if len(keep) < 5 {
		t.Fatalf("state dump has %d lines", len(keep))
	}
	return strings.Join(keep, "\n")
}

// BenchmarkTransitEndToEnd compares one 1 KiB encrypt against a
// one-node in-process cluster over TLS: keyd's Go client on keyd's route,
// and Vault's Go client on the transit route (command and figures in
// docs/BENCHMARKS.md).
func BenchmarkTransitEndToEnd(b *testing.B) {
	c := testcluster.New(b, testcluster.Options{Nodes: 1})
	c.Init(b, 1, 1)
	c.Unseal(b, 1)
	ctx := context.Background()
	cl := c.Client(b)
	if _, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: "bench"}); err != nil {
		b.Fatal(err)
	}
	pt := make([]byte, 1024)
	b.Run("keyd-client", func(b *testing.B) {
		for b.Loop() {
			if _, err := cl.Encrypt(ctx, "bench", pt, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Setenv("VAULT_TOKEN", "")
	cfg := vault.DefaultConfig()
	cfg.Address = "https://" + c.Slot(0).APIAddr
	tr := &http.Transport{TLSClientConfig: c.TLS()}
	b.Cleanup(tr.CloseIdleConnections)
	cfg.HttpClient = &http.Client{Transport: tr}
	vc, err := vault.NewClient(cfg)
	if err != nil {
		b.Fatal(err)
	}
	vc.SetToken(c.Token)
	body := map[string]any{"plaintext": base64.StdEncoding.EncodeToString(pt)}
	b.Run("vault-client-transit", func(b *testing.B) {
		for b.Loop() {
			if _, err := vc.Logical().WriteWithContext(ctx, "transit/encrypt/bench", body); err != nil {
				b.Fatal(err)
			}
		}
	})
}
