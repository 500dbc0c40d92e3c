package keyring

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
	"sync"

	"github.com/keyd/keyd/fpe"
	"github.com/tink-crypto/tink-go/v2/daead/subtle"
)

// Operations for protecting personal data (issue 14): deterministic
// encryption (AES256SIV), keyed pseudonyms (HMACSHA256) and
// format-preserving encryption (FF1AES256).
//
// Deterministic encryption is weaker than the randomized AEADs: equal
// plaintexts under the same key version and context give equal
// ciphertexts, so anyone who sees ciphertexts learns which records are
// equal (and their frequencies). It is allowed only on keys created as
// AES256SIV, for columns that must be joined or looked up. Its text is
// "keyd:v<N>:<base64(siv||ciphertext)>", with the same associated data as
// the AEAD types ("keyd:" + name + NUL + version + context), so a
// ciphertext cannot move between keys, versions or contexts.

const (
	sivKeyLen = subtle.AESSIVKeySize // 64: AES-256 for S2V and for CTR
	sivTagLen = 16
)

// pseudonymSubkeyLabel keys the HMAC that derives a version's pseudonym
// key from its material (HKDF-Extract with a fixed salt). The material is
// the HMAC's message, never its key, so no /hmac call on the same key (an
// HMAC keyed with the material) can compute the subkey or a pseudonym,
// and no pseudonym is a valid /hmac tag.
const pseudonymSubkeyLabel = "keyd pseudonym subkey v1"

// pseudonymDomain starts every pseudonym's HMAC input.
const pseudonymDomain = "keyd-pseudonym-v1\x00"

// fpeTweakDomain starts the hashed FF1 tweak.
const fpeTweakDomain = "keyd-fpe-v1\x00"

// MaxPseudonymInput bounds a pseudonym's value and context, each.
const MaxPseudonymInput = 1 << 16

var b64url = base64.RawURLEncoding

// CanFPE reports whether keys of type t support FPEEncrypt and FPEDecrypt.
func (t KeyType) CanFPE() bool { return t == FF1AES256 }

// CanPseudonym reports whether keys of type t support Pseudonym.
func (t KeyType) CanPseudonym() bool { return t == HMACSHA256 }

// initPII builds the per-version objects of the PII operations.
func (kv *keyVersion) initPII(t KeyType, m []byte) error {
	switch t {
	case AES256SIV:
		// AESSIV keeps slices of m (our private clone), so Destroy
		// zeroes the CTR key along with the material.
		siv, err := subtle.NewAESSIV(m)
		if err != nil {
			return fmt.Errorf("aes-siv: %w", ErrInvalidKey)
		}
		kv.siv = siv
	case FF1AES256:
		ff, err := fpe.NewFF1(m)
		if err != nil {
			return fmt.Errorf("ff1: %w", ErrInvalidKey)
		}
		kv.ff1 = ff
	case HMACSHA256:
		ext := hmac.New(sha256.New, []byte(pseudonymSubkeyLabel))
		ext.Write(m)
		sub := ext.Sum(nil)
		kv.pseudoKey = sub
		kv.pseudo = &sync.Pool{New: func() any { return hmac.New(sha256.New, sub) }}
	}
	return nil
}

// sivEncryptTo appends "keyd:v<N>:<base64(siv||ct)>" to dst.
func (kv *keyVersion) sivEncryptTo(dst, plaintext, context []byte) ([]byte, error) {
	aad := make([]byte, 0, len(kv.aad)+len(context))
	aad = append(append(aad, kv.aad...), context...)
	ct, err := kv.siv.EncryptDeterministically(plaintext, aad)
	if err != nil {
		return dst, fmt.Errorf("keyring: encrypt: %w", ErrMalformed)
	}
	out := appendTextHeader(dst, kv.num)
	return b64.AppendEncode(out, ct), nil
}

func (k *Key) sivDecrypt(ciphertext string, context []byte) ([]byte, uint32, error) {
	v, payload, err := ParseText(ciphertext)
	if err != nil {
		return nil, 0, err
	}
	if len(payload) < sivTagLen {
		return nil, 0, errTextShort
	}
	kv, err := k.version("decrypt", v)
	if err != nil {
		return nil, 0, err
	}
	aad := make([]byte, 0, len(kv.aad)+len(context))
	aad = append(append(aad, kv.aad...), context...)
	pt, err := kv.siv.DecryptDeterministically(payload, aad)
	if err != nil {
		return nil, 0, fmt.Errorf("keyring: decrypt: key %q version %d: %w", k.name, v, ErrDecrypt)
	}
	return pt, v, nil
}

