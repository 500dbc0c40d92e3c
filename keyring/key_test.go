package keyring

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestNewKey(t *testing.T) {
	t.Parallel()
	m := func(n int) *KeyMaterial { return NewKeyMaterial(bytes.Repeat([]byte{3}, n)) }
	tests := []struct {
		name     string
		keyName  string
		typ      KeyType
		versions []Version
		min      uint32
		wantErr  error
		latest   uint32
	}{
		{"one version", "k", AES256GCM, []Version{{1, m(32)}}, 0, nil, 1},
		{"unordered", "k", XChaCha20Poly1305, []Version{{3, m(32)}, {1, m(32)}, {2, m(32)}}, 2, nil, 3},
		{"sparse", "k", HMACSHA256, []Version{{7, m(32)}, {2, m(32)}}, 7, nil, 7},
		{"unknown type", "k", "aes128", []Version{{1, m(32)}}, 0, ErrUnknownKeyType, 0},
		{"empty name", "", AES256GCM, []Version{{1, m(32)}}, 0, ErrInvalidKey, 0},
		{"NUL in name", "a\x00b", AES256GCM, []Version{{1, m(32)}}, 0, ErrInvalidKey, 0},
		{"no versions", "k", AES256GCM, nil, 0, ErrInvalidKey, 0},
		{"version zero", "k", AES256GCM, []Version{{0, m(32)}}, 0, ErrInvalidKey, 0},
		{"duplicate", "k", AES256GCM, []Version{{1, m(32)}, {1, m(32)}}, 0, ErrInvalidKey, 0},
		{"short material", "k", AES256GCM, []Version{{1, m(16)}}, 0, ErrInvalidKey, 0},
		{"long material", "k", Ed25519, []Version{{1, m(64)}}, 0, ErrInvalidKey, 0},
		{"nil material", "k", HMACSHA256, []Version{{1, nil}}, 0, ErrInvalidKey, 0},
		{"bad scalar", "k", ECDSAP256, []Version{{1, NewKeyMaterial(make([]byte, 32))}}, 0, ErrInvalidKey, 0},
		{"min above latest", "k", AES256GCM, []Version{{1, m(32)}, {2, m(32)}}, 3, ErrInvalidKey, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k, err := NewKey(tt.keyName, tt.typ, tt.versions, tt.min)
			wantErr(t, "NewKey", err, tt.wantErr)
			if err != nil {
				return
			}
			if k.Latest() != tt.latest || k.MinDecryptionVersion() != tt.min || k.Name() != tt.keyName || k.Type() != tt.typ {
				t.Fatalf("got %v, want latest %d min %d", k, tt.latest, tt.min)
			}
			if !slices.IsSorted(k.Versions()) || len(k.Versions()) != len(tt.versions) {
				t.Fatalf("got Versions %v, want %d ascending", k.Versions(), len(tt.versions))
			}
		})
	}
}

// op is one key operation, run end to end (produce then consume).
type op struct {
	name    string
	allowed func(KeyType) bool
	run     func(k *Key) error
}

var ops = []op{
	{"encrypt-decrypt", KeyType.CanEncrypt, func(k *Key) error {
		ct, err := k.Encrypt(nil, []byte("secret"), []byte("ctx"))
		if err != nil {
			return err
		}
		pt, v, err := k.Decrypt(ct, []byte("ctx"))
		if err == nil && (string(pt) != "secret" || v != k.Latest()) {
			return errors.New("round trip mismatch")
		}
		return err
	}},
	{"encryptto", KeyType.CanEncrypt, func(k *Key) error {
		_, err := k.EncryptTo(nil, nil, []byte("x"), nil)
		return err
	}},
	{"decrypt", KeyType.CanEncrypt, func(k *Key) error {
		_, _, err := k.Decrypt("keyd:v1:AAAA", nil)
		if errors.Is(err, ErrMalformed) {
			return nil // reached the parser: the type was accepted
		}
		return err
	}},
	{"sign-verify", KeyType.CanSign, func(k *Key) error {
		sig, err := k.Sign([]byte("msg"))
		if err != nil {
			return err
		}
		return k.Verify([]byte("msg"), sig)
	}},
	{"verify", KeyType.CanSign, func(k *Key) error {
		err := k.Verify([]byte("msg"), "bad")
		if errors.Is(err, ErrMalformed) {
			return nil
		}
		return err
	}},
	{"public-key", KeyType.CanSign, func(k *Key) error {
		_, err := k.PublicKey(0)
		return err
	}},
	{"hmac-verify", KeyType.CanHMAC, func(k *Key) error {
		mac, err := k.HMAC([]byte("msg"))
		if err != nil {
			return err
		}
		return k.VerifyHMAC([]byte("msg"), mac)
	}},
	{"verify-hmac", KeyType.CanHMAC, func(k *Key) error {
		err := k.VerifyHMAC([]byte("msg"), "bad")
		if errors.Is(err, ErrMalformed) {
			return nil
		}
		return err
	}},
}

