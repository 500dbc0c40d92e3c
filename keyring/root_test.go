package keyring

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"testing"
)

// hkdfReference is RFC 5869 written out with crypto/hmac, as an independent
// check of the derivation (salt nil = HashLen zero bytes, one output block).
func hkdfReference(secret []byte, info string) []byte {
	ext := hmac.New(sha256.New, make([]byte, sha256.Size))
	ext.Write(secret)
	prk := ext.Sum(nil)
	exp := hmac.New(sha256.New, prk)
	exp.Write([]byte(info))
	exp.Write([]byte{1})
	return exp.Sum(nil)
}

func TestDeriveRootKey(t *testing.T) {
	t.Parallel()
	secret := bytes.Repeat([]byte{7}, 32)
	k, err := DeriveRootKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	if want := hkdfReference(secret, "keyd root v1"); !bytes.Equal(k.b[:], want) {
		t.Fatalf("got root key %x, want HKDF %x", k.b[:], want)
	}
	k2, _ := DeriveRootKey(secret)
	if !k.Equal(k2) {
		t.Fatalf("got Equal false for same secret, want true")
	}
	k3, _ := DeriveRootKey(bytes.Repeat([]byte{8}, 32))
	if k.Equal(k3) {
		t.Fatalf("got Equal true for different secrets, want false")
	}
	_, err = DeriveRootKey(make([]byte, 15))
	wantErr(t, "short secret", err, ErrInvalidKey)
}

func TestRootWrap(t *testing.T) {
	t.Parallel()
	k, _ := DeriveRootKey(bytes.Repeat([]byte{1}, 32))
	other, _ := DeriveRootKey(bytes.Repeat([]byte{2}, 32))
	pt := []byte("barrier keyring bytes")
	aad := []byte("cluster-1")
	blob, err := k.Wrap(pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(blob), 12+len(pt)+16; got != want {
		t.Fatalf("got blob length %d, want %d", got, want)
	}
	got, err := k.Unwrap(blob, aad)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("got %q, %v, want %q, nil", got, err, pt)
	}
	blob2, _ := k.Wrap(pt, aad)
	if bytes.Equal(blob, blob2) {
		t.Fatalf("got identical blobs for two wraps, want fresh nonces")
	}

	tests := []struct {
		name string
		key  *RootKey
		blob []byte
		aad  []byte
	}{
		{"wrong key", other, blob, aad},
		{"wrong aad", k, blob, []byte("cluster-2")},
		{"nil aad", k, blob, nil},
		{"empty blob", k, nil, aad},
		{"nonce only", k, blob[:12], aad},
		{"one short of tag", k, blob[:12+15], aad},
		{"truncated", k, blob[:len(blob)-1], aad},
		{"extended", k, append(bytes.Clone(blob), 0), aad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := tt.key.Unwrap(tt.blob, tt.aad)
			wantErr(t, "Unwrap", err, ErrUnwrap)
		})
	}
	t.Run("flipped bits", func(t *testing.T) {
		t.Parallel()
		for i := range len(blob) * 8 {
			b := bytes.Clone(blob)
			b[i/8] ^= 1 << (i % 8)
			_, err := k.Unwrap(b, aad)
			wantErr(t, "Unwrap flipped", err, ErrUnwrap)
		}
	})
	t.Run("destroyed", func(t *testing.T) {
		t.Parallel()
		d, _ := DeriveRootKey(bytes.Repeat([]byte{3}, 32))
		raw := d.b
		d.Destroy()
		d.Destroy()
		if !bytes.Equal(raw[:], make([]byte, 32)) {
			t.Fatalf("got non-zero key bytes after Destroy, want zero")
		}
		_, err := d.Wrap(pt, nil)
		wantErr(t, "Wrap after Destroy", err, ErrDestroyed)
		_, err = d.Unwrap(blob, nil)
		wantErr(t, "Unwrap after Destroy", err, ErrDestroyed)
		var zero RootKey
		_, err = zero.Wrap(pt, nil)
		wantErr(t, "Wrap on zero value", err, ErrDestroyed)
	})
}
