package httpapi

import (
	"errors"
	"slices"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fpe"
	"github.com/keyd/keyd/keyops"
	"github.com/keyd/keyd/keyring"
	"github.com/keyd/keyd/mask"
	"github.com/keyd/keyd/policy"
)

// PII handlers (issue 14, docs/PII.md): keyed pseudonyms, format-preserving
// encryption and masked decryption. Deterministic encryption (aes256-siv)
// needs no handler: it is a key type served by /encrypt and /decrypt.

// decryptAccess authorizes a decrypting route before anything else is
// done (so a caller without rights learns nothing, not even whether the
// key exists). full reports that the caller holds decrypt; a caller with
// only decrypt-masked gets full=false and must only ever see masked forms.
func decryptAccess(c *call) (full bool, err error) {
	name := c.name()
	switch {
	case c.p == nil:
		return false, forbidden(policy.Decrypt)
	case c.p.Allowed(policy.Decrypt, name):
		return true, nil
	case c.p.Allowed(policy.DecryptMasked, name):
		return false, nil
	}
	return false, forbidden(policy.Decrypt)
}

// maskFor decides whether one result is masked, and how: always for a
// masked-only caller (default shape last4), and for a full caller only
// when it asked.
func maskFor(full bool, requested string) (shape mask.Shape, masked bool, err error) {
	if full && requested == "" {
		return "", false, nil
	}
	shape, err = mask.ParseShape(requested)
	if err != nil {
		return "", false, &api.Error{Code: api.CodeBadRequest, Message: "mask must be last4 or full"}
	}
	return shape, true, nil
}

// decryptOne decrypts one ciphertext and returns what the caller may see.
// A masked result never carries the plaintext, which is zeroed here.
func decryptOne(k *keyring.Key, full bool, req *api.DecryptRequest) (*api.DecryptResponse, error) {
	shape, masked, err := maskFor(full, req.Mask)
	if err != nil {
		return nil, err
	}
	pt, v, err := k.Decrypt(req.Ciphertext, req.Context)
	if err != nil {
		return nil, err
	}
	if !masked {
		return &api.DecryptResponse{Plaintext: pt, Version: v}, nil
	}
	defer clear(pt)
	return &api.DecryptResponse{Masked: mask.Apply(pt, shape), Version: v}, nil
}

// decryptPII serves POST /v1/keys/{name}/decrypt for callers with decrypt
// or decrypt-masked.
func (s *Server) decryptPII(c *call) (any, error) {
	full, err := decryptAccess(c)
	if err != nil {
		return nil, err
	}
	return withKey(s, c, func(k *keyring.Key, req *api.DecryptRequest) (any, error) {
		if !full || req.Mask != "" {
			c.detail.op = "key.decrypt_masked"
		}
		return decryptOne(k, full, req)
	})
}

func (s *Server) pseudonym(c *call) (any, error) {
	return withKey(s, c, func(k *keyring.Key, req *api.PseudonymRequest) (any, error) {
		return pseudonymOne(k, req)
	})
}

func pseudonymOne(k *keyring.Key, req *api.PseudonymRequest) (*api.PseudonymResponse, error) {
	if len(req.Value) > api.MaxPlaintextBytes {
		return nil, keyops.TooLarge("value")
	}
	if len(req.Context) > api.MaxPlaintextBytes {
		return nil, keyops.TooLarge("context")
	}
	p, v, err := k.Pseudonym(req.Value, req.Context, req.Version)
	if err != nil {
		return nil, err
	}
	return &api.PseudonymResponse{Pseudonym: p, Version: v}, nil
}

func checkFPE(req *api.FPERequest) (fpe.Format, error) {
	if len(req.Value) > api.MaxFPEValueBytes {
		return "", &api.Error{Code: api.CodeBadRequest, Message: "value exceeds the limit of 1024 bytes"}
	}
	if len(req.Tweak) > api.MaxFPETweakBytes {
		return "", &api.Error{Code: api.CodeBadRequest, Message: "tweak exceeds the limit of 1024 bytes"}
	}
	f, err := fpe.ParseFormat(req.Format)
	if err != nil {
		return "", fpeError(err)
	}
	return f, nil
}

