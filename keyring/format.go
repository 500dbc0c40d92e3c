package keyring

import (
	"encoding/base64"
	"fmt"
	"strconv"
)

// Text format shared by ciphertexts, signatures and MACs:
//
//	keyd:v<version>:<payload>
//
// version is decimal, 1..4294967295, without sign or leading zeros. payload
// is standard base64 (RFC 4648 §4, alphabet A-Z a-z 0-9 + /) WITH '='
// padding, encoded strictly: non-zero trailing bits, line breaks and any other
// non-alphabet byte are rejected, so every payload has exactly one text
// form. Padding was chosen so that a payload can be pasted into ordinary
// base64 tools. For ciphertexts payload is nonce || sealed (12-byte nonce for
// AES-256-GCM, 24-byte for XChaCha20-Poly1305); for signatures and MACs it is
// the raw signature or tag.
const textPrefix = "keyd:v"

// b64 is the one payload encoding. Strict makes decoding canonical.
var b64 = base64.StdEncoding.Strict()

// Precomputed parse errors: the hot path never allocates to fail, and each
// names the part of the text that is wrong.
var (
	errTextPrefix  = fmt.Errorf("keyring: text: missing %q prefix: %w", textPrefix, ErrMalformed)
	errTextVersion = fmt.Errorf("keyring: text: bad version: %w", ErrMalformed)
	errTextSep     = fmt.Errorf("keyring: text: missing ':' after version: %w", ErrMalformed)
	errTextPayload = fmt.Errorf("keyring: text: bad base64 payload: %w", ErrMalformed)
	errTextEmpty   = fmt.Errorf("keyring: text: empty payload: %w", ErrMalformed)
	errTextShort   = fmt.Errorf("keyring: text: payload too short: %w", ErrMalformed)
)

// maxVersionDigits is len("4294967295").
const maxVersionDigits = 10

// ParseText splits s into its version and decoded payload (a new slice owned
// by the caller). It returns an error wrapping [ErrMalformed], naming the
// part, for a missing prefix, a version that is 0, has leading zeros or
// overflows uint32, a missing separator, an empty payload, or payload bytes
// that are not strict padded standard base64 (including trailing garbage).
func ParseText(s string) (version uint32, payload []byte, err error) {
	version, enc, err := parseTextHeader(s)
	if err != nil {
		return 0, nil, err
	}
	payload = make([]byte, b64.DecodedLen(len(enc)))
	n, err := decodePayload(payload, enc)
	if err != nil {
		return 0, nil, err
	}
	return version, payload[:n:n], nil
}

// FormatText returns "keyd:v<version>:" followed by the padded standard
// base64 of payload. It does not validate version; ParseText rejects 0.
func FormatText(version uint32, payload []byte) string {
	b := make([]byte, 0, textHeaderLen(version)+b64.EncodedLen(len(payload)))
	b = appendTextHeader(b, version)
	return string(b64.AppendEncode(b, payload))
}

// parseTextHeader validates everything up to the payload and returns the
// still-encoded payload. It does not allocate.
func parseTextHeader(s string) (version uint32, enc string, err error) {
	if len(s) < len(textPrefix) || s[:len(textPrefix)] != textPrefix {
		return 0, "", errTextPrefix
	}
	s = s[len(textPrefix):]
	// A leading '0' is either version 0 or a leading zero: both rejected.
	if len(s) == 0 || s[0] < '1' || s[0] > '9' {
		return 0, "", errTextVersion
	}
	var v uint64
	i := 0
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		if i == maxVersionDigits {
			return 0, "", errTextVersion
		}
		v = v*10 + uint64(s[i]-'0')
	}
	if v > 1<<32-1 {
		return 0, "", errTextVersion
	}
	if i == len(s) || s[i] != ':' {
		return 0, "", errTextSep
	}
	enc = s[i+1:]
	if len(enc) == 0 {
		return 0, "", errTextEmpty
	}
	return uint32(v), enc, nil
}

// decodePayload decodes enc into dst, which must hold b64.DecodedLen(len(enc))
// bytes, and returns the decoded length.
func decodePayload(dst []byte, enc string) (int, error) {
	n, err := b64.Decode(dst, []byte(enc))
	// The decoder silently skips '\r' and '\n'; a canonical text re-encodes
	// to exactly its own length, which rules them out.
	if err != nil || b64.EncodedLen(n) != len(enc) {
		return 0, errTextPayload
	}
	return n, nil
}

// textHeaderLen is len("keyd:v<version>:").
func textHeaderLen(version uint32) int {
	n := len(textPrefix) + 2
	for v := version; v >= 10; v /= 10 {
		n++
	}
	return n
}

func appendTextHeader(dst []byte, version uint32) []byte {
	dst = append(dst, textPrefix...)
	dst = strconv.AppendUint(dst, uint64(version), 10)
	return append(dst, ':')
}
