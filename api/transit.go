package api

// Wire types of the Vault transit-compatible API under /v1/transit/
// (docs/TRANSIT.md). Field names and shapes follow Vault's transit
// secrets engine, so Vault's clients (github.com/hashicorp/vault/api
// Logical().Write and Read) work unchanged. Binary fields are standard
// base64 in JSON, as in Vault. Fields Vault has and keyd does not
// support are present so that a request naming them gets a clear
// refusal rather than "unknown field".

// HeaderVaultToken carries a token the way Vault's clients send it. keyd
// accepts it on every route as an alternative to "Authorization: Bearer";
// a request that carries both with different tokens is refused.
const HeaderVaultToken = "X-Vault-Token"

// PathTransit is the prefix of the transit-compatible routes.
const PathTransit = "/v1/transit"

// TransitResponse is the envelope of every successful transit reply, in
// Vault's shape; Data holds the operation's result.
type TransitResponse struct {
	RequestID     string   `json:"request_id"`
	LeaseID       string   `json:"lease_id"`
	Renewable     bool     `json:"renewable"`
	LeaseDuration int      `json:"lease_duration"`
	Data          any      `json:"data"`
	WrapInfo      any      `json:"wrap_info"`
	Warnings      []string `json:"warnings"`
	Auth          any      `json:"auth"`
}

// TransitErrors is the body of every failed transit reply, in Vault's
// shape. Each message starts with keyd's stable error code
// ("decrypt_failed: ...").
type TransitErrors struct {
	Errors []string `json:"errors"`
}

// TransitEncryptItem is one plaintext: the single-item fields of
// TransitEncryptRequest and the element of its batch_input.
type TransitEncryptItem struct {
	Plaintext      []byte `json:"plaintext"`
	Context        []byte `json:"context,omitempty"`
	KeyVersion     int    `json:"key_version,omitempty"`
	Nonce          []byte `json:"nonce,omitempty"`
	Reference      string `json:"reference,omitempty"`
	AssociatedData []byte `json:"associated_data,omitempty"`
}

// TransitEncryptRequest: POST /v1/transit/encrypt/{name}.
type TransitEncryptRequest struct {
	TransitEncryptItem
	// Type and ConvergentEncryption are Vault's upsert options; keyd
	// never creates a key on encrypt.
	Type                       string               `json:"type,omitempty"`
	ConvergentEncryption       bool                 `json:"convergent_encryption,omitempty"`
	BatchInput                 []TransitEncryptItem `json:"batch_input,omitempty"`
	PartialFailureResponseCode int                  `json:"partial_failure_response_code,omitempty"`
}

// TransitCiphertextItem is one ciphertext to decrypt or rewrap.
type TransitCiphertextItem struct {
	Ciphertext     string `json:"ciphertext"`
	Context        []byte `json:"context,omitempty"`
	KeyVersion     int    `json:"key_version,omitempty"`
	Nonce          []byte `json:"nonce,omitempty"`
	Reference      string `json:"reference,omitempty"`
	AssociatedData []byte `json:"associated_data,omitempty"`
}

// TransitCiphertextRequest: POST /v1/transit/decrypt/{name} and
// /v1/transit/rewrap/{name}.
type TransitCiphertextRequest struct {
	TransitCiphertextItem
	BatchInput                 []TransitCiphertextItem `json:"batch_input,omitempty"`
	PartialFailureResponseCode int                     `json:"partial_failure_response_code,omitempty"`
}

// TransitResult is one result of encrypt, decrypt, rewrap, datakey,
// sign, hmac or verify: the single reply's data, and the element of
// batch_results. Only the fields of the operation are set.
type TransitResult struct {
	Ciphertext string `json:"ciphertext,omitempty"`
	// Plaintext is a pointer so that an empty plaintext is sent as "".
	Plaintext  *[]byte `json:"plaintext,omitempty"`
	Signature  string  `json:"signature,omitempty"`
	HMAC       string  `json:"hmac,omitempty"`
	Valid      *bool   `json:"valid,omitempty"`
	KeyVersion uint32  `json:"key_version,omitempty"`
	Reference  string  `json:"reference,omitempty"`
	Error      string  `json:"error,omitempty"`
}

// TransitBatchResults is the data of a batch reply.
type TransitBatchResults struct {
	BatchResults []TransitResult `json:"batch_results"`
}

// TransitDataKeyRequest: POST /v1/transit/datakey/{plaintext|wrapped}/{name}.
type TransitDataKeyRequest struct {
	Context    []byte `json:"context,omitempty"`
	Nonce      []byte `json:"nonce,omitempty"`
	Bits       int    `json:"bits,omitempty"`
	KeyVersion int    `json:"key_version,omitempty"`
}

