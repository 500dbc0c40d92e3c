package keyops

import (
	"errors"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/keyring"
)

// errorTable maps keyring sentinels to wire errors, in order; the first
// match wins. Messages are fixed: the keyring error's text (which names
// the key and version) is not sent.
var errorTable = []struct {
	err  error
	code api.Code
	msg  string
}{
	{keyring.ErrVersionTooOld, api.CodeVersionDisabled, "ciphertext version is below the key's minimum decryption version"},
	{keyring.ErrUnknownVersion, api.CodeDecrypt, "ciphertext names a key version this key does not have"},
	{keyring.ErrMalformed, api.CodeDecrypt, "ciphertext or signature is malformed (expected keyd:vN:<base64>)"},
	{keyring.ErrDecrypt, api.CodeDecrypt, "decryption failed: wrong key, wrong context or tampered ciphertext"},
	{keyring.ErrUnsupported, api.CodeUnsupported, "operation not supported by this key type"},
	{keyring.ErrUnknownKeyType, api.CodeBadRequest, "unknown key type"},
}

// WireError returns the wire error for err when err is an *api.Error or
// wraps a keyring sentinel, and nil otherwise (an internal failure the
// caller reports generically).
func WireError(err error) *api.Error {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae
	}
	for _, m := range errorTable {
		if errors.Is(err, m.err) {
			return &api.Error{Code: m.code, Message: m.msg}
		}
	}
	return nil
}

// wire returns WireError(err) when it is not nil, else err unchanged.
func wire(err error) error {
	if e := WireError(err); e != nil {
		return e
	}
	return err
}

// ItemError is the error of one batch item: the wire error of err, or a
// generic internal error (never err's text).
func ItemError(err error) *api.BatchItemError {
	e := WireError(err)
	if e == nil {
		return &api.BatchItemError{Code: api.CodeInternal, Message: "internal error"}
	}
	return &api.BatchItemError{Code: e.Code, Message: e.Message}
}

// IsBadSignature reports whether err says a signature or MAC did not
// verify (as opposed to malformed input).
func IsBadSignature(err error) bool { return errors.Is(err, keyring.ErrBadSignature) }
