package httpapi

import (
	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/keyops"
	"github.com/keyd/keyd/keyring"
)

// Crypto handlers run on any unsealed node from memory: no Raft, no disk.
// They decode the request and hand it to package keyops, which the
// transit-compatible handlers (transit*.go) call too.

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

// reply turns a typed result into a handler's result without the trap of
// a typed nil in a non-nil interface (which the audit and batch
// statistics would dereference).
func reply[T any](v *T, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return v, nil
}

func (s *Server) encrypt(c *call) (any, error) {
	return withKey(s, c, func(k *keyring.Key, req *api.EncryptRequest) (any, error) {
		return reply(keyops.Encrypt(k, s.cfg.Rand, req.Plaintext, req.Context))
	})
}

// POST /decrypt is served by decryptPII (pii.go): it also answers
// callers holding decrypt-masked.

func (s *Server) reencrypt(c *call) (any, error) {
	return withKey(s, c, func(k *keyring.Key, req *api.DecryptRequest) (any, error) {
		return reply(keyops.Reencrypt(k, s.cfg.Rand, req.Ciphertext, req.Context))
	})
}

func (s *Server) datakey(c *call) (any, error) {
	return withKey(s, c, func(k *keyring.Key, req *api.DataKeyRequest) (any, error) {
		return reply(keyops.DataKey(k, s.cfg.Rand, *req))
	})
}

func (s *Server) sign(c *call) (any, error) {
	return withKey(s, c, func(k *keyring.Key, req *api.SignRequest) (any, error) {
		return reply(keyops.Sign(k, req.Message))
	})
}

func (s *Server) hmac(c *call) (any, error) {
	return withKey(s, c, func(k *keyring.Key, req *api.SignRequest) (any, error) {
		return reply(keyops.HMAC(k, req.Message))
	})
}

func (s *Server) verify(c *call) (any, error) {
	return withKey(s, c, func(k *keyring.Key, req *api.VerifyRequest) (any, error) {
		return reply(keyops.Verify(k, req.Message, req.Signature))
	})
}

func (s *Server) verifyHMAC(c *call) (any, error) {
	return withKey(s, c, func(k *keyring.Key, req *api.VerifyRequest) (any, error) {
		return reply(keyops.VerifyHMAC(k, req.Message, req.Signature))
	})
}
