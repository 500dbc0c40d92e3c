package keyring

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
)

// rootInfo is the HKDF info string; changing it changes every root key.
const rootInfo = "keyd root v1"

// minRootSecret is the shortest root secret DeriveRootKey accepts. keyd's
// secret is a 32-byte edwards25519 scalar; anything much shorter is a bug.
const minRootSecret = 16

// gcmNonceSize and gcmOverhead are the AES-GCM parameters used everywhere in
// this package (standard 96-bit nonce, 128-bit tag).
const (
	gcmNonceSize = 12
	gcmOverhead  = 16
)

// DeriveRootKey derives the root key as HKDF-SHA256(secret, salt nil,
// info "keyd root v1"), 32 bytes. It does not retain secret. It returns an
// error wrapping [ErrInvalidKey] if secret is shorter than 16 bytes.
func DeriveRootKey(secret []byte) (*RootKey, error) {
	if len(secret) < minRootSecret {
		return nil, fmt.Errorf("keyring: derive root key: secret shorter than %d bytes: %w", minRootSecret, ErrInvalidKey)
	}
	okm, err := hkdf.Key(sha256.New, secret, nil, rootInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("keyring: derive root key: %w", err)
	}
	k := &RootKey{b: new([32]byte)}
	copy(k.b[:], okm)
	clear(okm)
	k.aead = mustAESGCM(k.b[:])
	return k, nil
}

// Wrap encrypts plaintext with AES-256-GCM under k, binding aad, and
// returns nonce(12) || ciphertext || tag in a new slice. The nonce comes from
// crypto/rand. It returns [ErrDestroyed] for a destroyed or zero key.
func (k *RootKey) Wrap(plaintext, aad []byte) ([]byte, error) {
	if k == nil || k.aead == nil {
		return nil, fmt.Errorf("keyring: root wrap: %w", ErrDestroyed)
	}
	return sealRandom(k.aead, plaintext, aad), nil
}

// Unwrap reverses Wrap and returns the plaintext in a new slice owned by the
// caller. Any failure (wrong key, wrong aad, truncation, tampering) returns
// an error wrapping [ErrUnwrap]; a destroyed key returns [ErrDestroyed].
func (k *RootKey) Unwrap(blob, aad []byte) ([]byte, error) {
	if k == nil || k.aead == nil {
		return nil, fmt.Errorf("keyring: root unwrap: %w", ErrDestroyed)
	}
	pt, err := openBlob(k.aead, blob, aad)
	if err != nil {
		return nil, fmt.Errorf("keyring: root unwrap: %w", ErrUnwrap)
	}
	return pt, nil
}

// mustAESGCM builds AES-256-GCM for a 32-byte key. Both constructors fail
// only on a wrong key size, which callers have already ruled out, so a
// failure is a programmer error.
func mustAESGCM(key []byte) cipher.AEAD {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic("keyring: aes.NewCipher: " + err.Error())
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic("keyring: cipher.NewGCM: " + err.Error())
	}
	return aead
}

// sealRandom returns nonce || Seal(plaintext, aad) with a fresh random nonce,
// in one allocation.
func sealRandom(aead cipher.AEAD, plaintext, aad []byte) []byte {
	ns := aead.NonceSize()
	out := make([]byte, ns, ns+len(plaintext)+aead.Overhead())
	_, _ = rand.Read(out) // crypto/rand.Read never fails (Go 1.24+)
	return aead.Seal(out, out[:ns], plaintext, aad)
}

// openBlob opens nonce || sealed. It never panics on short input.
func openBlob(aead cipher.AEAD, blob, aad []byte) ([]byte, error) {
	ns := aead.NonceSize()
	if len(blob) < ns+aead.Overhead() {
		return nil, ErrMalformed
	}
	return aead.Open(nil, blob[:ns], blob[ns:], aad)
}
