package keyring

import (
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
)

// dataAADPrefix starts the AAD of data sealed under the barrier with
// SealData ("keyd data\x00"), so a sealed datum can never be opened as
// wrapped key material (whose AAD starts "keyd key\x00") or the reverse.
const dataAADPrefix = "keyd data\x00"

// SealData encrypts plaintext under the active barrier key with
// AES-256-GCM. The AAD is "keyd data\x00" + aad: callers put what the
// datum belongs to in aad (a KV path and version, a token vault and
// token), so a blob moved to another place in the state no longer opens.
// It returns the barrier version used (store it beside the blob) and
// nonce || sealed in a new slice.
func (r *Keyring) SealData(aad, plaintext []byte) (barrierVersion uint32, blob []byte, err error) {
	if r == nil || len(r.keys) == 0 {
		return 0, nil, fmt.Errorf("keyring: seal data: %w", ErrDestroyed)
	}
	k := &r.keys[0]
	return k.version, sealRandom(k.aead, plaintext, dataAAD(aad)), nil
}

// OpenData reverses SealData. It returns [ErrUnknownBarrierVersion] when
// barrierVersion is not held and [ErrUnwrap] for a wrong aad, blob or key.
func (r *Keyring) OpenData(aad []byte, barrierVersion uint32, blob []byte) ([]byte, error) {
	k := r.lookup(barrierVersion)
	if k == nil {
		return nil, fmt.Errorf("keyring: open data: barrier version %d: %w", barrierVersion, ErrUnknownBarrierVersion)
	}
	pt, err := openBlob(k.aead, blob, dataAAD(aad))
	if err != nil {
		return nil, fmt.Errorf("keyring: open data: %w", ErrUnwrap)
	}
	return pt, nil
}

func dataAAD(aad []byte) []byte {
	out := make([]byte, 0, len(dataAADPrefix)+len(aad))
	out = append(out, dataAADPrefix...)
	return append(out, aad...)
}

// DeriveKey returns a 32-byte key for purpose, derived with HKDF-SHA256
// from the oldest barrier key the keyring holds. Rotation keeps every
// older version, so the result is the same on every node and across
// barrier rotations. The caller owns (and should clear) the result.
func (r *Keyring) DeriveKey(purpose string) ([]byte, error) {
	if r == nil || len(r.keys) == 0 {
		return nil, fmt.Errorf("keyring: derive key: %w", ErrDestroyed)
	}
	oldest := &r.keys[len(r.keys)-1]
	return hkdf.Key(sha256.New, oldest.b[:], nil, "keyd derived v1\x00"+purpose, 32)
}
