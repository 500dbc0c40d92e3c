package httpapi

import (
	"net/http"
	"slices"
	"strconv"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/keyops"
	"github.com/keyd/keyd/keyring"
)

// Transit crypto handlers: decode Vault's request, check the options
// keyd does not have, and run keyops over the single item or each item
// of batch_input. A batch answers 200 when every item succeeded and 400
// (500 if an item failed inside keyd) with every item's result when one
// failed, or partial_failure_response_code when that is set and some
// item succeeded, as Vault does.

// transitBatch runs one item or a batch under key k and shapes the reply.
// single is the request's own item, used when items is nil.
func transitBatch[T any](c *call, op string, items []T, single T, partialCode int, fn func(it *T) (api.TransitResult, error)) (any, error) {
	if items == nil {
		r, err := fn(&single)
		if err != nil {
			return nil, err
		}
		if r.KeyVersion != 0 {
			c.detail.versions = []uint32{r.KeyVersion}
		}
		return transitData(&r), nil
	}
	if err := keyops.CheckItems(len(items)); err != nil {
		return nil, err
	}
	c.detail.op = "transit.batch." + op
	out := &api.TransitBatchResults{BatchResults: make([]api.TransitResult, len(items))}
	internal := false
	for i := range items {
		r, err := fn(&items[i])
		c.detail.items++
		if err != nil {
			e := keyops.WireError(err)
			if e == nil {
				e, internal = &api.Error{Code: api.CodeInternal, Message: "internal error"}, true
			}
			out.BatchResults[i] = api.TransitResult{Error: transitMessage(e), Reference: r.Reference}
			c.detail.failed++
			continue
		}
		out.BatchResults[i] = r
		if v := r.KeyVersion; v != 0 && !slices.Contains(c.detail.versions, v) {
			c.detail.versions = append(c.detail.versions, v)
		}
	}
	slices.Sort(c.detail.versions)
	if c.detail.failed > 0 {
		status := http.StatusBadRequest
		if internal {
			status = http.StatusInternalServerError
		}
		if partialCode != 0 && c.detail.failed < c.detail.items {
			if partialCode < 200 || partialCode > 599 {
				return nil, transitBad("partial_failure_response_code must be an HTTP status (200..599)")
			}
			status = partialCode
		}
		c.w.Header().Set(transitStatusHeader, strconv.Itoa(status))
	}
	return transitData(out), nil
}

// transitKey runs fn with the path's key.
func (s *Server) transitKey(c *call, fn func(k *keyring.Key) (any, error)) (any, error) {
	k, release, err := s.cfg.Crypto.AcquireCryptoKey(c.name())
	if err != nil {
		return nil, err
	}
	defer release()
	return fn(k)
}

// checkKeyVersion accepts 0 (the latest) or the latest version: keyd
// encrypts, signs and MACs only with a key's latest version.
func checkKeyVersion(k *keyring.Key, v int) error {
	if v == 0 || v == int(k.Latest()) {
		return nil
	}
	return transitBad("key_version " + strconv.Itoa(v) + " is not supported: keyd uses only the latest version (" + strconv.FormatUint(uint64(k.Latest()), 10) + ") for this operation")
}

func checkNoNonce(nonce, ad []byte) error {
	if len(nonce) > 0 {
		return transitBad("nonce is not supported: keyd has no convergent encryption")
	}
	if len(ad) > 0 {
		return transitBad("associated_data is not supported: bind data with context instead")
	}
	return nil
}

func (s *Server) transitEncrypt(c *call) (any, error) {
	var req api.TransitEncryptRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if req.ConvergentEncryption {
		return nil, transitBad("convergent encryption is not supported by keyd")
	}
	return s.transitKey(c, func(k *keyring.Key) (any, error) {
		return transitBatch(c, "encrypt", req.BatchInput, req.TransitEncryptItem, req.PartialFailureResponseCode,
			func(it *api.TransitEncryptItem) (api.TransitResult, error) {
				ref := api.TransitResult{Reference: it.Reference}
				if err := checkKeyVersion(k, it.KeyVersion); err != nil {
					return ref, err
				}
				if err := checkNoNonce(it.Nonce, it.AssociatedData); err != nil {
					return ref, err
				}
				r, err := keyops.Encrypt(k, s.cfg.Rand, it.Plaintext, it.Context)
				if err != nil {
					return ref, err
				}
				return api.TransitResult{Ciphertext: toTransitText(r.Ciphertext), KeyVersion: r.Version, Reference: it.Reference}, nil
			})
	})
}

