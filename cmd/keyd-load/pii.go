package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/transport/devcerts"

	"time"
)

// runPII measures the PII operations of issue 14 (docs/PII.md) on one
// node: deterministic encrypt and decrypt (aes256-siv), masked decrypt,
// pseudonym, FPE encrypt and decrypt of a card number. Scenario "pii".
func runPII(ctx context.Context, ca *devcerts.CA, roots *tls.Config, d time.Duration, levels []int) ([]result, error) {
	nodes, token, stop, err := startInitialized(ctx, ca, 1, auditDefault)
	defer stop()
	if err != nil {
		return nil, err
	}
	base := "https://" + nodes[0].APIAddr()
	hc := httpClient(roots, 1)
	for _, k := range [][2]string{{"siv", "aes256-siv"}, {"pseudo", "hmac-sha256"}, {"ff1", "ff1-aes256"}} {
		body, _ := json.Marshal(api.CreateKeyRequest{Name: k[0], Type: k[1]})
		if err := post(hc, base+"/v1/keys", token, body, nil); err != nil {
			return nil, err
		}
	}
	pt := []byte("alice.smith@example.com")
	encBody, _ := json.Marshal(api.EncryptRequest{Plaintext: pt})
	var enc api.EncryptResponse
	if err := post(hc, base+"/v1/keys/siv/encrypt", token, encBody, &enc); err != nil {
		return nil, err
	}
	fpeBody, _ := json.Marshal(api.FPERequest{Value: "4111 1111 1111 1111", Format: "card"})
	var card api.FPEResponse
	if err := post(hc, base+"/v1/keys/ff1/fpe/encrypt", token, fpeBody, &card); err != nil {
		return nil, err
	}
	hc.CloseIdleConnections()
	decBody, _ := json.Marshal(api.DecryptRequest{Ciphertext: enc.Ciphertext})
	maskBody, _ := json.Marshal(api.DecryptRequest{Ciphertext: enc.Ciphertext, Mask: "last4"})
	pseBody, _ := json.Marshal(api.PseudonymRequest{Value: pt, Context: []byte("analytics")})
	fdecBody, _ := json.Marshal(api.FPERequest{Value: card.Value, Format: "card", Version: card.Version})
	ops := []struct {
		name, path string
		body       []byte
	}{
		{"keyd siv encrypt", "/v1/keys/siv/encrypt", encBody},
		{"keyd siv decrypt", "/v1/keys/siv/decrypt", decBody},
		{"keyd decrypt masked", "/v1/keys/siv/decrypt", maskBody},
		{"keyd pseudonym", "/v1/keys/pseudo/pseudonym", pseBody},
		{"keyd fpe encrypt card", "/v1/keys/ff1/fpe/encrypt", fpeBody},
		{"keyd fpe decrypt card", "/v1/keys/ff1/fpe/decrypt", fdecBody},
	}
	var out []result
	for _, c := range levels {
		hc := httpClient(roots, c)
		for _, op := range ops {
			r := drive(op.name, c, d, func(int) error { return post(hc, base+op.path, token, op.body, nil) })
			fmt.Println(r)
			out = append(out, r)
		}
		hc.CloseIdleConnections()
	}
	return out, nil
}

// printPIIRatios prints each PII operation against the reference server
// measured in the same run.
func printPIIRatios(rs []result) {
	ref := map[int]result{}
	for _, r := range rs {
		if r.name == "reference encrypt" {
			ref[r.callers] = r
		}
	}
	for _, r := range rs {
		base, ok := ref[r.callers]
		if !ok || base.ops == 0 || base.p99 == 0 || len(r.name) < 5 || r.name == "keyd encrypt" || r.name == "keyd decrypt" || r.name[:5] != "keyd " {
			continue
		}
		fmt.Printf("ratio %-22s callers=%-3d throughput=%.2f of reference, p99=%.2fx reference\n", r.name, r.callers, r.rate()/base.rate(), float64(r.p99)/float64(base.p99))
	}
}
