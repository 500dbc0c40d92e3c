package hsmbridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// HSM wraps secrets under a device-resident AES-256 key named by a label.
//
// Implementations are safe for concurrent use. Methods honour ctx: a call
// whose device operation cannot be interrupted returns ctx.Err() as soon as
// ctx ends, and the device call finishes in the background (Close waits for
// it). Returned slices are owned by the caller; inputs are not retained.
type HSM interface {
	// EnsureKey creates the non-extractable AES-256 wrapping key named label
	// if it does not exist yet. It is idempotent, and concurrent calls for
	// the same label on one HSM create at most one key. No method ever
	// returns the key's bytes.
	EnsureKey(ctx context.Context, label string) error

	// Wrap encrypts plaintext under the key named label with AES-256-GCM and
	// a fresh random 12-byte IV, binding aad. The result is self-describing:
	// version byte | IV | ciphertext and 16-byte tag. It returns
	// ErrKeyNotFound when label has no key.
	Wrap(ctx context.Context, label string, plaintext, aad []byte) ([]byte, error)

	// Unwrap reverses Wrap. It returns ErrKeyNotFound when label has no key
	// and ErrUnwrap when wrapped was not produced by Wrap under this key and
	// aad (wrong key, wrong aad, tampered, truncated or unknown version). It
	// never returns partial plaintext.
	Unwrap(ctx context.Context, label string, wrapped, aad []byte) ([]byte, error)

	// Health is a cheap liveness probe. It returns ErrUnavailable when the
	// device or token is gone and ErrClosed after Close.
	Health(ctx context.Context) error

	// Close releases the device. It is idempotent: later calls return the
	// first call's result. Every other method returns ErrClosed afterwards.
	io.Closer
}

// Config opens an HSM. Implementations are plain values (soft.Config,
// pkcs11.Config); secrets such as PINs are resolved by the caller before
// Open, never read from argv.
type Config interface {
	// Open connects to the device and returns a ready HSM that the caller
	// must Close.
	Open(ctx context.Context) (HSM, error)
}

// Sentinel errors. Implementations wrap them with context; callers branch
// with errors.Is.
var (
	// ErrKeyNotFound: no wrapping key has the label (call EnsureKey first).
	ErrKeyNotFound = errors.New("hsmbridge: key not found")
	// ErrUnwrap: wrong key, wrong aad, tampered or malformed blob.
	ErrUnwrap = errors.New("hsmbridge: unwrap failed")
	// ErrLogin: the PIN was rejected or is locked.
	ErrLogin = errors.New("hsmbridge: login failed")
	// ErrUnavailable: the device or token is gone or not responding; reopen.
	ErrUnavailable = errors.New("hsmbridge: device unavailable")
	// ErrClosed: the HSM was closed.
	ErrClosed = errors.New("hsmbridge: closed")
	// ErrInvalidLabel: the label is empty, too long or not UTF-8.
	ErrInvalidLabel = errors.New("hsmbridge: invalid key label")
)

// MaxLabelLen is the longest key label ValidateLabel accepts, in bytes.
const MaxLabelLen = 128

// ValidateLabel returns ErrInvalidLabel unless label is non-empty valid
// UTF-8 of at most MaxLabelLen bytes. Implementations call it first so that
// every backend accepts the same labels.
func ValidateLabel(label string) error {
	switch {
	case label == "":
		return fmt.Errorf("%w: empty", ErrInvalidLabel)
	case len(label) > MaxLabelLen:
		return fmt.Errorf("%w: %d bytes, max %d", ErrInvalidLabel, len(label), MaxLabelLen)
	case !utf8.ValidString(label):
		return fmt.Errorf("%w: not UTF-8", ErrInvalidLabel)
	}
	return nil
}