// fpeError maps package fpe's errors to fixed messages; the value is never
// echoed.
func fpeError(err error) error {
	msg := ""
	switch {
	case errors.Is(err, fpe.ErrUnknownFormat):
		msg = "format must be one of digits, alphanumeric, card, phone, ssn, national-id, email-local"
	case errors.Is(err, fpe.ErrLuhn):
		msg = "card number fails the Luhn check"
	case errors.Is(err, fpe.ErrDomain):
		msg = "value has too few characters to encipher safely: FF1 needs at least 1,000,000 possible values " +
			"(6 digits, or 4 letters and digits for alphanumeric and email-local)"
	case errors.Is(err, fpe.ErrInvalidValue):
		msg = "value does not match the format (a character the format neither enciphers nor keeps, " +
			"a wrong number of digits, or a malformed e-mail address)"
	default:
		return err
	}
	return &api.Error{Code: api.CodeBadRequest, Message: msg}
}

func (s *Server) fpeEncrypt(c *call) (any, error) {
	if err := s.checkMaskedOracle(c); err != nil {
		return nil, err
	}
	return withKey(s, c, func(k *keyring.Key, req *api.FPERequest) (any, error) {
		return fpeEncryptOne(k, req)
	})
}

func fpeEncryptOne(k *keyring.Key, req *api.FPERequest) (*api.FPEResponse, error) {
	if req.Mask != "" {
		return nil, &api.Error{Code: api.CodeBadRequest, Message: "mask applies to fpe/decrypt only"}
	}
	f, err := checkFPE(req)
	if err != nil {
		return nil, err
	}
	out, v, err := k.FPEEncrypt(f, req.Value, req.Tweak, req.Version)
	if err != nil {
		return nil, fpeError(err)
	}
	return &api.FPEResponse{Value: out, Version: v}, nil
}

// fpeDecrypt serves POST /v1/keys/{name}/fpe/decrypt for callers with
// decrypt, or decrypt-masked (masked result only).
func (s *Server) fpeDecrypt(c *call) (any, error) {
	full, err := decryptAccess(c)
	if err != nil {
		return nil, err
	}
	return withKey(s, c, func(k *keyring.Key, req *api.FPERequest) (any, error) {
		r, err := fpeDecryptOne(k, full, req)
		if err == nil && r.Masked != "" {
			c.detail.op = "key.fpe_decrypt_masked"
		}
		return r, err
	})
}

func fpeDecryptOne(k *keyring.Key, full bool, req *api.FPERequest) (*api.FPEResponse, error) {
	shape, masked, err := maskFor(full, req.Mask)
	if err != nil {
		return nil, err
	}
	f, err := checkFPE(req)
	if err != nil {
		return nil, err
	}
	out, v, err := k.FPEDecrypt(f, req.Value, req.Tweak, req.Version)
	if err != nil {
		return nil, fpeError(err)
	}
	if masked {
		return &api.FPEResponse{Masked: mask.Apply([]byte(out), shape), Version: v}, nil
	}
	return &api.FPEResponse{Value: out, Version: v}, nil
}

// errMaskedOracle refuses a deterministic encryption oracle to a
// masked-only caller: with the masked form (length, separators, last four)
// and the right to encrypt chosen values under a deterministic key, the
// caller could test guesses against stored ciphertexts and recover the
// clear value it must never see.
var errMaskedOracle = &api.Error{Code: api.CodeForbidden, Message: "a caller with decrypt-masked but not decrypt may not encrypt with a deterministic key " +
	"(aes256-siv, ff1-aes256): it would let it confirm guesses of masked values"}

