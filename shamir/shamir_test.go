package shamir

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"go.dedis.ch/kyber/v3"
)

// deal splits a fresh random secret t-of-n and fails the test on error.
func deal(tb testing.TB, t, n int) (*Secret, []Share, *Commitments) {
	tb.Helper()
	s, err := NewSecret(rand.Reader)
	if err != nil {
		tb.Fatalf("NewSecret: %v", err)
	}
	shares, c, err := Split(s, t, n, rand.Reader)
	if err != nil {
		tb.Fatalf("Split(%d, %d): %v", t, n, err)
	}
	return s, shares, c
}

// subsets returns every k-element subset of idx, in lexicographic order.
func subsets(idx []int, k int) [][]int {
	if k == 0 {
		return [][]int{nil}
	}
	if len(idx) < k {
		return nil
	}
	var out [][]int
	for _, rest := range subsets(idx[1:], k-1) {
		out = append(out, append([]int{idx[0]}, rest...))
	}
	return append(out, subsets(idx[1:], k)...)
}

func pick(shares []Share, idx []int) []Share {
	out := make([]Share, 0, len(idx))
	for _, i := range idx {
		out = append(out, shares[i])
	}
	return out
}

func randomValue(tb testing.TB) []byte {
	tb.Helper()
	v, err := randomScalar(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := v.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestCombineEverySubset(t *testing.T) {
	t.Parallel()
	s, shares, c := deal(t, 3, 5)
	if got, want := len(shares), 5; got != want {
		t.Fatalf("got %d shares, want %d", got, want)
	}
	for i, sh := range shares {
		if sh.Index != i+1 {
			t.Fatalf("share %d: got index %d, want %d", i, sh.Index, i+1)
		}
	}
	all := []int{0, 1, 2, 3, 4}
	var sets [][]int
	for k := 3; k <= 5; k++ {
		sets = append(sets, subsets(all, k)...)
	}
	if got, want := len(sets), 10+5+1; got != want {
		t.Fatalf("got %d subsets, want %d", got, want)
	}
	for _, set := range sets {
		t.Run(fmt.Sprint(set), func(t *testing.T) {
			t.Parallel()
			in := pick(shares, set)
			// Reverse to show order does not matter.
			for i, j := 0, len(in)-1; i < j; i, j = i+1, j-1 {
				in[i], in[j] = in[j], in[i]
			}
			got, err := Combine(c, in)
			if err != nil {
				t.Fatalf("Combine: got error %v, want nil", err)
			}
			if !got.Equal(s) {
				t.Fatalf("Combine: got a different secret, want the dealt one")
			}
		})
	}
}

func TestCombineErrors(t *testing.T) {
	t.Parallel()
	s, shares, c := deal(t, 3, 5)
	_, otherShares, _ := deal(t, 3, 5)
	// A second dealing of the same secret: its shares are valid points of a
	// different polynomial, so they must not verify against c.
	sameSecretShares, _, err := Split(s, 3, 5, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	forged := Share{Index: 2, Value: randomValue(t)}
	nonCanonical := Share{Index: 2, Value: bytes.Repeat([]byte{0xff}, 32)}

	tests := []struct {
		name      string
		c         *Commitments
		shares    []Share
		wantErr   error
		wantIndex int // 0: no *ShareError expected
	}{
		{"none", c, nil, ErrNotEnoughShares, 0},
		{"t-1 shares", c, pick(shares, []int{0, 4}), ErrNotEnoughShares, 0},
		{"forged share", c, []Share{shares[0], forged, shares[2]}, ErrShareInvalid, 2},
		{"share from another dealing", c, []Share{shares[0], otherShares[3], shares[2]}, ErrShareInvalid, 4},
		{"share from another dealing of the same secret", c, []Share{sameSecretShares[0], shares[1], shares[2]}, ErrShareInvalid, 1},
		{"duplicate index, same value", c, []Share{shares[0], shares[1], shares[1]}, ErrShareDuplicate, 2},
		{"duplicate index, other value", c, []Share{shares[0], shares[1], shares[2], {Index: 3, Value: randomValue(t)}}, ErrShareDuplicate, 3},
		{"index 0", c, []Share{{Index: 0, Value: shares[0].Value}, shares[1], shares[2]}, ErrShareIndex, 0},
		{"index above n", c, []Share{shares[0], shares[1], {Index: 6, Value: shares[2].Value}}, ErrShareIndex, 6},
		{"index 256", c, []Share{shares[0], shares[1], {Index: 256, Value: shares[2].Value}}, ErrShareIndex, 256},
		{"negative index", c, []Share{shares[0], shares[1], {Index: -1, Value: shares[2].Value}}, ErrShareIndex, -1},
		{"non-canonical value", c, []Share{shares[0], nonCanonical, shares[2]}, ErrShareEncoding, 2},
		{"short value", c, []Share{shares[0], {Index: 2, Value: shares[1].Value[:31]}, shares[2]}, ErrShareEncoding, 2},
		{"nil commitments", nil, shares, ErrParams, 0},
		{"zero commitments", &Commitments{}, shares, ErrParams, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Combine(tt.c, tt.shares)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Combine: got error %v, want %v", err, tt.wantErr)
			}
			if got != nil {
				t.Fatalf("Combine: got a secret with error %v, want nil", err)
			}
			var se *ShareError
			if tt.wantIndex != 0 || tt.wantErr == ErrShareIndex {
				if !errors.As(err, &se) {
					t.Fatalf("Combine: got %T (%v), want *ShareError", err, err)
				}
				if se.Index != tt.wantIndex {
					t.Fatalf("ShareError.Index: got %d, want %d", se.Index, tt.wantIndex)
				}
				if want := fmt.Sprintf("shamir: share %d: ", tt.wantIndex); !strings.HasPrefix(err.Error(), want) {
					t.Fatalf("error text: got %q, want prefix %q", err.Error(), want)
				}
			}
		})
	}
}

// TestCombineReportsEveryBadShare checks that two bad shares are both named.
func TestCombineReportsEveryBadShare(t *testing.T) {
	t.Parallel()
	_, shares, c := deal(t, 2, 4)
	in := []Share{shares[0], {Index: 2, Value: randomValue(t)}, {Index: 4, Value: randomValue(t)}}
	_, err := Combine(c, in)
	if !errors.Is(err, ErrShareInvalid) {
		t.Fatalf("got %v, want %v", err, ErrShareInvalid)
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("got %T, want a joined error", err)
	}
	var got []int
	for _, e := range joined.Unwrap() {
		var se *ShareError
		if !errors.As(e, &se) {
			t.Fatalf("got %T, want *ShareError", e)
		}
		got = append(got, se.Index)
	}
	if fmt.Sprint(got) != "[2 4]" {
		t.Fatalf("named indices: got %v, want [2 4]", got)
	}
}

func TestShareErrorText(t *testing.T) {
	t.Parallel()
	err := error(&ShareError{Index: 3, Err: ErrShareInvalid})
	if got, want := err.Error(), "shamir: share 3: share invalid"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if !errors.Is(err, ErrShareInvalid) {
		t.Fatalf("errors.Is(%v, ErrShareInvalid): got false, want true", err)
	}
	wrapped := fmt.Errorf("unseal: %w", err)
	var se *ShareError
	if !errors.As(wrapped, &se) || se.Index != 3 {
		t.Fatalf("errors.As through wrapping: got %v, want index 3", se)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	_, shares, c := deal(t, 3, 5)
	for _, sh := range shares {
		if err := c.Verify(sh); err != nil {
			t.Fatalf("Verify(share %d): got %v, want nil", sh.Index, err)
		}
	}
	// Flip one bit of a valid value (keeping it canonical: low bit).
	bad := Share{Index: 1, Value: bytes.Clone(shares[0].Value)}
	bad.Value[0] ^= 1
	if err := c.Verify(bad); !errors.Is(err, ErrShareInvalid) {
		t.Fatalf("Verify(bit flip): got %v, want %v", err, ErrShareInvalid)
	}
	// The right value under the wrong index.
	moved := Share{Index: 2, Value: shares[0].Value}
	if err := c.Verify(moved); !errors.Is(err, ErrShareInvalid) {
		t.Fatalf("Verify(wrong index): got %v, want %v", err, ErrShareInvalid)
	}
	if err := (&Commitments{}).Verify(shares[0]); !errors.Is(err, ErrParams) {
		t.Fatalf("zero Commitments: got %v, want %v", err, ErrParams)
	}
	// Verify must not alter the share it checks.
	before := bytes.Clone(shares[0].Value)
	_ = c.Verify(shares[0])
	if !bytes.Equal(before, shares[0].Value) {
		t.Fatalf("Verify modified the share value")
	}
}

func TestSplitParams(t *testing.T) {
	t.Parallel()
	s, err := NewSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	destroyed, err := NewSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	destroyed.Destroy()
	tests := []struct {
		name    string
		s       *Secret
		t, n    int
		rand    io.Reader
		wantErr error
	}{
		{"t zero", s, 0, 5, rand.Reader, ErrParams},
		{"t negative", s, -1, 5, rand.Reader, ErrParams},
		{"n below t", s, 4, 3, rand.Reader, ErrParams},
		{"n above 255", s, 3, 256, rand.Reader, ErrParams},
		{"nil secret", nil, 2, 3, rand.Reader, ErrParams},
		{"zero-value secret", &Secret{}, 2, 3, rand.Reader, ErrParams},
		{"destroyed secret", destroyed, 2, 3, rand.Reader, ErrParams},
		{"nil rand", s, 2, 3, nil, ErrParams},
		{"failing rand", s, 2, 3, failingReader{}, errRead},
		{"zero rand", s, 2, 3, zeroReader{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			shares, c, err := Split(tt.s, tt.t, tt.n, tt.rand)
			if err == nil {
				t.Fatalf("Split: got nil error, want one")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Split: got %v, want %v", err, tt.wantErr)
			}
			if shares != nil || c != nil {
				t.Fatalf("Split: got results with error, want nil")
			}
		})
	}
	// t = 1 needs no randomness, so even a failing reader is fine.
	shares, c, err := Split(s, 1, 3, failingReader{})
	if err != nil {
		t.Fatalf("Split(1, 3): got %v, want nil", err)
	}
	for _, sh := range shares {
		got, err := Combine(c, []Share{sh})
		if err != nil || !got.Equal(s) {
			t.Fatalf("Combine(1-of-3, share %d): got error %v, want the secret", sh.Index, err)
		}
	}
}

var errRead = errors.New("test: read failed")

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errRead }

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestSplitLargeN(t *testing.T) {
	t.Parallel()
	s, shares, c := deal(t, 2, MaxShares)
	if got, want := c.Shares(), MaxShares; got != want {
		t.Fatalf("Shares: got %d, want %d", got, want)
	}
	got, err := Combine(c, []Share{shares[254], shares[253]})
	if err != nil {
		t.Fatalf("Combine(254, 255): got %v, want nil", err)
	}
	if !got.Equal(s) {
		t.Fatal("Combine(254, 255): got a different secret")
	}
}

func TestSplitDoesNotModifySecret(t *testing.T) {
	t.Parallel()
	s, _, _ := deal(t, 3, 5)
	before := s.Bytes()
	defer clear(before)
	if _, _, err := Split(s, 3, 5, rand.Reader); err != nil {
		t.Fatal(err)
	}
	after := s.Bytes()
	defer clear(after)
	if !bytes.Equal(before, after) {
		t.Fatal("Split modified the secret")
	}
}

func TestNewSecret(t *testing.T) {
	t.Parallel()
	a, err := NewSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if a.Equal(b) {
		t.Fatal("two random secrets are equal")
	}
	if _, err := NewSecret(failingReader{}); !errors.Is(err, errRead) {
		t.Fatalf("failing reader: got %v, want %v", err, errRead)
	}
	if _, err := NewSecret(zeroReader{}); err == nil {
		t.Fatal("all-zero reader: got nil error, want one")
	}
	if _, err := NewSecret(nil); !errors.Is(err, ErrParams) {
		t.Fatalf("nil reader: got %v, want %v", err, ErrParams)
	}
}

func TestSecretBytesRoundTrip(t *testing.T) {
	t.Parallel()
	s, _, _ := deal(t, 1, 1)
	b := s.Bytes()
	if got, want := len(b), ScalarSize; got != want {
		t.Fatalf("Bytes: got %d bytes, want %d", got, want)
	}
	s2, err := SecretFromBytes(b)
	if err != nil {
		t.Fatalf("SecretFromBytes: %v", err)
	}
	if !s2.Equal(s) {
		t.Fatal("round trip: got a different secret")
	}
	b[0] ^= 1
	s3, err := SecretFromBytes(b)
	if err != nil {
		t.Fatalf("SecretFromBytes: %v", err)
	}
	if s3.Equal(s) {
		t.Fatal("Equal: got true for different secrets")
	}
	s2.Destroy()
	if s2.Equal(s) {
		t.Fatal("Equal after Destroy: got true, want false")
	}
	if got := s2.Bytes(); !bytes.Equal(got, make([]byte, 32)) {
		t.Fatalf("Bytes after Destroy: got non-zero, want zeros")
	}
	var nilSecret *Secret
	if !nilSecret.Equal(nil) || nilSecret.Equal(s) || s.Equal(nil) {
		t.Fatal("Equal with nil: wrong result")
	}
}

func TestSecretFromBytesErrors(t *testing.T) {
	t.Parallel()
	lPlus := func(d byte) []byte { b := order; b[0] += d; return b[:] }
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"short", make([]byte, 31)},
		{"long", make([]byte, 33)},
		{"zero", make([]byte, 32)},
		{"order L", lPlus(0)},
		{"L+1", lPlus(1)},
		{"all ones", bytes.Repeat([]byte{0xff}, 32)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := SecretFromBytes(tt.in)
			if !errors.Is(err, ErrSecretEncoding) {
				t.Fatalf("got %v, want %v", err, ErrSecretEncoding)
			}
			if s != nil {
				t.Fatal("got a secret with an error")
			}
		})
	}
	// L-1 is the largest valid scalar.
	lm1 := order
	lm1[0]--
	if _, err := SecretFromBytes(lm1[:]); err != nil {
		t.Fatalf("L-1: got %v, want nil", err)
	}
}

