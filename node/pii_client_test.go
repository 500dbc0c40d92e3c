package node_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
	"github.com/keyd/keyd/fpe"
	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/policy"
)

// TestPIIClient drives the Go client's PII methods against a real node.
func TestPIIClient(t *testing.T) {
	r := newPIICluster(t)
	r.createKey("pseudo", "hmac-sha256")
	r.createKey("cards", "ff1-aes256")
	r.createKey("col", "aes256-siv")
	r.createKey("pii-x", "aes256-gcm")
	cl := r.c.Client(t)
	ctx := context.Background()

	p1, err := cl.Pseudonym(ctx, "pseudo", []byte("alice"), []byte("ctx"), 0)
	if err != nil || p1.Version != 1 || len(p1.Pseudonym) != 43 {
		t.Fatalf("Pseudonym: %+v %v", p1, err)
	}
	p2, _ := cl.Pseudonym(ctx, "pseudo", []byte("alice"), []byte("ctx"), 1)
	if p2.Pseudonym != p1.Pseudonym {
		t.Fatal("pinned pseudonym differs")
	}
	e, err := cl.FPEEncrypt(ctx, "cards", api.FPERequest{Value: "+1 (415) 555-0132", Format: "phone", Tweak: []byte("t")})
	if err != nil || len(e.Value) != len("+1 (415) 555-0132") || !strings.HasPrefix(e.Value, "+") {
		t.Fatalf("FPEEncrypt: %+v %v", e, err)
	}
	d, err := cl.FPEDecrypt(ctx, "cards", api.FPERequest{Value: e.Value, Format: "phone", Tweak: []byte("t"), Version: e.Version})
	if err != nil || d.Value != "+1 (415) 555-0132" {
		t.Fatalf("FPEDecrypt: %+v %v", d, err)
	}
	if _, err := cl.FPEEncrypt(ctx, "cards", api.FPERequest{Value: "4111", Format: "card"}); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("short card: %v", err)
	}
	a, _ := cl.Encrypt(ctx, "col", []byte("same"), []byte("c"))
	b, _ := cl.Encrypt(ctx, "col", []byte("same"), []byte("c"))
	if a.Ciphertext != b.Ciphertext {
		t.Fatal("aes256-siv through the client not deterministic")
	}
	m, err := cl.DecryptMasked(ctx, "col", a.Ciphertext, []byte("c"), "full")
	if err != nil || m.Masked != "****" || m.Plaintext != nil {
		t.Fatalf("DecryptMasked: %+v %v", m, err)
	}

	// Batches: same answers as the single calls, per-item errors.
	bp, err := cl.BatchPseudonym(ctx, "pseudo", []api.PseudonymRequest{{Value: []byte("alice"), Context: []byte("ctx")}, {Value: []byte("bob"), Context: []byte("ctx"), Version: 9}})
	if err != nil || len(bp) != 2 || bp[0].Pseudonym != p1.Pseudonym || bp[1].Error == nil || bp[1].Error.Code != api.CodeDecrypt {
		t.Fatalf("BatchPseudonym: %+v %v", bp, err)
	}
	be, err := cl.BatchFPEEncrypt(ctx, "cards", []api.FPERequest{
		{Value: "+1 (415) 555-0132", Format: "phone", Tweak: []byte("t")},
		{Value: "4111 1111 1111 1112", Format: "card"},
		{Value: "078-05-1120", Format: "ssn"},
	})
	if err != nil || len(be) != 3 || be[0].Value != e.Value || be[1].Error == nil || be[1].Error.Code != api.CodeBadRequest || be[2].Value == "" {
		t.Fatalf("BatchFPEEncrypt: %+v %v", be, err)
	}
	bd, err := cl.BatchFPEDecrypt(ctx, "cards", []api.FPERequest{
		{Value: be[0].Value, Format: "phone", Tweak: []byte("t"), Version: be[0].Version},
		{Value: be[2].Value, Format: "ssn", Mask: "last4"},
	})
	if err != nil || len(bd) != 2 || bd[0].Value != "+1 (415) 555-0132" || bd[1].Masked != "***-**-1120" || bd[1].Value != "" {
		t.Fatalf("BatchFPEDecrypt: %+v %v", bd, err)
	}

	// A decrypt-masked-only token: Decrypt fails with ErrMasked (never an
	// empty plaintext), DecryptMasked works.
	pol := &policy.Policy{Name: "masked", Rules: []policy.Rule{{Effect: policy.Allow, Capabilities: []policy.Capability{policy.DecryptMasked}, Keys: []string{"pii-*"}}}}
	doc, _ := pol.Marshal()
	if st, code := r.do(0, "PUT", api.PathPolicies+"/masked", r.c.Token, doc, nil); st != 200 {
		t.Fatalf("policy: %d %s", st, code)
	}
	tok, _ := r.token("masked")
	mc, err := client.New(ctx, client.Config{Addrs: r.c.Addrs(), Token: tok, TLS: r.c.TLS(), Timeout: 5 * time.Second, ConnectTimeout: testcluster.Scaled(client.DefaultConnectTimeout)})
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	ct, _ := cl.Encrypt(ctx, "pii-x", []byte("078-05-1120"), nil)
	if _, err := mc.Decrypt(ctx, "pii-x", ct.Ciphertext, nil); !errors.Is(err, client.ErrMasked) {
		t.Fatalf("masked-only Decrypt: %v", err)
	}
	mm, err := mc.DecryptMasked(ctx, "pii-x", ct.Ciphertext, nil, "")
	if err != nil || mm.Masked != "***-**-1120" {
		t.Fatalf("masked-only DecryptMasked: %+v %v", mm, err)
	}
}

