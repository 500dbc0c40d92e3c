package shamir

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"go.dedis.ch/kyber/v3"
	"go.dedis.ch/kyber/v3/share"
)

// commitmentsVersion is the first byte of the commitments encoding.
const commitmentsVersion = 1

// pointSize is the length of an encoded edwards25519 point.
const pointSize = 32

// commitmentsHeader is version | threshold | share count.
const commitmentsHeader = 3

// Commitments are the Feldman commitments of one dealing: the threshold t,
// the share count n, and the points G*a_0 .. G*a_{t-1} of the sharing
// polynomial. They reveal nothing about the secret beyond G*s and are safe to
// publish and store (keyd keeps them in the FSM).
//
// A Commitments is immutable after Split or UnmarshalCommitments and safe for
// concurrent use. The zero value is not usable: its methods return ErrParams.
//
// Encoding (MarshalBinary, version 1): version byte 0x01 | t (1 byte) |
// n (1 byte) | t points of 32 bytes each. n is recorded so that Verify can
// reject an index no custodian or node was dealt.
type Commitments struct {
	t, n int
	pub  *share.PubPoly
	enc  []byte // canonical encoding, computed once; never handed out
}

// newCommitments builds and encodes commitments from t points.
func newCommitments(t, n int, points []kyber.Point) (*Commitments, error) {
	if len(points) != t {
		return nil, fmt.Errorf("%w: %d points for threshold %d", ErrParams, len(points), t)
	}
	enc := make([]byte, 0, commitmentsHeader+t*pointSize)
	enc = append(enc, commitmentsVersion, byte(t), byte(n))
	own := make([]kyber.Point, t)
	for i, p := range points {
		b, err := p.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("shamir: encode commitment %d: %w", i, err)
		}
		enc = append(enc, b...)
		own[i] = p.Clone()
	}
	return &Commitments{t: t, n: n, pub: share.NewPubPoly(suite, nil, own), enc: enc}, nil
}

// UnmarshalCommitments decodes the output of [Commitments.MarshalBinary].
// Any malformed input returns an error wrapping ErrCommitmentsEncoding:
// wrong length, unknown version, t or n out of range (1 <= t <= n <= 255), a
// point that is not a canonical encoding, lies outside the prime-order
// subgroup, or a constant term that is the identity (a zero secret). b is not
// retained.
func UnmarshalCommitments(b []byte) (*Commitments, error) {
	if len(b) < commitmentsHeader {
		return nil, fmt.Errorf("%w: %d bytes is shorter than the header", ErrCommitmentsEncoding, len(b))
	}
	if b[0] != commitmentsVersion {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrCommitmentsEncoding, b[0])
	}
	t, n := int(b[1]), int(b[2])
	if t < 1 || n < t {
		return nil, fmt.Errorf("%w: need 1 <= t <= n, got t=%d n=%d", ErrCommitmentsEncoding, t, n)
	}
	if want := commitmentsHeader + t*pointSize; len(b) != want {
		return nil, fmt.Errorf("%w: length %d, want %d for threshold %d", ErrCommitmentsEncoding, len(b), want, t)
	}
	points := make([]kyber.Point, t)
	for i := range points {
		raw := b[commitmentsHeader+i*pointSize : commitmentsHeader+(i+1)*pointSize]
		p := suite.Point()
		if err := p.UnmarshalBinary(raw); err != nil {
			return nil, fmt.Errorf("%w: point %d is not on the curve", ErrCommitmentsEncoding, i)
		}
		// kyber accepts some non-canonical encodings (y >= p); one dealing
		// must have exactly one encoding so fingerprints and Equal are sound.
		if re, err := p.MarshalBinary(); err != nil || !bytes.Equal(re, raw) {
			return nil, fmt.Errorf("%w: point %d is not canonically encoded", ErrCommitmentsEncoding, i)
		}
		if !inPrimeOrderSubgroup(p) {
			return nil, fmt.Errorf("%w: point %d is outside the prime-order subgroup", ErrCommitmentsEncoding, i)
		}
		points[i] = p
	}
	if points[0].Equal(suite.Point().Null()) {
		return nil, fmt.Errorf("%w: constant term is the identity", ErrCommitmentsEncoding)
	}
	return newCommitments(t, n, points)
}

// inPrimeOrderSubgroup reports whether L*p is the identity, computed as
// (L-1)*p + p because L itself reduces to the zero scalar.
func inPrimeOrderSubgroup(p kyber.Point) bool {
	lMinus1 := suite.Scalar().SetInt64(-1)
	q := suite.Point().Mul(lMinus1, p)
	q.Add(q, p)
	return q.Equal(suite.Point().Null())
}