// TestScalarCanonicalMatchesKyber cross-checks the constant-time range check
// against kyber's own reduction (re-marshal differs iff not canonical).
func TestScalarCanonicalMatchesKyber(t *testing.T) {
	t.Parallel()
	kyberCanonical := func(b []byte) bool {
		v := suite.Scalar()
		if err := v.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		re, err := v.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return bytes.Equal(re, b)
	}
	var cases [][]byte
	for d := -2; d <= 2; d++ {
		b := order
		b[0] = byte(int(b[0]) + d)
		cases = append(cases, bytes.Clone(b[:]))
	}
	cases = append(cases, make([]byte, 32), bytes.Repeat([]byte{0xff}, 32))
	buf := make([]byte, 32)
	for i := range 2000 {
		if _, err := rand.Read(buf); err != nil {
			t.Fatal(err)
		}
		// Concentrate on the region around L.
		buf[31] = []byte{0x0f, 0x10, 0x10, 0x11}[i%4]
		if i%3 == 0 {
			copy(buf[16:31], order[16:31])
		}
		cases = append(cases, bytes.Clone(buf))
	}
	for _, b := range cases {
		if got, want := scalarCanonical(b), kyberCanonical(b); got != want {
			t.Fatalf("scalarCanonical(%x): got %v, want %v", b, got, want)
		}
	}
	lm1, err := suite.Scalar().SetInt64(-1).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	want := order
	want[0]--
	if !bytes.Equal(lm1, want[:]) {
		t.Fatalf("order constant: kyber's -1 is %x, want %x", lm1, want)
	}
}

