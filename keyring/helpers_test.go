package keyring

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// allTypes lists every key type, in a stable order for table tests.
var allTypes = []KeyType{AES256GCM, XChaCha20Poly1305, HMACSHA256, Ed25519, ECDSAP256, AES256SIV}

// newTestKey builds a key of type t holding versions 1..n with fresh
// material, and returns the material per version for checks.
func newTestKey(t testing.TB, name string, typ KeyType, n int, min uint32) (*Key, []*KeyMaterial) {
	t.Helper()
	var vs []Version
	var ms []*KeyMaterial
	for i := 1; i <= n; i++ {
		m, err := GenerateMaterial(typ, nil)
		if err != nil {
			t.Fatalf("GenerateMaterial(%s): %v", typ, err)
		}
		vs = append(vs, Version{Number: uint32(i), Material: m})
		ms = append(ms, m)
	}
	k, err := NewKey(name, typ, vs, min)
	if err != nil {
		t.Fatalf("NewKey(%q, %s): %v", name, typ, err)
	}
	return k, ms
}

// wantErr fails unless errors.Is(got, want); want nil means success.
func wantErr(t testing.TB, what string, got, want error) {
	t.Helper()
	if want == nil {
		if got != nil {
			t.Fatalf("%s: got error %v, want nil", what, got)
		}
		return
	}
	if !errors.Is(got, want) {
		t.Fatalf("%s: got error %v, want %v", what, got, want)
	}
}

// leakForms returns the encodings in which secret bytes could show up in
// formatted output.
func leakForms(secret []byte) []string {
	if len(secret) == 0 {
		return nil
	}
	dec := fmt.Sprint(secret) // "[1 2 3]"
	return []string{
		string(secret),
		hex.EncodeToString(secret),
		strings.ToUpper(hex.EncodeToString(secret)),
		base64.StdEncoding.EncodeToString(secret),
		base64.RawURLEncoding.EncodeToString(secret),
		dec[1 : len(dec)-1],
		fmt.Sprintf("%#v", secret)[len("[]byte{"):20], // "0x12, 0x34, ..." start
	}
}

// assertNoLeak fails if out contains any form of any secret.
func assertNoLeak(t testing.TB, what, out string, secrets ...[]byte) {
	t.Helper()
	for _, s := range secrets {
		if bytes.Count(s, []byte{0}) == len(s) {
			t.Fatalf("%s: test secret is all zero; the check would be meaningless", what)
		}
		for _, f := range leakForms(s) {
			if strings.Contains(out, f) {
				t.Fatalf("%s: output %q contains secret form %q", what, out, f)
			}
		}
	}
}
