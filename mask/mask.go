// Package mask turns a clear value into a masked form for display, for
// callers who may see a value's shape but never the value (keyd's
// decrypt-masked capability).
//
// Masking is byte-wise and keeps the length: ASCII letters and digits are
// replaced by '*', ASCII spaces and punctuation (separators such as "-",
// " ", "@", ".") are kept, and every other byte (control characters,
// non-ASCII UTF-8) is replaced by '*', so the output is always printable
// ASCII whatever the input. The length and the separators' positions are
// disclosed by design.
package mask

import (
	"errors"
	"fmt"
)

// Shape selects how much a masked value shows.
type Shape string

const (
	// Last4 shows the last four letters or digits and masks the rest:
	// "4111 1111 1111 1234" becomes "**** **** **** 1234". A value with
	// fewer than eight letters and digits is fully masked instead, so a
	// short value is never mostly disclosed.
	Last4 Shape = "last4"
	// Full masks every letter and digit and keeps only separators:
	// "078-05-1120" becomes "***-**-****".
	Full Shape = "full"
)

// Default is the shape used when none is named.
const Default = Last4

// ErrUnknownShape reports a shape name other than "", "last4" or "full".
var ErrUnknownShape = errors.New("mask: unknown mask shape")

// minForLast4 is the fewest letters and digits for which Last4 shows any.
const minForLast4 = 8

// ParseShape returns the Shape named s; "" gives Default.
func ParseShape(s string) (Shape, error) {
	switch Shape(s) {
	case "":
		return Default, nil
	case Last4, Full:
		return Shape(s), nil
	}
	return "", fmt.Errorf("mask: shape %q (want last4 or full): %w", truncate(s), ErrUnknownShape)
}

func truncate(s string) string {
	if len(s) > 16 {
		return s[:16] + "..."
	}
	return s
}

// Apply returns the masked form of value. It never returns value's
// letters or digits beyond what shape shows.
func Apply(value []byte, shape Shape) string {
	out := make([]byte, len(value))
	alnum := 0
	for _, c := range value {
		if isAlnum(c) {
			alnum++
		}
	}
	show := 0
	if shape == Last4 && alnum >= minForLast4 {
		show = 4
	}
	seen := 0 // letters and digits passed so far
	for i, c := range value {
		switch {
		case isAlnum(c):
			seen++
			if seen > alnum-show {
				out[i] = c
			} else {
				out[i] = '*'
			}
		case isSeparator(c):
			out[i] = c
		default:
			out[i] = '*'
		}
	}
	return string(out)
}

func isAlnum(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// isSeparator: ASCII space and punctuation, except '*' itself (kept would
// be harmless, but masked output then has one meaning for '*').
func isSeparator(c byte) bool {
	return c == ' ' || (c > ' ' && c < 0x7f && !isAlnum(c))
}
