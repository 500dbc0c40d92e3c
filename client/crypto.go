package client

import (
	"context"
	"fmt"
	"net/http"

	"github.com/keyd/keyd/api"
)

// crypto runs one crypto call. Crypto calls go to an unsealed node, in
// Config.Region first (the last one that answered first), carry the client's last write index as
// api.HeaderMinIndex, and are retried on other nodes on connection errors
// and retryable codes: none changes state. Plaintext, contexts and messages
// never appear in errors. Returned slices are owned by the caller.
func (c *Client) crypto(ctx context.Context, name, op string, in, out any) error {
	if err := checkName(name); err != nil {
		return err
	}
	return c.do(ctx, call{pol: polRead, method: http.MethodPost, path: api.KeyPath(name, op), in: in, out: out})
}

func (c *Client) batch(ctx context.Context, name, op string, in, out any) error {
	return c.crypto(ctx, name, "batch/"+op, in, out)
}

// results guards against a reply that would misalign results and items.
func results[T any](rs []T, n int) ([]T, error) {
	if len(rs) != n {
		return nil, fmt.Errorf("client: %w: %d batch results for %d items", ErrBadResponse, len(rs), n)
	}
	return rs, nil
}

// Encrypt encrypts plaintext under the key's active version, binding the
// optional encryption context (which Decrypt must repeat). Errors:
// api.ErrNotFound, api.ErrKeyDisabled, api.ErrUnsupported, ...
func (c *Client) Encrypt(ctx context.Context, name string, plaintext, encContext []byte) (*api.EncryptResponse, error) {
	var r api.EncryptResponse
	if err := c.crypto(ctx, name, "encrypt", api.EncryptRequest{Plaintext: plaintext, Context: encContext}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Decrypt decrypts a "keyd:vN:..." ciphertext with the same encryption
// context it was encrypted with. A wrong context, key or tampered
// ciphertext gives api.ErrDecrypt; a version below the key's minimum gives
// api.ErrVersionDisabled.
func (c *Client) Decrypt(ctx context.Context, name, ciphertext string, encContext []byte) (*api.DecryptResponse, error) {
	var r api.DecryptResponse
	if err := c.crypto(ctx, name, "decrypt", api.DecryptRequest{Ciphertext: ciphertext, Context: encContext}, &r); err != nil {
		return nil, err
	}
	if r.Masked != "" {
		return nil, ErrMasked
	}
	return &r, nil
}

// Reencrypt decrypts ciphertext and encrypts the plaintext again under the
// key's active version, without the plaintext leaving the node.
func (c *Client) Reencrypt(ctx context.Context, name, ciphertext string, encContext []byte) (*api.EncryptResponse, error) {
	var r api.EncryptResponse
	if err := c.crypto(ctx, name, "reencrypt", api.DecryptRequest{Ciphertext: ciphertext, Context: encContext}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// GenerateDataKey returns a fresh random data key wrapped under the key
// (Ciphertext) and, unless req.WithoutPlaintext, in the clear (Plaintext).
// The caller owns Plaintext and should zero it after use; recover it later
// with Decrypt(Ciphertext, req.Context).
func (c *Client) GenerateDataKey(ctx context.Context, name string, req api.DataKeyRequest) (*api.DataKeyResponse, error) {
	var r api.DataKeyResponse
	if err := c.crypto(ctx, name, "datakey", req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Sign signs msg with a signing key (ed25519, ecdsa-p256).
func (c *Client) Sign(ctx context.Context, name string, msg []byte) (*api.SignResponse, error) {
	var r api.SignResponse
	if err := c.crypto(ctx, name, "sign", api.SignRequest{Message: msg}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Verify reports whether sig is a valid signature of msg. An invalid
// signature is (false, nil); errors mean the check could not be made.
func (c *Client) Verify(ctx context.Context, name string, msg []byte, sig string) (bool, error) {
	var r api.VerifyResponse
	if err := c.crypto(ctx, name, "verify", api.VerifyRequest{Message: msg, Signature: sig}, &r); err != nil {
		return false, err
	}
	return r.Valid, nil
}

// HMAC computes the MAC of msg with an hmac-sha256 key.
func (c *Client) HMAC(ctx context.Context, name string, msg []byte) (*api.SignResponse, error) {
	var r api.SignResponse
	if err := c.crypto(ctx, name, "hmac", api.SignRequest{Message: msg}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// VerifyHMAC reports whether mac is a valid MAC of msg (compared in
// constant time by the server). An invalid MAC is (false, nil).
func (c *Client) VerifyHMAC(ctx context.Context, name string, msg []byte, mac string) (bool, error) {
	var r api.VerifyResponse
	if err := c.crypto(ctx, name, "verify-hmac", api.VerifyRequest{Message: msg, Signature: mac}, &r); err != nil {
		return false, err
	}
	return r.Valid, nil
}

// BatchEncrypt encrypts items in one request. It returns one result per
// item, in order; a failed item has Error set while the others succeed. The
// call's error is for the request as a whole. The server caps a batch at
// api.MaxBatchItems items and api.MaxBatchBodyBytes bytes.
func (c *Client) BatchEncrypt(ctx context.Context, name string, items []api.EncryptRequest) ([]api.BatchEncryptItem, error) {
	var r api.BatchEncryptResponse
	if err := c.batch(ctx, name, "encrypt", api.BatchEncryptRequest{Items: items}, &r); err != nil {
		return nil, err
	}
	return results(r.Results, len(items))
}

// BatchDecrypt decrypts items in one request; see BatchEncrypt for the
// result contract.
func (c *Client) BatchDecrypt(ctx context.Context, name string, items []api.DecryptRequest) ([]api.BatchDecryptItem, error) {
	var r api.BatchDecryptResponse
	if err := c.batch(ctx, name, "decrypt", api.BatchDecryptRequest{Items: items}, &r); err != nil {
		return nil, err
	}
	return results(r.Results, len(items))
}

// BatchReencrypt re-encrypts items under the active version; results carry
// Ciphertext. See BatchEncrypt for the result contract.
func (c *Client) BatchReencrypt(ctx context.Context, name string, items []api.DecryptRequest) ([]api.BatchDecryptItem, error) {
	var r api.BatchDecryptResponse
	if err := c.batch(ctx, name, "reencrypt", api.BatchDecryptRequest{Items: items}, &r); err != nil {
		return nil, err
	}
	return results(r.Results, len(items))
}

// BatchDataKey generates one data key per item; see BatchEncrypt for the
// result contract.
func (c *Client) BatchDataKey(ctx context.Context, name string, items []api.DataKeyRequest) ([]api.BatchDataKeyItem, error) {
	var r api.BatchDataKeyResponse
	if err := c.batch(ctx, name, "datakey", api.BatchDataKeyRequest{Items: items}, &r); err != nil {
		return nil, err
	}
	return results(r.Results, len(items))
}

// BatchSign signs items; see BatchEncrypt for the result contract.
func (c *Client) BatchSign(ctx context.Context, name string, items []api.SignRequest) ([]api.BatchSignItem, error) {
	var r api.BatchSignResponse
	if err := c.batch(ctx, name, "sign", api.BatchSignRequest{Items: items}, &r); err != nil {
		return nil, err
	}
	return results(r.Results, len(items))
}

// BatchVerify verifies signatures; see BatchEncrypt for the result contract.
func (c *Client) BatchVerify(ctx context.Context, name string, items []api.VerifyRequest) ([]api.BatchVerifyItem, error) {
	var r api.BatchVerifyResponse
	if err := c.batch(ctx, name, "verify", api.BatchVerifyRequest{Items: items}, &r); err != nil {
		return nil, err
	}
	return results(r.Results, len(items))
}

// BatchHMAC computes MACs; see BatchEncrypt for the result contract.
func (c *Client) BatchHMAC(ctx context.Context, name string, items []api.SignRequest) ([]api.BatchSignItem, error) {
	var r api.BatchSignResponse
	if err := c.batch(ctx, name, "hmac", api.BatchSignRequest{Items: items}, &r); err != nil {
		return nil, err
	}
	return results(r.Results, len(items))
}

// BatchVerifyHMAC verifies MACs; see BatchEncrypt for the result contract.
func (c *Client) BatchVerifyHMAC(ctx context.Context, name string, items []api.VerifyRequest) ([]api.BatchVerifyItem, error) {
	var r api.BatchVerifyResponse
	if err := c.batch(ctx, name, "verify-hmac", api.BatchVerifyRequest{Items: items}, &r); err != nil {
		return nil, err
	}
	return results(r.Results, len(items))
}
