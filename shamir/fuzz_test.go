package shamir

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
)

func FuzzDecodeShare(f *testing.F) {
	good := EncodeShare(fixedShare())
	f.Add(good)
	f.Add("  " + good + "\n")
	f.Add(good[:len(good)-1])
	f.Add(good[:40] + "x" + good[41:])
	f.Add(ShareTextPrefix)
	f.Add("")
	f.Add("keyd-share-v2-" + good[len(ShareTextPrefix):])
	f.Fuzz(func(t *testing.T, in string) {
		sh, err := DecodeShare(in)
		if err != nil {
			if !errors.Is(err, ErrShareEncoding) {
				t.Fatalf("got %v, want an ErrShareEncoding", err)
			}
			return
		}
		if sh.Index < 1 || sh.Index > MaxShares || len(sh.Value) != ScalarSize || !scalarCanonical(sh.Value) {
			t.Fatalf("decoded an invalid share (index %d, %d-byte value)", sh.Index, len(sh.Value))
		}
		if got, want := EncodeShare(sh), strings.TrimSpace(in); got != want {
			t.Fatalf("re-encoding: got %q, want %q", got, want)
		}
	})
}

func FuzzUnmarshalShare(f *testing.F) {
	good, err := fixedShare().MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:37])
	f.Add(payload(1, 0, fixedShare().Value))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		sh, err := UnmarshalShare(in)
		if err != nil {
			if !errors.Is(err, ErrShareEncoding) {
				t.Fatalf("got %v, want an ErrShareEncoding", err)
			}
			return
		}
		out, err := sh.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary of a decoded share: %v", err)
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("re-encoding: got %x, want %x", out, in)
		}
	})
}

func FuzzUnmarshalCommitments(f *testing.F) {
	s, err := SecretFromBytes(fixedShare().Value)
	if err != nil {
		f.Fatal(err)
	}
	_, c, err := Split(s, 2, 3, rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	good, err := c.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add(append(bytes.Clone(good), 0))
	f.Add([]byte{1, 1, 1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := UnmarshalCommitments(in)
		if err != nil {
			if !errors.Is(err, ErrCommitmentsEncoding) {
				t.Fatalf("got %v, want an ErrCommitmentsEncoding", err)
			}
			return
		}
		if c.Threshold() < 1 || c.Shares() < c.Threshold() {
			t.Fatalf("decoded t=%d n=%d", c.Threshold(), c.Shares())
		}
		out, err := c.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary of decoded commitments: %v", err)
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("re-encoding: got %x, want %x", out, in)
		}
		// Verifying against arbitrary valid commitments must not panic and
		// must not accept a share outside 1..n.
		if err := c.Verify(fixedShare()); err == nil && fixedShare().Index > c.Shares() {
			t.Fatalf("Verify accepted index %d with n=%d", fixedShare().Index, c.Shares())
		}
	})
}
