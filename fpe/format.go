package fpe

import (
	"errors"
	"fmt"
	"strings"
)

// Format names a string shape that FF1 keeps: which characters are
// enciphered (over which alphabet) and which are kept in place.
type Format string

// The named formats. Values are part of keyd's wire format: never rename
// one.
const (
	// Digits: the whole value is ASCII digits, all enciphered (radix 10,
	// at least 6 digits).
	Digits Format = "digits"
	// Alphanumeric: the whole value is [0-9A-Za-z], all enciphered over
	// that 62-character alphabet (at least 4 characters). A character's
	// class may change (a digit may become a letter).
	Alphanumeric Format = "alphanumeric"
	// Card: a payment card number of 12 to 19 digits with optional ' ' or
	// '-' separators, which must pass the Luhn check. The last four digits
	// and the separators are kept; the other digits are enciphered except
	// the one just before the last four, which is then chosen so that the
	// result passes the Luhn check again. The issuer prefix (BIN) is NOT
	// kept: keeping six more digits would leave 10^1 to 10^8 values for
	// the shortest numbers, below SP 800-38G's minimum domain.
	Card Format = "card"
	// Phone: digits are enciphered; '+', ' ', '-', '.', '(' and ')' are
	// kept where they are. At least 6 digits.
	Phone Format = "phone"
	// SSN: a US social security number or any digit string with ' ', '-'
	// or '.' separators; digits are enciphered, separators kept. At least
	// 6 digits.
	SSN Format = "ssn"
	// NationalID: digits are enciphered; ASCII letters and the separators
	// ' ', '-', '.', '/' are kept (national ids often carry letter
	// prefixes or check letters). At least 6 digits.
	NationalID Format = "national-id"
	// EmailLocal: an e-mail address; the local part's [0-9A-Za-z]
	// characters are enciphered over the 62-character alphabet, its '.',
	// '_', '+' and '-' are kept, and '@' and the domain are kept as they
	// are. The split is at the last '@'. At least 4 enciphered characters.
	EmailLocal Format = "email-local"
)

// Formats lists every named format.
var Formats = []Format{Digits, Alphanumeric, Card, Phone, SSN, NationalID, EmailLocal}

// Format errors; returned errors wrap them (or ErrDomain) and never carry
// the value.
var (
	// ErrUnknownFormat reports a format name that is not one of Formats.
	ErrUnknownFormat = errors.New("fpe: unknown format")
	// ErrInvalidValue reports a value that does not have the format's
	// shape: a character the format neither enciphers nor keeps, a wrong
	// digit count, a missing '@', invalid UTF-8.
	ErrInvalidValue = errors.New("fpe: value does not match the format")
	// ErrLuhn reports a card number whose check digit is wrong.
	ErrLuhn = errors.New("fpe: card number fails the Luhn check")
)

// MaxValueLen is the longest value, in bytes, a format accepts.
const MaxValueLen = 1024