func TestCommitmentsRoundTrip(t *testing.T) {
	t.Parallel()
	s, shares, c := deal(t, 3, 5)
	_, _, other := deal(t, 3, 5)
	b, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(b), 3+3*32; got != want {
		t.Fatalf("encoded length: got %d, want %d", got, want)
	}
	if b[0] != 1 || b[1] != 3 || b[2] != 5 {
		t.Fatalf("header: got %x, want 010305", b[:3])
	}
	c2, err := UnmarshalCommitments(b)
	if err != nil {
		t.Fatalf("UnmarshalCommitments: %v", err)
	}
	if !c2.Equal(c) || c2.Equal(other) {
		t.Fatal("Equal: wrong result after round trip")
	}
	if c2.Threshold() != 3 || c2.Shares() != 5 {
		t.Fatalf("got t=%d n=%d, want t=3 n=5", c2.Threshold(), c2.Shares())
	}
	if fp := c2.Fingerprint(); len(fp) != 16 || fp != c.Fingerprint() || fp == other.Fingerprint() {
		t.Fatalf("Fingerprint: got %q (other %q), want 16 hex chars equal to the original and different from another dealing", fp, other.Fingerprint())
	}
	got, err := Combine(c2, shares[1:4])
	if err != nil || !got.Equal(s) {
		t.Fatalf("Combine with decoded commitments: got error %v, want the secret", err)
	}
	if !c2.Matches(s) || c2.Matches(newTestSecret(t)) {
		t.Fatal("Matches: wrong result")
	}
	// MarshalBinary must hand out a copy.
	b[3] ^= 0xff
	b2, _ := c.MarshalBinary()
	if bytes.Equal(b, b2) {
		t.Fatal("MarshalBinary aliases internal state")
	}
	var zero *Commitments
	if zero.Threshold() != 0 || zero.Fingerprint() != "" || !zero.Equal(&Commitments{}) || zero.Equal(c) {
		t.Fatal("nil Commitments: wrong results")
	}
	if _, err := zero.MarshalBinary(); !errors.Is(err, ErrParams) {
		t.Fatalf("nil MarshalBinary: got %v, want %v", err, ErrParams)
	}
	if str := c.String(); !strings.Contains(str, c.Fingerprint()) {
		t.Fatalf("String: got %q, want the fingerprint in it", str)
	}
}

