package keyring

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/keyd/keyd/fpe"
)

func TestSIVDeterministic(t *testing.T) {
	k, _ := newTestKey(t, "people.email", AES256SIV, 1, 0)
	pt, ctx := []byte("alice@example.com"), []byte("table=users")
	a, err := k.Encrypt(nil, pt, ctx)
	wantErr(t, "encrypt", err, nil)
	b, _ := k.Encrypt(nil, pt, ctx)
	if a != b {
		t.Fatalf("aes256-siv is not deterministic: %q vs %q", a, b)
	}
	if !strings.HasPrefix(a, "keyd:v1:") {
		t.Fatalf("got %q, want keyd:v1: text", a)
	}
	// EncryptTo agrees and stays within EncryptedLen.
	buf := make([]byte, 0, k.EncryptedLen(len(pt), len(ctx)))
	out, err := k.EncryptTo(buf, nil, pt, ctx)
	wantErr(t, "encrypt to", err, nil)
	if string(out) != a || len(out) > cap(buf) {
		t.Fatalf("EncryptTo gave %q (cap %d)", out, cap(buf))
	}
	got, v, err := k.Decrypt(a, ctx)
	wantErr(t, "decrypt", err, nil)
	if !bytes.Equal(got, pt) || v != 1 {
		t.Fatalf("decrypt gave %q v%d", got, v)
	}
	// Different plaintext: different ciphertext. Empty plaintext works.
	if c, _ := k.Encrypt(nil, []byte("bob@example.com"), ctx); c == a {
		t.Fatal("two plaintexts share a ciphertext")
	}
	e, err := k.Encrypt(nil, nil, ctx)
	wantErr(t, "encrypt empty", err, nil)
	if got, _, err := k.Decrypt(e, ctx); err != nil || len(got) != 0 {
		t.Fatalf("empty round trip: %q %v", got, err)
	}
	// nil and empty context are the same, like the AEAD types.
	n1, _ := k.Encrypt(nil, pt, nil)
	n2, _ := k.Encrypt(nil, pt, []byte{})
	if n1 != n2 {
		t.Fatal("nil and empty context differ")
	}
}

func TestSIVContextAndKeySeparation(t *testing.T) {
	k, _ := newTestKey(t, "people.email", AES256SIV, 1, 0)
	other, _ := newTestKey(t, "people.phone", AES256SIV, 1, 0)
	pt := []byte("alice@example.com")
	a, _ := k.Encrypt(nil, pt, []byte("tenant=1"))
	b, _ := k.Encrypt(nil, pt, []byte("tenant=2"))
	if a == b {
		t.Fatal("two contexts give one ciphertext")
	}
	_, _, err := k.Decrypt(a, []byte("tenant=2"))
	wantErr(t, "wrong context", err, ErrDecrypt)
	_, _, err = k.Decrypt(a, nil)
	wantErr(t, "missing context", err, ErrDecrypt)
	_, _, err = other.Decrypt(a, []byte("tenant=1"))
	wantErr(t, "another key", err, ErrDecrypt)
	// A GCM key refuses the SIV text (and vice versa).
	g, _ := newTestKey(t, "people.email", AES256GCM, 1, 0)
	_, _, err = g.Decrypt(a, []byte("tenant=1"))
	if err == nil {
		t.Fatal("a GCM key opened an SIV ciphertext")
	}
}

