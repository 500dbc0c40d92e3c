package httpapi

import (
	"strings"

	"github.com/keyd/keyd/api"
)

// Ciphertexts, signatures and MACs on the transit API.
//
// keyd's text form is "keyd:v<N>:<base64(payload)>" (package keyring);
// Vault's is "vault:v<N>:<base64(payload)>". The transit API produces the
// vault: form and accepts both: a vault: text maps to the keyd: text with
// the same version and the same payload, and keyring then checks it as
// strictly as any keyd text (decimal version without leading zeros,
// strict padded standard base64, payload length). The mapping is only a
// change of prefix: "vault:v3:QUJD" and "keyd:v3:QUJD" are the same
// ciphertext. It does NOT make ciphertexts portable between a Vault
// server and keyd: the payload is sealed under keyd's key material with
// keyd's associated data (key name and version), which Vault does not
// have.

const (
	vaultTextPrefix = "vault:v"
	keydTextPrefix  = "keyd:v"
	// maxTextLen bounds one ciphertext or signature on the transit API:
	// a 32 KiB plaintext's ciphertext, base64, with room for the header.
	maxTextLen = 4*(api.MaxPlaintextBytes+64)/3 + 64
)

var errTextForm = &api.Error{Code: api.CodeDecrypt, Message: "ciphertext, signature or hmac must have the form vault:vN:<base64> (or keyd:vN:<base64>)"}

// fromTransitText returns the keyd: form of a vault: or keyd: text. It
// checks the prefix and the length only; the version and payload are
// checked by package keyring when the text is used.
func fromTransitText(s string) (string, error) {
	if len(s) > maxTextLen {
		return "", errTextForm
	}
	if rest, ok := strings.CutPrefix(s, vaultTextPrefix); ok {
		return keydTextPrefix + rest, nil
	}
	if strings.HasPrefix(s, keydTextPrefix) {
		return s, nil
	}
	return "", errTextForm
}

// toTransitText returns the vault: form of a keyd: text (produced by
// keyring, so always well formed).
func toTransitText(s string) string {
	if rest, ok := strings.CutPrefix(s, keydTextPrefix); ok {
		return vaultTextPrefix + rest
	}
	return s
}