const (
	alphaDigits = "0123456789"
	alphaAlnum  = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// ParseFormat returns the Format named s (exact match) or an error wrapping
// ErrUnknownFormat.
func ParseFormat(s string) (Format, error) {
	for _, f := range Formats {
		if string(f) == s {
			return f, nil
		}
	}
	return "", fmt.Errorf("fpe: format %q: %w", truncate(s), ErrUnknownFormat)
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// spec describes how a format splits a value.
type spec struct {
	alphabet string // enciphered characters, numeral i is alphabet[i]
	keep     string // characters kept in place
	letters  bool   // ASCII letters are kept too
}

func (f Format) spec() (spec, bool) {
	switch f {
	case Digits:
		return spec{alphabet: alphaDigits}, true
	case Alphanumeric:
		return spec{alphabet: alphaAlnum}, true
	case Card:
		return spec{alphabet: alphaDigits, keep: " -"}, true
	case Phone:
		return spec{alphabet: alphaDigits, keep: "+ -.()"}, true
	case SSN:
		return spec{alphabet: alphaDigits, keep: " -."}, true
	case NationalID:
		return spec{alphabet: alphaDigits, keep: " -./", letters: true}, true
	case EmailLocal:
		return spec{alphabet: alphaAlnum, keep: "._+-"}, true
	}
	return spec{}, false
}

// parsed is a value split into the numerals to encipher and where they go.
type parsed struct {
	out   []byte   // the value's bytes, enciphered positions overwritten
	pos   []int    // byte offsets of the enciphered characters in out
	nums  []uint16 // their numerals
	radix int
	alpha string
}

// parse splits value (already cut to the part the format touches).
func (sp spec) parse(value string) (*parsed, error) {
	p := &parsed{out: []byte(value), radix: len(sp.alphabet), alpha: sp.alphabet}
	for i := 0; i < len(value); i++ {
		ch := value[i]
		if j := strings.IndexByte(sp.alphabet, ch); j >= 0 {
			p.pos = append(p.pos, i)
			p.nums = append(p.nums, uint16(j))
			continue
		}
		if strings.IndexByte(sp.keep, ch) >= 0 || (sp.letters && isLetter(ch)) {
			continue
		}
		return nil, fmt.Errorf("fpe: character at byte %d is not allowed: %w", i, ErrInvalidValue)
	}
	return p, nil
}

func (p *parsed) fill(nums []uint16) string {
	for i, at := range p.pos {
		p.out[at] = p.alpha[nums[i]]
	}
	return string(p.out)
}

func isLetter(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

// Encrypt enciphers value in format f with ff under tweak and returns the
// result, which has the same length and the same kept characters. Errors
// wrap ErrUnknownFormat, ErrInvalidValue, ErrLuhn, ErrDomain or ErrTweak.
func (f Format) Encrypt(ff *FF1, value string, tweak []byte) (string, error) {
	return f.apply(ff, value, tweak, true)
}

// Decrypt reverses Encrypt. FF1 has no integrity: a value that was never
// enciphered, or one enciphered under another key, version, format or
// tweak, decrypts without error to an unrelated value of the same shape.
func (f Format) Decrypt(ff *FF1, value string, tweak []byte) (string, error) {
	return f.apply(ff, value, tweak, false)
}

func (f Format) apply(ff *FF1, value string, tweak []byte, enc bool) (string, error) {
	sp, ok := f.spec()
	if !ok {
		return "", fmt.Errorf("fpe: format %q: %w", truncate(string(f)), ErrUnknownFormat)
	}
	if len(value) > MaxValueLen {
		return "", fmt.Errorf("fpe: value of %d bytes exceeds %d: %w", len(value), MaxValueLen, ErrInvalidValue)
	}
	prefix, body, suffix := "", value, ""
	if f == EmailLocal {
		at := strings.LastIndexByte(value, '@')
		if at <= 0 || at == len(value)-1 {
			return "", fmt.Errorf("fpe: email-local: want local@domain: %w", ErrInvalidValue)
		}
		body, suffix = value[:at], value[at:]
		for i := 1; i < len(suffix); i++ {
			if c := suffix[i]; c <= ' ' || c >= 0x7f || c == '@' {
				return "", fmt.Errorf("fpe: email-local: domain has a disallowed character: %w", ErrInvalidValue)
			}
		}
	}
	p, err := sp.parse(body)
	if err != nil {
		return "", fmt.Errorf("fpe: %s: %w", f, err)
	}
	if f == Card {
		s, err := p.card(ff, tweak, enc)
		if err != nil {
			return "", err
		}
		return prefix + s + suffix, nil
	}
	if err := CheckDomain(p.radix, len(p.nums)); err != nil {
		return "", fmt.Errorf("fpe: %s: %d characters to encipher: %w", f, len(p.nums), err)
	}
	var nums []uint16
	if enc {
		nums, err = ff.Encrypt(p.radix, p.nums, tweak)
	} else {
		nums, err = ff.Decrypt(p.radix, p.nums, tweak)
	}
	if err != nil {
		return "", fmt.Errorf("fpe: %s: %w", f, err)
	}
	return prefix + p.fill(nums) + suffix, nil
}

// card enciphers all digits but the last five, keeps the last four and
// recomputes the fifth from the end so the result passes the Luhn check.
// Decryption does the same in reverse: the original number passed the
// check, so its fifth-from-last digit is recomputed the same way.
func (p *parsed) card(ff *FF1, tweak []byte, enc bool) (string, error) {
	n := len(p.nums)
	if n < 12 || n > 19 {
		return "", fmt.Errorf("fpe: card: %d digits, want 12 to 19: %w", n, ErrInvalidValue)
	}
	if !luhnValid(p.nums) {
		return "", fmt.Errorf("fpe: card: %w", ErrLuhn)
	}
	head := p.nums[:n-5]
	var err error
	var nh []uint16
	if enc {
		nh, err = ff.Encrypt(10, head, tweak)
	} else {
		nh, err = ff.Decrypt(10, head, tweak)
	}
	if err != nil {
		return "", fmt.Errorf("fpe: card: %w", err)
	}
	out := make([]uint16, n)
	copy(out, nh)
	copy(out[n-4:], p.nums[n-4:])
	out[n-5] = 0
	// The fix digit is at index 4 from the right, which the Luhn sum does
	// not double: it adds itself.
	out[n-5] = uint16((10 - luhnSum(out)%10) % 10)
	return p.fill(out), nil
}

// luhnSum returns the Luhn sum of digits (the rightmost is the check digit).
func luhnSum(d []uint16) int {
	s := 0
	for i := range d {
		v := int(d[len(d)-1-i])
		if i%2 == 1 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		s += v
	}
	return s
}

func luhnValid(d []uint16) bool { return luhnSum(d)%10 == 0 }

// LuhnValid reports whether the ASCII digits of s (other bytes ignored)
// pass the Luhn check.
func LuhnValid(s string) bool {
	var d []uint16
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			d = append(d, uint16(s[i]-'0'))
		}
	}
	return len(d) > 0 && luhnValid(d)
}