func TestSIVRotationAndTamper(t *testing.T) {
	k1, ms := newTestKey(t, "col", AES256SIV, 1, 0)
	pt, ctx := []byte("4111111111111111"), []byte("c")
	c1, _ := k1.Encrypt(nil, pt, ctx)
	m2, _ := GenerateMaterial(AES256SIV, nil)
	k2, err := NewKey("col", AES256SIV, []Version{{1, ms[0]}, {2, m2}}, 0)
	wantErr(t, "rotate", err, nil)
	c2, _ := k2.Encrypt(nil, pt, ctx)
	if !strings.HasPrefix(c2, "keyd:v2:") || c1 == c2 {
		t.Fatalf("after rotation got %q", c2)
	}
	if again, _ := k2.Encrypt(nil, pt, ctx); again != c2 {
		t.Fatal("v2 not deterministic")
	}
	if got, v, err := k2.Decrypt(c1, ctx); err != nil || v != 1 || !bytes.Equal(got, pt) {
		t.Fatalf("old version: %q v%d %v", got, v, err)
	}
	// Moving v1's payload under the v2 label fails (version is in the AAD).
	_, payload, _ := ParseText(c1)
	_, _, err = k2.Decrypt(FormatText(2, payload), ctx)
	wantErr(t, "relabelled version", err, ErrDecrypt)
	k3, _ := NewKey("col", AES256SIV, []Version{{1, ms[0]}, {2, m2}}, 2)
	_, _, err = k3.Decrypt(c1, ctx)
	wantErr(t, "retired version", err, ErrVersionTooOld)
	_, _, err = k2.Decrypt(FormatText(3, payload), ctx)
	wantErr(t, "unknown version", err, ErrUnknownVersion)
	// Every single bit flip and every truncation is refused.
	for i := range payload {
		for bit := 0; bit < 8; bit++ {
			p := bytes.Clone(payload)
			p[i] ^= 1 << bit
			if _, _, err := k2.Decrypt(FormatText(1, p), ctx); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("flip byte %d bit %d: %v", i, bit, err)
			}
		}
	}
	for n := 0; n < len(payload); n++ {
		if _, _, err := k2.Decrypt(FormatText(1, payload[:n]), ctx); err == nil {
			t.Fatalf("truncated to %d bytes accepted", n)
		}
	}
	_, _, err = k2.Decrypt(FormatText(1, payload[:15]), ctx)
	wantErr(t, "short", err, ErrMalformed)
}

func TestPseudonym(t *testing.T) {
	k1, ms := newTestKey(t, "pseudo", HMACSHA256, 1, 0)
	p1, v, err := k1.Pseudonym([]byte("alice"), []byte("analytics"), 0)
	wantErr(t, "pseudonym", err, nil)
	if v != 1 || len(p1) != 43 || strings.ContainsAny(p1, "+/=") {
		t.Fatalf("got %q v%d", p1, v)
	}
	if again, _, _ := k1.Pseudonym([]byte("alice"), []byte("analytics"), 0); again != p1 {
		t.Fatal("not stable")
	}
	if o, _, _ := k1.Pseudonym([]byte("alice"), []byte("test-data"), 0); o == p1 {
		t.Fatal("contexts not separated")
	}
	if o, _, _ := k1.Pseudonym([]byte("bob"), []byte("analytics"), 0); o == p1 {
		t.Fatal("values collide")
	}
	// The length prefixes keep ("ab","c") and ("a","bc") apart.
	x, _, _ := k1.Pseudonym([]byte("c"), []byte("ab"), 0)
	y, _, _ := k1.Pseudonym([]byte("bc"), []byte("a"), 0)
	if x == y {
		t.Fatal("ambiguous (context, value) encoding")
	}
	// Rotation: a pinned version gives the same pseudonym; the latest changes.
	m2, _ := GenerateMaterial(HMACSHA256, nil)
	k2, _ := NewKey("pseudo", HMACSHA256, []Version{{1, ms[0]}, {2, m2}}, 0)
	pinned, v, err := k2.Pseudonym([]byte("alice"), []byte("analytics"), 1)
	if err != nil || v != 1 || pinned != p1 {
		t.Fatalf("pinned v1 after rotation: %q v%d %v", pinned, v, err)
	}
	latest, v, _ := k2.Pseudonym([]byte("alice"), []byte("analytics"), 0)
	if v != 2 || latest == p1 {
		t.Fatalf("latest after rotation: %q v%d", latest, v)
	}
	_, _, err = k2.Pseudonym([]byte("alice"), nil, 7)
	wantErr(t, "unknown version", err, ErrUnknownVersion)
	k3, _ := NewKey("pseudo", HMACSHA256, []Version{{1, ms[0]}, {2, m2}}, 2)
	_, _, err = k3.Pseudonym([]byte("alice"), nil, 1)
	wantErr(t, "retired version", err, ErrVersionTooOld)
	_, _, err = k1.Pseudonym(make([]byte, MaxPseudonymInput+1), nil, 0)
	wantErr(t, "too long", err, ErrMalformed)
	g, _ := newTestKey(t, "g", AES256GCM, 1, 0)
	_, _, err = g.Pseudonym([]byte("a"), nil, 0)
	wantErr(t, "gcm key", err, ErrUnsupported)
}

