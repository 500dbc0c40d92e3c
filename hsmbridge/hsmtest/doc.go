// Package hsmtest is the conformance suite every hsmbridge.HSM must pass.
// It only imports testing helpers and hsmbridge; it never prints key
// material or plaintext.
package hsmtest
