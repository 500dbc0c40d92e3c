//go:build cgo

package pkcs11

import (
	"errors"
	"fmt"

	"github.com/keyd/keyd/hsmbridge"
	"github.com/miekg/pkcs11"
)

// call names a PKCS#11 function in errors and selects the mapping of
// codes whose meaning depends on the call.
type call string

const (
	callInitialize       call = "C_Initialize"
	callGetSlotList      call = "C_GetSlotList"
	callGetTokenInfo     call = "C_GetTokenInfo"
	callOpenSession      call = "C_OpenSession"
	callLogin            call = "C_Login"
	callFindObjectsInit  call = "C_FindObjectsInit"
	callFindObjects      call = "C_FindObjects"
	callFindObjectsFinal call = "C_FindObjectsFinal"
	callGenerateKey      call = "C_GenerateKey"
	callEncryptInit      call = "C_EncryptInit"
	callEncrypt          call = "C_Encrypt"
	callDecryptInit      call = "C_DecryptInit"
	callDecrypt          call = "C_Decrypt"
)

// mapError is the one place PKCS#11 return codes become hsmbridge
// sentinels. The result wraps both the sentinel (if any) and the original
// pkcs11.Error, so errors.Is works for the sentinel and errors.As still
// finds the code.
func mapError(c call, err error) error {
	if err == nil {
		return nil
	}
	var code pkcs11.Error
	if errors.As(err, &code) {
		if s := sentinel(c, code); s != nil {
			return fmt.Errorf("hsmbridge/pkcs11: %s: %w: %w", c, s, err)
		}
	}
	return fmt.Errorf("hsmbridge/pkcs11: %s: %w", c, err)
}

// sentinel returns the hsmbridge sentinel for code returned by c, or nil.
func sentinel(c call, code pkcs11.Error) error {
	switch uint(code) {
	case pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_LOCKED, pkcs11.CKR_PIN_EXPIRED,
		pkcs11.CKR_PIN_INVALID, pkcs11.CKR_PIN_LEN_RANGE,
		pkcs11.CKR_USER_PIN_NOT_INITIALIZED, pkcs11.CKR_USER_NOT_LOGGED_IN:
		return hsmbridge.ErrLogin
	case pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_TOKEN_NOT_RECOGNIZED,
		pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED,
		pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_DEVICE_MEMORY,
		pkcs11.CKR_SLOT_ID_INVALID, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED:
		return hsmbridge.ErrUnavailable
	case pkcs11.CKR_KEY_HANDLE_INVALID, pkcs11.CKR_OBJECT_HANDLE_INVALID:
		// The key was destroyed behind our back (the cached handle is stale).
		return hsmbridge.ErrKeyNotFound
	case pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE,
		// SoftHSM2 reports a GCM tag mismatch as CKR_GENERAL_ERROR.
		pkcs11.CKR_GENERAL_ERROR:
		if c == callDecrypt {
			return hsmbridge.ErrUnwrap
		}
	}
	return nil
}

// isCode reports whether err carries one of the PKCS#11 codes.
func isCode(err error, codes ...uint) bool {
	var code pkcs11.Error
	if !errors.As(err, &code) {
		return false
	}
	for _, c := range codes {
		if uint(code) == c {
			return true
		}
	}
	return false
}

// sessionBroken reports whether a session that returned err must be closed
// rather than reused: any device error except the ones that leave the
// session idle (a failed C_Decrypt ends its operation; a stale key handle
// changes nothing).
func sessionBroken(err error) bool {
	var code pkcs11.Error
	if !errors.As(err, &code) {
		return false
	}
	return !errors.Is(err, hsmbridge.ErrUnwrap) && !errors.Is(err, hsmbridge.ErrKeyNotFound)
}
