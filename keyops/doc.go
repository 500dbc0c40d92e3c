// Package keyops runs keyd's crypto operations over one unwrapped key:
// encrypt, decrypt, reencrypt, data keys, sign, verify, HMAC and
// verify-HMAC, one at a time or as a batch. It sits below every HTTP
// shape keyd serves (its own /v1/keys API and the Vault transit-compatible
// /v1/transit API), so both run the same code with the same limits.
//
// Functions are pure over their arguments (no I/O but the randomness
// reader), safe for concurrent use on one *keyring.Key, and return api
// types. Errors that the caller caused or that describe the key (a
// malformed or tampered ciphertext, an operation the key type does not
// support, a retired version, an input over the limits) come back as
// *api.Error with a stable code and a fixed message that never echoes
// input; anything else (a failing randomness source) is returned wrapped,
// for the HTTP layer to report as an internal error.
//
// Plaintexts returned to the caller are new slices the caller owns;
// intermediate plaintexts (reencrypt) are cleared before returning.
package keyops