// pick returns version v (0: the latest) for an operation whose result must
// be reproducible with a pinned version. The minimum decryption version
// applies: a retired version is refused even when pinned.
func (k *Key) pick(op string, v uint32) (*keyVersion, error) {
	if v == 0 {
		return k.latest(op)
	}
	return k.version(op, v)
}

// Pseudonym returns a keyed pseudonym of value within context: the
// unpadded base64url of HMAC-SHA256(subkey_v, encoding), where subkey_v =
// HMAC-SHA256("keyd pseudonym subkey v1", material_v) and encoding is
//
//	"keyd-pseudonym-v1" NUL || len(context) (uint32 BE) || context ||
//	len(value) (uint32 BE) || value
//
// The length prefixes make (context, value) pairs unambiguous. version 0
// uses the latest version; a pinned version gives the same pseudonym for
// the same input however often the key rotates, until it is retired by
// the minimum decryption version. It is one-way: keyd has no operation
// that maps a pseudonym back. Errors wrap [ErrUnsupported] (not
// HMACSHA256), [ErrMalformed] (value or context over
// [MaxPseudonymInput]), [ErrVersionTooOld] or [ErrUnknownVersion].
func (k *Key) Pseudonym(value, context []byte, version uint32) (string, uint32, error) {
	if !k.typ.CanPseudonym() {
		return "", 0, k.unsupported("pseudonym")
	}
	if len(value) > MaxPseudonymInput || len(context) > MaxPseudonymInput {
		return "", 0, fmt.Errorf("keyring: pseudonym: value or context over %d bytes: %w", MaxPseudonymInput, ErrMalformed)
	}
	kv, err := k.pick("pseudonym", version)
	if err != nil {
		return "", 0, err
	}
	h := kv.pseudo.Get().(hash.Hash)
	var n [4]byte
	h.Write([]byte(pseudonymDomain))
	binary.BigEndian.PutUint32(n[:], uint32(len(context)))
	h.Write(n[:])
	h.Write(context)
	binary.BigEndian.PutUint32(n[:], uint32(len(value)))
	h.Write(n[:])
	h.Write(value)
	var sum [sha256.Size]byte
	out := h.Sum(sum[:0])
	h.Reset()
	kv.pseudo.Put(h)
	return b64url.EncodeToString(out), kv.num, nil
}

// fpeTweak hashes the format and the caller's tweak into FF1's tweak, so
// the same value in two formats, or with two tweaks, enciphers
// independently. The version needs no binding: each has its own key.
func fpeTweak(f fpe.Format, tweak []byte) []byte {
	h := sha256.New()
	h.Write([]byte(fpeTweakDomain))
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(f)))
	h.Write(n[:])
	h.Write([]byte(f))
	binary.BigEndian.PutUint32(n[:], uint32(len(tweak)))
	h.Write(n[:])
	h.Write(tweak)
	return h.Sum(nil)
}

// FPEEncrypt enciphers value in format f with the latest version (or the
// pinned version, when non-zero) under tweak, and returns the result and
// the version used. FF1 output carries no version: callers keep it to
// decrypt after a rotation. Errors wrap [ErrUnsupported] (not FF1AES256),
// [ErrVersionTooOld], [ErrUnknownVersion], or one of package fpe's
// (ErrUnknownFormat, ErrInvalidValue, ErrLuhn, ErrDomain).
func (k *Key) FPEEncrypt(f fpe.Format, value string, tweak []byte, version uint32) (string, uint32, error) {
	return k.fpe("fpe encrypt", f, value, tweak, version, true)
}

// FPEDecrypt reverses FPEEncrypt with version (0: the latest). FF1 has no
// integrity: a wrong version, tweak or format, or a value that was never
// enciphered, gives a wrong value of the right shape, not an error.
func (k *Key) FPEDecrypt(f fpe.Format, value string, tweak []byte, version uint32) (string, uint32, error) {
	return k.fpe("fpe decrypt", f, value, tweak, version, false)
}

func (k *Key) fpe(op string, f fpe.Format, value string, tweak []byte, version uint32, enc bool) (string, uint32, error) {
	if !k.typ.CanFPE() {
		return "", 0, k.unsupported(op)
	}
	kv, err := k.pick(op, version)
	if err != nil {
		return "", 0, err
	}
	tw := fpeTweak(f, tweak)
	var out string
	if enc {
		out, err = f.Encrypt(kv.ff1, value, tw)
	} else {
		out, err = f.Decrypt(kv.ff1, value, tw)
	}
	if err != nil {
		return "", 0, fmt.Errorf("keyring: %s: %w", op, err)
	}
	return out, kv.num, nil
}
