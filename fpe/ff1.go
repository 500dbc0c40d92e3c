// Package fpe implements format-preserving encryption: the FF1 mode of NIST
// SP 800-38G (March 2016, with the Rev. 1 domain-size rule) over AES, and
// named formats (card numbers, phone numbers, national ids, e-mail local
// parts, ...) that map a string to numeral strings and back.
//
// FF1 is written here from the specification (Algorithms 7, 8 and 9 of SP
// 800-38G). It is a tweakable pseudorandom permutation on strings of
// numerals: it gives no integrity, and equal inputs under the same key and
// tweak give equal outputs. The package is pure (no I/O) and never puts a
// value or key into an error.
package fpe

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"math/bits"
)

// Limits of this implementation. SP 800-38G requires 2 <= radix <= 2^16,
// radix^minlen >= 1,000,000 and 2 <= minlen <= maxlen <= 2^32; keyd caps
// lengths far lower because its inputs are short identifiers.
const (
	MinRadix = 2
	MaxRadix = 1 << 16
	// MinDomain is the smallest allowed domain size radix^n (SP 800-38G
	// Rev. 1, section 5.2).
	MinDomain = 1_000_000
	// MaxLen is the largest numeral string accepted.
	MaxLen = 4096
	// MaxTweakLen is the largest tweak accepted, in bytes.
	MaxTweakLen = 256
)

// Sentinel errors; returned errors wrap them and never carry the input.
var (
	// ErrRadix reports a radix outside [MinRadix, MaxRadix].
	ErrRadix = errors.New("fpe: radix out of range")
	// ErrDomain reports an input whose domain radix^n is below MinDomain
	// (too few characters to encrypt) or whose length exceeds MaxLen.
	ErrDomain = errors.New("fpe: input length outside the allowed domain")
	// ErrNumeral reports a numeral >= radix.
	ErrNumeral = errors.New("fpe: numeral not below radix")
	// ErrTweak reports a tweak longer than MaxTweakLen.
	ErrTweak = errors.New("fpe: tweak too long")
	// ErrKey reports an AES key that is not 16, 24 or 32 bytes.
	ErrKey = errors.New("fpe: invalid AES key length")
)

// FF1 is FF1 over one AES key. The radix is chosen per call, so one key
// serves several alphabets; the radix is part of FF1's fixed block P, so
// the permutations for different radixes are independent. An FF1 is safe
// for concurrent use.
type FF1 struct {
	block cipher.Block
}

// NewFF1 returns FF1 over AES with key (16, 24 or 32 bytes). The AES key
// schedule keeps its own copy; the caller keeps ownership of key.
func NewFF1(key []byte) (*FF1, error) {
	switch len(key) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("fpe: key of %d bytes: %w", len(key), ErrKey)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("fpe: %w", ErrKey)
	}
	return &FF1{block: b}, nil
}

// CheckDomain returns nil if a numeral string of length n in radix may be
// enciphered: MinRadix <= radix <= MaxRadix, 2 <= n <= MaxLen and
// radix^n >= MinDomain. Otherwise it returns an error wrapping ErrRadix or
// ErrDomain.
func CheckDomain(radix, n int) error {
	if radix < MinRadix || radix > MaxRadix {
		return fmt.Errorf("fpe: radix %d: %w", radix, ErrRadix)
	}
	if n < 2 || n > MaxLen {
		return fmt.Errorf("fpe: length %d not in [2, %d]: %w", n, MaxLen, ErrDomain)
	}
	d := 1
	for i := 0; i < n && d < MinDomain; i++ {
		d *= radix
	}
	if d < MinDomain {
		return fmt.Errorf("fpe: radix %d length %d gives %d < %d values: %w", radix, n, d, MinDomain, ErrDomain)
	}
	return nil
}

// Encrypt enciphers the numeral string x (each numeral < radix) under
// tweak and returns a new numeral string of the same length (FF1.Encrypt,
// Algorithm 7). x is not modified.
func (f *FF1) Encrypt(radix int, x []uint16, tweak []byte) ([]uint16, error) {
	return f.cipher(radix, x, tweak, true)
}

// Decrypt reverses Encrypt (FF1.Decrypt, Algorithm 8).
func (f *FF1) Decrypt(radix int, x []uint16, tweak []byte) ([]uint16, error) {
	return f.cipher(radix, x, tweak, false)
}

// useSmall lets tests force the math/big path on inputs the uint64 path
// would take, to compare the two.
var useSmall = true