// TransitSignItem is one message to sign, HMAC or verify.
type TransitSignItem struct {
	Input     []byte `json:"input"`
	Context   []byte `json:"context,omitempty"`
	Signature string `json:"signature,omitempty"`
	HMAC      string `json:"hmac,omitempty"`
	Reference string `json:"reference,omitempty"`
}

// TransitSignRequest: POST /v1/transit/sign/{name}[/{algorithm}],
// /v1/transit/verify/{name}[/{algorithm}] and
// /v1/transit/hmac/{name}[/{algorithm}].
type TransitSignRequest struct {
	TransitSignItem
	KeyVersion           int               `json:"key_version,omitempty"`
	HashAlgorithm        string            `json:"hash_algorithm,omitempty"`
	Algorithm            string            `json:"algorithm,omitempty"`
	Prehashed            bool              `json:"prehashed,omitempty"`
	SignatureAlgorithm   string            `json:"signature_algorithm,omitempty"`
	MarshalingAlgorithm  string            `json:"marshaling_algorithm,omitempty"`
	SaltLength           any               `json:"salt_length,omitempty"`
	BatchInput           []TransitSignItem `json:"batch_input,omitempty"`
	PartialFailureStatus int               `json:"partial_failure_response_code,omitempty"`
}

// TransitCreateKeyRequest: POST /v1/transit/keys/{name}.
type TransitCreateKeyRequest struct {
	// Type is a Vault key type: aes256-gcm96 (default),
	// chacha20-poly1305, ed25519, ecdsa-p256 or hmac.
	Type                 string `json:"type,omitempty"`
	Derived              bool   `json:"derived,omitempty"`
	ConvergentEncryption bool   `json:"convergent_encryption,omitempty"`
	Exportable           bool   `json:"exportable,omitempty"`
	AllowPlaintextBackup bool   `json:"allow_plaintext_backup,omitempty"`
	// AutoRotatePeriod is a duration ("720h") or a number of seconds; 0
	// turns automatic rotation off.
	AutoRotatePeriod any    `json:"auto_rotate_period,omitempty"`
	KeySize          int    `json:"key_size,omitempty"`
	ManagedKeyName   string `json:"managed_key_name,omitempty"`
	ManagedKeyID     string `json:"managed_key_id,omitempty"`
}

// TransitKeyConfigRequest: POST /v1/transit/keys/{name}/config. Absent
// fields are unchanged.
type TransitKeyConfigRequest struct {
	MinDecryptionVersion *int  `json:"min_decryption_version,omitempty"`
	MinEncryptionVersion *int  `json:"min_encryption_version,omitempty"`
	DeletionAllowed      *bool `json:"deletion_allowed,omitempty"`
	Exportable           *bool `json:"exportable,omitempty"`
	AllowPlaintextBackup *bool `json:"allow_plaintext_backup,omitempty"`
	AutoRotatePeriod     any   `json:"auto_rotate_period,omitempty"`
}

// TransitKeyInfo is the data of GET /v1/transit/keys/{name} and of the
// key writes' replies. Keys maps each version ("1") to its creation time
// in Unix seconds for symmetric keys, and to a TransitPublicKey for
// signing keys.
type TransitKeyInfo struct {
	Name                 string         `json:"name"`
	Type                 string         `json:"type"`
	Keys                 map[string]any `json:"keys"`
	LatestVersion        uint32         `json:"latest_version"`
	MinDecryptionVersion uint32         `json:"min_decryption_version"`
	MinEncryptionVersion uint32         `json:"min_encryption_version"`
	AutoRotatePeriod     int64          `json:"auto_rotate_period"`
	DeletionAllowed      bool           `json:"deletion_allowed"`
	Derived              bool           `json:"derived"`
	Exportable           bool           `json:"exportable"`
	AllowPlaintextBackup bool           `json:"allow_plaintext_backup"`
	SupportsEncryption   bool           `json:"supports_encryption"`
	SupportsDecryption   bool           `json:"supports_decryption"`
	SupportsDerivation   bool           `json:"supports_derivation"`
	SupportsSigning      bool           `json:"supports_signing"`
	ImportedKey          bool           `json:"imported_key"`
	// KeydState is keyd's state of the key (active, disabled,
	// pending_deletion); Vault has no such field.
	KeydState string `json:"keyd_state"`
}

// TransitPublicKey is one version of a signing key in TransitKeyInfo:
// an Ed25519 key is the base64 of its 32 bytes, an ECDSA key is PEM, as
// in Vault.
type TransitPublicKey struct {
	Name         string `json:"name"`
	PublicKey    string `json:"public_key"`
	CreationTime string `json:"creation_time"`
}
