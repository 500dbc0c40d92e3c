package shamir

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"go.dedis.ch/kyber/v3"
	"go.dedis.ch/kyber/v3/group/edwards25519"
	"go.dedis.ch/kyber/v3/share"
)

// MaxShares is the largest number of shares (and the largest index) a
// dealing can have. Indices are encoded in one byte.
const MaxShares = 255

// ScalarSize is the length of an encoded scalar (a secret or a share value).
const ScalarSize = 32

// Sentinel errors. Callers branch on them with errors.Is; returned errors wrap
// them with context that never includes key material.
var (
	// ErrShareInvalid: the share does not lie on the committed polynomial
	// (forged, mistyped before encoding, or from another dealing).
	ErrShareInvalid = errors.New("shamir: share invalid")
	// ErrShareIndex: the share index is outside 1..n of the dealing.
	ErrShareIndex = errors.New("shamir: share index out of range")
	// ErrShareDuplicate: two submitted shares carry the same index.
	ErrShareDuplicate = errors.New("shamir: duplicate share index")
	// ErrShareEncoding: a share's text or binary form is malformed (prefix,
	// length, version, checksum, index or non-canonical value).
	ErrShareEncoding = errors.New("shamir: share encoding invalid")
	// ErrNotEnoughShares: fewer distinct valid shares than the threshold.
	ErrNotEnoughShares = errors.New("shamir: not enough shares")
	// ErrParams: invalid arguments (threshold, share count, nil or zero
	// secret, uninitialised commitments).
	ErrParams = errors.New("shamir: invalid parameters")
	// ErrCommitmentsEncoding: a commitments blob is malformed.
	ErrCommitmentsEncoding = errors.New("shamir: commitments encoding invalid")
	// ErrSecretEncoding: a secret's byte form is malformed (length,
	// non-canonical scalar, or zero).
	ErrSecretEncoding = errors.New("shamir: secret encoding invalid")
)

// ShareError names the share (by its 1-based index) that failed a check.
// Err is one of the sentinels, possibly wrapped with detail.
type ShareError struct {
	Index int
	Err   error
}

// Error returns, for example, "shamir: share 3: share invalid".
func (e *ShareError) Error() string {
	msg := "<nil>"
	if e.Err != nil {
		msg = strings.TrimPrefix(e.Err.Error(), "shamir: ")
	}
	return fmt.Sprintf("shamir: share %d: %s", e.Index, msg)
}

// Unwrap returns the underlying sentinel so errors.Is works through it.
func (e *ShareError) Unwrap() error { return e.Err }

// suite is the one group keyd shares over. It holds no mutable state, so a
// package-level value is safe for concurrent use.
var suite = edwards25519.NewBlakeSHA256Ed25519()

const redacted = "REDACTED"

// Secret is the root secret: a non-zero edwards25519 scalar.
//
// It redacts itself in String, GoString, Format and LogValue, and is not
// comparable with == (use Equal, which is constant time). A Secret is not
// safe for concurrent use with Destroy; otherwise its methods only read.
// The zero value is not a valid secret: use NewSecret or SecretFromBytes.
type Secret struct {
	_ [0]func() // makes Secret non-comparable
	v kyber.Scalar
}

// NewSecret draws a uniformly random non-zero secret from rand, which must be
// crypto/rand.Reader in production (tests may pass a deterministic reader).
// It reads 64 bytes per attempt and reduces them modulo the group order, so
// the bias is negligible. A read error is returned wrapped; it never panics
// (kyber's random.New stream panics when its reader fails, so it is not used).
func NewSecret(rand io.Reader) (*Secret, error) {
	v, err := randomScalar(rand)
	if err != nil {
		return nil, fmt.Errorf("shamir: new secret: %w", err)
	}
	return &Secret{v: v}, nil
}

