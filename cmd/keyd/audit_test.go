package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyd/keyd/audit"
)

// writeAuditLog writes n records through audit.Open and returns the log
// path and the public key.
func writeAuditLog(t *testing.T, n int) (string, ed25519.PublicKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mac := make([]byte, 32)
	rand.Read(mac)
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(audit.Config{Path: path, HMACKey: mac, SigningKey: priv, Node: "n1", CheckpointEvery: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		r := audit.Record{Op: "key.encrypt", Key: fmt.Sprintf("k%d", i), Outcome: "ok",
			Hashed: map[string]string{"plaintext": l.HMAC([]byte("secret"))}}
		if err := l.Log(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path, l.PublicKey()
}

func TestAuditVerify(t *testing.T) {
	t.Parallel()
	path, pub := writeAuditLog(t, 5) // seq 1-3 records, 4 checkpoint, 5-6 records, 7 checkpoint
	dir := t.TempDir()
	hexFile := filepath.Join(dir, "audit.pub")
	if err := os.WriteFile(hexFile, []byte(hex.EncodeToString(pub)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemFile := filepath.Join(dir, "audit.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(orig, []byte("\n"))
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	edited := bytes.Clone(orig)
	i := bytes.Index(edited, []byte(`"key":"k1"`))
	edited[i+len(`"key":"k`)] = '9' // record on line 2
	editedPath := write("edited.log", edited)
	deletedPath := write("deleted.log", bytes.Join(append(append([][]byte{}, lines[:4]...), lines[5:]...), nil))
	unsignedPath := write("unsigned.log", bytes.Join(lines[:6], nil))

	tests := []struct {
		name     string
		args     []string
		wantOut  string
		wantErr  string // in stderr
		wantCode int
	}{
		{name: "ok hex file", args: []string{path, "-pubkey", hexFile}, wantOut: "OK: 5 records, 2 checkpoints, last seq 7\n"},
		{name: "ok pem file, flag first", args: []string{"-pubkey", pemFile, path}, wantOut: "OK: 5 records, 2 checkpoints, last seq 7\n"},
		{name: "ok inline hex", args: []string{path, "-pubkey", hex.EncodeToString(pub)}, wantOut: "OK: 5 records, 2 checkpoints, last seq 7\n"},
		{name: "unsigned tail warns", args: []string{unsignedPath, "-pubkey", hexFile},
			wantOut: "OK: 5 records, 1 checkpoints, last seq 6\n", wantErr: "WARNING: 2 records after the last checkpoint"},
		{name: "edited byte", args: []string{editedPath, "-pubkey", hexFile}, wantOut: "TAMPERED: line 2 (seq 2): ", wantCode: 1},
		{name: "deleted line", args: []string{deletedPath, "-pubkey", hexFile}, wantOut: "TAMPERED: line 5 (seq 6): ", wantCode: 1},
		{name: "wrong key", args: []string{path, "-pubkey", strings.Repeat("ab", 32)}, wantOut: "TAMPERED: line 4 (seq 4): checkpoint signature", wantCode: 1},
		{name: "missing pubkey", args: []string{path}, wantCode: 2},
		{name: "bad pubkey", args: []string{path, "-pubkey", "nothex"}, wantCode: 2},
		{name: "bad pubkey file", args: []string{path, "-pubkey", path}, wantCode: 1},
		{name: "missing file", args: []string{filepath.Join(dir, "nope.log"), "-pubkey", hexFile}, wantCode: 1},
		{name: "no file", args: []string{"-pubkey", hexFile}, wantCode: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, out, errb := testCLI(t.Context(), nil, nil)
			err := c.run(append([]string{"audit", "verify"}, tt.args...))
			if got := exitCode(err); got != tt.wantCode {
				t.Fatalf("got exit code %d (err %v), want %d", got, err, tt.wantCode)
			}
			if !strings.HasPrefix(out.String(), tt.wantOut) {
				t.Fatalf("got stdout %q, want it to start with %q", out.String(), tt.wantOut)
			}
			if tt.wantErr != "" && !strings.Contains(errb.String(), tt.wantErr) {
				t.Fatalf("got stderr %q, want it to contain %q", errb.String(), tt.wantErr)
			}
			if tt.wantCode == 1 && strings.HasPrefix(tt.wantOut, "TAMPERED") && !errors.Is(err, errAuditTampered) {
				t.Fatalf("got err %v, want %v", err, errAuditTampered)
			}
		})
	}
}