func (f *FF1) cipher(radix int, x []uint16, tweak []byte, enc bool) ([]uint16, error) {
	n := len(x)
	if err := CheckDomain(radix, n); err != nil {
		return nil, err
	}
	if len(tweak) > MaxTweakLen {
		return nil, fmt.Errorf("fpe: tweak of %d bytes: %w", len(tweak), ErrTweak)
	}
	for _, d := range x {
		if int(d) >= radix {
			return nil, fmt.Errorf("fpe: radix %d: %w", radix, ErrNumeral)
		}
	}
	t := len(tweak)
	// Steps 1-2: split X into A (u numerals) and B (v numerals).
	u := n / 2
	v := n - u
	if useSmall {
		if radixV, ok := pow64(radix, v); ok {
			radixU, _ := pow64(radix, u)
			return f.cipher64(radix, x, tweak, enc, u, v, radixU, radixV), nil
		}
	}
	bigRadix := big.NewInt(int64(radix))
	// Step 3: b = ceil(ceil(v*log2(radix))/8). ceil(v*log2(radix)) is the
	// bit length of radix^v - 1, computed exactly with integers.
	radixV := new(big.Int).Exp(bigRadix, big.NewInt(int64(v)), nil)
	radixU := new(big.Int).Exp(bigRadix, big.NewInt(int64(u)), nil)
	bits := new(big.Int).Sub(radixV, big.NewInt(1)).BitLen()
	b := (bits + 7) / 8
	// Step 4: d = 4*ceil(b/4) + 4.
	d := 4*((b+3)/4) + 4
	// Step 5: P = [1]^1 [2]^1 [1]^1 [radix]^3 [10]^1 [u mod 256]^1 [n]^4 [t]^4.
	var p [16]byte
	p[0], p[1], p[2] = 1, 2, 1
	p[3], p[4], p[5] = byte(radix>>16), byte(radix>>8), byte(radix)
	p[6] = 10
	p[7] = byte(u)
	putUint32(p[8:12], uint32(n))
	putUint32(p[12:16], uint32(t))
	// Q = T || [0]^((-t-b-1) mod 16) || [i]^1 || [NUM_radix(B)]^b.
	pad := mod(-t-b-1, 16)
	q := make([]byte, t+pad+1+b)
	copy(q, tweak)
	// CBC-MAC of P alone is the same in every round: compute it once.
	var y0 [16]byte
	f.block.Encrypt(y0[:], p[:])
	// Scratch blocks for expand, allocated once per call: a block passed
	// to the cipher escapes.
	var r, blk [16]byte

	a := num(x[:u], bigRadix)
	bb := num(x[u:], bigRadix)
	sLen := ((d + 15) / 16) * 16
	s := make([]byte, sLen)
	y := new(big.Int)
	c := new(big.Int)
	numBytes := make([]byte, b)
	round := func(i int, in *big.Int) {
		// Step 6.i: Q with the round number and NUM(B) (or NUM(A) when
		// decrypting) as b bytes.
		q[t+pad] = byte(i)
		clear(numBytes)
		in.FillBytes(numBytes)
		copy(q[t+pad+1:], numBytes)
		// Steps 6.ii and 6.iii.
		f.expand(&y0, q, s, &r, &blk)
		// Step 6.iv: y = NUM(S[1..d]).
		y.SetBytes(s[:d])
	}
	if enc {
		for i := range 10 {
			round(i, bb)
			// Steps 6.v-6.ix.
			m := radixU
			if i%2 == 1 {
				m = radixV
			}
			c.Add(a, y)
			c.Mod(c, m)
			a, bb = bb, a
			bb.Set(c)
		}
	} else {
		for i := 9; i >= 0; i-- {
			round(i, a)
			m := radixU
			if i%2 == 1 {
				m = radixV
			}
			c.Sub(bb, y)
			c.Mod(c, m) // big.Int.Mod is Euclidean: the result is >= 0
			a, bb = bb, a
			a.Set(c)
		}
	}
	out := make([]uint16, n)
	str(out[:u], a, bigRadix)
	str(out[u:], bb, bigRadix)
	return out, nil
}

// num returns NUM_radix(x): x read as a big-endian number in base radix.
func num(x []uint16, radix *big.Int) *big.Int {
	z := new(big.Int)
	var d big.Int
	for _, v := range x {
		z.Mul(z, radix)
		z.Add(z, d.SetUint64(uint64(v)))
	}
	return z
}

// str writes STR^m_radix(z) into out (m = len(out)), most significant
// numeral first. z must be below radix^m; z is consumed.
func str(out []uint16, z, radix *big.Int) {
	var r big.Int
	x := new(big.Int).Set(z)
	for i := len(out) - 1; i >= 0; i-- {
		x.QuoRem(x, radix, &r)
		out[i] = uint16(r.Uint64())
	}
}

func mod(a, m int) int {
	r := a % m
	if r < 0 {
		r += m
	}
	return r
}

func putUint32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}

