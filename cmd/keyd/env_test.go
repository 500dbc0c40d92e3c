package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestClientEnv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, _, err := loadOrCreateCA(dir, "test CA"); err != nil {
		t.Fatal(err)
	}
	caPath := filepath.Join(dir, caCertFile)
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		env       map[string]string
		flagAddr  string
		wantAddrs []string
		wantErr   error
		usage     bool
	}{
		{name: "env list", env: map[string]string{envAddr: "a:1, b:2,,c:3"}, wantAddrs: []string{"a:1", "b:2", "c:3"}},
		{name: "flag overrides env", env: map[string]string{envAddr: "a:1"}, flagAddr: "x:9", wantAddrs: []string{"x:9"}},
		{name: "no address", env: nil, usage: true},
		{name: "CA file", env: map[string]string{envAddr: "a:1", envCACert: caPath}, wantAddrs: []string{"a:1"}},
		{name: "missing CA file", env: map[string]string{envAddr: "a:1", envCACert: filepath.Join(dir, "none.pem")}, wantAddrs: []string{"a:1"}, wantErr: fs.ErrNotExist},
		{name: "CA file without a certificate", env: map[string]string{envAddr: "a:1", envCACert: junk}, wantAddrs: []string{"a:1"}, wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, _, _ := testCLI(t.Context(), tt.env, nil)
			f := &clientFlags{addr: tt.flagAddr}
			addrs, err := c.addrs(f)
			if tt.usage {
				var ue *usageError
				if !errors.As(err, &ue) {
					t.Fatalf("got err %v, want a usage error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("addrs: %v", err)
			}
			if !slices.Equal(addrs, tt.wantAddrs) {
				t.Fatalf("got addrs %q, want %q", addrs, tt.wantAddrs)
			}
			cl, err := c.newClient(f)
			switch {
			case tt.wantErr == errAny:
				if err == nil {
					t.Fatal("got nil error, want one")
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got err %v, want %v", err, tt.wantErr)
				}
			case err != nil:
				t.Fatalf("newClient: %v", err)
			default:
				_ = cl.Close()
			}
		})
	}
}

// errAny marks a case that must fail without a sentinel to match.
var errAny = errors.New("any error")
