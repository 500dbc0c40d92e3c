package keyring

import (
	"crypto/cipher"
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"
)

// redacted is what every secret type prints instead of its bytes.
const redacted = "[redacted]"

// RootKey is the AES-256 key derived from the root secret; it wraps the
// barrier keyring and nothing else. It exists only in memory.
//
// A RootKey is safe for concurrent use, except that Destroy must not race
// with other methods. Its zero value holds no key: Wrap and Unwrap return
// [ErrDestroyed]. It is incomparable with ==; use Equal.
type RootKey struct {
	_ [0]func()
	// b is behind a pointer so that copies of the struct (and fmt's
	// reflection over a containing struct) never duplicate the bytes.
	b    *[32]byte
	aead cipher.AEAD
}

// Equal reports in constant time whether k and o hold the same key. A nil
// or destroyed key equals nothing.
func (k *RootKey) Equal(o *RootKey) bool {
	if k == nil || o == nil || k.b == nil || o.b == nil {
		return false
	}
	return subtle.ConstantTimeCompare(k.b[:], o.b[:]) == 1
}

// Destroy zeroes the key bytes and drops the cipher. Later Wrap and Unwrap
// calls return [ErrDestroyed]. It is idempotent and must not run
// concurrently with other methods on k.
//
// Limitation: the AES key schedule inside the standard library's cipher
// cannot be zeroed; it becomes garbage and is reclaimed by the GC.
func (k *RootKey) Destroy() {
	if k == nil {
		return
	}
	if k.b != nil {
		clear(k.b[:])
		k.b = nil
	}
	k.aead = nil
}

// String returns "[redacted]".
func (RootKey) String() string { return redacted }

// GoString returns "[redacted]", so %#v cannot print the bytes.
func (RootKey) GoString() string { return redacted }

// Format writes "[redacted]" for every verb, including %x and %+v.
func (RootKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// LogValue implements [slog.LogValuer] and returns "[redacted]".
func (RootKey) LogValue() slog.Value { return slog.StringValue(redacted) }

// KeyMaterial is the secret material of one customer key version: an
// AES or XChaCha20 key, an HMAC key, an Ed25519 seed or a P-256 scalar.
//
// KeyMaterial is immutable once built and safe for concurrent reads; Destroy
// must not race with other methods. Its zero value is empty material. It is
// incomparable with ==; use Equal.
type KeyMaterial struct {
	_ [0]func()
	b []byte
}

// NewKeyMaterial wraps b as key material. It takes ownership of b: the
// caller must not use or modify b afterwards (Destroy zeroes it).
func NewKeyMaterial(b []byte) *KeyMaterial { return &KeyMaterial{b: b} }

// Len returns the length of the material in bytes (0 after Destroy).
func (m *KeyMaterial) Len() int {
	if m == nil {
		return 0
	}
	return len(m.b)
}

// Clone returns an independent copy; destroying one does not affect the
// other.
func (m *KeyMaterial) Clone() *KeyMaterial {
	if m == nil {
		return nil
	}
	return &KeyMaterial{b: append([]byte(nil), m.b...)}
}

// Equal reports in constant time (for equal lengths) whether m and o hold
// the same bytes. Nil or empty material equals nothing.
func (m *KeyMaterial) Equal(o *KeyMaterial) bool {
	if m == nil || o == nil || len(m.b) == 0 || len(o.b) == 0 {
		return false
	}
	return subtle.ConstantTimeCompare(m.b, o.b) == 1
}

// Destroy zeroes the bytes and empties m. It is idempotent and must not run
// concurrently with other methods on m.
func (m *KeyMaterial) Destroy() {
	if m == nil {
		return
	}
	clear(m.b)
	m.b = nil
}

// bytes returns the internal buffer; callers inside the package must not
// retain or modify it.
func (m *KeyMaterial) bytes() []byte {
	if m == nil {
		return nil
	}
	return m.b
}

// String returns "[redacted]".
func (KeyMaterial) String() string { return redacted }

// GoString returns "[redacted]", so %#v cannot print the bytes.
func (KeyMaterial) GoString() string { return redacted }

// Format writes "[redacted]" for every verb, including %x and %+v.
func (KeyMaterial) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// LogValue implements [slog.LogValuer] and returns "[redacted]".
func (KeyMaterial) LogValue() slog.Value { return slog.StringValue(redacted) }
