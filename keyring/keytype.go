package keyring

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	cryptorand "crypto/rand"
	"crypto/x509"
	"fmt"
	"io"
)

// KeyType names the algorithm of a customer key. Values are part of keyd's
// stored and wire formats: never rename one.
type KeyType string

// The supported key types.
const (
	// AES256GCM encrypts with AES-256-GCM and a random 96-bit nonce. Rotate
	// well before 2^32 encryptions per version (random-nonce collision
	// bound).
	AES256GCM KeyType = "aes256-gcm"
	// XChaCha20Poly1305 encrypts with XChaCha20-Poly1305 and a random
	// 192-bit nonce; it has no practical per-version message limit.
	XChaCha20Poly1305 KeyType = "xchacha20-poly1305"
	// HMACSHA256 computes and verifies HMAC-SHA256 tags.
	HMACSHA256 KeyType = "hmac-sha256"
	// Ed25519 signs messages with pure Ed25519.
	Ed25519 KeyType = "ed25519"
	// ECDSAP256 signs SHA-256(message) with ECDSA over P-256 (ASN.1 DER
	// signatures).
	ECDSAP256 KeyType = "ecdsa-p256"
	// AES256SIV encrypts deterministically with AES-SIV (RFC 5297, a
	// 64-byte key): the same plaintext and context under the same version
	// give the same ciphertext. See pii.go.
	AES256SIV KeyType = "aes256-siv"
	// FF1AES256 enciphers with NIST SP 800-38G FF1 over AES-256
	// (format-preserving, package fpe). See pii.go.
	FF1AES256 KeyType = "ff1-aes256"
)

// materialLen is the exact material length of a key type: 32 bytes for
// most (AES/XChaCha key, HMAC key, Ed25519 seed, P-256 scalar), 64 for
// AES-SIV (two AES-256 keys).
func (t KeyType) materialLen() int {
	if t == AES256SIV {
		return sivKeyLen
	}
	return 32
}

// ParseKeyType returns the KeyType named s (exact, case-sensitive match) or
// an error wrapping [ErrUnknownKeyType].
func ParseKeyType(s string) (KeyType, error) {
	t := KeyType(s)
	if !t.valid() {
		return "", fmt.Errorf("keyring: key type %q: %w", s, ErrUnknownKeyType)
	}
	return t, nil
}

func (t KeyType) valid() bool {
	switch t {
	case AES256GCM, XChaCha20Poly1305, HMACSHA256, Ed25519, ECDSAP256, AES256SIV, FF1AES256:
		return true
	}
	return false
}

// CanEncrypt reports whether keys of type t support Encrypt and Decrypt.
// AES256SIV keys encrypt deterministically.
func (t KeyType) CanEncrypt() bool { return t == AES256GCM || t == XChaCha20Poly1305 || t == AES256SIV }

// CanSign reports whether keys of type t support Sign and Verify.
func (t KeyType) CanSign() bool { return t == Ed25519 || t == ECDSAP256 }

// CanHMAC reports whether keys of type t support HMAC and VerifyHMAC.
func (t KeyType) CanHMAC() bool { return t == HMACSHA256 }

// String returns the type's name.
func (t KeyType) String() string { return string(t) }

// GenerateMaterial returns fresh material for type t from rand
// (crypto/rand.Reader if nil): 32 random bytes for every type but
// AES256SIV, which gets 64. For
// ECDSAP256 those bytes are the big-endian private scalar, re-drawn in the
// (probability ~2^-32) case that they are not in [1, n-1]. It returns
// [ErrUnknownKeyType] for an unknown t.
func GenerateMaterial(t KeyType, rand io.Reader) (*KeyMaterial, error) {
	if !t.valid() {
		return nil, fmt.Errorf("keyring: generate material: key type %q: %w", string(t), ErrUnknownKeyType)
	}
	b := make([]byte, t.materialLen())
	for {
		if err := readRandom(rand, b); err != nil {
			clear(b)
			return nil, fmt.Errorf("keyring: generate material: %w", err)
		}
		if t != ECDSAP256 || validScalar(b) {
			return NewKeyMaterial(b), nil
		}
	}
}

// validScalar reports whether b is a valid P-256 private scalar.
func validScalar(b []byte) bool {
	_, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), b)
	return err == nil
}

// checkMaterial validates m for type t without keeping anything.
func checkMaterial(t KeyType, m *KeyMaterial) error {
	if !t.valid() {
		return fmt.Errorf("key type %q: %w", string(t), ErrUnknownKeyType)
	}
	if m.Len() != t.materialLen() {
		return fmt.Errorf("material is %d bytes, want %d: %w", m.Len(), t.materialLen(), ErrInvalidKey)
	}
	if t == ECDSAP256 && !validScalar(m.bytes()) {
		return fmt.Errorf("material is not a valid P-256 scalar: %w", ErrInvalidKey)
	}
	return nil
}

// PublicKey returns the PKIX (SubjectPublicKeyInfo) DER encoding of the
// public key for Ed25519 and ECDSAP256 material. It returns
// [ErrUnsupported] for symmetric types, [ErrUnknownKeyType] for unknown
// types and [ErrInvalidKey] for invalid material.
func PublicKey(t KeyType, m *KeyMaterial) ([]byte, error) {
	if err := checkMaterial(t, m); err != nil {
		return nil, fmt.Errorf("keyring: public key: %w", err)
	}
	var pub any
	switch t {
	case Ed25519:
		priv := ed25519.NewKeyFromSeed(m.bytes())
		pub = priv.Public() // a copy
		clear(priv)
	case ECDSAP256:
		priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), m.bytes())
		if err != nil { // unreachable: checkMaterial parsed it
			return nil, fmt.Errorf("keyring: public key: %w", ErrInvalidKey)
		}
		pub = priv.Public()
	default:
		return nil, fmt.Errorf("keyring: public key: type %s: %w", t, ErrUnsupported)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("keyring: public key: %w", err)
	}
	return der, nil
}

// readRandom fills b from r, or from crypto/rand when r is nil.
func readRandom(r io.Reader, b []byte) error {
	if r == nil {
		_, _ = cryptorand.Read(b) // never fails (Go 1.24+)
		return nil
	}
	_, err := io.ReadFull(r, b)
	return err
}
