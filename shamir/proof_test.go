package shamir

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
)

func proofDealing(t testing.TB) ([]Share, *Commitments) {
	t.Helper()
	s, err := NewSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	shares, c, err := Split(s, 2, 3, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return shares, c
}

func TestShareProofRoundTrip(t *testing.T) {
	t.Parallel()
	shares, c := proofDealing(t)
	for _, sh := range shares {
		ctx := []byte("context for " + sh.String())
		p, err := ProveShare(c, sh, ctx, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) != ProofSize {
			t.Fatalf("proof length %d", len(p))
		}
		if err := c.VerifyShareProof(sh.Index, p, ctx); err != nil {
			t.Fatalf("share %d: %v", sh.Index, err)
		}
		// Two proofs of the same share differ (fresh nonce).
		p2, err := ProveShare(c, sh, ctx, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(p, p2) {
			t.Fatal("two proofs are identical: nonce reused")
		}
	}
}

// TestShareProofRejects: an attacker without the share, or replaying a
// proof made for another index, dealing or context, is refused.
func TestShareProofRejects(t *testing.T) {
	t.Parallel()
	shares, c := proofDealing(t)
	otherShares, other := proofDealing(t)
	ctx := []byte("keyd sharex pok v1\x00n1\x00fp\x00ephemeral-A")
	good, err := ProveShare(c, shares[0], ctx, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// A proof made with another share value at index 1 (what a thief
	// with random or stale bytes could make) must not even be produced.
	forged := Share{Index: 1, Value: bytes.Clone(shares[1].Value)}
	if _, err := ProveShare(c, forged, ctx, rand.Reader); !errors.Is(err, ErrShareInvalid) {
		t.Fatalf("proving with a wrong share: %v", err)
	}
	// A share of another dealing proves nothing about this one.
	foreign, err := ProveShare(other, otherShares[0], ctx, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// Share 2's proof, claimed as index 1.
	p2, err := ProveShare(c, shares[1], ctx, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 1; return b }
	nonCanonZ := bytes.Clone(good)
	copy(nonCanonZ[pointSize:], order[:]) // z = L: not reduced
	tests := []struct {
		name  string
		c     *Commitments
		index int
		proof []byte
		ctx   []byte
	}{
		{"wrong index", c, 2, good, ctx},
		{"index 0", c, 0, good, ctx},
		{"index beyond n", c, 4, good, ctx},
		{"other share's proof", c, 1, p2, ctx},
		{"other dealing", other, 1, good, ctx},
		{"proof from another dealing", c, 1, foreign, ctx},
		{"other context", c, 1, good, []byte("keyd sharex pok v1\x00n1\x00fp\x00ephemeral-B")},
		{"empty context", c, 1, good, nil},
		{"flipped R", c, 1, flip(0), ctx},
		{"flipped z", c, 1, flip(pointSize), ctx},
		{"non-canonical z", c, 1, nonCanonZ, ctx},
		{"truncated", c, 1, good[:ProofSize-1], ctx},
		{"extended", c, 1, append(bytes.Clone(good), 0), ctx},
		{"empty", c, 1, nil, ctx},
		{"zeros", c, 1, make([]byte, ProofSize), ctx},
	}
	for _, tt := range tests {
		if err := tt.c.VerifyShareProof(tt.index, tt.proof, tt.ctx); !errors.Is(err, ErrProof) {
			t.Errorf("%s: got %v, want ErrProof", tt.name, err)
		}
	}
	if err := (*Commitments)(nil).VerifyShareProof(1, good, ctx); !errors.Is(err, ErrParams) {
		t.Errorf("nil commitments: %v", err)
	}
	if _, err := ProveShare(nil, shares[0], ctx, rand.Reader); !errors.Is(err, ErrParams) {
		t.Errorf("prove with nil commitments: %v", err)
	}
}

func FuzzVerifyShareProof(f *testing.F) {
	shares, c := proofDealing(f)
	ctx := []byte("fuzz context")
	good, err := ProveShare(c, shares[0], ctx, rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(1, good, ctx)
	f.Add(2, good, ctx)
	f.Add(1, good[:10], ctx)
	f.Add(1, make([]byte, ProofSize), []byte(nil))
	f.Fuzz(func(t *testing.T, index int, proof, context []byte) {
		err := c.VerifyShareProof(index, proof, context)
		if err == nil {
			// Only the genuine proof for index 1 and ctx can verify.
			if index != 1 || !bytes.Equal(proof, good) || !bytes.Equal(context, ctx) {
				t.Fatalf("forged proof accepted: index %d", index)
			}
			return
		}
		if !errors.Is(err, ErrProof) {
			t.Fatalf("unexpected error kind: %v", err)
		}
	})
}
