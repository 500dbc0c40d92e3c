package fpe

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

const (
	nistKey128 = "2B7E151628AED2A6ABF7158809CF4F3C"
	nistKey192 = "2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F"
	nistKey256 = "2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F7F036D6F04FC6A94"
	nistTweak1 = "39383736353433323130"
	nistTweak2 = "3737373770717273373737"
	base36     = "0123456789abcdefghijklmnopqrstuvwxyz"
)

// The nine FF1 samples published by NIST (csrc.nist.gov, "FF1samples.pdf"),
// samples 1-3 AES-128, 4-6 AES-192, 7-9 AES-256.
var nistFF1 = []struct {
	sample     int
	key, tweak string
	radix      int
	pt, ct     string
}{
	{1, nistKey128, "", 10, "0123456789", "2433477484"},
	{2, nistKey128, nistTweak1, 10, "0123456789", "6124200773"},
	{3, nistKey128, nistTweak2, 36, "0123456789abcdefghi", "a9tv40mll9kdu509eum"},
	{4, nistKey192, "", 10, "0123456789", "2830668132"},
	{5, nistKey192, nistTweak1, 10, "0123456789", "2496655549"},
	{6, nistKey192, nistTweak2, 36, "0123456789abcdefghi", "xbj3kv35jrawxv32ysr"},
	{7, nistKey256, "", 10, "0123456789", "6657667009"},
	{8, nistKey256, nistTweak1, 10, "0123456789", "1001623463"},
	{9, nistKey256, nistTweak2, 36, "0123456789abcdefghi", "xs8a0azh2avyalyzuwd"},
}

func toNums(t testing.TB, s string) []uint16 {
	t.Helper()
	out := make([]uint16, len(s))
	for i := range s {
		j := strings.IndexByte(base36, s[i])
		if j < 0 {
			t.Fatalf("bad char %q", s[i])
		}
		out[i] = uint16(j)
	}
	return out
}

func fromNums(n []uint16) string {
	b := make([]byte, len(n))
	for i, v := range n {
		b[i] = base36[v]
	}
	return string(b)
}

func TestFF1NISTSamples(t *testing.T) {
	for _, v := range nistFF1 {
		key, _ := hex.DecodeString(v.key)
		tweak, _ := hex.DecodeString(v.tweak)
		ff, err := NewFF1(key)
		if err != nil {
			t.Fatal(err)
		}
		pt := toNums(t, v.pt)
		ct, err := ff.Encrypt(v.radix, pt, tweak)
		if err != nil {
			t.Fatalf("sample %d: %v", v.sample, err)
		}
		if got := fromNums(ct); got != v.ct {
			t.Errorf("sample %d encrypt: got %s, want %s", v.sample, got, v.ct)
		}
		back, err := ff.Decrypt(v.radix, toNums(t, v.ct), tweak)
		if err != nil {
			t.Fatalf("sample %d: %v", v.sample, err)
		}
		if got := fromNums(back); got != v.pt {
			t.Errorf("sample %d decrypt: got %s, want %s", v.sample, got, v.pt)
		}
		if fromNums(pt) != v.pt {
			t.Errorf("sample %d: Encrypt modified its input", v.sample)
		}
	}
}

func TestFF1RoundTripRadixes(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	ff, _ := NewFF1(key)
	for _, radix := range []int{2, 10, 36, 62, 255, 256, 1000, 65535, 65536} {
		n := 2
		for CheckDomain(radix, n) != nil {
			n++
		}
		for _, ln := range []int{n, n + 1, n + 7, 64} {
			x := make([]uint16, ln)
			for i := range x {
				x[i] = uint16((i*7919 + 13) % radix)
			}
			ct, err := ff.Encrypt(radix, x, []byte("tw"))
			if err != nil {
				t.Fatalf("radix %d len %d: %v", radix, ln, err)
			}
			for _, d := range ct {
				if int(d) >= radix {
					t.Fatalf("radix %d: numeral %d out of range", radix, d)
				}
			}
			pt, err := ff.Decrypt(radix, ct, []byte("tw"))
			if err != nil {
				t.Fatal(err)
			}
			if !equalNums(pt, x) {
				t.Fatalf("radix %d len %d: round trip failed", radix, ln)
			}
			other, _ := ff.Encrypt(radix, x, []byte("tx"))
			if equalNums(other, ct) && ln > 4 {
				t.Fatalf("radix %d len %d: tweak ignored", radix, ln)
			}
		}
	}
}

