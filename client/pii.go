package client

import (
	"context"
	"errors"

	"github.com/keyd/keyd/api"
)

// PII operations (docs/PII.md). Deterministic encryption needs no method
// of its own: Encrypt and Decrypt on an aes256-siv key are deterministic.

// ErrMasked reports that a node answered Decrypt with a masked form: the
// caller holds decrypt-masked but not decrypt on the key. Use
// DecryptMasked.
var ErrMasked = errors.New("client: the node returned a masked value only (the token has decrypt-masked, not decrypt): use DecryptMasked")

// Pseudonym returns the keyed pseudonym of value within encContext, from
// the hmac-sha256 key name. version pins the key version (0: latest); a
// pinned version gives the same pseudonym after rotations.
func (c *Client) Pseudonym(ctx context.Context, name string, value, encContext []byte, version uint32) (*api.PseudonymResponse, error) {
	var r api.PseudonymResponse
	if err := c.crypto(ctx, name, "pseudonym", api.PseudonymRequest{Value: value, Context: encContext, Version: version}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// FPEEncrypt enciphers req.Value in req.Format with the ff1-aes256 key
// name. Keep the returned Version: FF1 output does not carry it, and
// FPEDecrypt needs it after a rotation.
func (c *Client) FPEEncrypt(ctx context.Context, name string, req api.FPERequest) (*api.FPEResponse, error) {
	var r api.FPEResponse
	if err := c.crypto(ctx, name, "fpe/encrypt", req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// FPEDecrypt reverses FPEEncrypt; req.Version is the version FPEEncrypt
// returned (0: latest). With req.Mask set, or for a caller holding only
// decrypt-masked, the answer carries Masked instead of Value.
func (c *Client) FPEDecrypt(ctx context.Context, name string, req api.FPERequest) (*api.FPEResponse, error) {
	var r api.FPEResponse
	if err := c.crypto(ctx, name, "fpe/decrypt", req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// DecryptMasked decrypts ciphertext and returns only its masked form
// (shape "last4", "full", or "" for the default last4) in Masked. It works
// with either decrypt or decrypt-masked.
func (c *Client) DecryptMasked(ctx context.Context, name, ciphertext string, encContext []byte, shape string) (*api.DecryptResponse, error) {
	if shape == "" {
		shape = "last4"
	}
	var r api.DecryptResponse
	if err := c.crypto(ctx, name, "decrypt", api.DecryptRequest{Ciphertext: ciphertext, Context: encContext, Mask: shape}, &r); err != nil {
		return nil, err
	}
	if r.Plaintext != nil {
		clear(r.Plaintext)
		return nil, ErrBadResponse
	}
	return &r, nil
}

// BatchPseudonym computes one pseudonym per item in one request (at most
// api.MaxBatchItems). Each result carries Pseudonym and Version, or its own
// Error; the call fails as a whole only for a bad request or an unusable
// key.
func (c *Client) BatchPseudonym(ctx context.Context, name string, items []api.PseudonymRequest) ([]api.BatchPseudonymItem, error) {
	var r api.BatchPseudonymResponse
	if err := c.batch(ctx, name, "pseudonym", api.BatchPseudonymRequest{Items: items}, &r); err != nil {
		return nil, err
	}
	return results(r.Results, len(items))
}

// BatchFPEEncrypt is FPEEncrypt for many items in one request.
func (c *Client) BatchFPEEncrypt(ctx context.Context, name string, items []api.FPERequest) ([]api.BatchFPEItem, error) {
	var r api.BatchFPEResponse
	if err := c.batch(ctx, name, "fpe-encrypt", api.BatchFPERequest{Items: items}, &r); err != nil {
		return nil, err
	}
	return results(r.Results, len(items))
}

// BatchFPEDecrypt is FPEDecrypt for many items in one request; masked
// results carry Masked instead of Value.
func (c *Client) BatchFPEDecrypt(ctx context.Context, name string, items []api.FPERequest) ([]api.BatchFPEItem, error) {
	var r api.BatchFPEResponse
	if err := c.batch(ctx, name, "fpe-decrypt", api.BatchFPERequest{Items: items}, &r); err != nil {
		return nil, err
	}
	return results(r.Results, len(items))
}