func newTestSecret(t *testing.T) *Secret {
	s, err := NewSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func encodePoint(t *testing.T, p kyber.Point) []byte {
	t.Helper()
	b, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestUnmarshalCommitmentsMalformed(t *testing.T) {
	t.Parallel()
	_, _, c := deal(t, 2, 3)
	good, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	with := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	setPoint := func(i int, p []byte) []byte {
		return with(func(b []byte) []byte { copy(b[3+32*i:], p); return b })
	}

	// (0, -1): order 2, canonical encoding y = p-1.
	order2 := append([]byte{0xec}, bytes.Repeat([]byte{0xff}, 30)...)
	order2 = append(order2, 0x7f)
	tp := suite.Point()
	if err := tp.UnmarshalBinary(order2); err != nil {
		t.Fatalf("decode order-2 point: %v", err)
	}
	// G + T: on the curve, canonical, not small order, outside the subgroup.
	mixed := encodePoint(t, suite.Point().Add(suite.Point().Base(), tp))
	// y = p + 1 (non-canonical spelling of y = 1, the identity).
	nonCanonical := append([]byte{0xee}, bytes.Repeat([]byte{0xff}, 30)...)
	nonCanonical = append(nonCanonical, 0x7f)
	identity := encodePoint(t, suite.Point().Null())
	// Find an encoding that is not a curve point (about half of all y are not).
	var offCurve []byte
	for y := byte(2); ; y++ {
		b := make([]byte, 32)
		b[0] = y
		if suite.Point().UnmarshalBinary(b) != nil {
			offCurve = b
			break
		}
	}

	tests := []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"header only", good[:3]},
		{"truncated", good[:len(good)-1]},
		{"extended", append(bytes.Clone(good), 0)},
		{"version 0", with(func(b []byte) []byte { b[0] = 0; return b })},
		{"version 2", with(func(b []byte) []byte { b[0] = 2; return b })},
		{"t zero", with(func(b []byte) []byte { b[1] = 0; return b[:3] })},
		{"n below t", with(func(b []byte) []byte { b[2] = 1; return b })},
		{"t claims more points", with(func(b []byte) []byte { b[1] = 3; return b })},
		{"point off curve", setPoint(1, offCurve)},
		{"point non-canonical", setPoint(1, nonCanonical)},
		{"point of order 2", setPoint(1, order2)},
		{"point with torsion component", setPoint(0, mixed)},
		{"identity constant term", setPoint(0, identity)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := UnmarshalCommitments(tt.in)
			if !errors.Is(err, ErrCommitmentsEncoding) {
				t.Fatalf("got %v, want %v", err, ErrCommitmentsEncoding)
			}
			if got != nil {
				t.Fatal("got commitments with an error")
			}
		})
	}
	// An identity point above the constant term is legal (a zero coefficient).
	if _, err := UnmarshalCommitments(setPoint(1, identity)); err != nil {
		t.Fatalf("identity higher coefficient: got %v, want nil", err)
	}
}

