package envelope

import (
	"crypto/rand"
	"fmt"

	"github.com/keyd/keyd/hsmbridge"
)

const (
	// Version is the only format version written and accepted.
	Version byte = 1
	// IVSize is the AES-GCM nonce size in bytes.
	IVSize = 12
	// TagSize is the AES-GCM tag size in bytes (128 bits).
	TagSize = 16
	// Overhead is the number of bytes Marshal adds to a plaintext.
	Overhead = 1 + IVSize + TagSize
)

// NewIV returns a fresh random IV from crypto/rand. A random 96-bit IV per
// wrap is safe far beyond the number of wraps keyd performs per key (node
// shares and barrier keys, never per request).
func NewIV() ([]byte, error) {
	iv := make([]byte, IVSize)
	if _, err := rand.Read(iv); err != nil {
		return nil, fmt.Errorf("envelope: read random IV: %w", err)
	}
	return iv, nil
}

// AAD returns the additional data given to AES-GCM: the version byte
// followed by the caller's aad. Binding the version means a blob can never
// be reinterpreted under another format version.
func AAD(aad []byte) []byte {
	out := make([]byte, 0, 1+len(aad))
	out = append(out, Version)
	return append(out, aad...)
}

// Marshal returns version | iv | sealed in a new slice.
func Marshal(iv, sealed []byte) []byte {
	out := make([]byte, 0, 1+len(iv)+len(sealed))
	out = append(out, Version)
	out = append(out, iv...)
	return append(out, sealed...)
}

// Parse splits a blob made by Marshal. The returned slices alias b. It
// returns an error wrapping hsmbridge.ErrUnwrap for an unknown version or a
// blob too short to hold an IV and a tag.
func Parse(b []byte) (iv, sealed []byte, err error) {
	if len(b) < Overhead {
		return nil, nil, fmt.Errorf("envelope: %w: blob is %d bytes, want at least %d", hsmbridge.ErrUnwrap, len(b), Overhead)
	}
	if b[0] != Version {
		return nil, nil, fmt.Errorf("envelope: %w: unknown version %d", hsmbridge.ErrUnwrap, b[0])
	}
	return b[1 : 1+IVSize], b[1+IVSize:], nil
}