// An hmac-capability holder cannot compute pseudonyms: HMAC over the
// pseudonym's own input encoding, under the key's material, is not the
// pseudonym.
func TestPseudonymDomainSeparatedFromHMAC(t *testing.T) {
	k, ms := newTestKey(t, "pseudo", HMACSHA256, 1, 0)
	value, ctx := []byte("alice"), []byte("x")
	var enc []byte
	enc = append(enc, pseudonymDomain...)
	enc = binary.BigEndian.AppendUint32(enc, uint32(len(ctx)))
	enc = append(enc, ctx...)
	enc = binary.BigEndian.AppendUint32(enc, uint32(len(value)))
	enc = append(enc, value...)
	p, _, _ := k.Pseudonym(value, ctx, 0)
	tag, _ := k.HMAC(enc)
	_, raw, _ := ParseText(tag)
	if b64url.EncodeToString(raw) == p {
		t.Fatal("the /hmac of the encoding equals the pseudonym")
	}
	// And it is the documented construction (so it can be re-derived).
	sub := hmac.New(sha256.New, []byte(pseudonymSubkeyLabel))
	sub.Write(ms[0].bytes())
	h := hmac.New(sha256.New, sub.Sum(nil))
	h.Write(enc)
	if b64url.EncodeToString(h.Sum(nil)) != p {
		t.Fatal("pseudonym does not follow the documented construction")
	}
}

func TestFPEKey(t *testing.T) {
	k1, ms := newTestKey(t, "cards", FF1AES256, 1, 0)
	const pan = "4111 1111 1111 1111"
	c1, v, err := k1.FPEEncrypt(fpe.Card, pan, nil, 0)
	if err != nil || v != 1 {
		t.Fatalf("%v v%d", err, v)
	}
	if len(c1) != len(pan) || c1 == pan || !fpe.LuhnValid(c1) || !strings.HasSuffix(c1, "1111") {
		t.Fatalf("got %q", c1)
	}
	if o, _, _ := k1.FPEEncrypt(fpe.Card, pan, []byte("tenant-2"), 0); o == c1 {
		t.Fatal("tweak ignored")
	}
	if o, _, _ := k1.FPEEncrypt(fpe.Digits, "4111111111111111", nil, 0); o == strings.ReplaceAll(c1, " ", "") {
		t.Fatal("formats not separated")
	}
	m2, _ := GenerateMaterial(FF1AES256, nil)
	k2, _ := NewKey("cards", FF1AES256, []Version{{1, ms[0]}, {2, m2}}, 0)
	c2, v, _ := k2.FPEEncrypt(fpe.Card, pan, nil, 0)
	if v != 2 || c2 == c1 {
		t.Fatalf("after rotation: %q v%d", c2, v)
	}
	for _, c := range []struct {
		ct string
		v  uint32
	}{{c1, 1}, {c2, 2}, {c2, 0}} {
		got, gv, err := k2.FPEDecrypt(fpe.Card, c.ct, nil, c.v)
		if err != nil || got != pan || (c.v != 0 && gv != c.v) {
			t.Fatalf("decrypt %q v%d: %q v%d %v", c.ct, c.v, got, gv, err)
		}
	}
	// The wrong version gives a wrong value, not the plaintext.
	if got, _, _ := k2.FPEDecrypt(fpe.Card, c1, nil, 2); got == pan {
		t.Fatal("v2 decrypted v1's output")
	}
	_, _, err = k2.FPEDecrypt(fpe.Card, c1, nil, 9)
	wantErr(t, "unknown version", err, ErrUnknownVersion)
	_, _, err = k2.FPEEncrypt(fpe.Digits, "123", nil, 0)
	wantErr(t, "short", err, fpe.ErrDomain)
	g, _ := newTestKey(t, "g", AES256GCM, 1, 0)
	_, _, err = g.FPEEncrypt(fpe.Digits, "123456", nil, 0)
	wantErr(t, "gcm key", err, ErrUnsupported)
	_, err = k1.Encrypt(nil, []byte("x"), nil)
	wantErr(t, "ff1 key encrypt", err, ErrUnsupported)
}