// TestRedaction checks that no fmt verb or slog handler prints key material.
func TestRedaction(t *testing.T) {
	t.Parallel()
	s, shares, _ := deal(t, 2, 3)
	sb := s.Bytes()
	defer clear(sb)
	sh := shares[0]
	forbidden := []string{
		hex.EncodeToString(sb), hex.EncodeToString(sh.Value),
		fmt.Sprint(sb), fmt.Sprint([]byte(sh.Value)),
		EncodeShare(sh)[len(ShareTextPrefix):],
	}
	type holder struct {
		S  *Secret
		SV Secret
		Sh Share
		L  []Share
	}
	values := []any{s, *s, sh, &sh, shares, holder{s, *s, sh, shares}}
	var out strings.Builder
	for _, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q"} {
			fmt.Fprintf(&out, verb+"\n", v)
		}
		fmt.Fprintln(&out, v)
	}
	for _, h := range []slog.Handler{
		slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}),
		slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}),
	} {
		slog.New(h).Debug("material", "secret", s, "secretValue", *s, "share", sh, "shares", shares)
	}
	// Direct calls, as a logger that type-switches on Stringer would make.
	for _, str := range []string{s.String(), s.GoString(), sh.String(), sh.GoString()} {
		fmt.Fprintln(&out, str)
		if !strings.Contains(str, redacted) {
			t.Fatalf("got %q, want it redacted", str)
		}
	}
	text := out.String()
	if !strings.Contains(text, redacted) {
		t.Fatalf("output has no %q marker:\n%s", redacted, text)
	}
	for _, f := range forbidden {
		if strings.Contains(text, f) {
			t.Fatalf("output leaks key material %q:\n%s", f, text)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	s, shares, c := deal(t, 3, 5)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := Combine(c, pick(shares, []int{i % 5, (i + 1) % 5, (i + 2) % 5}))
			if err != nil {
				errs <- err
				return
			}
			if !got.Equal(s) {
				errs <- errors.New("wrong secret")
			}
			if err := c.Verify(shares[i]); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Combine: %v", err)
	}
}

func BenchmarkSplit3of5(b *testing.B) {
	s, err := NewSecret(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, _, err := Split(s, 3, 5, rand.Reader); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCombine3of5(b *testing.B) {
	_, shares, c := deal(b, 3, 5)
	in := shares[:3]
	for b.Loop() {
		if _, err := Combine(c, in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	_, shares, c := deal(b, 3, 5)
	for b.Loop() {
		if err := c.Verify(shares[0]); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSameSecret(t *testing.T) {
	t.Parallel()
	s, err := NewSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewSecret(rand.Reader)
	_, c1, _ := Split(s, 3, 5, rand.Reader)
	_, c2, _ := Split(s, 2, 3, rand.Reader)
	_, c3, _ := Split(other, 2, 3, rand.Reader)
	if !c1.SameSecret(c2) {
		t.Fatal("two dealings of one secret: got false, want true")
	}
	if c1.SameSecret(c3) {
		t.Fatal("dealings of different secrets: got true, want false")
	}
}
