package keyops

import (
	"crypto/rand"
	"io"
	"strconv"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/keyring"
)

// TooLarge is the error for a plaintext or message over
// api.MaxPlaintextBytes; field names it.
func TooLarge(field string) error {
	return &api.Error{Code: api.CodeBadRequest, Message: field + " exceeds the limit of " + strconv.Itoa(api.MaxPlaintextBytes) + " bytes"}
}

// Encrypt encrypts plaintext under k's latest version, binding context.
func Encrypt(k *keyring.Key, rnd io.Reader, plaintext, context []byte) (*api.EncryptResponse, error) {
	if len(plaintext) > api.MaxPlaintextBytes {
		return nil, TooLarge("plaintext")
	}
	ct, err := k.Encrypt(rnd, plaintext, context)
	if err != nil {
		return nil, wire(err)
	}
	return &api.EncryptResponse{Ciphertext: ct, Version: k.Latest()}, nil
}

// Decrypt opens a keyd:vN: ciphertext of k with context. The plaintext is
// a new slice the caller owns.
func Decrypt(k *keyring.Key, ciphertext string, context []byte) (*api.DecryptResponse, error) {
	pt, v, err := k.Decrypt(ciphertext, context)
	if err != nil {
		return nil, wire(err)
	}
	return &api.DecryptResponse{Plaintext: pt, Version: v}, nil
}

// Reencrypt decrypts ciphertext and encrypts the plaintext again under
// k's latest version with the same context. The plaintext never leaves
// this function and is cleared.
func Reencrypt(k *keyring.Key, rnd io.Reader, ciphertext string, context []byte) (*api.EncryptResponse, error) {
	pt, _, err := k.Decrypt(ciphertext, context)
	if err != nil {
		return nil, wire(err)
	}
	defer clear(pt)
	return Encrypt(k, rnd, pt, context)
}

// Every rnd argument is the randomness for nonces and data keys; nil
// means crypto/rand.

// DataKey draws a fresh data key of req.Bytes (16, 24 or 32; default 32)
// and returns it encrypted under k, and in the clear unless
// req.WithoutPlaintext.
func DataKey(k *keyring.Key, rnd io.Reader, req api.DataKeyRequest) (*api.DataKeyResponse, error) {
	n := req.Bytes
	if n == 0 {
		n = 32
	}
	if n != 16 && n != 24 && n != 32 {
		return nil, &api.Error{Code: api.CodeBadRequest, Message: "bytes must be 16, 24 or 32"}
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	dk := make([]byte, n)
	if _, err := io.ReadFull(rnd, dk); err != nil {
		return nil, err
	}
	ct, err := k.Encrypt(rnd, dk, req.Context)
	if err != nil {
		clear(dk)
		return nil, wire(err)
	}
	out := &api.DataKeyResponse{Ciphertext: ct, Version: k.Latest()}
	if req.WithoutPlaintext {
		clear(dk)
	} else {
		out.Plaintext = dk
	}
	return out, nil
}

// Sign signs msg with k's latest version (ed25519, ecdsa-p256).
func Sign(k *keyring.Key, msg []byte) (*api.SignResponse, error) { return signLike(k, msg, false) }

// HMAC computes the HMAC-SHA256 of msg with k's latest version.
func HMAC(k *keyring.Key, msg []byte) (*api.SignResponse, error) { return signLike(k, msg, true) }

func signLike(k *keyring.Key, msg []byte, mac bool) (*api.SignResponse, error) {
	if len(msg) > api.MaxPlaintextBytes {
		return nil, TooLarge("message")
	}
	var sig string
	var err error
	if mac {
		sig, err = k.HMAC(msg)
	} else {
		sig, err = k.Sign(msg)
	}
	if err != nil {
		return nil, wire(err)
	}
	return &api.SignResponse{Signature: sig, Version: k.Latest()}, nil
}

// Verify checks a keyd:vN: signature. A signature that does not verify is
// Valid=false; only malformed input or an unusable key is an error.
func Verify(k *keyring.Key, msg []byte, sig string) (*api.VerifyResponse, error) {
	return verifyLike(k, msg, sig, false)
}

// VerifyHMAC checks a keyd:vN: MAC in constant time, as Verify does.
func VerifyHMAC(k *keyring.Key, msg []byte, mac string) (*api.VerifyResponse, error) {
	return verifyLike(k, msg, mac, true)
}

func verifyLike(k *keyring.Key, msg []byte, sig string, mac bool) (*api.VerifyResponse, error) {
	var err error
	if mac {
		err = k.VerifyHMAC(msg, sig)
	} else {
		err = k.Verify(msg, sig)
	}
	switch {
	case err == nil:
		return &api.VerifyResponse{Valid: true}, nil
	case IsBadSignature(err):
		return &api.VerifyResponse{Valid: false}, nil
	}
	return nil, wire(err)
}
