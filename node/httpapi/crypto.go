package httpapi

import (
	"io"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/keyring"
)

// Crypto handlers run on any unsealed node from memory: no Raft, no disk.

func tooLarge(field string) error {
	return &api.Error{Code: api.CodeBadRequest, Message: field + " exceeds the limit of 32768 bytes"}
}

// withKey decodes the request body into a T, fetches the path's key for
// a crypto call and runs fn: the shape every single-item crypto handler
// shares.
func withKey[T any](s *Server, c *call, fn func(k *keyring.Key, req *T) (any, error)) (any, error) {
	var req T
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	k, release, err := s.cfg.Crypto.AcquireCryptoKey(c.name())
	if err != nil {
		return nil, err
	}
	defer release()
	return fn(k, &req)
}

func (s *Server) encrypt(c *call) (any, error) {
	return withKey(s, c, func(k *keyring.Key, req *api.EncryptRequest) (any, error) {
		return encryptOne(k, s.cfg.Rand, req.Plaintext, req.Context)
	})
}

func encryptOne(k *keyring.Key, rnd io.Reader, plaintext, context []byte) (*api.EncryptResponse, error) {
	if len(plaintext) > api.MaxPlaintextBytes {
		return nil, tooLarge("plaintext")
	}
	ct, err := k.Encrypt(rnd, plaintext, context)
	if err != nil {
		return nil, err
	}
	return &api.EncryptResponse{Ciphertext: ct, Version: k.Latest()}, nil
}

// POST /decrypt is served by decryptPII (pii.go): it also answers
// callers holding decrypt-masked.

func reencryptOne(k *keyring.Key, rnd io.Reader, ciphertext string, context []byte) (*api.EncryptResponse, error) {
	pt, _, err := k.Decrypt(ciphertext, context)
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	return encryptOne(k, rnd, pt, context)
}

func (s *Server) reencrypt(c *call) (any, error) {
	return withKey(s, c, func(k *keyring.Key, req *api.DecryptRequest) (any, error) {
		return reencryptOne(k, s.cfg.Rand, req.Ciphertext, req.Context)
	})
}

func datakeyOne(k *keyring.Key, rnd io.Reader, req api.DataKeyRequest) (*api.DataKeyResponse, error) {
	n := req.Bytes
	if n == 0 {
		n = 32
	}
	if n != 16 && n != 24 && n != 32 {
		return nil, &api.Error{Code: api.CodeBadRequest, Message: "bytes must be 16, 24 or 32"}
	}
	dk := make([]byte, n)
	if _, err := io.ReadFull(rnd, dk); err != nil {
		return nil, err
	}
	ct, err := k.Encrypt(rnd, dk, req.Context)
	if err != nil {
		clear(dk)
		return nil, err
	}
	out := &api.DataKeyResponse{Ciphertext: ct, Version: k.Latest()}
	if req.WithoutPlaintext {
		clear(dk)
	} else {
		out.Plaintext = dk
	}
	return out, nil
}

func (s *Server) datakey(c *call) (any, error) {
	return withKey(s, c, func(k *keyring.Key, req *api.DataKeyRequest) (any, error) {
		return datakeyOne(k, s.cfg.Rand, *req)
	})
}

func signOne(k *keyring.Key, msg []byte, mac bool) (*api.SignResponse, error) {
	if len(msg) > api.MaxPlaintextBytes {
		return nil, tooLarge("message")
	}
	var sig string
	var err error
	if mac {
		sig, err = k.HMAC(msg)
	} else {
		sig, err = k.Sign(msg)
	}
	if err != nil {
		return nil, err
	}
	return &api.SignResponse{Signature: sig, Version: k.Latest()}, nil
}

// verifyOne reports a bad signature as valid=false, and only malformed
// input or an unusable key as an error.
func verifyOne(k *keyring.Key, msg []byte, sig string, mac bool) (*api.VerifyResponse, error) {
	var err error
	if mac {
		err = k.VerifyHMAC(msg, sig)
	} else {
		err = k.Verify(msg, sig)
	}
	switch {
	case err == nil:
		return &api.VerifyResponse{Valid: true}, nil
	case isBadSignature(err):
		return &api.VerifyResponse{Valid: false}, nil
	}
	return nil, err
}

func (s *Server) signLike(c *call, mac bool) (any, error) {
	return withKey(s, c, func(k *keyring.Key, req *api.SignRequest) (any, error) {
		return signOne(k, req.Message, mac)
	})
}

func (s *Server) verifyLike(c *call, mac bool) (any, error) {
	return withKey(s, c, func(k *keyring.Key, req *api.VerifyRequest) (any, error) {
		return verifyOne(k, req.Message, req.Signature, mac)
	})
}

func (s *Server) sign(c *call) (any, error)       { return s.signLike(c, false) }
func (s *Server) hmac(c *call) (any, error)       { return s.signLike(c, true) }
func (s *Server) verify(c *call) (any, error)     { return s.verifyLike(c, false) }
func (s *Server) verifyHMAC(c *call) (any, error) { return s.verifyLike(c, true) }
