package node_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fpe"
	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/policy"
)

// piiRaw sends one request and returns the status, the error code and the
// raw reply body (for checks that a secret never appears in it).
func (r *raw) piiRaw(method, path, token string, body any) (int, api.Code, []byte) {
	r.t.Helper()
	j, _ := json.Marshal(body)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "https://"+r.c.Slot(0).APIAddr+path, bytes.NewReader(j))
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := r.hc.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var e api.Error
	if resp.StatusCode != http.StatusOK {
		_ = json.Unmarshal(data, &e)
	}
	return resp.StatusCode, e.Code, data
}

func newPIICluster(t *testing.T) *raw {
	c := testcluster.New(t, testcluster.Options{Nodes: 1})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	return &raw{t: t, c: c, hc: hc}
}

func (r *raw) createKey(name, typ string) {
	r.t.Helper()
	var info api.KeyInfo
	if st, code := r.do(0, "POST", api.PathKeys, r.c.Token, api.CreateKeyRequest{Name: name, Type: typ}, &info); st != 200 {
		r.t.Fatalf("create %s %s: %d %s", name, typ, st, code)
	}
	r.c.WaitApplied(r.t, info.Index)
}

func (r *raw) rotate(name string) {
	r.t.Helper()
	var info api.KeyInfo
	if st, code := r.do(0, "POST", api.KeyPath(name, "rotate"), r.c.Token, nil, &info); st != 200 {
		r.t.Fatalf("rotate %s: %d %s", name, st, code)
	}
	r.c.WaitApplied(r.t, info.Index)
}

func TestPIIDeterministicEncryptionOverAPI(t *testing.T) {
	r := newPIICluster(t)
	r.createKey("users.email", "aes256-siv")
	r.createKey("users.gcm", "aes256-gcm")
	tok := r.c.Token
	req := api.EncryptRequest{Plaintext: []byte("alice@example.com"), Context: []byte("users")}
	var a, b api.EncryptResponse
	r.do(0, "POST", api.KeyPath("users.email", "encrypt"), tok, req, &a)
	r.do(0, "POST", api.KeyPath("users.email", "encrypt"), tok, req, &b)
	if a.Ciphertext == "" || a.Ciphertext != b.Ciphertext || a.Version != 1 {
		t.Fatalf("siv over the API not deterministic: %q %q", a.Ciphertext, b.Ciphertext)
	}
	// Randomized keys stay randomized.
	var g1, g2 api.EncryptResponse
	r.do(0, "POST", api.KeyPath("users.gcm", "encrypt"), tok, req, &g1)
	r.do(0, "POST", api.KeyPath("users.gcm", "encrypt"), tok, req, &g2)
	if g1.Ciphertext == g2.Ciphertext {
		t.Fatal("an aes256-gcm key became deterministic")
	}
	// Batch gives the same ciphertext as the single route.
	var br api.BatchEncryptResponse
	r.do(0, "POST", api.KeyPath("users.email", "batch", "encrypt"), tok, api.BatchEncryptRequest{Items: []api.EncryptRequest{req, req}}, &br)
	if len(br.Results) != 2 || br.Results[0].Ciphertext != a.Ciphertext || br.Results[1].Ciphertext != a.Ciphertext {
		t.Fatalf("batch: %+v", br.Results)
	}
	var d api.DecryptResponse
	if st, code := r.do(0, "POST", api.KeyPath("users.email", "decrypt"), tok, api.DecryptRequest{Ciphertext: a.Ciphertext, Context: req.Context}, &d); st != 200 || string(d.Plaintext) != "alice@example.com" {
		t.Fatalf("decrypt: %d %s %q", st, code, d.Plaintext)
	}
	if st, code := r.do(0, "POST", api.KeyPath("users.email", "decrypt"), tok, api.DecryptRequest{Ciphertext: a.Ciphertext, Context: []byte("other")}, nil); code != api.CodeDecrypt {
		t.Fatalf("wrong context: %d %s", st, code)
	}
	r.rotate("users.email")
	var c api.EncryptResponse
	r.do(0, "POST", api.KeyPath("users.email", "encrypt"), tok, req, &c)
	if c.Version != 2 || c.Ciphertext == a.Ciphertext {
		t.Fatalf("after rotation: %+v", c)
	}
	if st, _ := r.do(0, "POST", api.KeyPath("users.email", "decrypt"), tok, api.DecryptRequest{Ciphertext: a.Ciphertext, Context: req.Context}, &d); st != 200 || d.Version != 1 {
		t.Fatalf("v1 after rotation: %d v%d", st, d.Version)
	}
}

