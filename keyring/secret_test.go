package keyring

import (
	"bytes"
	"fmt"
	"log/slog"
	"testing"
)

func TestRedaction(t *testing.T) {
	t.Parallel()
	root, err := DeriveRootKey(bytes.Repeat([]byte{0x5a}, 32))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := NewKeyring(nil)
	if err != nil {
		t.Fatal(err)
	}
	ring, err = ring.Rotate(nil)
	if err != nil {
		t.Fatal(err)
	}
	mat, err := GenerateMaterial(AES256GCM, nil)
	if err != nil {
		t.Fatal(err)
	}
	edKey, edMats := newTestKey(t, "signer", Ed25519, 2, 0)
	aesKey, aesMats := newTestKey(t, "enc", AES256GCM, 1, 0)

	secrets := [][]byte{root.b[:], mat.bytes(), edMats[0].bytes(), edMats[1].bytes(), aesMats[0].bytes()}
	for _, k := range ring.keys {
		secrets = append(secrets, k.b[:])
	}
	for _, v := range edKey.versions {
		secrets = append(secrets, v.edPriv) // seed || public: the seed part must not leak
	}

	type holder struct {
		Root    RootKey
		Mat     KeyMaterial
		Version Version
	}
	values := []struct {
		name string
		v    any
	}{
		{"*RootKey", root},
		{"RootKey", *root},
		{"*KeyMaterial", mat},
		{"KeyMaterial", *mat},
		{"*Keyring", ring},
		{"Keyring", *ring},
		{"*Key ed25519", edKey},
		{"Key aes", *aesKey},
		{"Version", Version{Number: 1, Material: mat}},
		{"holder", holder{Root: *root, Mat: *mat, Version: Version{1, mat}}},
		{"slice", []any{root, mat, ring, edKey}},
	}
	verbs := []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"}
	for _, tt := range values {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, verb := range verbs {
				out := fmt.Sprintf(verb, tt.v)
				assertNoLeak(t, tt.name+" "+verb, out, secrets...)
			}
			for _, h := range []func(*bytes.Buffer) slog.Handler{
				func(b *bytes.Buffer) slog.Handler {
					return slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})
				},
				func(b *bytes.Buffer) slog.Handler {
					return slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})
				},
			} {
				var buf bytes.Buffer
				slog.New(h(&buf)).Debug("secret", "value", tt.v)
				if buf.Len() == 0 {
					t.Fatalf("slog wrote nothing")
				}
				assertNoLeak(t, tt.name+" slog", buf.String(), secrets...)
			}
		})
	}

	// The secret types print exactly the marker.
	for _, v := range []any{root, *root, mat, *mat} {
		if got := fmt.Sprintf("%v|%#v|%s|%x", v, v, v, v); got != "[redacted]|[redacted]|[redacted]|[redacted]" {
			t.Errorf("got %q, want four [redacted] markers", got)
		}
	}
}

func TestKeyMaterial(t *testing.T) {
	t.Parallel()
	b := []byte("0123456789abcdef0123456789abcdef")
	m := NewKeyMaterial(b)
	c := m.Clone()
	if !m.Equal(c) {
		t.Fatalf("got Equal(clone) false, want true")
	}
	if m.Equal(NewKeyMaterial([]byte("0123456789abcdef0123456789abcdeX"))) {
		t.Fatalf("got Equal(different) true, want false")
	}
	if got, want := m.Len(), 32; got != want {
		t.Fatalf("got Len %d, want %d", got, want)
	}
	m.Destroy()
	if !bytes.Equal(b, make([]byte, 32)) {
		t.Fatalf("got %d non-zero bytes after Destroy, want 0", 32-bytes.Count(b, []byte{0}))
	}
	if m.Len() != 0 || m.Equal(c) {
		t.Fatalf("destroyed material: got Len %d Equal %v, want 0 false", m.Len(), m.Equal(c))
	}
	if c.Len() != 32 {
		t.Fatalf("clone: got Len %d after destroying original, want 32", c.Len())
	}
	m.Destroy() // idempotent
	var nilM *KeyMaterial
	nilM.Destroy()
	if nilM.Equal(nilM) {
		t.Fatalf("got nil.Equal(nil) true, want false")
	}
}
