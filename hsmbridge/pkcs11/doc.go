// Package pkcs11 is the hsmbridge.HSM for PKCS#11 tokens (SoftHSM2 in tests
// and dev, a real HSM in production) on github.com/miekg/pkcs11. It needs
// cgo; without cgo, Config.Open returns an error saying so.
//
// The wrapping key is generated inside the token (CKK_AES, 256 bits,
// CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, not CKA_EXTRACTABLE) and used with
// CKM_AES_GCM; its bytes never enter this process.
//
// One process loads and initialises each module once (C_Initialize is
// process-wide), however many HSMs it opens, and finalises it when the last
// one closes. With SoftHSM2 this means SOFTHSM2_CONF must be set, and every
// token created (see hsmbridge/softhsm), before the first Open.
//
// PKCS#11 logs in per application and token, not per session: while one
// HSM in this process is logged in to a token, the token accepts any PIN
// for it. Open therefore compares the PIN of a later Open of the same token
// with the one that logged in first, and fails with ErrLogin on a mismatch.
package pkcs11
