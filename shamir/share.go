package shamir

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Share is one custodian's or node's piece of the root secret.
//
// Index is 1-based (1..255); kyber's PriShare.I is Index-1. Value is the
// 32-byte canonical little-endian scalar p(Index). Share redacts Value in
// String, GoString, Format and LogValue. Copies of a Share alias the same
// Value array, so Destroy on any copy wipes all of them.
type Share struct {
	Index int
	Value []byte
}

// Destroy zeroes Value in place (best effort; strings produced by
// EncodeShare cannot be wiped).
func (sh Share) Destroy() { clear(sh.Value) }

func (sh Share) redacted() string {
	return fmt.Sprintf("shamir.Share{Index: %d, Value: %s}", sh.Index, redacted)
}

// String redacts Value.
func (sh Share) String() string { return sh.redacted() }

// GoString redacts Value for %#v.
func (sh Share) GoString() string { return sh.redacted() }

// Format redacts Value for every fmt verb.
func (sh Share) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, sh.redacted()) }

// LogValue redacts Value in log/slog output, keeping the index.
func (sh Share) LogValue() slog.Value {
	return slog.GroupValue(slog.Int("index", sh.Index), slog.String("value", redacted))
}

// ShareTextPrefix starts every text-encoded share.
const ShareTextPrefix = "keyd-share-v1-"

const (
	shareVersion     = 1
	checksumSize     = 4
	sharePayloadSize = 1 + 1 + ScalarSize + checksumSize // version | index | value | checksum
)

var b64 = base64.RawURLEncoding.Strict()

// MarshalBinary returns the binary share payload: version byte (1) | index
// (1 byte, 1..255) | 32-byte value | first 4 bytes of SHA-256 over the
// preceding bytes. The caller owns the result and should zero it. A share
// with an index outside 1..255 or a Value that is not a 32-byte canonical
// scalar gives an error wrapping ErrShareEncoding.
func (sh Share) MarshalBinary() ([]byte, error) {
	if sh.Index < 1 || sh.Index > MaxShares {
		return nil, fmt.Errorf("%w: index %d outside 1..%d", ErrShareEncoding, sh.Index, MaxShares)
	}
	if len(sh.Value) != ScalarSize {
		return nil, fmt.Errorf("%w: value length %d, want %d", ErrShareEncoding, len(sh.Value), ScalarSize)
	}
	if !scalarCanonical(sh.Value) {
		return nil, fmt.Errorf("%w: value is not a canonical scalar", ErrShareEncoding)
	}
	b := make([]byte, 0, sharePayloadSize)
	b = append(b, shareVersion, byte(sh.Index))
	b = append(b, sh.Value...)
	sum := sha256.Sum256(b)
	return append(b, sum[:checksumSize]...), nil
}

// UnmarshalShare decodes the payload written by [Share.MarshalBinary]. Every
// failure wraps ErrShareEncoding and says which check failed (length,
// checksum, version, index, value) without echoing the value. The checksum
// is checked before the fields so corruption is reported as such. b is not
// retained; the caller should zero it.
func UnmarshalShare(b []byte) (Share, error) {
	if len(b) != sharePayloadSize {
		return Share{}, fmt.Errorf("%w: length %d, want %d (truncated or extended?)", ErrShareEncoding, len(b), sharePayloadSize)
	}
	body := b[:sharePayloadSize-checksumSize]
	sum := sha256.Sum256(body)
	if subtle.ConstantTimeCompare(sum[:checksumSize], b[sharePayloadSize-checksumSize:]) != 1 {
		return Share{}, fmt.Errorf("%w: checksum mismatch (typo?)", ErrShareEncoding)
	}
	if b[0] != shareVersion {
		return Share{}, fmt.Errorf("%w: unsupported version %d", ErrShareEncoding, b[0])
	}
	if b[1] == 0 {
		return Share{}, fmt.Errorf("%w: index 0 is not a share", ErrShareEncoding)
	}
	value := body[2:]
	if !scalarCanonical(value) {
		return Share{}, fmt.Errorf("%w: value is not a canonical scalar", ErrShareEncoding)
	}
	return Share{Index: int(b[1]), Value: append([]byte(nil), value...)}, nil
}

// EncodeShare returns the text form custodians copy and paste:
// "keyd-share-v1-" followed by the unpadded base64url of the binary payload.
// It returns "" if sh cannot be encoded (see [Share.MarshalBinary], which
// returns the reason). Go strings cannot be wiped, so keep
// the result's lifetime short.
func EncodeShare(sh Share) string {
	s, err := sh.encodeText()
	if err != nil {
		return ""
	}
	return s
}

// DecodeShare parses the text form produced by EncodeShare, ignoring
// surrounding whitespace. Every failure (prefix, character, length,
// checksum, version, index, value) returns an error wrapping ErrShareEncoding
// that says which check failed and never echoes the input.
func DecodeShare(s string) (Share, error) {
	return decodeShareText(strings.TrimSpace(s))
}

// MarshalJSON always fails: a share is never serialised implicitly, so a
// struct or slice holding shares cannot leak them through encoding/json or a
// slog JSON handler. Put EncodeShare's string in wire types instead.
func (Share) MarshalJSON() ([]byte, error) {
	return nil, errors.New("shamir: refusing to JSON-encode a share; use EncodeShare")
}

// encodeText is EncodeShare with the error kept.
func (sh Share) encodeText() (string, error) {
	payload, err := sh.MarshalBinary()
	if err != nil {
		return "", err
	}
	defer clear(payload)
	return ShareTextPrefix + b64.EncodeToString(payload), nil
}

func decodeShareText(s string) (Share, error) {
	if !strings.HasPrefix(s, ShareTextPrefix) {
		if strings.HasPrefix(s, "keyd-share-") {
			return Share{}, fmt.Errorf("%w: unsupported text version (want %q)", ErrShareEncoding, ShareTextPrefix)
		}
		return Share{}, fmt.Errorf("%w: missing %q prefix", ErrShareEncoding, ShareTextPrefix)
	}
	body := s[len(ShareTextPrefix):]
	// Go's base64 decoder silently skips '\r' and '\n'; reject every byte
	// outside the base64url alphabet so one share has exactly one spelling.
	for i := 0; i < len(body); i++ {
		if !isBase64URL(body[i]) {
			return Share{}, fmt.Errorf("%w: invalid character at offset %d", ErrShareEncoding, len(ShareTextPrefix)+i)
		}
	}
	if want := b64.EncodedLen(sharePayloadSize); len(body) != want {
		return Share{}, fmt.Errorf("%w: %d characters after the prefix, want %d (truncated or extended?)", ErrShareEncoding, len(body), want)
	}
	var payload [sharePayloadSize]byte
	defer clear(payload[:])
	n, err := b64.Decode(payload[:], []byte(body))
	if err != nil || n != sharePayloadSize {
		// Strict decoding fails on non-zero trailing bits; the error only
		// carries an offset, but say nothing more than needed.
		return Share{}, fmt.Errorf("%w: not canonical base64url", ErrShareEncoding)
	}
	return UnmarshalShare(payload[:])
}

func isBase64URL(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}
