package keyops

import (
	"io"
	"strconv"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/keyring"
	"github.com/keyd/keyd/policy"
)

// Op names a crypto operation, as in keyd's batch paths
// (/v1/keys/{name}/batch/{op}).
type Op string

// The operations.
const (
	OpEncrypt    Op = "encrypt"
	OpDecrypt    Op = "decrypt"
	OpReencrypt  Op = "reencrypt"
	OpDataKey    Op = "datakey"
	OpSign       Op = "sign"
	OpHMAC       Op = "hmac"
	OpVerify     Op = "verify"
	OpVerifyHMAC Op = "verify-hmac"
)

var capabilities = map[Op]policy.Capability{
	OpEncrypt: policy.Encrypt, OpDecrypt: policy.Decrypt, OpReencrypt: policy.Rewrap, OpDataKey: policy.DataKey,
	OpSign: policy.Sign, OpHMAC: policy.HMAC, OpVerify: policy.Verify, OpVerifyHMAC: policy.Verify,
}

// Capability returns the policy capability op needs, and false for an
// unknown op.
func (op Op) Capability() (policy.Capability, bool) {
	c, ok := capabilities[op]
	return c, ok
}

// CheckItems validates a batch's item count: 1..api.MaxBatchItems.
func CheckItems(n int) error {
	if n == 0 {
		return &api.Error{Code: api.CodeBadRequest, Message: "items is empty"}
	}
	if n > api.MaxBatchItems {
		return &api.Error{Code: api.CodeBadRequest, Message: "at most " + strconv.Itoa(api.MaxBatchItems) + " items per batch"}
	}
	return nil
}

// Each item of a batch succeeds or fails on its own; a batch fails as a
// whole only for a bad item count.

// BatchEncrypt encrypts every item.
func BatchEncrypt(k *keyring.Key, rnd io.Reader, items []api.EncryptRequest) (*api.BatchEncryptResponse, error) {
	if err := CheckItems(len(items)); err != nil {
		return nil, err
	}
	out := &api.BatchEncryptResponse{Results: make([]api.BatchEncryptItem, len(items))}
	// The texts are appended to one buffer and become substrings of one
	// string: two allocations for the batch instead of two per item.
	// Sized so EncryptTo never grows it (each item's EncryptedLen covers
	// its text and its scratch), up to a bound past which it grows.
	size := 0
	for _, it := range items {
		size += k.EncryptedLen(len(it.Plaintext), len(it.Context))
	}
	buf := make([]byte, 0, min(size, 1<<20))
	ends := make([]int, len(items)) // end of item i's text in buf; -1: failed
	for i, it := range items {
		b, err := encryptTo(buf, k, rnd, it.Plaintext, it.Context)
		if err != nil {
			out.Results[i].Error = ItemError(err)
			ends[i] = -1
			continue
		}
		buf = b
		ends[i] = len(buf)
		out.Results[i].Version = k.Latest()
	}
	all := string(buf)
	start := 0
	for i, end := range ends {
		if end >= 0 {
			out.Results[i].Ciphertext = all[start:end]
			start = end
		}
	}
	return out, nil
}

// encryptTo is Encrypt appending the text to dst; on error dst is
// returned unchanged.
func encryptTo(dst []byte, k *keyring.Key, rnd io.Reader, plaintext, context []byte) ([]byte, error) {
	if len(plaintext) > api.MaxPlaintextBytes {
		return dst, TooLarge("plaintext")
	}
	b, err := k.EncryptTo(dst, rnd, plaintext, context)
	if err != nil {
		return dst, wire(err)
	}
	return b, nil
}

// BatchDecrypt decrypts every item.
func BatchDecrypt(k *keyring.Key, items []api.DecryptRequest) (*api.BatchDecryptResponse, error) {
	if err := CheckItems(len(items)); err != nil {
		return nil, err
	}
	out := &api.BatchDecryptResponse{Results: make([]api.BatchDecryptItem, len(items))}
	for i, it := range items {
		r, err := Decrypt(k, it.Ciphertext, it.Context)
		if err != nil {
			out.Results[i].Error = ItemError(err)
			continue
		}
		out.Results[i] = api.BatchDecryptItem{Plaintext: r.Plaintext, Version: r.Version}
	}
	return out, nil
}

// BatchReencrypt re-encrypts every item under the latest version.
func BatchReencrypt(k *keyring.Key, rnd io.Reader, items []api.DecryptRequest) (*api.BatchDecryptResponse, error) {
	if err := CheckItems(len(items)); err != nil {
		return nil, err
	}
	out := &api.BatchDecryptResponse{Results: make([]api.BatchDecryptItem, len(items))}
	for i, it := range items {
		r, err := Reencrypt(k, rnd, it.Ciphertext, it.Context)
		if err != nil {
			out.Results[i].Error = ItemError(err)
			continue
		}
		out.Results[i] = api.BatchDecryptItem{Ciphertext: r.Ciphertext, Version: r.Version}
	}
	return out, nil
}

// BatchDataKey draws one data key per item.
func BatchDataKey(k *keyring.Key, rnd io.Reader, items []api.DataKeyRequest) (*api.BatchDataKeyResponse, error) {
	if err := CheckItems(len(items)); err != nil {
		return nil, err
	}
	out := &api.BatchDataKeyResponse{Results: make([]api.BatchDataKeyItem, len(items))}
	for i, it := range items {
		r, err := DataKey(k, rnd, it)
		if err != nil {
			out.Results[i].Error = ItemError(err)
			continue
		}
		out.Results[i] = api.BatchDataKeyItem{Ciphertext: r.Ciphertext, Plaintext: r.Plaintext, Version: r.Version}
	}
	return out, nil
}

// BatchSign signs (mac false) or MACs (mac true) every item.
func BatchSign(k *keyring.Key, items []api.SignRequest, mac bool) (*api.BatchSignResponse, error) {
	if err := CheckItems(len(items)); err != nil {
		return nil, err
	}
	out := &api.BatchSignResponse{Results: make([]api.BatchSignItem, len(items))}
	for i, it := range items {
		r, err := signLike(k, it.Message, mac)
		if err != nil {
			out.Results[i].Error = ItemError(err)
			continue
		}
		out.Results[i] = api.BatchSignItem{Signature: r.Signature, Version: r.Version}
	}
	return out, nil
}

// BatchVerify verifies a signature (mac false) or MAC (mac true) per item.
func BatchVerify(k *keyring.Key, items []api.VerifyRequest, mac bool) (*api.BatchVerifyResponse, error) {
	if err := CheckItems(len(items)); err != nil {
		return nil, err
	}
	out := &api.BatchVerifyResponse{Results: make([]api.BatchVerifyItem, len(items))}
	for i, it := range items {
		r, err := verifyLike(k, it.Message, it.Signature, mac)
		if err != nil {
			out.Results[i].Error = ItemError(err)
			continue
		}
		out.Results[i].Valid = r.Valid
	}
	return out, nil
}
