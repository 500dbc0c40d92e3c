package keyring

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealDataBindsAAD(t *testing.T) {
	r, err := NewKeyring(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Destroy()
	bv, blob, err := r.SealData([]byte("kv\x00a\x00\x00\x00\x00\x01"), []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, []byte("secret")) {
		t.Fatal("plaintext in blob")
	}
	pt, err := r.OpenData([]byte("kv\x00a\x00\x00\x00\x00\x01"), bv, blob)
	if err != nil || string(pt) != "secret" {
		t.Fatalf("open: %q %v", pt, err)
	}
	if _, err := r.OpenData([]byte("kv\x00b\x00\x00\x00\x00\x01"), bv, blob); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("other aad: %v", err)
	}
	// A datum never opens as key material, whatever the name and version.
	if _, err := r.UnwrapMaterial("kv", 1, bv, blob); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("as material: %v", err)
	}
	if _, err := r.OpenData(nil, bv, blob[:10]); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("truncated: %v", err)
	}
	if _, err := r.OpenData(nil, bv+1, blob); !errors.Is(err, ErrUnknownBarrierVersion) {
		t.Fatalf("unknown barrier version: %v", err)
	}
}

func TestDeriveKeyStableAcrossRotation(t *testing.T) {
	r, err := NewKeyring(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Destroy()
	a, err := r.DeriveKey("x")
	if err != nil || len(a) != 32 {
		t.Fatal(err)
	}
	r2, err := r.Rotate(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Destroy()
	b, _ := r2.DeriveKey("x")
	c, _ := r2.DeriveKey("y")
	if !bytes.Equal(a, b) || bytes.Equal(b, c) {
		t.Fatal("derived keys: want stable per purpose, distinct across purposes")
	}
}
