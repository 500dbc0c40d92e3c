package keyring

import "errors"

// Sentinel errors. Callers branch on them with errors.Is; the returned errors
// usually wrap them with the operation and the part that failed, and never
// carry key material.
var (
	// ErrUnwrap reports that a wrapped blob could not be opened: wrong key,
	// wrong associated data, truncation or tampering. The causes are
	// deliberately indistinguishable.
	ErrUnwrap = errors.New("keyring: unwrap failed")
	// ErrMalformed reports input that does not have the expected structure
	// (text format, payload length, serialised keyring).
	ErrMalformed = errors.New("keyring: malformed input")
	// ErrUnknownVersion reports a ciphertext, signature or MAC naming a key
	// version that the key does not hold.
	ErrUnknownVersion = errors.New("keyring: unknown key version")
	// ErrVersionTooOld reports a version below the key's minimum decryption
	// version.
	ErrVersionTooOld = errors.New("keyring: key version below minimum decryption version")
	// ErrDecrypt reports an authentication failure on decryption: wrong
	// context, wrong key, or a tampered ciphertext.
	ErrDecrypt = errors.New("keyring: decryption failed")
	// ErrBadSignature reports a signature or MAC that does not verify.
	ErrBadSignature = errors.New("keyring: signature verification failed")
	// ErrUnsupported reports an operation the key type does not support,
	// such as Encrypt on a signing key.
	ErrUnsupported = errors.New("keyring: operation not supported by key type")
	// ErrUnknownKeyType reports a key type name that this package does not
	// know.
	ErrUnknownKeyType = errors.New("keyring: unknown key type")
	// ErrUnknownBarrierVersion reports a blob wrapped under a barrier key
	// version that the keyring does not hold.
	ErrUnknownBarrierVersion = errors.New("keyring: unknown barrier key version")
	// ErrInvalidKey reports invalid arguments when building a key or
	// keyring: bad name, wrong material length, duplicate or zero version,
	// minimum decryption version above the latest, a too short root secret.
	ErrInvalidKey = errors.New("keyring: invalid key")
	// ErrDestroyed reports use of a secret after Destroy (or of a zero
	// value that was never initialised by this package).
	ErrDestroyed = errors.New("keyring: key destroyed or uninitialised")
	// ErrVersionExhausted reports that a rotation would overflow the uint32
	// version counter.
	ErrVersionExhausted = errors.New("keyring: version numbers exhausted")
)
