// Package envelope is the wrapped-blob format shared by every hsmbridge
// implementation: version byte | 12-byte IV | AES-GCM ciphertext and tag.
// It is pure: no I/O except crypto/rand for IVs, and no key material.
package envelope
