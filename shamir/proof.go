package shamir

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"go.dedis.ch/kyber/v3"
)

// ErrProof: a proof of share knowledge is malformed or does not verify
// (wrong share, wrong index, another dealing, another context).
var ErrProof = errors.New("shamir: share proof invalid")

// ProofSize is the length of an encoded share proof: R (32-byte point) |
// z (32-byte canonical scalar).
const ProofSize = pointSize + ScalarSize

// MaxProofContext bounds the context a proof is bound to.
const MaxProofContext = 4 << 10

// proofDomain separates share-proof challenges from every other hash.
const proofDomain = "keyd shamir share pok v1\x00"

// ProveShare proves knowledge of sh, the share with index sh.Index of the
// dealing c, without revealing it: a non-interactive Schnorr proof (Fiat-
// Shamir) that the prover knows s with G*s = P_i, where P_i is the public
// share c.Eval(i) given by the Feldman commitments.
//
//	r random, R = G*r
//	e = SHA-512(domain | commitments | i | P_i | R | len(context) | context)
//	    read as a 64-byte little-endian integer and reduced modulo the group
//	    order (negligible bias, as in Ed25519)
//	z = r + e*s
//
// context binds the proof to its use (keyd binds the requester's node id,
// the dealing fingerprint and the request's ephemeral key), so a proof
// cannot be replayed anywhere else. rand must be crypto/rand.Reader in
// production. sh must verify against c; an invalid share gives an error
// wrapping ErrShareInvalid (or the other Verify sentinels), never a proof.
func ProveShare(c *Commitments, sh Share, context []byte, rand io.Reader) ([]byte, error) {
	if len(context) > MaxProofContext {
		return nil, fmt.Errorf("%w: context of %d bytes", ErrParams, len(context))
	}
	s, err := c.verify(sh)
	if err != nil {
		return nil, err
	}
	defer s.Zero()
	r, err := randomScalar(rand)
	if err != nil {
		return nil, fmt.Errorf("shamir: share proof: %w", err)
	}
	defer r.Zero()
	R := suite.Point().Mul(r, nil)
	Rb, err := R.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("shamir: share proof: %w", err)
	}
	e, err := c.challenge(sh.Index, Rb, context)
	if err != nil {
		return nil, err
	}
	z := suite.Scalar().Mul(e, s)
	z.Add(z, r)
	zb, err := z.MarshalBinary()
	z.Zero()
	if err != nil {
		return nil, fmt.Errorf("shamir: share proof: %w", err)
	}
	return append(Rb, zb...), nil
}

// VerifyShareProof checks a proof made by [ProveShare] that its maker knows
// the share with the given index of the dealing c, bound to context. It
// returns nil or an error wrapping ErrProof (malformed encoding, index
// outside 1..Shares(), or a proof that does not verify) or ErrParams (nil or
// zero c). It checks G*z == R + e*P_i. Proofs are public; nothing secret
// is compared.
func (c *Commitments) VerifyShareProof(index int, proof, context []byte) error {
	if err := c.check(); err != nil {
		return err
	}
	if index < 1 || index > c.n {
		return fmt.Errorf("%w: index %d outside 1..%d", ErrProof, index, c.n)
	}
	if len(context) > MaxProofContext {
		return fmt.Errorf("%w: context of %d bytes", ErrProof, len(context))
	}
	if len(proof) != ProofSize {
		return fmt.Errorf("%w: length %d, want %d", ErrProof, len(proof), ProofSize)
	}
	Rb, zb := proof[:pointSize], proof[pointSize:]
	R := suite.Point()
	if err := R.UnmarshalBinary(Rb); err != nil {
		return fmt.Errorf("%w: R is not a point", ErrProof)
	}
	if re, err := R.MarshalBinary(); err != nil || !bytes.Equal(re, Rb) {
		return fmt.Errorf("%w: R is not canonically encoded", ErrProof)
	}
	if !scalarCanonical(zb) {
		return fmt.Errorf("%w: z is not a canonical scalar", ErrProof)
	}
	z := suite.Scalar()
	if err := z.UnmarshalBinary(zb); err != nil {
		return fmt.Errorf("%w: z", ErrProof)
	}
	e, err := c.challenge(index, Rb, context)
	if err != nil {
		return err
	}
	lhs := suite.Point().Mul(z, nil)
	rhs := suite.Point().Mul(e, c.pub.Eval(index-1).V)
	rhs.Add(rhs, R)
	if !lhs.Equal(rhs) {
		return ErrProof
	}
	return nil
}

// challenge is the Fiat-Shamir challenge e of a share proof.
func (c *Commitments) challenge(index int, Rb, context []byte) (kyber.Scalar, error) {
	Pb, err := c.pub.Eval(index - 1).V.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("shamir: share proof: %w", err)
	}
	h := sha512.New()
	h.Write([]byte(proofDomain))
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(c.enc)))
	h.Write(n[:])
	h.Write(c.enc)
	h.Write([]byte{byte(index)})
	h.Write(Pb)
	h.Write(Rb)
	binary.BigEndian.PutUint64(n[:], uint64(len(context)))
	h.Write(n[:])
	h.Write(context)
	return suite.Scalar().SetBytes(h.Sum(nil)), nil
}
