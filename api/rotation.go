package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"strings"
)

// rotationDigestTag separates root-rotation approvals from every other
// use of SHA-256 in keyd; a new encoding gets a new tag.
const rotationDigestTag = "keyd rotate-root approval v1"

// RotationDigest is what a custodian approves when they submit a share to
// a root rotation: the SHA-256, in lower-case hex, of a canonical encoding
// of the dealing the share helps make: the current root's commitments
// fingerprint (prevFingerprint), the new number of custodians and
// threshold, the plaintext-shares flag and the new custodians' keys in
// share order, exactly as the session lists them. Every field is
// length-prefixed, so no two dealings encode alike. Nothing secret is
// covered (never a share or the session nonce): anyone may compute it
// from the public session status, and custodians compare it out of band.
//
// The session's nonce and expiry are not covered: the starter computes
// the digest before the session exists. The prevFingerprint binds it to
// the current root, so an approval cannot be carried to a later rotation;
// within one root, a digest names exactly one dealing (the same keys, N,
// T and flag), whichever session carries it.
func RotationDigest(prevFingerprint string, custodians, threshold int, keys []string, plaintext bool) string {
	h := sha256.New()
	var b [8]byte
	field := func(s string) {
		binary.BigEndian.PutUint64(b[:], uint64(len(s)))
		h.Write(b[:])
		h.Write([]byte(s))
	}
	num := func(v uint64) {
		binary.BigEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
	field(rotationDigestTag)
	field(prevFingerprint)
	num(uint64(custodians))
	num(uint64(threshold))
	if plaintext {
		num(1)
	} else {
		num(0)
	}
	num(uint64(len(keys)))
	for _, k := range keys {
		field(k)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// SameRotationDigest reports whether an approval names digest: hex, case
// and surrounding white space ignored, compared in constant time.
func SameRotationDigest(approve, digest string) bool {
	a := strings.ToLower(strings.TrimSpace(approve))
	return len(a) == len(digest) && subtle.ConstantTimeCompare([]byte(a), []byte(digest)) == 1
}
