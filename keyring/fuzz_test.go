package keyring

import (
	"bytes"
	"errors"
	"testing"
)

func FuzzDecrypt(f *testing.F) {
	aes, _ := newTestKey(f, "fuzz", AES256GCM, 2, 0)
	xc, _ := newTestKey(f, "fuzz", XChaCha20Poly1305, 2, 0)
	siv, _ := newTestKey(f, "fuzz", AES256SIV, 2, 0)
	for _, k := range []*Key{aes, xc, siv} {
		ct, _ := k.Encrypt(nil, []byte("seed plaintext"), []byte("ctx"))
		f.Add(ct, []byte("ctx"))
		f.Add(ct[:len(ct)-4], []byte("ctx"))
	}
	f.Add("keyd:v1:AAAA", []byte(nil))
	f.Add("keyd:v3:"+FormatText(1, make([]byte, 40))[8:], []byte{})
	f.Add("keyd:v0:", []byte("x"))
	known := []error{ErrMalformed, ErrUnknownVersion, ErrVersionTooOld, ErrDecrypt}
	f.Fuzz(func(t *testing.T, s string, ctx []byte) {
		for _, k := range []*Key{aes, xc, siv} {
			pt, v, err := k.Decrypt(s, ctx)
			if err != nil {
				if pt != nil || v != 0 {
					t.Fatalf("got plaintext/version alongside error %v", err)
				}
				ok := false
				for _, e := range known {
					ok = ok || errors.Is(err, e)
				}
				if !ok {
					t.Fatalf("got unexpected error %v", err)
				}
				continue
			}
			// Only a genuine ciphertext (a seed) may decrypt.
			if !bytes.Equal(pt, []byte("seed plaintext")) {
				t.Fatalf("decrypted forged input to %q", pt)
			}
		}
	})
}

func FuzzOpenKeyring(f *testing.F) {
	root := testRoot(f, 9)
	aad := []byte("cluster")
	r, _ := NewKeyring(nil)
	r, _ = r.Rotate(nil)
	sealed, _ := r.Seal(root, aad)
	// wrap=false: data is the blob itself (authentication must reject it
	// unless it is the genuine seed). wrap=true: data is an authenticated
	// plaintext, exercising the parser behind the AEAD.
	f.Add(sealed, false)
	f.Add(sealed[:20], false)
	f.Add(serialise(1, 2, 2, 1), true)
	f.Add(serialise(1, 2, 1, 2), true)
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff}, true)
	f.Add([]byte{}, true)
	f.Fuzz(func(t *testing.T, data []byte, wrap bool) {
		blob := data
		if wrap {
			var err error
			if blob, err = root.Wrap(data, barrierAAD(aad)); err != nil {
				t.Fatal(err)
			}
		}
		got, err := OpenKeyring(root, blob, aad)
		if err != nil {
			want := ErrUnwrap
			if wrap {
				want = ErrMalformed
			}
			if !errors.Is(err, want) {
				t.Fatalf("got %v, want %v", err, want)
			}
			return
		}
		// Whatever opens must re-seal and re-open to the same keyring.
		again, err := got.Seal(root, aad)
		if err != nil {
			t.Fatal(err)
		}
		back, err := OpenKeyring(root, again, aad)
		if err != nil {
			t.Fatalf("re-open: %v", err)
		}
		if got.String() != back.String() {
			t.Fatalf("got %v after round trip, want %v", back, got)
		}
		for _, k := range got.keys {
			if !bytes.Equal(back.lookup(k.version).b[:], k.b[:]) {
				t.Fatalf("version %d key changed in round trip", k.version)
			}
		}
	})
}