func (s *Server) transitDecrypt(c *call) (any, error) {
	var req api.TransitCiphertextRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	return s.transitKey(c, func(k *keyring.Key) (any, error) {
		return transitBatch(c, "decrypt", req.BatchInput, req.TransitCiphertextItem, req.PartialFailureResponseCode,
			func(it *api.TransitCiphertextItem) (api.TransitResult, error) {
				ref := api.TransitResult{Reference: it.Reference}
				if err := checkNoNonce(it.Nonce, it.AssociatedData); err != nil {
					return ref, err
				}
				ct, err := fromTransitText(it.Ciphertext)
				if err != nil {
					return ref, err
				}
				r, err := keyops.Decrypt(k, ct, it.Context)
				if err != nil {
					return ref, err
				}
				// Vault's reply names no version; the audit record and
				// usage tracking do (an old version still decrypted is
				// still needed).
				if !slices.Contains(c.detail.versions, r.Version) {
					c.detail.versions = append(c.detail.versions, r.Version)
				}
				return api.TransitResult{Plaintext: &r.Plaintext, Reference: it.Reference}, nil
			})
	})
}

func (s *Server) transitRewrap(c *call) (any, error) {
	var req api.TransitCiphertextRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	return s.transitKey(c, func(k *keyring.Key) (any, error) {
		return transitBatch(c, "rewrap", req.BatchInput, req.TransitCiphertextItem, req.PartialFailureResponseCode,
			func(it *api.TransitCiphertextItem) (api.TransitResult, error) {
				ref := api.TransitResult{Reference: it.Reference}
				if err := checkKeyVersion(k, it.KeyVersion); err != nil {
					return ref, err
				}
				if err := checkNoNonce(it.Nonce, it.AssociatedData); err != nil {
					return ref, err
				}
				ct, err := fromTransitText(it.Ciphertext)
				if err != nil {
					return ref, err
				}
				r, err := keyops.Reencrypt(k, s.cfg.Rand, ct, it.Context)
				if err != nil {
					return ref, err
				}
				return api.TransitResult{Ciphertext: toTransitText(r.Ciphertext), KeyVersion: r.Version, Reference: it.Reference}, nil
			})
	})
}

func (s *Server) transitDataKey(c *call) (any, error) {
	var req api.TransitDataKeyRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	kind := c.r.PathValue("kind")
	if kind != "plaintext" && kind != "wrapped" {
		return nil, transitBad("datakey type must be plaintext or wrapped")
	}
	n := 0
	switch req.Bits {
	case 0, 256:
		n = 32
	case 128:
		n = 16
	default:
		return nil, transitBad("bits must be 128 or 256 (keyd has no 512-bit data keys)")
	}
	if err := checkNoNonce(req.Nonce, nil); err != nil {
		return nil, err
	}
	return s.transitKey(c, func(k *keyring.Key) (any, error) {
		if err := checkKeyVersion(k, req.KeyVersion); err != nil {
			return nil, err
		}
		r, err := keyops.DataKey(k, s.cfg.Rand, api.DataKeyRequest{Bytes: n, Context: req.Context, WithoutPlaintext: kind == "wrapped"})
		if err != nil {
			return nil, err
		}
		c.detail.versions = []uint32{r.Version}
		out := &api.TransitResult{Ciphertext: toTransitText(r.Ciphertext), KeyVersion: r.Version}
		if kind == "plaintext" {
			out.Plaintext = &r.Plaintext
		}
		return transitData(out), nil
	})
}

