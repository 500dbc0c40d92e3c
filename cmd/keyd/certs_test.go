package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/keyd/keyd/transport"
)

func TestCertsCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, id := range []string{"n1", "n2"} {
		if _, err := runCmd(t, nil, "", "certs", "-ca-dir", dir, "-node", id, "-hosts", "127.0.0.1,localhost"); err != nil {
			t.Fatalf("certs %s: %v", id, err)
		}
	}
	caBefore, err := os.ReadFile(filepath.Join(dir, caCertFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"n1", "n2"} {
		cert, key := filepath.Join(dir, "node-"+id+".pem"), filepath.Join(dir, "node-"+id+"-key.pem")
		if _, err := transport.LoadIdentity(id, cert, key, filepath.Join(dir, caCertFile)); err != nil {
			t.Fatalf("LoadIdentity %s: %v", id, err)
		}
		// n1 was issued before n2: the CA was reused, so n1 still verifies.
		assertMode(t, key, 0o600)
	}
	assertMode(t, filepath.Join(dir, caKeyFile), 0o600)
	// A third run reuses the CA rather than replacing it.
	if _, err := runCmd(t, nil, "", "certs", "-ca-dir", dir, "-node", "n3"); err != nil {
		t.Fatal(err)
	}
	caAfter, err := os.ReadFile(filepath.Join(dir, caCertFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(caBefore, caAfter) {
		t.Fatal("got a new CA, want the existing one reused")
	}
}

func TestCertsCommandErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"certs", "-node", "n1"},
		{"certs", "-ca-dir", t.TempDir()},
		{"certs", "-ca-dir", t.TempDir(), "-node", "bad/id"},
	} {
		_, err := runCmd(t, nil, "", args...)
		if got := exitCode(err); got != 2 {
			t.Errorf("%q: got exit code %d (err %v), want 2", args, got, err)
		}
	}
}

func TestLoadOrCreateCAHalfPresent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, caCertFile), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadOrCreateCA(dir, "x"); err == nil {
		t.Fatal("got nil error for a CA directory with a certificate but no key, want one")
	}
	if _, err := os.Stat(filepath.Join(dir, caKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v, want no key written", err)
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Fatalf("%s: got mode %o, want %o", path, got, want)
	}
}