func equalNums(a, b []uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFF1Limits(t *testing.T) {
	ff, _ := NewFF1(make([]byte, 32))
	cases := []struct {
		radix int
		x     []uint16
		tweak []byte
		want  error
	}{
		{1, make([]uint16, 30), nil, ErrRadix},
		{65537, make([]uint16, 4), nil, ErrRadix},
		{10, make([]uint16, 5), nil, ErrDomain},            // 10^5 < 10^6
		{2, make([]uint16, 19), nil, ErrDomain},            // 2^19 < 10^6
		{1000, make([]uint16, 1), nil, ErrDomain},          // minlen 2
		{10, make([]uint16, MaxLen+1), nil, ErrDomain},     // too long
		{10, []uint16{1, 2, 3, 4, 5, 10}, nil, ErrNumeral}, // numeral >= radix
		{10, make([]uint16, 6), make([]byte, MaxTweakLen+1), ErrTweak},
	}
	for i, c := range cases {
		if _, err := ff.Encrypt(c.radix, c.x, c.tweak); !errors.Is(err, c.want) {
			t.Errorf("case %d encrypt: got %v, want %v", i, err, c.want)
		}
		if _, err := ff.Decrypt(c.radix, c.x, c.tweak); !errors.Is(err, c.want) {
			t.Errorf("case %d decrypt: got %v, want %v", i, err, c.want)
		}
	}
	// The boundaries themselves are accepted.
	for _, ok := range []struct{ radix, n int }{{10, 6}, {2, 20}, {1000, 2}, {36, 4}, {62, 4}} {
		if err := CheckDomain(ok.radix, ok.n); err != nil {
			t.Errorf("radix %d n %d: %v", ok.radix, ok.n, err)
		}
	}
	for _, bad := range []struct{ radix, n int }{{36, 3}, {62, 3}} {
		if err := CheckDomain(bad.radix, bad.n); !errors.Is(err, ErrDomain) {
			t.Errorf("radix %d n %d: got %v", bad.radix, bad.n, err)
		}
	}
	if _, err := NewFF1(make([]byte, 20)); !errors.Is(err, ErrKey) {
		t.Errorf("20-byte key: %v", err)
	}
}

func FuzzFF1RoundTrip(f *testing.F) {
	f.Add([]byte("0123456789"), []byte("tweak"), uint16(10))
	f.Add([]byte{0xff, 0xfe, 0, 1}, []byte{}, uint16(0))
	f.Add([]byte("abcdefghijklmnopqrstuvwxyz"), []byte{1, 2, 3}, uint16(36))
	ff, _ := NewFF1(bytes.Repeat([]byte{0x42}, 32))
	f.Fuzz(func(t *testing.T, raw, tweak []byte, r uint16) {
		radix := int(r)%(MaxRadix-1) + 2
		if len(raw) > 256 {
			raw = raw[:256]
		}
		x := make([]uint16, len(raw))
		for i, b := range raw {
			x[i] = uint16((int(b) * 257) % radix)
		}
		ct, err := ff.Encrypt(radix, x, tweak)
		if err != nil {
			if CheckDomain(radix, len(x)) == nil && len(tweak) <= MaxTweakLen {
				t.Fatalf("valid input refused: %v", err)
			}
			return
		}
		pt, err := ff.Decrypt(radix, ct, tweak)
		if err != nil || !equalNums(pt, x) {
			t.Fatalf("round trip failed: %v", err)
		}
	})
}

// bigOnly runs fn with the uint64 path disabled. Tests using it must not
// run in parallel.
func bigOnly(fn func()) {
	useSmall = false
	defer func() { useSmall = true }()
	fn()
}

// TestFF1SmallMatchesBig compares the uint64 path with the math/big path
// (which is the reference: it also serves long inputs) on every radix
// class, including radixes below 256 where y mod m needs care, and on the
// NIST samples.
func TestFF1SmallMatchesBig(t *testing.T) {
	ff, _ := NewFF1(bytes.Repeat([]byte{0x33}, 32))
	for _, v := range nistFF1 {
		key, _ := hex.DecodeString(v.key)
		tweak, _ := hex.DecodeString(v.tweak)
		f, _ := NewFF1(key)
		var got []uint16
		bigOnly(func() { got, _ = f.Encrypt(v.radix, toNums(t, v.pt), tweak) })
		if fromNums(got) != v.ct {
			t.Errorf("sample %d on the math/big path: got %s, want %s", v.sample, fromNums(got), v.ct)
		}
	}
	for _, radix := range []int{2, 3, 7, 10, 16, 36, 62, 101, 255, 256, 1000, 4096, 65535, 65536} {
		for n := 2; n <= 40; n++ {
			if CheckDomain(radix, n) != nil {
				continue
			}
			if _, ok := pow64(radix, n-n/2); !ok {
				break
			}
			x := make([]uint16, n)
			for i := range x {
				x[i] = uint16((i*31 + n*7 + radix) % radix)
			}
			for _, tw := range [][]byte{nil, []byte("tweak"), bytes.Repeat([]byte{9}, 40)} {
				small, err := ff.Encrypt(radix, x, tw)
				if err != nil {
					t.Fatal(err)
				}
				var big, bigDec []uint16
				bigOnly(func() {
					big, _ = ff.Encrypt(radix, x, tw)
					bigDec, _ = ff.Decrypt(radix, small, tw)
				})
				if !equalNums(small, big) {
					t.Fatalf("radix %d n %d: uint64 and math/big paths differ", radix, n)
				}
				dec, _ := ff.Decrypt(radix, small, tw)
				if !equalNums(dec, x) || !equalNums(bigDec, x) {
					t.Fatalf("radix %d n %d: decrypt mismatch", radix, n)
				}
			}
		}
	}
}

func FuzzFF1SmallMatchesBig(f *testing.F) {
	f.Add([]byte("0123456789"), []byte("t"), uint16(10))
	f.Add([]byte{1, 2, 3}, []byte{}, uint16(99))
	ff, _ := NewFF1(bytes.Repeat([]byte{0x44}, 32))
	f.Fuzz(func(t *testing.T, raw, tweak []byte, r uint16) {
		radix := int(r)%(MaxRadix-1) + 2
		if len(raw) > 40 || len(tweak) > MaxTweakLen {
			return
		}
		x := make([]uint16, len(raw))
		for i, b := range raw {
			x[i] = uint16((int(b) * 257) % radix)
		}
		small, err := ff.Encrypt(radix, x, tweak)
		if err != nil {
			return
		}
		var big []uint16
		bigOnly(func() { big, _ = ff.Encrypt(radix, x, tweak) })
		if !equalNums(small, big) {
			t.Fatalf("paths differ")
		}
	})
}