// checkSignOptions refuses the signing options keyd does not have: only
// SHA-256 (ECDSA P-256 over SHA-256 of the input, pure Ed25519, or
// HMAC-SHA256) with ASN.1 signatures, on non-derived keys.
func checkSignOptions(c *call, req *api.TransitSignRequest, hmac bool) error {
	algo := c.r.PathValue("algorithm")
	field := req.HashAlgorithm
	if hmac {
		field = req.Algorithm
	}
	for _, a := range []string{algo, field} {
		if a != "" && a != "sha2-256" {
			return transitBad("hash algorithm " + strconv.Quote(a) + " is not supported by keyd (sha2-256 only)")
		}
	}
	switch {
	case req.Prehashed:
		return transitBad("prehashed input is not supported by keyd")
	case req.SignatureAlgorithm != "":
		return transitBad("signature_algorithm is not supported by keyd")
	case req.MarshalingAlgorithm != "" && req.MarshalingAlgorithm != "asn1":
		return transitBad("marshaling_algorithm must be asn1")
	case req.SaltLength != nil:
		return transitBad("salt_length is not supported by keyd")
	}
	return nil
}

func checkNoContext(it *api.TransitSignItem) error {
	if len(it.Context) > 0 {
		return transitBad("context is not supported for signing: keyd has no derived keys")
	}
	return nil
}

func (s *Server) transitSign(c *call) (any, error) { return s.transitSignLike(c, false) }
func (s *Server) transitHMAC(c *call) (any, error) { return s.transitSignLike(c, true) }

func (s *Server) transitSignLike(c *call, hmac bool) (any, error) {
	var req api.TransitSignRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if err := checkSignOptions(c, &req, hmac); err != nil {
		return nil, err
	}
	op := "sign"
	if hmac {
		op = "hmac"
	}
	return s.transitKey(c, func(k *keyring.Key) (any, error) {
		if err := checkKeyVersion(k, req.KeyVersion); err != nil {
			return nil, err
		}
		return transitBatch(c, op, req.BatchInput, req.TransitSignItem, req.PartialFailureStatus,
			func(it *api.TransitSignItem) (api.TransitResult, error) {
				ref := api.TransitResult{Reference: it.Reference}
				if err := checkNoContext(it); err != nil {
					return ref, err
				}
				if hmac {
					r, err := keyops.HMAC(k, it.Input)
					if err != nil {
						return ref, err
					}
					return api.TransitResult{HMAC: toTransitText(r.Signature), KeyVersion: r.Version, Reference: it.Reference}, nil
				}
				r, err := keyops.Sign(k, it.Input)
				if err != nil {
					return ref, err
				}
				return api.TransitResult{Signature: toTransitText(r.Signature), KeyVersion: r.Version, Reference: it.Reference}, nil
			})
	})
}

// transitVerify checks a signature, or an HMAC when the item carries
// hmac instead of signature (Vault's one verify endpoint serves both).
func (s *Server) transitVerify(c *call) (any, error) {
	var req api.TransitSignRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if err := checkSignOptions(c, &req, false); err != nil {
		return nil, err
	}
	return s.transitKey(c, func(k *keyring.Key) (any, error) {
		return transitBatch(c, "verify", req.BatchInput, req.TransitSignItem, req.PartialFailureStatus,
			func(it *api.TransitSignItem) (api.TransitResult, error) {
				ref := api.TransitResult{Reference: it.Reference}
				if err := checkNoContext(it); err != nil {
					return ref, err
				}
				if (it.Signature == "") == (it.HMAC == "") {
					return ref, transitBad("exactly one of signature and hmac is required")
				}
				text, mac := it.Signature, false
				if it.HMAC != "" {
					text, mac = it.HMAC, true
				}
				t, err := fromTransitText(text)
				if err != nil {
					return ref, err
				}
				var r *api.VerifyResponse
				if mac {
					r, err = keyops.VerifyHMAC(k, it.Input, t)
				} else {
					r, err = keyops.Verify(k, it.Input, t)
				}
				if err != nil {
					return ref, err
				}
				return api.TransitResult{Valid: &r.Valid, Reference: it.Reference}, nil
			})
	})
}