// BenchmarkPIIAPI measures each PII operation through the Go client
// against one in-process node over TLS (see docs/BENCHMARKS.md).
func BenchmarkPIIAPI(b *testing.B) {
	c := testcluster.New(b, testcluster.Options{Nodes: 1})
	c.Init(b, 1, 1)
	c.Unseal(b, 1)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	b.Cleanup(hc.CloseIdleConnections)
	cl := c.Client(b)
	ctx := context.Background()
	for _, k := range []struct{ name, typ string }{{"gcm", "aes256-gcm"}, {"siv", "aes256-siv"}, {"pseudo", "hmac-sha256"}, {"ff1", "ff1-aes256"}} {
		info, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: k.name, Type: k.typ})
		if err != nil {
			b.Fatal(err)
		}
		c.WaitApplied(b, info.Index)
	}
	pt := []byte("alice.smith@example.com")
	sivCT, _ := cl.Encrypt(ctx, "siv", pt, nil)
	card, _ := cl.FPEEncrypt(ctx, "ff1", api.FPERequest{Value: "4111 1111 1111 1111", Format: "card"})
	ops := []struct {
		name string
		fn   func() error
	}{
		{"gcm-encrypt(baseline)", func() error { _, err := cl.Encrypt(ctx, "gcm", pt, nil); return err }},
		{"siv-encrypt", func() error { _, err := cl.Encrypt(ctx, "siv", pt, nil); return err }},
		{"siv-decrypt", func() error { _, err := cl.Decrypt(ctx, "siv", sivCT.Ciphertext, nil); return err }},
		{"decrypt-masked", func() error { _, err := cl.DecryptMasked(ctx, "siv", sivCT.Ciphertext, nil, "last4"); return err }},
		{"pseudonym", func() error { _, err := cl.Pseudonym(ctx, "pseudo", pt, []byte("analytics"), 0); return err }},
		{"fpe-encrypt-card", func() error {
			_, err := cl.FPEEncrypt(ctx, "ff1", api.FPERequest{Value: "4111 1111 1111 1111", Format: "card"})
			return err
		}},
		{"fpe-decrypt-card", func() error {
			r, err := cl.FPEDecrypt(ctx, "ff1", api.FPERequest{Value: card.Value, Format: "card", Version: card.Version})
			if err == nil && !fpe.LuhnValid(r.Value) {
				err = errors.New("bad card")
			}
			return err
		}},
	}
	for _, op := range ops {
		b.Run(op.name, func(b *testing.B) {
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := op.fn(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}
