// Package shamir splits keyd's root secret into verifiable shares and
// combines them again.
//
// It is a thin, verifying wrapper around kyber's polynomial sharing over
// edwards25519: every share is checked against the Feldman commitments
// (the public polynomial) before any interpolation, so a wrong, forged or
// mistyped share is rejected and named instead of silently producing a wrong
// root. The package owns the share and commitment encodings. It must never
// log, print or put key material (secrets or share values) in an error.
package shamir