func TestPIIPseudonymAndFPEOverAPI(t *testing.T) {
	r := newPIICluster(t)
	r.createKey("pseudo", "hmac-sha256")
	r.createKey("cards", "ff1-aes256")
	r.createKey("plain", "aes256-gcm")
	tok := r.c.Token

	preq := api.PseudonymRequest{Value: []byte("alice"), Context: []byte("analytics")}
	var p1, p2 api.PseudonymResponse
	if st, code := r.do(0, "POST", api.KeyPath("pseudo", "pseudonym"), tok, preq, &p1); st != 200 || p1.Pseudonym == "" || p1.Version != 1 {
		t.Fatalf("pseudonym: %d %s %+v", st, code, p1)
	}
	r.rotate("pseudo")
	preq.Version = 1
	r.do(0, "POST", api.KeyPath("pseudo", "pseudonym"), tok, preq, &p2)
	if p2.Pseudonym != p1.Pseudonym || p2.Version != 1 {
		t.Fatalf("pinned pseudonym changed after rotation: %+v vs %+v", p2, p1)
	}
	preq.Version = 0
	r.do(0, "POST", api.KeyPath("pseudo", "pseudonym"), tok, preq, &p2)
	if p2.Version != 2 || p2.Pseudonym == p1.Pseudonym {
		t.Fatalf("latest pseudonym: %+v", p2)
	}
	if _, code := r.do(0, "POST", api.KeyPath("plain", "pseudonym"), tok, preq, nil); code != api.CodeUnsupported {
		t.Fatalf("pseudonym on aes256-gcm: %s", code)
	}

	const pan = "4111 1111 1111 1111"
	var e1 api.FPEResponse
	if st, code := r.do(0, "POST", api.KeyPath("cards", "fpe", "encrypt"), tok, api.FPERequest{Value: pan, Format: "card"}, &e1); st != 200 {
		t.Fatalf("fpe encrypt: %d %s", st, code)
	}
	if len(e1.Value) != len(pan) || !strings.HasSuffix(e1.Value, "1111") || !fpe.LuhnValid(e1.Value) || e1.Value == pan {
		t.Fatalf("fpe card: %q", e1.Value)
	}
	r.rotate("cards")
	var d api.FPEResponse
	if st, code := r.do(0, "POST", api.KeyPath("cards", "fpe", "decrypt"), tok, api.FPERequest{Value: e1.Value, Format: "card", Version: e1.Version}, &d); st != 200 || d.Value != pan {
		t.Fatalf("fpe decrypt with version after rotation: %d %s %q", st, code, d.Value)
	}
	for _, bad := range []api.FPERequest{
		{Value: pan, Format: "visa"},
		{Value: "4111 1111 1111 1112", Format: "card"},
		{Value: "12345", Format: "digits"},
		{Value: "12a456", Format: "digits"},
		{Value: strings.Repeat("1", 2000), Format: "digits"},
		{Value: "123456", Format: "digits", Mask: "last4"},
	} {
		st, code, body := r.piiRaw("POST", api.KeyPath("cards", "fpe", "encrypt"), tok, bad)
		if st != 400 || code != api.CodeBadRequest {
			t.Errorf("%+v: %d %s", bad.Format, st, code)
		}
		if len(bad.Value) > 5 && bytes.Contains(body, []byte(bad.Value)) {
			t.Errorf("error echoes the value: %s", body)
		}
	}
	if _, code := r.do(0, "POST", api.KeyPath("plain", "fpe", "encrypt"), tok, api.FPERequest{Value: "123456", Format: "digits"}, nil); code != api.CodeUnsupported {
		t.Fatalf("fpe on aes256-gcm: %s", code)
	}
}

