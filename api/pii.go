package api

// Wire types of the PII operations (issue 14): keyed pseudonyms,
// format-preserving encryption and masked decryption. See docs/PII.md.

// MaxFPEValueBytes bounds an FPE value; MaxFPETweakBytes its tweak.
const (
	MaxFPEValueBytes = 1024
	MaxFPETweakBytes = 1024
)

// PseudonymRequest: POST /v1/keys/{name}/pseudonym (hmac-sha256 keys).
// Value and Context are bytes (base64 in JSON, like plaintexts).
type PseudonymRequest struct {
	Value   []byte `json:"value"`
	Context []byte `json:"context,omitempty"`
	// Version pins the key version; 0 or absent: the latest. A pinned
	// version keeps the pseudonym stable across rotations.
	Version uint32 `json:"version,omitempty"`
}

// PseudonymResponse carries the pseudonym (unpadded base64url of 32
// bytes) and the version that computed it.
type PseudonymResponse struct {
	Pseudonym string `json:"pseudonym"`
	Version   uint32 `json:"version"`
}

// FPERequest: POST /v1/keys/{name}/fpe/encrypt and /fpe/decrypt
// (ff1-aes256 keys).
type FPERequest struct {
	// Value is the text to encipher or decipher.
	Value string `json:"value"`
	// Format is one of digits, alphanumeric, card, phone, ssn,
	// national-id, email-local.
	Format string `json:"format"`
	// Tweak is optional public data bound to the result (base64).
	Tweak []byte `json:"tweak,omitempty"`
	// Version: on encrypt, pins the version (0: latest); on decrypt, the
	// version the value was enciphered with (0: latest). FF1 output does
	// not name its version: keep the version from the encrypt response.
	Version uint32 `json:"version,omitempty"`
	// Mask, on decrypt only: "last4" or "full" returns Masked instead of
	// Value (always the case for a caller with decrypt-masked only).
	Mask string `json:"mask,omitempty"`
}

// FPEResponse carries the result and the version used. On a masked
// decrypt Value is empty and Masked holds the masked form.
type FPEResponse struct {
	Value   string `json:"value,omitempty"`
	Masked  string `json:"masked,omitempty"`
	Version uint32 `json:"version"`
}

// BatchPseudonymRequest: POST /v1/keys/{name}/batch/pseudonym.
type BatchPseudonymRequest struct {
	Items []PseudonymRequest `json:"items"`
}

// BatchPseudonymItem is one result: Pseudonym and Version, or Error.
type BatchPseudonymItem struct {
	Pseudonym string          `json:"pseudonym,omitempty"`
	Version   uint32          `json:"version,omitempty"`
	Error     *BatchItemError `json:"error,omitempty"`
}

// BatchPseudonymResponse holds one result per item, in order.
type BatchPseudonymResponse struct {
	Results []BatchPseudonymItem `json:"results"`
}

// BatchFPERequest: POST /v1/keys/{name}/batch/fpe-encrypt and
// /batch/fpe-decrypt.
type BatchFPERequest struct {
	Items []FPERequest `json:"items"`
}

// BatchFPEItem is one result: Value (or Masked) and Version, or Error.
type BatchFPEItem struct {
	Value   string          `json:"value,omitempty"`
	Masked  string          `json:"masked,omitempty"`
	Version uint32          `json:"version,omitempty"`
	Error   *BatchItemError `json:"error,omitempty"`
}

// BatchFPEResponse holds one result per item, in order.
type BatchFPEResponse struct {
	Results []BatchFPEItem `json:"results"`
}