func TestKeyOperations(t *testing.T) {
	t.Parallel()
	for _, typ := range allTypes {
		k, _ := newTestKey(t, "k-"+string(typ), typ, 2, 0)
		for _, o := range ops {
			t.Run(string(typ)+"/"+o.name, func(t *testing.T) {
				t.Parallel()
				err := o.run(k)
				if o.allowed(typ) {
					wantErr(t, o.name, err, nil)
				} else {
					wantErr(t, o.name, err, ErrUnsupported)
				}
			})
		}
	}
}

func TestEncryptFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		typ   KeyType
		nonce int
	}{{AES256GCM, 12}, {XChaCha20Poly1305, 24}}
	for _, tt := range tests {
		t.Run(string(tt.typ), func(t *testing.T) {
			t.Parallel()
			k, _ := newTestKey(t, "fmt", tt.typ, 3, 0)
			for _, n := range []int{0, 1, 64, 1000} {
				pt := bytes.Repeat([]byte{0xaa}, n)
				ct, err := k.Encrypt(nil, pt, nil)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(ct, "keyd:v3:") {
					t.Fatalf("got %q, want prefix keyd:v3:", ct)
				}
				v, payload, err := ParseText(ct)
				if err != nil || v != 3 {
					t.Fatalf("ParseText: got v%d, %v", v, err)
				}
				if got, want := len(payload), tt.nonce+n+16; got != want {
					t.Fatalf("got payload length %d, want nonce+pt+tag %d", got, want)
				}
				got, gv, err := k.Decrypt(ct, nil)
				if err != nil || gv != 3 || !bytes.Equal(got, pt) {
					t.Fatalf("Decrypt: got %d bytes v%d %v, want %d bytes v3", len(got), gv, err, n)
				}
				if cap(got) != len(got) {
					t.Fatalf("got plaintext cap %d, want len %d (no exposed scratch)", cap(got), len(got))
				}
			}
			// nil and empty context are the same context.
			ct, _ := k.Encrypt(nil, []byte("x"), nil)
			if _, _, err := k.Decrypt(ct, []byte{}); err != nil {
				t.Fatalf("empty vs nil context: got %v, want nil", err)
			}
			// Deterministic rand gives deterministic nonces; distinct by default.
			a, _ := k.Encrypt(nil, []byte("x"), nil)
			b, _ := k.Encrypt(nil, []byte("x"), nil)
			if a == b {
				t.Fatalf("got identical ciphertexts, want fresh nonces")
			}
			_, err := k.Encrypt(bytes.NewReader(nil), []byte("x"), nil)
			if err == nil {
				t.Fatalf("empty rand: got nil error, want read error")
			}
		})
	}
}

func TestEncryptTo(t *testing.T) {
	t.Parallel()
	for _, typ := range []KeyType{AES256GCM, XChaCha20Poly1305} {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			k, _ := newTestKey(t, "to", typ, 1, 0)
			pt, ctx := make([]byte, 64), []byte("tenant=42")
			dst := make([]byte, 0, 3+k.EncryptedLen(len(pt), len(ctx)))
			dst = append(dst, "ct="...)
			out, err := k.EncryptTo(dst, nil, pt, ctx)
			if err != nil {
				t.Fatal(err)
			}
			if &out[0] != &dst[0] {
				t.Fatalf("EncryptTo reallocated although capacity was sufficient")
			}
			if !strings.HasPrefix(string(out), "ct=keyd:v1:") {
				t.Fatalf("got %q, want dst prefix kept", out)
			}
			got, _, err := k.Decrypt(string(out[3:]), ctx)
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("Decrypt(EncryptTo): got %v", err)
			}
		})
	}
}