// SecretFromBytes decodes a 32-byte canonical little-endian scalar. It
// returns an error wrapping ErrSecretEncoding if the length is wrong, the
// value is not reduced modulo the group order, or it is zero. b is copied;
// the caller keeps ownership and should zero it.
func SecretFromBytes(b []byte) (*Secret, error) {
	if len(b) != ScalarSize {
		return nil, fmt.Errorf("%w: length %d, want %d", ErrSecretEncoding, len(b), ScalarSize)
	}
	if !scalarCanonical(b) {
		return nil, fmt.Errorf("%w: not a canonical scalar", ErrSecretEncoding)
	}
	if isZero(b) {
		return nil, fmt.Errorf("%w: zero secret", ErrSecretEncoding)
	}
	v := suite.Scalar()
	if err := v.UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSecretEncoding, err)
	}
	return &Secret{v: v}, nil
}

// Bytes returns the 32-byte canonical encoding of s in a fresh slice that the
// caller owns and must zero when done. A destroyed secret encodes as zeros.
func (s *Secret) Bytes() []byte {
	if s == nil || s.v == nil {
		return make([]byte, ScalarSize)
	}
	b, err := s.v.MarshalBinary()
	if err != nil || len(b) != ScalarSize {
		// Cannot happen for edwards25519 scalars; fail closed without detail.
		return make([]byte, ScalarSize)
	}
	return b
}

// Equal reports whether s and o hold the same scalar, in constant time with
// respect to their values. Two nil secrets are equal.
func (s *Secret) Equal(o *Secret) bool {
	if s == nil || o == nil || s.v == nil || o.v == nil {
		return (s == nil || s.v == nil) && (o == nil || o.v == nil)
	}
	return s.v.Equal(o.v)
}

// Destroy sets the scalar to zero. It is best effort: kyber's arithmetic
// leaves temporaries (including big.Int copies) that Go cannot reliably
// wipe. After Destroy the secret cannot be split or matched.
func (s *Secret) Destroy() {
	if s != nil && s.v != nil {
		s.v.Zero()
	}
}

// isZero reports whether s is unusable (nil, never initialised or
// destroyed). It runs in constant time over the value.
func (s *Secret) isZero() bool {
	if s == nil || s.v == nil {
		return true
	}
	return s.v.Equal(suite.Scalar().Zero())
}

// String redacts the secret.
func (Secret) String() string { return "shamir.Secret(" + redacted + ")" }

// GoString redacts the secret for %#v.
func (Secret) GoString() string { return "shamir.Secret(" + redacted + ")" }

// Format redacts the secret for every fmt verb (%v, %x, %d, ...).
func (Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, "shamir.Secret("+redacted+")") }

// LogValue redacts the secret in log/slog output.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// Split deals s into n shares, any t of which recover it, and returns them
// with the Feldman commitments that later verify each share. Shares are
// indexed 1..n in order. It requires 1 <= t <= n <= 255 and a usable
// (non-zero) secret, else an error wrapping ErrParams. rand must be
// crypto/rand.Reader in production; it supplies the t-1 random coefficients.
//
// The caller owns the returned shares and should Destroy each once it has
// been handed to its holder. s is not modified.
func Split(s *Secret, t, n int, rand io.Reader) ([]Share, *Commitments, error) {
	if t < 1 || n < t || n > MaxShares {
		return nil, nil, fmt.Errorf("%w: need 1 <= t <= n <= %d, got t=%d n=%d", ErrParams, MaxShares, t, n)
	}
	if s.isZero() {
		return nil, nil, fmt.Errorf("%w: secret is nil, zero or destroyed", ErrParams)
	}
	coeffs := make([]kyber.Scalar, t)
	defer zeroScalars(coeffs)
	coeffs[0] = s.v.Clone()
	for i := 1; i < t; i++ {
		c, err := randomScalar(rand)
		if err != nil {
			return nil, nil, fmt.Errorf("shamir: split: %w", err)
		}
		coeffs[i] = c
	}
	poly := share.CoefficientsToPriPoly(suite, coeffs)
	pri := poly.Shares(n)
	defer func() {
		for _, p := range pri {
			p.V.Zero()
		}
	}()
	_, points := poly.Commit(nil).Info()
	c, err := newCommitments(t, n, points)
	if err != nil {
		// Only reachable through a kyber bug; no detail to leak.
		return nil, nil, fmt.Errorf("shamir: split: %w", err)
	}
	shares := make([]Share, n)
	for i, p := range pri {
		v, err := p.V.MarshalBinary()
		if err != nil {
			for _, sh := range shares[:i] {
				sh.Destroy()
			}
			return nil, nil, fmt.Errorf("shamir: split: encode share %d: %w", p.I+1, err)
		}
		shares[i] = Share{Index: p.I + 1, Value: v}
	}
	return shares, c, nil
}

