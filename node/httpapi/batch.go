package httpapi

import (
	"errors"
	"strconv"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/keyring"
	"github.com/keyd/keyd/policy"
)

var batchCapabilities = map[string]policy.Capability{
	"encrypt": policy.Encrypt, "decrypt": policy.Decrypt, "reencrypt": policy.Rewrap, "datakey": policy.DataKey,
	"sign": policy.Sign, "hmac": policy.HMAC, "verify": policy.Verify, "verify-hmac": policy.Verify,
}

func isBadSignature(err error) bool { return errors.Is(err, keyring.ErrBadSignature) }

func itemError(err error) *api.BatchItemError {
	e := errorFor(err)
	return &api.BatchItemError{Code: e.Code, Message: e.Message}
}

func checkItems(n int) error {
	if n == 0 {
		return &api.Error{Code: api.CodeBadRequest, Message: "items is empty"}
	}
	if n > api.MaxBatchItems {
		return &api.Error{Code: api.CodeBadRequest, Message: "at most " + strconv.Itoa(api.MaxBatchItems) + " items per batch"}
	}
	return nil
}

// batch serves /v1/keys/{name}/batch/{op}. Each item succeeds or fails on
// its own; the request fails as a whole only for a bad body or an
// unusable key.
func (s *Server) batch(c *call) (any, error) {
	op := c.r.PathValue("op")
	if _, ok := batchCapabilities[op]; ok {
		c.detail.op = "key.batch." + op
	}
	resp, err := s.batchOp(c, op)
	c.detail.items, c.detail.failed, c.detail.versions = batchStats(resp)
	return resp, err
}

func (s *Server) batchOp(c *call, op string) (any, error) {
	capability, ok := batchCapabilities[op]
	if !ok {
		return nil, &api.Error{Code: api.CodeBadRequest, Message: "unknown batch operation " + strconv.Quote(op)}
	}
	full := true
	if op == "decrypt" {
		// decrypt or decrypt-masked (pii.go); masked-only callers get
		// masked items.
		var err error
		if full, err = decryptAccess(c); err != nil {
			return nil, err
		}
	} else if err := c.authorize(capability, c.name()); err != nil {
		return nil, err
	}
	k, release, err := s.cfg.Crypto.AcquireCryptoKey(c.name())
	if err != nil {
		return nil, err
	}
	defer release()
	switch op {
	case "encrypt":
		var req api.BatchEncryptRequest
		if err := c.decode(&req); err != nil {
			return nil, err
		}
		if err := checkItems(len(req.Items)); err != nil {
			return nil, err
		}
		out := &api.BatchEncryptResponse{Results: make([]api.BatchEncryptItem, len(req.Items))}
		for i, it := range req.Items {
			r, err := encryptOne(k, s.cfg.Rand, it.Plaintext, it.Context)
			if err != nil {
				out.Results[i].Error = itemError(err)
				continue
			}
			out.Results[i] = api.BatchEncryptItem{Ciphertext: r.Ciphertext, Version: r.Version}
		}
		return out, nil
	case "decrypt", "reencrypt":
		var req api.BatchDecryptRequest
		if err := c.decode(&req); err != nil {
			return nil, err
		}
		if err := checkItems(len(req.Items)); err != nil {
			return nil, err
		}
		out := &api.BatchDecryptResponse{Results: make([]api.BatchDecryptItem, len(req.Items))}
		for i, it := range req.Items {
			if op == "reencrypt" {
				r, err := reencryptOne(k, s.cfg.Rand, it.Ciphertext, it.Context)
				if err != nil {
					out.Results[i].Error = itemError(err)
					continue
				}
				out.Results[i] = api.BatchDecryptItem{Ciphertext: r.Ciphertext, Version: r.Version}
				continue
			}
			r, err := decryptOne(k, full, &it)
			if err != nil {
				out.Results[i].Error = itemError(err)
				continue
			}
			out.Results[i] = api.BatchDecryptItem{Plaintext: r.Plaintext, Masked: r.Masked, Version: r.Version}
		}
		return out, nil
	case "datakey":
		var req api.BatchDataKeyRequest
		if err := c.decode(&req); err != nil {
			return nil, err
		}
		if err := checkItems(len(req.Items)); err != nil {
			return nil, err
		}
		out := &api.BatchDataKeyResponse{Results: make([]api.BatchDataKeyItem, len(req.Items))}
		for i, it := range req.Items {
			r, err := datakeyOne(k, s.cfg.Rand, it)
			if err != nil {
				out.Results[i].Error = itemError(err)
				continue
			}
			out.Results[i] = api.BatchDataKeyItem{Ciphertext: r.Ciphertext, Plaintext: r.Plaintext, Version: r.Version}
		}
		return out, nil
	case "sign", "hmac":
		var req api.BatchSignRequest
		if err := c.decode(&req); err != nil {
			return nil, err
		}
		if err := checkItems(len(req.Items)); err != nil {
			return nil, err
		}
		out := &api.BatchSignResponse{Results: make([]api.BatchSignItem, len(req.Items))}
		for i, it := range req.Items {
			r, err := signOne(k, it.Message, op == "hmac")
			if err != nil {
				out.Results[i].Error = itemError(err)
				continue
			}
			out.Results[i] = api.BatchSignItem{Signature: r.Signature, Version: r.Version}
		}
		return out, nil
	default: // verify, verify-hmac
		var req api.BatchVerifyRequest
		if err := c.decode(&req); err != nil {
			return nil, err
		}
		if err := checkItems(len(req.Items)); err != nil {
			return nil, err
		}
		out := &api.BatchVerifyResponse{Results: make([]api.BatchVerifyItem, len(req.Items))}
		for i, it := range req.Items {
			r, err := verifyOne(k, it.Message, it.Signature, op == "verify-hmac")
			if err != nil {
				out.Results[i].Error = itemError(err)
				continue
			}
			out.Results[i].Valid = r.Valid
		}
		return out, nil
	}
}