// check reports whether c is usable.
func (c *Commitments) check() error {
	if c == nil || c.pub == nil {
		return fmt.Errorf("%w: commitments are nil or uninitialised", ErrParams)
	}
	return nil
}

// Threshold returns t, the number of shares needed to combine (0 for a nil
// or zero Commitments).
func (c *Commitments) Threshold() int {
	if c == nil {
		return 0
	}
	return c.t
}

// Shares returns n, the number of shares dealt (0 for a nil or zero
// Commitments). Valid indices are 1..n.
func (c *Commitments) Shares() int {
	if c == nil {
		return 0
	}
	return c.n
}

// MarshalBinary returns the versioned encoding in a fresh slice the caller
// owns. It fails only with ErrParams for a nil or zero Commitments.
func (c *Commitments) MarshalBinary() ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	return bytes.Clone(c.enc), nil
}

// Equal reports whether c and o describe the same dealing (same t, n and
// points). Commitments are public, so this is not constant time. Two nil
// (or zero) values are equal.
func (c *Commitments) Equal(o *Commitments) bool {
	if c.check() != nil || o.check() != nil {
		return c.check() != nil && o.check() != nil
	}
	return bytes.Equal(c.enc, o.enc)
}

// Fingerprint returns a short public identifier of the dealing: the hex of
// the first 8 bytes of SHA-256 over the encoding. Operators compare it to see
// which dealing a share belongs to. It is "" for a nil or zero Commitments.
func (c *Commitments) Fingerprint() string {
	if c.check() != nil {
		return ""
	}
	sum := sha256.Sum256(c.enc)
	return hex.EncodeToString(sum[:8])
}

// String describes the dealing without key material (commitments are public).
func (c *Commitments) String() string {
	if c.check() != nil {
		return "shamir.Commitments(<invalid>)"
	}
	return fmt.Sprintf("shamir.Commitments(t=%d n=%d fp=%s)", c.t, c.n, c.Fingerprint())
}

// Verify checks that sh lies on the committed polynomial. It returns nil or a
// *ShareError naming sh.Index and wrapping ErrShareIndex (index outside
// 1..Shares()), ErrShareEncoding (Value not a 32-byte canonical scalar) or
// ErrShareInvalid (not on the polynomial: forged, corrupted or from another
// dealing). A nil or zero c gives ErrParams. Safe for concurrent use; sh is not
// retained.
func (c *Commitments) Verify(sh Share) error {
	v, err := c.verify(sh)
	if v != nil {
		v.Zero()
	}
	return err
}

// verify is Verify that also returns the decoded scalar on success, so
// Combine does not decode twice. The caller must zero it.
func (c *Commitments) verify(sh Share) (kyber.Scalar, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	if sh.Index < 1 || sh.Index > c.n {
		return nil, &ShareError{Index: sh.Index, Err: fmt.Errorf("%w: want 1..%d", ErrShareIndex, c.n)}
	}
	v, err := decodeScalar(sh.Value)
	if err != nil {
		return nil, &ShareError{Index: sh.Index, Err: err}
	}
	if !c.pub.Check(&share.PriShare{I: sh.Index - 1, V: v}) {
		v.Zero()
		return nil, &ShareError{Index: sh.Index, Err: ErrShareInvalid}
	}
	return v, nil
}

// Matches reports whether s is the secret committed to by c (G*s equals the
// constant term). It lets a node confirm a secret before re-dealing it. A
// nil, zero or destroyed argument gives false.
func (c *Commitments) Matches(s *Secret) bool {
	if c.check() != nil || s.isZero() {
		return false
	}
	return suite.Point().Mul(s.v, nil).Equal(c.pub.Commit())
}

// decodeScalar decodes a share value, wrapping ErrShareEncoding on a wrong
// length or a non-canonical scalar. The caller must zero the result.
func decodeScalar(b []byte) (kyber.Scalar, error) {
	if len(b) != ScalarSize {
		return nil, fmt.Errorf("%w: value length %d, want %d", ErrShareEncoding, len(b), ScalarSize)
	}
	if !scalarCanonical(b) {
		return nil, fmt.Errorf("%w: value is not a canonical scalar", ErrShareEncoding)
	}
	v := suite.Scalar()
	if err := v.UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("%w: value: %v", ErrShareEncoding, err)
	}
	return v, nil
}

// SameSecret reports whether c and o commit to the same secret (equal
// constant terms), without knowing it. keyd uses it to check that a
// dealing of node shares is a dealing of the cluster's root, whose
// custodian commitments are already stored.
func (c *Commitments) SameSecret(o *Commitments) bool {
	if c.check() != nil || o.check() != nil {
		return false
	}
	return c.pub.Commit().Equal(o.pub.Commit())
}