// TestAllocs pins the hot path's allocation counts (not parallel:
// AllocsPerRun requires it). Under -race the runtime allocates extra.
func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	pt, ctx := make([]byte, 64), []byte("tenant=42")
	tests := []struct {
		typ                         KeyType
		encryptTo, encrypt, decrypt float64
	}{
		{AES256GCM, 0, 2, 1},
		{XChaCha20Poly1305, 0, 2, 1},
	}
	for _, tt := range tests {
		t.Run(string(tt.typ), func(t *testing.T) {
			k, _ := newTestKey(t, "allocs", tt.typ, 1, 0)
			buf := make([]byte, 0, k.EncryptedLen(len(pt), len(ctx)))
			ct, _ := k.Encrypt(nil, pt, ctx)
			for _, c := range []struct {
				name string
				want float64
				f    func()
			}{
				{"EncryptTo", tt.encryptTo, func() { _, _ = k.EncryptTo(buf, nil, pt, ctx) }},
				{"Encrypt", tt.encrypt, func() { _, _ = k.Encrypt(nil, pt, ctx) }},
				{"Decrypt", tt.decrypt, func() { _, _, _ = k.Decrypt(ct, ctx) }},
			} {
				if got := testing.AllocsPerRun(100, c.f); got > c.want {
					t.Errorf("%s: got %.0f allocs, want <= %.0f", c.name, got, c.want)
				}
			}
		})
	}
}

func TestDecryptErrors(t *testing.T) {
	t.Parallel()
	for _, typ := range []KeyType{AES256GCM, XChaCha20Poly1305} {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			k, mats := newTestKey(t, "orders", typ, 3, 2)
			ctx := []byte("row=7")
			ct, err := k.Encrypt(nil, []byte("hello"), ctx)
			if err != nil {
				t.Fatal(err)
			}
			_, payload, _ := ParseText(ct)

			// The same material under another name must not decrypt it.
			renamed, err := NewKey("orders2", typ, []Version{{3, mats[2]}}, 0)
			if err != nil {
				t.Fatal(err)
			}
			// v3's material held as v4 must not decrypt a v3 text relabelled v4.
			relabel, err := NewKey("orders", typ, []Version{{3, mats[2]}, {4, mats[2]}}, 0)
			if err != nil {
				t.Fatal(err)
			}
			otherKey, _ := newTestKey(t, "orders", typ, 3, 0)
			// A v1 text written before the minimum was raised.
			oldKey, err := NewKey("orders", typ, []Version{{1, mats[0]}}, 0)
			if err != nil {
				t.Fatal(err)
			}
			v1ct, _ := oldKey.Encrypt(nil, []byte("old"), ctx)

			tests := []struct {
				name    string
				key     *Key
				ct      string
				ctx     []byte
				wantErr error
			}{
				{"ok", k, ct, ctx, nil},
				{"wrong context", k, ct, []byte("row=8"), ErrDecrypt},
				{"missing context", k, ct, nil, ErrDecrypt},
				{"extra context", k, ct, append(bytes.Clone(ctx), 0), ErrDecrypt},
				{"other name same material", renamed, ct, ctx, ErrDecrypt},
				{"relabelled version", relabel, FormatText(4, payload), ctx, ErrDecrypt},
				{"other key same name", otherKey, ct, ctx, ErrDecrypt},
				{"below min", k, v1ct, ctx, ErrVersionTooOld},
				{"unknown version", k, FormatText(9, payload), ctx, ErrUnknownVersion},
				{"malformed", k, "keyd:v3:!!!!", ctx, ErrMalformed},
				{"no prefix", k, ct[5:], ctx, ErrMalformed},
				{"empty", k, "", ctx, ErrMalformed},
				{"bad base64 beats unknown version", k, "keyd:v9:!!!!", ctx, ErrMalformed},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					pt, v, err := tt.key.Decrypt(tt.ct, tt.ctx)
					wantErr(t, "Decrypt", err, tt.wantErr)
					if err != nil && (pt != nil || v != 0) {
						t.Fatalf("got plaintext %q v%d alongside error, want nil, 0", pt, v)
					}
				})
			}
		})
	}
}

func TestDecryptTamper(t *testing.T) {
	t.Parallel()
	for _, typ := range []KeyType{AES256GCM, XChaCha20Poly1305} {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			k, _ := newTestKey(t, "tamper", typ, 1, 0)
			ctx := []byte("c")
			ct, _ := k.Encrypt(nil, []byte("sixty-four bytes of plaintext, more or less, for the tamper test"), ctx)
			_, payload, _ := ParseText(ct)
			ns := nonceSize(typ)

			// Every bit of the payload (nonce, ciphertext, tag).
			for i := range len(payload) * 8 {
				p := bytes.Clone(payload)
				p[i/8] ^= 1 << (i % 8)
				_, _, err := k.Decrypt(FormatText(1, p), ctx)
				wantErr(t, "flipped payload bit", err, ErrDecrypt)
			}
			// Every bit of the text: must fail, whichever way.
			for i := range len(ct) * 8 {
				b := []byte(ct)
				b[i/8] ^= 1 << (i % 8)
				if pt, _, err := k.Decrypt(string(b), ctx); err == nil {
					t.Fatalf("flipped text bit %d: got plaintext %q, want error", i, pt)
				}
			}
			// Payload truncated to every length.
			for n := range len(payload) {
				_, _, err := k.Decrypt(FormatText(1, payload[:n]), ctx)
				want := ErrDecrypt
				if n < ns+16 {
					want = ErrMalformed
				}
				if n == 0 {
					want = ErrMalformed // empty payload
				}
				wantErr(t, "truncated payload", err, want)
			}
			// Text truncated to every length.
			for n := range len(ct) {
				if _, _, err := k.Decrypt(ct[:n], ctx); err == nil {
					t.Fatalf("text truncated to %d: got nil error", n)
				}
			}
		})
	}
}