// pow64 returns radix^e and whether it fits in a uint64.
func pow64(radix, e int) (uint64, bool) {
	p := uint64(1)
	for range e {
		hi, lo := bits.Mul64(p, uint64(radix))
		if hi != 0 {
			return 0, false
		}
		p = lo
	}
	return p, true
}

// cipher64 is Algorithms 7 and 8 with uint64 arithmetic, for when
// radix^v (so every numeral string half) fits in a uint64. It follows the
// same steps as the math/big path in cipher, which it must match exactly
// (TestFF1SmallMatchesBig, FuzzFF1SmallMatchesBig).
func (f *FF1) cipher64(radix int, x []uint16, tweak []byte, enc bool, u, v int, radixU, radixV uint64) []uint16 {
	n, t := len(x), len(tweak)
	r64 := uint64(radix)
	b := (bits.Len64(radixV-1) + 7) / 8 // step 3: bit length of radix^v - 1
	d := 4*((b+3)/4) + 4                // step 4
	var p [16]byte                      // step 5
	p[0], p[1], p[2] = 1, 2, 1
	p[3], p[4], p[5] = byte(radix>>16), byte(radix>>8), byte(radix)
	p[6] = 10
	p[7] = byte(u)
	putUint32(p[8:12], uint32(n))
	putUint32(p[12:16], uint32(t))
	pad := mod(-t-b-1, 16)
	q := make([]byte, t+pad+1+b)
	copy(q, tweak)
	var y0 [16]byte
	f.block.Encrypt(y0[:], p[:])
	// Scratch blocks for expand, allocated once per call: a block passed
	// to the cipher escapes.
	var r, blk [16]byte
	num64 := func(xs []uint16) uint64 {
		z := uint64(0)
		for _, d := range xs {
			z = z*r64 + uint64(d)
		}
		return z
	}
	a, bb := num64(x[:u]), num64(x[u:])
	sLen := ((d + 15) / 16) * 16
	s := make([]byte, sLen)
	var be [8]byte
	// round returns y mod m for round i with input in (NUM(B) or NUM(A)).
	round := func(i int, in uint64, m uint64) uint64 {
		q[t+pad] = byte(i)
		binary.BigEndian.PutUint64(be[:], in)
		copy(q[t+pad+1:], be[8-b:])
		f.expand(&y0, q, s, &r, &blk)
		// y mod m, reading S[0..d) as a big-endian number byte by byte.
		ym := uint64(0)
		for _, c := range s[:d] {
			hi, lo := bits.Mul64(ym, 256)
			lo, carry := bits.Add64(lo, uint64(c), 0)
			hi += carry
			if hi == 0 {
				ym = lo % m
			} else {
				// hi < 256; reduce hi first so Div64's hi < m holds even
				// for m <= 256.
				_, ym = bits.Div64(hi%m, lo, m)
			}
		}
		return ym
	}
	addMod := func(a, y, m uint64) uint64 { // (a + y) mod m, a, y < m
		s, carry := bits.Add64(a, y, 0)
		if carry != 0 || s >= m {
			s -= m
		}
		return s
	}
	if enc {
		for i := range 10 {
			m := radixU
			if i%2 == 1 {
				m = radixV
			}
			c := addMod(a, round(i, bb, m), m)
			a, bb = bb, c
		}
	} else {
		for i := 9; i >= 0; i-- {
			m := radixU
			if i%2 == 1 {
				m = radixV
			}
			y := round(i, a, m)
			c := bb - y
			if bb < y {
				c = bb + (m - y)
			}
			bb, a = a, c
		}
	}
	out := make([]uint16, n)
	str64 := func(o []uint16, z uint64) {
		for i := len(o) - 1; i >= 0; i-- {
			o[i] = uint16(z % r64)
			z /= r64
		}
	}
	str64(out[:u], a)
	str64(out[u:], bb)
	return out
}

// expand fills s for one round (steps 6.ii and 6.iii of SP 800-38G):
// R = PRF(P || Q), a CBC-MAC with a zero IV that y0 = CIPH(P) has already
// started, then S = R || CIPH(R xor [1]^16) || CIPH(R xor [2]^16) ...
func (f *FF1) expand(y0 *[16]byte, q, s []byte, rp, blkp *[16]byte) {
	r, blk := rp, blkp
	*r = *y0
	for j := 0; j < len(q); j += 16 {
		for k := range 16 {
			r[k] ^= q[j+k]
		}
		f.block.Encrypt(r[:], r[:])
	}
	copy(s, r[:])
	for j := 1; j < len(s)/16; j++ {
		*blk = *r
		// [j]^16: j as a 16-byte big-endian integer.
		blk[15] ^= byte(j)
		blk[14] ^= byte(j >> 8)
		blk[13] ^= byte(j >> 16)
		blk[12] ^= byte(j >> 24)
		f.block.Encrypt(s[16*j:16*j+16], blk[:])
	}
}
