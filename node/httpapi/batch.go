package httpapi

import (
	"strconv"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/keyops"
)

// batch serves /v1/keys/{name}/batch/{op}. Each item succeeds or fails on
// its own; the request fails as a whole only for a bad body or an
// unusable key.
func (s *Server) batch(c *call) (any, error) {
	op := keyops.Op(c.r.PathValue("op"))
	if _, ok := op.Capability(); ok {
		c.detail.op = "key.batch." + string(op)
	}
	resp, err := s.batchOp(c, op)
	c.detail.items, c.detail.failed, c.detail.versions = batchStats(resp)
	return resp, err
}

func (s *Server) batchOp(c *call, op keyops.Op) (any, error) {
	capability, ok := op.Capability()
	if !ok {
		return nil, &api.Error{Code: api.CodeBadRequest, Message: "unknown batch operation " + strconv.Quote(string(op))}
	}
	full := true
	if op == keyops.OpDecrypt {
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
	case keyops.OpEncrypt:
		var req api.BatchEncryptRequest
		if err := c.decode(&req); err != nil {
			return nil, err
		}
		return reply(keyops.BatchEncrypt(k, s.cfg.Rand, req.Items))
	case keyops.OpDecrypt, keyops.OpReencrypt:
		var req api.BatchDecryptRequest
		if err := c.decode(&req); err != nil {
			return nil, err
		}
		if op == keyops.OpReencrypt {
			return reply(keyops.BatchReencrypt(k, s.cfg.Rand, req.Items))
		}
		if err := keyops.CheckItems(len(req.Items)); err != nil {
			return nil, err
		}
		// decryptOne masks per item for a masked-only caller or on request.
		out := &api.BatchDecryptResponse{Results: make([]api.BatchDecryptItem, len(req.Items))}
		for i := range req.Items {
			r, err := decryptOne(k, full, &req.Items[i])
			if err != nil {
				out.Results[i].Error = keyops.ItemError(err)
				continue
			}
			out.Results[i] = api.BatchDecryptItem{Plaintext: r.Plaintext, Masked: r.Masked, Version: r.Version}
		}
		return out, nil
	case keyops.OpDataKey:
		var req api.BatchDataKeyRequest
		if err := c.decode(&req); err != nil {
			return nil, err
		}
		return reply(keyops.BatchDataKey(k, s.cfg.Rand, req.Items))
	case keyops.OpSign, keyops.OpHMAC:
		var req api.BatchSignRequest
		if err := c.decode(&req); err != nil {
			return nil, err
		}
		return reply(keyops.BatchSign(k, req.Items, op == keyops.OpHMAC))
	default: // verify, verify-hmac
		var req api.BatchVerifyRequest
		if err := c.decode(&req); err != nil {
			return nil, err
		}
		return reply(keyops.BatchVerify(k, req.Items, op == keyops.OpVerifyHMAC))
	}
}