// TestDecryptMaskedNeverShowsClear is the attacker's view: a token that
// holds only decrypt-masked tries every route that could reveal the clear
// value.
func TestDecryptMaskedNeverShowsClear(t *testing.T) {
	r := newPIICluster(t)
	r.createKey("pii-cards", "aes256-gcm")
	r.createKey("pii-det", "aes256-siv")
	r.createKey("pii-fpe", "ff1-aes256")
	r.createKey("pii-pseudo", "hmac-sha256")
	pol := &policy.Policy{Name: "masked", Rules: []policy.Rule{{
		Effect: policy.Allow, Capabilities: []policy.Capability{policy.DecryptMasked, policy.Read}, Keys: []string{"pii-*"},
	}}}
	doc, err := pol.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if st, code := r.do(0, "PUT", api.PathPolicies+"/masked", r.c.Token, doc, nil); st != 200 {
		t.Fatalf("write policy: %d %s", st, code)
	}
	masked, _ := r.token("masked")
	admin := r.c.Token

	const secret = "4111 1111 1113 1234"
	clearForms := [][]byte{[]byte(secret), []byte(base64.StdEncoding.EncodeToString([]byte(secret))), []byte("4111 1111 1113")}
	var ct, det api.EncryptResponse
	r.do(0, "POST", api.KeyPath("pii-cards", "encrypt"), admin, api.EncryptRequest{Plaintext: []byte(secret)}, &ct)
	r.do(0, "POST", api.KeyPath("pii-det", "encrypt"), admin, api.EncryptRequest{Plaintext: []byte(secret)}, &det)
	var fe api.FPEResponse
	if st, code := r.do(0, "POST", api.KeyPath("pii-fpe", "fpe", "encrypt"), admin, api.FPERequest{Value: secret, Format: "card"}, &fe); st != 200 {
		t.Fatalf("fpe encrypt: %d %s", st, code)
	}

	noClear := func(what string, body []byte) {
		t.Helper()
		for _, f := range clearForms {
			if bytes.Contains(body, f) {
				t.Fatalf("%s: the clear value reached a decrypt-masked caller: %s", what, body)
			}
		}
	}
	// 1. /decrypt answers the masked form only, with or without a mask.
	for _, m := range []string{"", "last4", "full"} {
		for _, key := range []string{"pii-cards", "pii-det"} {
			c := ct.Ciphertext
			if key == "pii-det" {
				c = det.Ciphertext
			}
			st, code, body := r.piiRaw("POST", api.KeyPath(key, "decrypt"), masked, api.DecryptRequest{Ciphertext: c, Mask: m})
			if st != 200 {
				t.Fatalf("masked decrypt %s %q: %d %s", key, m, st, code)
			}
			noClear("decrypt", body)
			var d api.DecryptResponse
			_ = json.Unmarshal(body, &d)
			want := "**** **** **** 1234"
			if m == "full" {
				want = "**** **** **** ****"
			}
			if d.Masked != want || d.Plaintext != nil {
				t.Fatalf("masked decrypt %s %q: %+v", key, m, d)
			}
		}
	}
	// An unknown mask shape is refused, not answered in clear.
	if st, _, body := r.piiRaw("POST", api.KeyPath("pii-cards", "decrypt"), masked, api.DecryptRequest{Ciphertext: ct.Ciphertext, Mask: "none"}); st != 400 {
		t.Fatalf("mask none: %d %s", st, body)
	}
	// 2. batch/decrypt: masked items only.
	st, code, body := r.piiRaw("POST", api.KeyPath("pii-cards", "batch", "decrypt"), masked,
		api.BatchDecryptRequest{Items: []api.DecryptRequest{{Ciphertext: ct.Ciphertext}, {Ciphertext: ct.Ciphertext, Mask: "full"}, {Ciphertext: ct.Ciphertext, Mask: "bogus"}}})
	if st != 200 {
		t.Fatalf("batch decrypt: %d %s", st, code)
	}
	noClear("batch decrypt", body)
	var bd api.BatchDecryptResponse
	_ = json.Unmarshal(body, &bd)
	if len(bd.Results) != 3 || bd.Results[0].Masked != "**** **** **** 1234" || bd.Results[1].Masked != "**** **** **** ****" || bd.Results[2].Error == nil {
		t.Fatalf("batch decrypt: %+v", bd.Results)
	}
	// 3. fpe/decrypt: masked.
	st, code, body = r.piiRaw("POST", api.KeyPath("pii-fpe", "fpe", "decrypt"), masked, api.FPERequest{Value: fe.Value, Format: "card"})
	if st != 200 {
		t.Fatalf("fpe decrypt: %d %s", st, code)
	}
	noClear("fpe decrypt", body)
	var fd api.FPEResponse
	_ = json.Unmarshal(body, &fd)
	if fd.Value != "" || fd.Masked != "**** **** **** 1234" {
		t.Fatalf("fpe decrypt masked: %+v", fd)
	}
	// 3b. batch/fpe-decrypt: masked items only.
	st, code, body = r.piiRaw("POST", api.KeyPath("pii-fpe", "batch", "fpe-decrypt"), masked,
		api.BatchFPERequest{Items: []api.FPERequest{{Value: fe.Value, Format: "card"}, {Value: fe.Value, Format: "card", Mask: "full"}}})
	if st != 200 {
		t.Fatalf("batch fpe decrypt: %d %s", st, code)
	}
	noClear("batch fpe decrypt", body)
	var bf api.BatchFPEResponse
	_ = json.Unmarshal(body, &bf)
	if len(bf.Results) != 2 || bf.Results[0].Masked != "**** **** **** 1234" || bf.Results[1].Masked != "**** **** **** ****" || bf.Results[0].Value != "" {
		t.Fatalf("batch fpe decrypt masked: %+v", bf.Results)
	}
	// 4. Every other route that could carry or produce the clear value is
	// forbidden.
	for _, c := range []struct {
		path string
		body any
	}{
		{api.KeyPath("pii-cards", "reencrypt"), api.DecryptRequest{Ciphertext: ct.Ciphertext}},
		{api.KeyPath("pii-cards", "batch", "reencrypt"), api.BatchDecryptRequest{Items: []api.DecryptRequest{{Ciphertext: ct.Ciphertext}}}},
		{api.KeyPath("pii-cards", "encrypt"), api.EncryptRequest{Plaintext: []byte("x")}},
		{api.KeyPath("pii-cards", "datakey"), api.DataKeyRequest{}},
		{api.KeyPath("pii-cards", "batch", "datakey"), api.BatchDataKeyRequest{Items: []api.DataKeyRequest{{}}}},
		{api.KeyPath("pii-fpe", "fpe", "encrypt"), api.FPERequest{Value: fe.Value, Format: "card"}},
		{api.KeyPath("pii-pseudo", "pseudonym"), api.PseudonymRequest{Value: []byte(secret)}},
		{api.KeyPath("pii-pseudo", "hmac"), api.SignRequest{Message: []byte(secret)}},
		{api.KeyPath("other", "decrypt"), api.DecryptRequest{Ciphertext: ct.Ciphertext}},
		{api.KeyPath("other", "batch", "decrypt"), api.BatchDecryptRequest{Items: []api.DecryptRequest{{Ciphertext: ct.Ciphertext}}}},
		{api.KeyPath("other", "fpe", "decrypt"), api.FPERequest{Value: fe.Value, Format: "card"}},
		{api.KeyPath("other", "batch", "fpe-decrypt"), api.BatchFPERequest{Items: []api.FPERequest{{Value: fe.Value, Format: "card"}}}},
		{api.KeyPath("pii-fpe", "batch", "fpe-encrypt"), api.BatchFPERequest{Items: []api.FPERequest{{Value: fe.Value, Format: "card"}}}},
		{api.KeyPath("pii-pseudo", "batch", "pseudonym"), api.BatchPseudonymRequest{Items: []api.PseudonymRequest{{Value: []byte(secret)}}}},
	} {
		st, code, body := r.piiRaw("POST", c.path, masked, c.body)
		if st != 403 || code != api.CodeForbidden {
			t.Errorf("%s: %d %s, want 403", c.path, st, code)
		}
		noClear(c.path, body)
	}
	// The same token with plain decrypt (the admin) still gets plaintext.
	var d api.DecryptResponse
	if r.do(0, "POST", api.KeyPath("pii-cards", "decrypt"), admin, api.DecryptRequest{Ciphertext: ct.Ciphertext}, &d); string(d.Plaintext) != secret || d.Masked != "" {
		t.Fatalf("full decrypt: %+v", d)
	}
}

