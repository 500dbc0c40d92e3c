// Package hsmbridge gives keyd one way to use a hardware security module:
// wrap and unwrap small secrets under an AES-256 key that never leaves the
// device.
//
// keyd uses it for one job. The root secret is split into node shares (k of
// m, one per voter). Each node keeps only its own share on disk, and only
// wrapped: [HSM.Wrap] seals it under the node's HSM key (created once with
// [HSM.EnsureKey]) with the node id as AAD, so a wrapped share copied to
// another node, or relabelled as another node's, fails to unwrap with
// [ErrUnwrap]. On restart the node calls [HSM.Unwrap] and gathers k-1 more
// shares from its peers. A stolen disk, or one node's HSM, reveals nothing.
//
// Implementations: hsmbridge/pkcs11 (PKCS#11 through miekg/pkcs11, cgo; used
// with SoftHSM2 in tests, see hsmbridge/softhsm) and hsmbridge/soft (a key
// file, for dev and tests only). hsmbridge/hsmtest is the conformance suite
// both pass. This package must never log, return or persist key material.
package hsmbridge
