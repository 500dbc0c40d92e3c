package node

import (
	"crypto/sha256"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
)

func testAuth(tokens map[string]time.Time) *authenticator {
	s := &principals{byToken: map[[32]byte]*principal{}, byCert: map[[32]byte]*principal{}}
	for tok, exp := range tokens {
		s.byToken[sha256.Sum256([]byte(tok))] = &principal{id: "t", policies: []string{"admin"}, set: resolvePolicies([]string{"admin"}, nil), expiresAt: exp}
	}
	a := &authenticator{}
	a.set.Store(s)
	return a
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	a := testAuth(map[string]time.Time{
		"kd_good":    {},
		"kd_expired": time.Now().Add(-time.Minute),
		"kd_later":   time.Now().Add(time.Hour),
	})
	long := make([]byte, maxTokenLen+1)
	for i := range long {
		long[i] = 'a'
	}
	tests := []struct {
		name    string
		header  string
		wantErr error
	}{
		{"valid", "Bearer kd_good", nil},
		{"valid with expiry", "Bearer kd_later", nil},
		{"expired", "Bearer kd_expired", api.ErrUnauthorized},
		{"unknown", "Bearer kd_bad", api.ErrUnauthorized},
		{"no scheme", "kd_good", api.ErrUnauthorized},
		{"basic scheme", "Basic kd_good", api.ErrUnauthorized},
		{"empty", "", api.ErrUnauthorized},
		{"empty token", "Bearer ", api.ErrUnauthorized},
		{"too long", "Bearer " + string(long), api.ErrUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := a.authenticateToken(tt.header)
			if tt.header == "" {
				r := httptest.NewRequest("GET", "/", nil)
				_, err = a.Authenticate(r)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// BenchmarkAuthenticate shows the per-request token check does not
// allocate.
func BenchmarkAuthenticate(b *testing.B) {
	tok := "kd_" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	a := testAuth(map[string]time.Time{tok: {}})
	h := "Bearer " + tok
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.authenticateToken(h); err != nil {
			b.Fatal(err)
		}
	}
}

// TestAuthenticateVaultTokenHeader: X-Vault-Token is a keyd token; with
// Authorization it must name the same token.
func TestAuthenticateVaultTokenHeader(t *testing.T) {
	t.Parallel()
	a := testAuth(map[string]time.Time{"kd_good": {}, "kd_other": {}})
	tests := []struct {
		name          string
		bearer, vault string
		wantErr       error
	}{
		{"vault header alone", "", "kd_good", nil},
		{"both, same token", "Bearer kd_good", "kd_good", nil},
		{"vault header unknown token", "", "kd_bad", api.ErrUnauthorized},
		{"both, different valid tokens", "Bearer kd_other", "kd_good", api.ErrUnauthorized},
		{"both, bearer without scheme", "kd_good", "kd_good", api.ErrUnauthorized},
		{"vault header with a Bearer prefix", "", "Bearer kd_good", api.ErrUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("GET", "/", nil)
			if tt.bearer != "" {
				r.Header.Set(api.HeaderAuthorization, tt.bearer)
			}
			r.Header.Set(api.HeaderVaultToken, tt.vault)
			_, err := a.Authenticate(r)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
		})
	}
}
