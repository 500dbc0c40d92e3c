package httpapi

import (
	"crypto/rand"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/keyring"
	"github.com/keyd/keyd/policy"
)

// maskedEncryptor holds encrypt and decrypt-masked, not decrypt.
type maskedEncryptor struct{}

func (maskedEncryptor) ID() string         { return "token:masked" }
func (maskedEncryptor) Policies() []string { return []string{"masked-enc"} }
func (maskedEncryptor) Allowed(c policy.Capability, _ string) bool {
	return c == policy.Encrypt || c == policy.DecryptMasked
}
func (m maskedEncryptor) AllowedPattern(c policy.Capability, k string) bool { return m.Allowed(c, k) }

type authMasked struct{}

func (authMasked) Authenticate(*http.Request) (Principal, error) { return maskedEncryptor{}, nil }

// flakyKey is unusable on its first acquire (a disabled key) and usable
// afterwards: an administrator re-enabled it between two acquires.
type flakyKey struct {
	k     *keyring.Key
	calls atomic.Int64
}

func (f *flakyKey) AcquireCryptoKey(string) (*keyring.Key, func(), error) {
	if f.calls.Add(1) == 1 {
		return nil, nil, api.ErrKeyDisabled
	}
	return f.k, func() {}, nil
}

// TestMaskedOracleGuardFailsClosed: the guard that keeps a masked-only
// caller from encrypting under a deterministic key looked the key up
// once and let the request through when that lookup failed, and the
// handler looked it up again. A key re-enabled (or created) between the
// two lookups gave the caller one deterministic encryption: the oracle
// the guard exists to refuse. The guard's failed lookup now ends the
// request.
func TestMaskedOracleGuardFailsClosed(t *testing.T) {
	t.Parallel()
	keys := map[keyring.KeyType]*keyring.Key{}
	for _, typ := range []keyring.KeyType{keyring.AES256SIV, keyring.FF1AES256} {
		m, err := keyring.GenerateMaterial(typ, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		k, err := keyring.NewKey("det", typ, []keyring.Version{{Number: 1, Material: m}}, 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(k.Destroy)
		keys[typ] = k
	}
	for _, c := range []struct {
		typ        keyring.KeyType
		path, body string
	}{
		{keyring.AES256SIV, "/v1/keys/det/encrypt", `{"plaintext":"NDExMQ=="}`},
		{keyring.AES256SIV, "/v1/keys/det/batch/encrypt", `{"items":[{"plaintext":"NDExMQ=="}]}`},
		{keyring.FF1AES256, "/v1/keys/det/fpe/encrypt", `{"value":"41111111","format":"digits"}`},
		{keyring.FF1AES256, "/v1/keys/det/batch/fpe-encrypt", `{"items":[{"value":"41111111","format":"digits"}]}`},
		{keyring.AES256SIV, "/v1/transit/encrypt/det", `{"plaintext":"NDExMQ=="}`},
	} {
		fa := &fakeAuditor{}
		fa.healthy.Store(true)
		fk := &flakyKey{k: keys[c.typ]}
		s := New(Config{Crypto: fk, Cluster: leaderCluster{}, Auth: authMasked{}, Audit: fa,
			IsPeer: func(*http.Request) (string, bool) { return "", false }})
		rec, _ := post(s, c.path, c.body)
		if rec.Code == 200 || fk.calls.Load() > 1 {
			t.Errorf("%s: %d after %d key lookups: the masked-only caller got past the guard: %s", c.path, rec.Code, fk.calls.Load(), rec.Body)
		}
	}
}
