// Package soft is a software hsmbridge.HSM for dev and tests: each label's
// AES-256 key is a 0600 file in a directory (or lives only in memory).
// The key sits on disk in the clear; never use it in production, where the
// whole point is a key that cannot be copied.
package soft