// checkMaskedOracle returns errMaskedOracle when the caller holds
// decrypt-masked but not decrypt on the path's key and the key is
// deterministic, and the key's own error when it cannot be acquired.
// Callers without decrypt-masked pay one policy lookup.
func (s *Server) checkMaskedOracle(c *call) error {
	name := c.name()
	if c.p == nil || c.p.Allowed(policy.Decrypt, name) || !c.p.Allowed(policy.DecryptMasked, name) {
		return nil
	}
	k, release, err := s.cfg.Crypto.AcquireCryptoKey(name)
	if err != nil {
		// Fail closed: the handler acquires the key again, and a key
		// enabled (or created) in between must not skip this check.
		return err
	}
	defer release()
	if t := k.Type(); t == keyring.AES256SIV || t == keyring.FF1AES256 {
		return errMaskedOracle
	}
	return nil
}

// guardMaskedOracle wraps /encrypt and /batch/{op} (for op encrypt) with
// checkMaskedOracle.
func (s *Server) guardMaskedOracle(h func(*call) (any, error)) func(*call) (any, error) {
	return func(c *call) (any, error) {
		if op := c.r.PathValue("op"); op != "" && op != "encrypt" {
			return h(c)
		}
		if err := s.checkMaskedOracle(c); err != nil {
			return nil, err
		}
		return h(c)
	}
}

// batchPII serves POST /v1/keys/{name}/batch/pseudonym, /batch/fpe-encrypt
// and /batch/fpe-decrypt: the same checks as the single routes, one
// authorization for the request, each item succeeding or failing on its
// own.
func (s *Server) batchPII(op string) func(c *call) (any, error) {
	return func(c *call) (any, error) {
		name := c.name()
		full := true
		switch op {
		case "pseudonym":
			if err := c.authorize(policy.Pseudonym, name); err != nil {
				return nil, err
			}
		case "fpe-encrypt":
			if err := c.authorize(policy.Encrypt, name); err != nil {
				return nil, err
			}
			if err := s.checkMaskedOracle(c); err != nil {
				return nil, err
			}
		default: // fpe-decrypt
			var err error
			if full, err = decryptAccess(c); err != nil {
				return nil, err
			}
		}
		k, release, err := s.cfg.Crypto.AcquireCryptoKey(name)
		if err != nil {
			return nil, err
		}
		defer release()
		d := &c.detail
		count := func(err error, v uint32) {
			d.items++
			if err != nil {
				d.failed++
			} else if v != 0 && !slices.Contains(d.versions, v) {
				d.versions = append(d.versions, v)
			}
		}
		defer func() { slices.Sort(d.versions) }()
		if op == "pseudonym" {
			var req api.BatchPseudonymRequest
			if err := c.decode(&req); err != nil {
				return nil, err
			}
			if err := keyops.CheckItems(len(req.Items)); err != nil {
				return nil, err
			}
			out := &api.BatchPseudonymResponse{Results: make([]api.BatchPseudonymItem, len(req.Items))}
			for i := range req.Items {
				r, err := pseudonymOne(k, &req.Items[i])
				if err != nil {
					out.Results[i].Error = keyops.ItemError(err)
					count(err, 0)
					continue
				}
				out.Results[i] = api.BatchPseudonymItem{Pseudonym: r.Pseudonym, Version: r.Version}
				count(nil, r.Version)
			}
			return out, nil
		}
		var req api.BatchFPERequest
		if err := c.decode(&req); err != nil {
			return nil, err
		}
		if err := keyops.CheckItems(len(req.Items)); err != nil {
			return nil, err
		}
		out := &api.BatchFPEResponse{Results: make([]api.BatchFPEItem, len(req.Items))}
		for i := range req.Items {
			var r *api.FPEResponse
			if op == "fpe-encrypt" {
				r, err = fpeEncryptOne(k, &req.Items[i])
			} else {
				r, err = fpeDecryptOne(k, full, &req.Items[i])
			}
			if err != nil {
				out.Results[i].Error = keyops.ItemError(err)
				count(err, 0)
				continue
			}
			out.Results[i] = api.BatchFPEItem{Value: r.Value, Masked: r.Masked, Version: r.Version}
			count(nil, r.Version)
		}
		return out, nil
	}
}