// TestMaskedCallerGetsNoDeterministicOracle: a caller with decrypt-masked
// and encrypt (but not decrypt) could encrypt guesses under a
// deterministic key and compare them with stored ciphertexts, recovering
// a value it may only see masked. keyd refuses that combination on
// aes256-siv and ff1-aes256 keys, and only there.
func TestMaskedCallerGetsNoDeterministicOracle(t *testing.T) {
	r := newPIICluster(t)
	r.createKey("pii-gcm", "aes256-gcm")
	r.createKey("pii-det", "aes256-siv")
	r.createKey("pii-fpe", "ff1-aes256")
	pol := &policy.Policy{Name: "masked-enc", Rules: []policy.Rule{{
		Effect: policy.Allow, Capabilities: []policy.Capability{policy.DecryptMasked, policy.Encrypt, policy.DataKey}, Keys: []string{"pii-*"},
	}}}
	doc, _ := pol.Marshal()
	if st, code := r.do(0, "PUT", api.PathPolicies+"/masked-enc", r.c.Token, doc, nil); st != 200 {
		t.Fatalf("write policy: %d %s", st, code)
	}
	tok, _ := r.token("masked-enc")
	enc := api.EncryptRequest{Plaintext: []byte("4111 1111 1113 1234")}
	for _, c := range []struct {
		path string
		body any
		want int
	}{
		{api.KeyPath("pii-det", "encrypt"), enc, 403},
		{api.KeyPath("pii-det", "batch", "encrypt"), api.BatchEncryptRequest{Items: []api.EncryptRequest{enc}}, 403},
		{api.KeyPath("pii-fpe", "fpe", "encrypt"), api.FPERequest{Value: "4111 1111 1113 1234", Format: "card"}, 403},
		{api.KeyPath("pii-fpe", "batch", "fpe-encrypt"), api.BatchFPERequest{Items: []api.FPERequest{{Value: "4111 1111 1113 1234", Format: "card"}}}, 403},
		// The Vault transit route is the same oracle under another path.
		{"/v1/transit/encrypt/pii-det", map[string]string{"plaintext": "NDExMSAxMTExIDExMTMgMTIzNA=="}, 403},
		{"/v1/transit/encrypt/pii-gcm", map[string]string{"plaintext": "NDExMSAxMTExIDExMTMgMTIzNA=="}, 200},
		// Randomized keys, and non-encrypt operations, stay allowed.
		{api.KeyPath("pii-gcm", "encrypt"), enc, 200},
		{api.KeyPath("pii-gcm", "batch", "encrypt"), api.BatchEncryptRequest{Items: []api.EncryptRequest{enc}}, 200},
		{api.KeyPath("pii-det", "datakey"), api.DataKeyRequest{WithoutPlaintext: true}, 200},
	} {
		if st, code, body := r.piiRaw("POST", c.path, tok, c.body); st != c.want {
			t.Errorf("%s: %d %s %s, want %d", c.path, st, code, body, c.want)
		}
	}
	// The admin (decrypt and encrypt) is not affected.
	if st, code := r.do(0, "POST", api.KeyPath("pii-det", "encrypt"), r.c.Token, enc, nil); st != 200 {
		t.Fatalf("admin encrypt: %d %s", st, code)
	}
}