func TestRotateAndMinVersion(t *testing.T) {
	t.Parallel()
	for _, typ := range allTypes {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			var vs []Version
			var texts []string // texts[i] produced by version i+1
			var msg = []byte("payload")
			var k *Key
			for v := uint32(1); v <= 4; v++ {
				m, _ := GenerateMaterial(typ, nil)
				vs = append(vs, Version{v, m})
				var err error
				if k, err = NewKey("rot", typ, vs, 0); err != nil {
					t.Fatal(err)
				}
				texts = append(texts, produce(t, k, msg))
				if !strings.HasPrefix(texts[v-1], FormatText(v, nil)) {
					t.Fatalf("got %q, want produced by latest version %d", texts[v-1], v)
				}
			}
			for i, s := range texts {
				if err := consume(k, msg, s); err != nil {
					t.Fatalf("after rotation, version %d: got %v, want nil", i+1, err)
				}
			}
			raised, err := NewKey("rot", typ, vs, 3)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range texts {
				want := error(nil)
				if i+1 < 3 {
					want = ErrVersionTooOld
				}
				wantErr(t, "after raising min", consume(raised, msg, s), want)
			}
			// Dropping old versions: unknown, not too old.
			pruned, err := NewKey("rot", typ, vs[2:], 0)
			if err != nil {
				t.Fatal(err)
			}
			wantErr(t, "pruned version", consume(pruned, msg, texts[0]), ErrUnknownVersion)
		})
	}
}

// produce runs the producing operation of k's type.
func produce(t *testing.T, k *Key, msg []byte) string {
	t.Helper()
	var s string
	var err error
	switch {
	case k.Type().CanEncrypt():
		s, err = k.Encrypt(nil, msg, nil)
	case k.Type().CanSign():
		s, err = k.Sign(msg)
	default:
		s, err = k.HMAC(msg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// consume runs the checking operation of k's type.
func consume(k *Key, msg []byte, s string) error {
	switch {
	case k.Type().CanEncrypt():
		pt, _, err := k.Decrypt(s, nil)
		if err == nil && !bytes.Equal(pt, msg) {
			return errors.New("plaintext mismatch")
		}
		return err
	case k.Type().CanSign():
		return k.Verify(msg, s)
	default:
		return k.VerifyHMAC(msg, s)
	}
}

func TestSignVerify(t *testing.T) {
	t.Parallel()
	for _, typ := range []KeyType{Ed25519, ECDSAP256} {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			k, _ := newTestKey(t, "sig", typ, 2, 0)
			other, _ := newTestKey(t, "sig", typ, 2, 0)
			msg := []byte("release v1.2.3")
			sig, err := k.Sign(msg)
			if err != nil {
				t.Fatal(err)
			}
			v, raw, _ := ParseText(sig)
			// Independent check with the standard library and the public key.
			der, err := k.PublicKey(v)
			if err != nil {
				t.Fatal(err)
			}
			pub, _ := x509.ParsePKIXPublicKey(der)
			var stdOK bool
			switch p := pub.(type) {
			case ed25519.PublicKey:
				stdOK = ed25519.Verify(p, msg, raw)
			case *ecdsa.PublicKey:
				h := sha256.Sum256(msg)
				stdOK = ecdsa.VerifyASN1(p, h[:], raw)
			}
			if !stdOK {
				t.Fatalf("standard library rejected the signature")
			}
			flipped := bytes.Clone(raw)
			flipped[len(flipped)/2] ^= 1
			tests := []struct {
				name    string
				key     *Key
				msg     []byte
				sig     string
				wantErr error
			}{
				{"ok", k, msg, sig, nil},
				{"wrong message", k, []byte("release v1.2.4"), sig, ErrBadSignature},
				{"other key", other, msg, sig, ErrBadSignature},
				{"flipped", k, msg, FormatText(v, flipped), ErrBadSignature},
				{"relabelled to v1", k, msg, FormatText(1, raw), ErrBadSignature},
				{"unknown version", k, msg, FormatText(3, raw), ErrUnknownVersion},
				{"malformed", k, msg, "keyd:v2", ErrMalformed},
			}
			if typ == Ed25519 {
				tests = append(tests, struct {
					name    string
					key     *Key
					msg     []byte
					sig     string
					wantErr error
				}{"short", k, msg, FormatText(v, raw[:63]), ErrMalformed})
			} else {
				tests = append(tests, struct {
					name    string
					key     *Key
					msg     []byte
					sig     string
					wantErr error
				}{"short", k, msg, FormatText(v, raw[:10]), ErrBadSignature})
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					wantErr(t, "Verify", tt.key.Verify(tt.msg, tt.sig), tt.wantErr)
				})
			}
			_, err = k.PublicKey(7)
			wantErr(t, "PublicKey unknown version", err, ErrUnknownVersion)
		})
	}
}