// Combine recovers the secret from shares dealt under c.
//
// It first checks every share: a repeated index is a *ShareError wrapping
// ErrShareDuplicate, and each share is verified with c.Verify. All failures
// are reported together (errors.Join of *ShareError values) so custodians see
// every bad share at once; nothing is interpolated if any share fails. It then
// needs at least c.Threshold() distinct valid shares (ErrNotEnoughShares),
// interpolates, and as defence in depth checks that G*secret equals the
// committed constant term (ErrShareInvalid if not). A nil c gives ErrParams.
//
// Combine does not modify or retain shares; the caller still owns and should
// Destroy them. It is safe to call concurrently.
func Combine(c *Commitments, shares []Share) (*Secret, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	var (
		seen [MaxShares + 1]bool
		errs []error
		pri  = make([]*share.PriShare, 0, len(shares))
	)
	defer func() {
		for _, p := range pri {
			p.V.Zero()
		}
	}()
	for _, sh := range shares {
		if sh.Index >= 1 && sh.Index <= MaxShares {
			if seen[sh.Index] {
				errs = append(errs, &ShareError{Index: sh.Index, Err: ErrShareDuplicate})
				continue
			}
			seen[sh.Index] = true
		}
		v, err := c.verify(sh)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		pri = append(pri, &share.PriShare{I: sh.Index - 1, V: v})
	}
	switch len(errs) {
	case 0:
	case 1:
		return nil, errs[0]
	default:
		return nil, errors.Join(errs...)
	}
	if len(pri) < c.t {
		return nil, fmt.Errorf("%w: have %d valid, need %d", ErrNotEnoughShares, len(pri), c.t)
	}
	// Every share is verified, so kyber's interpolation is safe to use; it
	// takes the t lowest indices.
	v, err := share.RecoverSecret(suite, pri, c.t, len(pri))
	if err != nil {
		return nil, fmt.Errorf("shamir: combine: %w", err)
	}
	sec := &Secret{v: v}
	if !c.Matches(sec) {
		sec.Destroy()
		return nil, fmt.Errorf("%w: recovered secret does not match the commitment", ErrShareInvalid)
	}
	return sec, nil
}

// randomScalar returns a uniformly random non-zero scalar: 64 bytes from r
// reduced modulo the group order.
func randomScalar(r io.Reader) (kyber.Scalar, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: nil random source", ErrParams)
	}
	var buf [64]byte
	defer clear(buf[:])
	for range 8 {
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return nil, fmt.Errorf("read randomness: %w", err)
		}
		v := suite.Scalar().SetBytes(buf[:])
		if !v.Equal(suite.Scalar().Zero()) {
			return v, nil
		}
	}
	// Eight zero reductions in a row means the reader is broken.
	return nil, errors.New("read randomness: source keeps yielding zero")
}

func zeroScalars(s []kyber.Scalar) {
	for _, v := range s {
		if v != nil {
			v.Zero()
		}
	}
}

// order is the edwards25519 prime group order L = 2^252 +
// 27742317777372353535851937790883648493, little endian.
var order = [ScalarSize]byte{
	0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58,
	0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
}

// scalarCanonical reports, in constant time, whether the 32-byte little-endian
// b is below the group order. kyber's scalar UnmarshalBinary copies bytes
// without reducing, and its arithmetic assumes reduced input, so every decoded
// scalar must pass this check.
func scalarCanonical(b []byte) bool {
	if len(b) != ScalarSize {
		return false
	}
	// Compute b - L; a final borrow means b < L.
	borrow := 0
	for i := range ScalarSize {
		d := int(b[i]) - int(order[i]) - borrow
		borrow = (d >> 8) & 1
	}
	return borrow == 1
}

// isZero reports, in constant time, whether b is all zeros.
func isZero(b []byte) bool {
	var acc byte
	for _, x := range b {
		acc |= x
	}
	return acc == 0
}
