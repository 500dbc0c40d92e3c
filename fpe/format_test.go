package fpe

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func testFF1(t testing.TB) *FF1 {
	ff, err := NewFF1(bytes.Repeat([]byte{0x5a}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return ff
}

// kept returns s with every byte of class replaced by '#'.
func shape(s string, class func(byte) bool) string {
	b := []byte(s)
	for i := range b {
		if class(b[i]) {
			b[i] = '#'
		}
	}
	return string(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlnum(c byte) bool { return isDigit(c) || isLetter(c) }

func TestFormatsRoundTripAndShape(t *testing.T) {
	ff := testFF1(t)
	cases := []struct {
		f     Format
		value string
		class func(byte) bool
	}{
		{Digits, "0123456789", isDigit},
		{Digits, "000000", isDigit},
		{Alphanumeric, "AbC9", isAlnum},
		{Alphanumeric, "user42Token", isAlnum},
		{Card, "4111 1111 1111 1111", isDigit},
		{Card, "5500-0000-0000-0004", isDigit},
		{Card, "378282246310005", isDigit},
		{Card, "4222222222222", isDigit},
		{Phone, "+1 (415) 555-0132", isDigit},
		{Phone, "+44.20.7946.0958", isDigit},
		{SSN, "078-05-1120", isDigit},
		{NationalID, "AB 12 34 56 C", isDigit},
		{NationalID, "1850312/4567", isDigit},
		{EmailLocal, "john.doe+news@example.com", isAlnum},
		{EmailLocal, "abcd@x.y", isAlnum},
	}
	for _, c := range cases {
		tweak := []byte("t1")
		enc, err := c.f.Encrypt(ff, c.value, tweak)
		if err != nil {
			t.Fatalf("%s %q: %v", c.f, c.value, err)
		}
		if enc == c.value {
			t.Errorf("%s %q: unchanged", c.f, c.value)
		}
		if len(enc) != len(c.value) || shape(enc, c.class) != shape(c.value, c.class) {
			t.Errorf("%s: shape changed: %q -> %q", c.f, c.value, enc)
		}
		again, _ := c.f.Encrypt(ff, c.value, tweak)
		if again != enc {
			t.Errorf("%s: not deterministic", c.f)
		}
		dec, err := c.f.Decrypt(ff, enc, tweak)
		if err != nil || dec != c.value {
			t.Errorf("%s: round trip %q -> %q -> %q (%v)", c.f, c.value, enc, dec, err)
		}
		if other, _ := c.f.Encrypt(ff, c.value, []byte("t2")); other == enc {
			t.Errorf("%s: tweak ignored", c.f)
		}
		switch c.f {
		case Card:
			if !LuhnValid(enc) {
				t.Errorf("card %q -> %q fails Luhn", c.value, enc)
			}
			if enc[len(enc)-4:] != c.value[len(c.value)-4:] {
				t.Errorf("card %q -> %q: last four changed", c.value, enc)
			}
		case EmailLocal:
			at := strings.LastIndexByte(c.value, '@')
			if enc[at:] != c.value[at:] {
				t.Errorf("email %q -> %q: domain changed", c.value, enc)
			}
		}
	}
}

func TestFormatsRefuse(t *testing.T) {
	ff := testFF1(t)
	cases := []struct {
		f     Format
		value string
		want  error
	}{
		{Digits, "12345", ErrDomain},        // 10^5 values only
		{Digits, "12345a", ErrInvalidValue}, // letter
		{Digits, "", ErrDomain},             //
		{Alphanumeric, "abc", ErrDomain},    // 62^3 < 10^6
		{Alphanumeric, "ab-cd", ErrInvalidValue},
		{Card, "4111 1111 1111 1112", ErrLuhn},
		{Card, "41111111111", ErrInvalidValue},          // 11 digits
		{Card, "41111111111111111111", ErrInvalidValue}, // 20 digits
		{Card, "4111_1111_1111_1111", ErrInvalidValue},
		{Phone, "55-012", ErrDomain},
		{Phone, "call 5550132", ErrInvalidValue},
		{SSN, "078/05/1120", ErrInvalidValue},
		{NationalID, "AB12C", ErrDomain},
		{EmailLocal, "bob@example.com", ErrDomain}, // 3 characters
		{EmailLocal, "no-at-sign", ErrInvalidValue},
		{EmailLocal, "@example.com", ErrInvalidValue},
		{EmailLocal, "abcd@", ErrInvalidValue},
		{EmailLocal, "ab\"cd@example.com", ErrInvalidValue},
		{EmailLocal, "abcd@exa mple.com", ErrInvalidValue},
		{Format("luhn"), "4111111111111111", ErrUnknownFormat},
		{Digits, strings.Repeat("1", MaxValueLen+1), ErrInvalidValue},
		{Digits, "12345\xff6", ErrInvalidValue},
	}
	for _, c := range cases {
		_, err := c.f.Encrypt(ff, c.value, nil)
		if !errors.Is(err, c.want) {
			t.Errorf("%s %q encrypt: got %v, want %v", c.f, c.value, err, c.want)
		}
		if err != nil && c.value != "" && len(c.value) > 6 && strings.Contains(err.Error(), c.value) {
			t.Errorf("%s: error echoes the value: %v", c.f, err)
		}
		if _, err := c.f.Decrypt(ff, c.value, nil); !errors.Is(err, c.want) {
			t.Errorf("%s %q decrypt: got %v, want %v", c.f, c.value, err, c.want)
		}
	}
	if _, err := ParseFormat("card"); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseFormat("Card"); !errors.Is(err, ErrUnknownFormat) {
		t.Fatalf("ParseFormat is case-sensitive: %v", err)
	}
}

// FuzzFormat feeds arbitrary values and format names to the parser: it
// either refuses with a typed error or round-trips keeping the shape.
func FuzzFormat(f *testing.F) {
	for _, s := range []string{"4111 1111 1111 1111", "+1 (415) 555-0132", "john.doe@example.com", "078-05-1120", "AB123456C", "abcd", "\x00@\x00"} {
		for _, fm := range Formats {
			f.Add(string(fm), s)
		}
	}
	ff := testFF1(f)
	f.Fuzz(func(t *testing.T, name, value string) {
		fm, err := ParseFormat(name)
		if err != nil {
			if !errors.Is(err, ErrUnknownFormat) {
				t.Fatalf("untyped error: %v", err)
			}
			fm = Format(name)
		}
		enc, err := fm.Encrypt(ff, value, []byte("fz"))
		if err != nil {
			if !errors.Is(err, ErrUnknownFormat) && !errors.Is(err, ErrInvalidValue) && !errors.Is(err, ErrLuhn) && !errors.Is(err, ErrDomain) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if len(enc) != len(value) {
			t.Fatalf("length changed")
		}
		dec, err := fm.Decrypt(ff, enc, []byte("fz"))
		if err != nil || dec != value {
			t.Fatalf("round trip failed: %v", err)
		}
	})
}