func TestHMAC(t *testing.T) {
	t.Parallel()
	k, mats := newTestKey(t, "mac", HMACSHA256, 2, 0)
	msg := []byte("webhook body")
	mac, err := k.HMAC(msg)
	if err != nil {
		t.Fatal(err)
	}
	ref := hmac.New(sha256.New, mats[1].bytes())
	ref.Write(msg)
	if want := FormatText(2, ref.Sum(nil)); mac != want {
		t.Fatalf("got %q, want %q", mac, want)
	}
	_, tag, _ := ParseText(mac)
	flipped := bytes.Clone(tag)
	flipped[0] ^= 0x80
	other, _ := newTestKey(t, "mac", HMACSHA256, 2, 0)
	tests := []struct {
		name    string
		key     *Key
		msg     []byte
		mac     string
		wantErr error
	}{
		{"ok", k, msg, mac, nil},
		{"wrong message", k, []byte("webhook body!"), mac, ErrBadSignature},
		{"flipped", k, msg, FormatText(2, flipped), ErrBadSignature},
		{"other key", other, msg, mac, ErrBadSignature},
		{"relabelled", k, msg, FormatText(1, tag), ErrBadSignature},
		{"short", k, msg, FormatText(2, tag[:31]), ErrMalformed},
		{"unknown version", k, msg, FormatText(5, tag), ErrUnknownVersion},
		{"malformed", k, msg, "keyd:v2:%%", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantErr(t, "VerifyHMAC", tt.key.VerifyHMAC(tt.msg, tt.mac), tt.wantErr)
		})
	}
}

func TestKeyOwnershipAndDestroy(t *testing.T) {
	t.Parallel()
	for _, typ := range allTypes {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			m, _ := GenerateMaterial(typ, nil)
			k, err := NewKey("own", typ, []Version{{1, m}}, 0)
			if err != nil {
				t.Fatal(err)
			}
			// NewKey copied the material: the caller may destroy its own.
			m.Destroy()
			msg := []byte("m")
			s := produce(t, k, msg)
			if err := consume(k, msg, s); err != nil {
				t.Fatalf("after destroying caller's material: got %v, want nil", err)
			}
			held := k.versions[0].material.b
			k.Destroy()
			k.Destroy()
			if !bytes.Equal(held, make([]byte, len(held))) {
				t.Fatalf("got non-zero material after Destroy")
			}
			if k.Latest() != 0 {
				t.Fatalf("got Latest %d after Destroy, want 0", k.Latest())
			}
			var err2 error
			switch {
			case typ.CanEncrypt():
				_, err2 = k.Encrypt(nil, msg, nil)
			case typ.CanSign():
				_, err2 = k.Sign(msg)
			default:
				_, err2 = k.HMAC(msg)
			}
			wantErr(t, "after Destroy", err2, ErrDestroyed)
		})
	}
}

func TestKeyConcurrent(t *testing.T) {
	t.Parallel()
	for _, typ := range allTypes {
		k, _ := newTestKey(t, "conc", typ, 2, 0)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				for range 50 {
					msg := []byte("concurrent")
					var s string
					var err error
					switch {
					case typ.CanEncrypt():
						s, err = k.Encrypt(nil, msg, []byte("c"))
						if err == nil {
							_, _, err = k.Decrypt(s, []byte("c"))
						}
					case typ.CanSign():
						if s, err = k.Sign(msg); err == nil {
							err = k.Verify(msg, s)
						}
					default:
						if s, err = k.HMAC(msg); err == nil {
							err = k.VerifyHMAC(msg, s)
						}
					}
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("%s: concurrent use: got %v, want nil", typ, err)
		}
	}
}
