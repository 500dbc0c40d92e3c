package api

import (
	"encoding/json"
	"time"
)

// Headers understood by every node.
const (
	// HeaderRequestID carries the idempotency key of a write. A retried
	// write with the same id is applied at most once; the reply repeats
	// the original outcome.
	HeaderRequestID = "X-Keyd-Request-Id"
	// HeaderMinIndex asks the node to wait (bounded) until it has applied
	// at least this Raft index before serving the request.
	HeaderMinIndex = "X-Keyd-Min-Index"
	// HeaderIndex is set on replies to the node's applied index (for reads)
	// or the write's log index (for writes).
	HeaderIndex = "X-Keyd-Index"
	// HeaderForwarded marks a request a follower forwarded to the leader;
	// the leader never forwards it again.
	HeaderForwarded = "X-Keyd-Forwarded"
	// HeaderAuthorization carries "Bearer <token>".
	HeaderAuthorization = "Authorization"
)

// Limits enforced by every node.
const (
	// MaxBodyBytes caps a single-item request body.
	MaxBodyBytes = 64 << 10
	// MaxBatchBodyBytes caps a batch request body.
	MaxBatchBodyBytes = 4 << 20
	// MaxBatchItems caps the items of one batch request.
	MaxBatchItems = 1000
	// MaxPlaintextBytes caps one plaintext or message.
	MaxPlaintextBytes = 32 << 10
	// MaxKeyNameLen caps a key name.
	MaxKeyNameLen = 128
	// MaxListLimit caps one page of the key list.
	MaxListLimit = 1000
)

// InitRequest starts a cluster: POST /v1/sys/init.
type InitRequest struct {
	Custodians int `json:"custodians"`
	Threshold  int `json:"threshold"`
	// CustodianKeys holds one age X25519 recipient ("age1...") per
	// custodian, in share order. When set, the leader encrypts each share
	// to its custodian and the reply carries only EncryptedShares, so the
	// operator who relays them never sees a share in the clear.
	CustodianKeys []string `json:"custodian_keys,omitempty"`
	// AdminKey, when set, is an age recipient the admin token is
	// encrypted to (reply field EncryptedAdminToken).
	AdminKey string `json:"admin_key,omitempty"`
	// PlaintextShares must be set to get shares in the clear without
	// CustodianKeys (dev mode and rehearsals only).
	PlaintextShares bool `json:"plaintext_shares,omitempty"`
}

// InitResponse carries the custodian shares and the admin token. They are
// shown once and never stored by keyd.
type InitResponse struct {
	// Shares are the plaintext shares (only with PlaintextShares).
	Shares []string `json:"shares,omitempty"`
	// EncryptedShares[i] is share i+1 as an ASCII-armored age message
	// for CustodianKeys[i].
	EncryptedShares []string `json:"encrypted_shares,omitempty"`
	// AdminToken is empty when EncryptedAdminToken is set.
	AdminToken          string `json:"admin_token,omitempty"`
	EncryptedAdminToken string `json:"encrypted_admin_token,omitempty"`
	Fingerprint         string `json:"commitments_fingerprint"`
	Index               uint64 `json:"index"`
}

// UnsealRequest submits one custodian share: POST /v1/sys/unseal.
// SealRelay is the body of a relayed seal (node to node): SealIndex is
// the log index of the operator's seal (fsm.SealCluster) when the relaying
// node knows it; 0 asks the receiving leader to record the seal.
type SealRelay struct {
	SealIndex uint64 `json:"seal_index,omitempty"`
}

type UnsealRequest struct {
	Share string `json:"share"`
	// GivenAt is set by a node relaying the share to its peers: its
	// applied Raft index when the share was given to it. A peer that has
	// applied an operator's seal after that index refuses the share
	// (given before the seal).
	GivenAt uint64 `json:"given_at,omitempty"`
	// Ephemeral and Sealed replace Share in a relay to a peer whose
	// delivery key is pinned: the share sealed to that key
	// (sharex.SealDelivery, kind custodian-relay), so only the peer's HSM
	// opens it.
	Ephemeral []byte `json:"ephemeral,omitempty"`
	Sealed    []byte `json:"sealed,omitempty"`
}

// SealStatus is the seal state of one node: GET /v1/sys/status and the
// reply of POST /v1/sys/unseal.
type SealStatus struct {
	NodeID      string `json:"node_id"`
	Initialized bool   `json:"initialized"`
	Sealed      bool   `json:"sealed"`
	// Progress counts verified custodian shares held towards Threshold.
	Progress    int    `json:"progress"`
	Threshold   int    `json:"threshold"`
	Custodians  int    `json:"custodians"`
	Fingerprint string `json:"commitments_fingerprint,omitempty"`
	// UnsealedBy says how the node was unsealed: "custodians" or
	// "warm-rejoin" (its HSM-held node share plus peers' shares).
	UnsealedBy string `json:"unsealed_by,omitempty"`
	// ShareIgnored is set in the reply to POST /v1/sys/unseal when the
	// submitted share was valid but not used, and says why ("node is
	// already unsealed", "share N was already submitted").
	ShareIgnored string `json:"share_ignored,omitempty"`
	// SealReason says why a sealed node cannot rejoin on its own.
	SealReason string `json:"seal_reason,omitempty"`
	// HSM is "ok", "none" (no HSM configured) or the device error.
	HSM string `json:"hsm"`
	// NodeShare is the fingerprint of the node-share dealing this node
	// holds a share of, when it is a holder of the current one.
	NodeShare string `json:"node_share,omitempty"`
	Leader    string `json:"leader,omitempty"`
	LeaderID  string `json:"leader_id,omitempty"`
	RaftState string `json:"raft_state"`
	// Term is the node's current Raft term (0 before Raft starts). With
	// RaftState it lets a drill check that no term has two leaders.
	Term    uint64 `json:"term,omitempty"`
	Applied uint64 `json:"applied_index"`
	Peers   []Peer `json:"peers,omitempty"`

	// NodeShares says whether node shares are dealt: "on", or "off: "
	// or "retrying: " and why (e.g. no voter has an HSM).
	NodeShares string `json:"node_shares,omitempty"`
	// Version is the answering node's keyd version.
	Version string `json:"version,omitempty"`
	// CallerRemoved: see PublicSealStatus.
	CallerRemoved bool `json:"caller_removed,omitempty"`
}

// Peer is one Raft server as a node sees it.
type Peer struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr,omitempty"`
	Voter    bool   `json:"voter"`
	Leader   bool   `json:"leader"`
}

// Key states.
const (
	KeyEnabled         = "enabled"
	KeyDisabled        = "disabled"
	KeyPendingDeletion = "pending_deletion"
)

// CreateKeyRequest: POST /v1/keys.
type CreateKeyRequest struct {
	Name string `json:"name"`
	// Type is one of aes256-gcm (default), xchacha20-poly1305,
	// hmac-sha256, ed25519, ecdsa-p256, aes256-siv (deterministic) and
	// ff1-aes256 (format-preserving); see docs/PII.md.
	Type string `json:"type,omitempty"`
	// RotationPeriod, when set ("720h"), makes the leader rotate the key
	// automatically once each period.
	RotationPeriod string `json:"rotation_period,omitempty"`
	// Tags classify the key (pii, pci, phi, ...; see docs/PII.md).
	Tags []string `json:"tags,omitempty"`
	// Retention, when set ("8760h"), makes the leader schedule the key's
	// deletion once it is that old.
	Retention string `json:"retention,omitempty"`
}

// KeyConfigRequest: POST /v1/keys/{name}/config. Nil fields are unchanged.
type KeyConfigRequest struct {
	MinDecryptionVersion *uint32 `json:"min_decryption_version,omitempty"`
	// RotationPeriod "0" or "" with the field present disables automatic rotation.
	RotationPeriod *string `json:"rotation_period,omitempty"`
	// Tags, when present, replaces the key's tags ([] removes them all).
	Tags *[]string `json:"tags,omitempty"`
	// Retention "0" or "" with the field present removes the retention.
	Retention *string `json:"retention,omitempty"`
}

// ScheduleDeletionRequest: POST /v1/keys/{name}/schedule-deletion.
type ScheduleDeletionRequest struct {
	// PendingWindow is how long the key stays recoverable, e.g. "168h".
	// Between 24h and 720h; default 168h (7 days).
	PendingWindow string `json:"pending_window,omitempty"`
}

// KeyVersion is the public metadata of one key version. No material.
type KeyVersion struct {
	Version   uint32    `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	// PublicKey is the PKIX DER public key of a signing key version.
	PublicKey []byte `json:"public_key,omitempty"`
}

// KeyInfo is a key's metadata: GET /v1/keys/{name} and write replies.
type KeyInfo struct {
	Name                 string       `json:"name"`
	Type                 string       `json:"type"`
	State                string       `json:"state"`
	LatestVersion        uint32       `json:"latest_version"`
	MinDecryptionVersion uint32       `json:"min_decryption_version"`
	RotationPeriod       string       `json:"rotation_period,omitempty"`
	CreatedAt            time.Time    `json:"created_at"`
	RotatedAt            time.Time    `json:"rotated_at"`
	DeletionAt           *time.Time   `json:"deletion_at,omitempty"`
	Tags                 []string     `json:"tags,omitempty"`
	Retention            string       `json:"retention,omitempty"`
	Versions             []KeyVersion `json:"versions"`
	// Index is the Raft index of the write that produced this reply, or
	// the applied index the read was served at.
	Index uint64 `json:"index"`
}

// KeyList is a page of key names: GET /v1/keys?limit=N&after=NAME.
type KeyList struct {
	Keys []string `json:"keys"`
	// Next, when set, is the value to pass as after= for the next page.
	Next  string `json:"next,omitempty"`
	Index uint64 `json:"index"`
}

// EncryptRequest: POST /v1/keys/{name}/encrypt. Binary fields are base64
// (standard encoding) in JSON.
type EncryptRequest struct {
	Plaintext []byte `json:"plaintext"`
	Context   []byte `json:"context,omitempty"`
}

// EncryptResponse carries a ciphertext of the form keyd:vN:<base64>.
type EncryptResponse struct {
	Ciphertext string `json:"ciphertext"`
	Version    uint32 `json:"version"`
}

// DecryptRequest: POST /v1/keys/{name}/decrypt; also the body of
// /reencrypt.
type DecryptRequest struct {
	Ciphertext string `json:"ciphertext"`
	Context    []byte `json:"context,omitempty"`
	// Mask, "last4" or "full", asks for the masked form instead of the
	// plaintext (see MaskedDecryptResponse, docs/PII.md). A caller with
	// decrypt-masked but not decrypt always gets the masked form.
	Mask string `json:"mask,omitempty"`
}

// DecryptResponse carries the plaintext.
type DecryptResponse struct {
	Plaintext []byte `json:"plaintext"`
	// Masked replaces Plaintext (then null) on a masked decrypt.
	Masked  string `json:"masked,omitempty"`
	Version uint32 `json:"version"`
}

// DataKeyRequest: POST /v1/keys/{name}/datakey.
type DataKeyRequest struct {
	// Bytes is the data key length: 16, 24 or 32 (default 32).
	Bytes   int    `json:"bytes,omitempty"`
	Context []byte `json:"context,omitempty"`
	// WithoutPlaintext returns only the wrapped data key.
	WithoutPlaintext bool `json:"without_plaintext,omitempty"`
}

// DataKeyResponse carries the wrapped data key and, unless asked not to,
// its plaintext.
type DataKeyResponse struct {
	Ciphertext string `json:"ciphertext"`
	Plaintext  []byte `json:"plaintext,omitempty"`
	Version    uint32 `json:"version"`
}

// SignRequest: POST /v1/keys/{name}/sign and /hmac.
type SignRequest struct {
	Message []byte `json:"message"`
}

// SignResponse carries a signature or MAC of the form keyd:vN:<base64>.
type SignResponse struct {
	Signature string `json:"signature"`
	Version   uint32 `json:"version"`
}

// VerifyRequest: POST /v1/keys/{name}/verify and /verify-hmac.
type VerifyRequest struct {
	Message   []byte `json:"message"`
	Signature string `json:"signature"`
}

// VerifyResponse says whether the signature or MAC is valid.
type VerifyResponse struct {
	Valid bool `json:"valid"`
}

// BatchItemError is the error of one batch item.
type BatchItemError struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// BatchEncryptRequest: POST /v1/keys/{name}/batch/encrypt.
type BatchEncryptRequest struct {
	Items []EncryptRequest `json:"items"`
}

// BatchEncryptItem is one result; exactly one of Ciphertext and Error is set.
type BatchEncryptItem struct {
	Ciphertext string          `json:"ciphertext,omitempty"`
	Version    uint32          `json:"version,omitempty"`
	Error      *BatchItemError `json:"error,omitempty"`
}

// BatchEncryptResponse holds one result per item, in order.
type BatchEncryptResponse struct {
	Results []BatchEncryptItem `json:"results"`
}

// BatchDecryptRequest: POST /v1/keys/{name}/batch/decrypt and
// /batch/reencrypt.
type BatchDecryptRequest struct {
	Items []DecryptRequest `json:"items"`
}

// BatchDecryptItem is one result; exactly one of Plaintext (or Ciphertext,
// for reencrypt) and Error is set.
type BatchDecryptItem struct {
	Plaintext  []byte          `json:"plaintext,omitempty"`
	Masked     string          `json:"masked,omitempty"` // masked decrypt (docs/PII.md)
	Ciphertext string          `json:"ciphertext,omitempty"`
	Version    uint32          `json:"version,omitempty"`
	Error      *BatchItemError `json:"error,omitempty"`
}

// BatchDecryptResponse holds one result per item, in order.
type BatchDecryptResponse struct {
	Results []BatchDecryptItem `json:"results"`
}

// BatchSignRequest: POST /v1/keys/{name}/batch/sign and /batch/hmac.
type BatchSignRequest struct {
	Items []SignRequest `json:"items"`
}

// BatchSignItem is one result.
type BatchSignItem struct {
	Signature string          `json:"signature,omitempty"`
	Version   uint32          `json:"version,omitempty"`
	Error     *BatchItemError `json:"error,omitempty"`
}

// BatchSignResponse holds one result per item, in order.
type BatchSignResponse struct {
	Results []BatchSignItem `json:"results"`
}

// BatchVerifyRequest: POST /v1/keys/{name}/batch/verify and
// /batch/verify-hmac.
type BatchVerifyRequest struct {
	Items []VerifyRequest `json:"items"`
}

// BatchVerifyItem is one result.
type BatchVerifyItem struct {
	Valid bool            `json:"valid"`
	Error *BatchItemError `json:"error,omitempty"`
}

// BatchVerifyResponse holds one result per item, in order.
type BatchVerifyResponse struct {
	Results []BatchVerifyItem `json:"results"`
}

// BatchDataKeyRequest: POST /v1/keys/{name}/batch/datakey.
type BatchDataKeyRequest struct {
	Items []DataKeyRequest `json:"items"`
}

// BatchDataKeyItem is one result.
type BatchDataKeyItem struct {
	Ciphertext string          `json:"ciphertext,omitempty"`
	Plaintext  []byte          `json:"plaintext,omitempty"`
	Version    uint32          `json:"version,omitempty"`
	Error      *BatchItemError `json:"error,omitempty"`
}

// BatchDataKeyResponse holds one result per item, in order.
type BatchDataKeyResponse struct {
	Results []BatchDataKeyItem `json:"results"`
}

// WriteResponse is the reply of writes that return no key, e.g. seal.
type WriteResponse struct {
	Index uint64 `json:"index"`
	// NotApplied, in the reply of a token revocation, names the nodes that
	// had not applied it when the reply was sent (unreachable or cut off
	// from the leader); every other node already refuses the token.
	NotApplied []string `json:"not_applied,omitempty"`
}

// Health is GET /v1/sys/health: unauthenticated, cheap.
type Health struct {
	NodeID      string `json:"node_id"`
	Initialized bool   `json:"initialized"`
	Sealed      bool   `json:"sealed"`
	Leader      bool   `json:"leader"`
	Applied     uint64 `json:"applied_index"`
}

// NodeShareDelivery carries a freshly dealt node share from the leader to
// a voter over mutual TLS: POST /v1/internal/node-share. The share is
// sealed to the voter's delivery key, pinned in the replicated state
// (sharex.SealDelivery: Ephemeral is the leader's one-time X25519 key,
// Sealed the nonce and ciphertext), so only the voter's HSM opens it; the
// receiver wraps the opened share with its HSM before it touches disk.
type NodeShareDelivery struct {
	Epoch       uint64 `json:"epoch"`
	Commitments []byte `json:"commitments"`
	Ephemeral   []byte `json:"ephemeral"`
	Sealed      []byte `json:"sealed"`
}

// PathCluster is GET /v1/sys/cluster (token): the topology.
const PathCluster = "/v1/sys/cluster"

// PathJoin is POST /v1/sys/join: ask this node to join a cluster through
// gossip seeds. Unauthenticated only while the node is fresh (no Raft
// state, not initialized); otherwise it needs a token.
const PathJoin = "/v1/sys/join"

// PathRemove is POST /v1/sys/remove (token, leader): remove a node.
const PathRemove = "/v1/sys/remove"

// Node states in ClusterNode.State.
const (
	NodeAlive   = "alive"
	NodeSuspect = "suspect"
	NodeDead    = "dead"
	NodeLeft    = "left"
	NodeUnknown = "unknown"
)

// ClusterNode is one node of the topology.
type ClusterNode struct {
	ID         string `json:"id"`
	Region     string `json:"region,omitempty"`
	APIAddr    string `json:"api_addr,omitempty"`
	RaftAddr   string `json:"raft_addr,omitempty"`
	GossipAddr string `json:"gossip_addr,omitempty"`
	// Voter and NonVoter say the node's Raft membership; both false means
	// it is known by gossip only (joining, or removed).
	Voter    bool `json:"voter"`
	NonVoter bool `json:"non_voter"`
	Leader   bool `json:"leader"`
	Sealed   bool `json:"sealed"`
	// State is the gossip view: alive, suspect, dead, left or unknown.
	State   string `json:"state"`
	Applied uint64 `json:"applied_index"`
	HSMOK   bool   `json:"hsm_ok"`
	// LastContact is how long ago this node's state last changed in
	// gossip (or, for the answering node, its last contact with the
	// leader), in milliseconds.
	LastContactMS int64 `json:"last_contact_ms"`
}

// ClusterInfo is the reply of GET /v1/sys/cluster.
type ClusterInfo struct {
	// Node is the id of the node that answered.
	Node     string        `json:"node"`
	LeaderID string        `json:"leader_id,omitempty"`
	Leader   string        `json:"leader,omitempty"` // leader's API address
	Nodes    []ClusterNode `json:"nodes"`
	Index    uint64        `json:"index"`
}

// JoinRequest is the body of POST /v1/sys/join.
type JoinRequest struct {
	// Seeds are gossip addresses (host:port) of existing members.
	Seeds []string `json:"seeds"`
}

// JoinResponse reports how many seeds answered.
type JoinResponse struct {
	Contacted int `json:"contacted"`
}

// RemoveRequest is the body of POST /v1/sys/remove.
type RemoveRequest struct {
	NodeID string `json:"node_id"`
}

// Paths of identity and policy management (token with token-admin, or
// set-policy for key-scoped policy documents).
const (
	PathPolicies    = "/v1/policies" // GET list; PUT/GET/DELETE /v1/policies/{name}
	PathTokens      = "/v1/tokens"   // POST create; GET list
	PathTokenRevoke = "/v1/tokens/revoke"
	PathIdentities  = "/v1/identities" // POST create; GET list; DELETE /v1/identities/{id}
	PathAuditKey    = "/v1/sys/audit/public-key"
	PathAuditLog    = "/v1/sys/audit/log"
	PathWhoAmI      = "/v1/sys/whoami"
)

// PolicyInfo is a stored policy: GET /v1/policies/{name}.
type PolicyInfo struct {
	Name     string          `json:"name"`
	Builtin  bool            `json:"builtin,omitempty"`
	Document json.RawMessage `json:"document"`
	Index    uint64          `json:"index,omitempty"`
}

// PolicyList is GET /v1/policies.
type PolicyList struct {
	Policies []string `json:"policies"`
	Builtin  []string `json:"builtin"`
}

// CreateTokenRequest is POST /v1/tokens.
type CreateTokenRequest struct {
	Name     string   `json:"name,omitempty"`
	Policies []string `json:"policies"`
	// TTL like "720h"; empty: no expiry.
	TTL string `json:"ttl,omitempty"`
}

// TokenInfo describes a token without the token itself. The accessor
// (the first 16 hex digits of the token's SHA-256) names it for listing
// and revocation.
type TokenInfo struct {
	Accessor  string    `json:"accessor"`
	Name      string    `json:"name,omitempty"`
	Policies  []string  `json:"policies"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// LastUsed is the last authenticated request (flushed periodically).
	LastUsed *time.Time `json:"last_used,omitempty"`
	// Token is set only in the reply to POST /v1/tokens: shown once.
	Token string `json:"token,omitempty"`
	Index uint64 `json:"index,omitempty"`
}

// TokenList is GET /v1/tokens.
type TokenList struct {
	Tokens []TokenInfo `json:"tokens"`
}

// RevokeTokenRequest is POST /v1/tokens/revoke.
type RevokeTokenRequest struct {
	Accessor string `json:"accessor"`
}

// CreateIdentityRequest is POST /v1/identities: bind a client
// certificate (PEM) or its public-key hash to policies.
type CreateIdentityRequest struct {
	Name        string   `json:"name,omitempty"`
	Certificate string   `json:"certificate,omitempty"`
	ID          string   `json:"id,omitempty"`
	Policies    []string `json:"policies"`
}

// IdentityInfo is one certificate identity: ID is the hex SHA-256 of the
// certificate's SubjectPublicKeyInfo.
type IdentityInfo struct {
	ID        string    `json:"id"`
	Name      string    `json:"name,omitempty"`
	Policies  []string  `json:"policies"`
	CreatedAt time.Time `json:"created_at"`
	// LastUsed is the last authenticated request (flushed periodically).
	LastUsed *time.Time `json:"last_used,omitempty"`
	Index    uint64     `json:"index,omitempty"`
}

// IdentityList is GET /v1/identities.
type IdentityList struct {
	Identities []IdentityInfo `json:"identities"`
}

// WhoAmI is GET /v1/sys/whoami: the caller's identity and policies.
type WhoAmI struct {
	Identity string   `json:"identity"`
	Policies []string `json:"policies"`
}

// AuditKey is GET /v1/sys/audit/public-key: the node's checkpoint
// signing key (hex), for `keyd audit verify`.
type AuditKey struct {
	Node      string `json:"node"`
	PublicKey string `json:"public_key"`
}

// Root rotation: a quorum of the current custodians replaces the root
// secret and receives new shares. No token is involved.
const (
	PathRotateRoot       = "/v1/sys/rotate-root"        // GET status
	PathRotateRootStart  = "/v1/sys/rotate-root/start"  // POST RotateRootStart
	PathRotateRootSubmit = "/v1/sys/rotate-root/submit" // POST RotateRootSubmit
)

// RotateRootStart opens a rotation session for a new custodian dealing.
type RotateRootStart struct {
	Custodians int `json:"custodians"`
	Threshold  int `json:"threshold"`
	// CustodianKeys and PlaintextShares as in InitRequest: the new shares
	// are encrypted to these recipients, or returned in the clear only
	// when PlaintextShares is set.
	CustodianKeys   []string `json:"custodian_keys,omitempty"`
	PlaintextShares bool     `json:"plaintext_shares,omitempty"`
	// Share is the starter's current custodian share: a session opens
	// only with a valid one, and it counts as the first submission.
	Share string `json:"share"`
	// Approve is the starter's approval of this dealing: RotationDigest of
	// the current root's commitments fingerprint and the fields above.
	// The session opens only when it matches.
	Approve string `json:"approve"`
}

// PathRotateRootCancel is POST RotateRootCancel: any holder of a current
// custodian share ends the running session.
const PathRotateRootCancel = "/v1/sys/rotate-root/cancel"

// RotateRootCancel carries one current custodian share.
type RotateRootCancel struct {
	Share string `json:"share"`
}

// RotateRootSubmit carries one current custodian share.
type RotateRootSubmit struct {
	Nonce string `json:"nonce"`
	Share string `json:"share"`
	// Approve is the session digest (RotateRootStatus.Digest) the
	// submitter approves, computed from the parameters they checked. A
	// share whose Approve does not match the session is refused (conflict)
	// and not counted.
	Approve string `json:"approve"`
}

// RotateRootStatus is the state of the rotation session. Shares and
// Fingerprint are set only in the reply to the submission that completed
// the rotation: the new custodian shares, shown once.
type RotateRootStatus struct {
	Started    bool     `json:"started"`
	Nonce      string   `json:"nonce,omitempty"`
	Progress   int      `json:"progress"`
	Required   int      `json:"required"`
	Custodians int      `json:"custodians,omitempty"`
	Threshold  int      `json:"threshold,omitempty"`
	Complete   bool     `json:"complete,omitempty"`
	Shares     []string `json:"shares,omitempty"`
	// EncryptedShares are the new shares encrypted to the session's
	// CustodianKeys (ASCII-armored age), in share order.
	EncryptedShares []string `json:"encrypted_shares,omitempty"`
	Fingerprint     string   `json:"commitments_fingerprint,omitempty"`
	Index           uint64   `json:"index,omitempty"`
	// CustodianKeys are the recipients of the new shares, so custodians
	// can check them before they submit; PlaintextShares says the new
	// shares go to the completing submitter in the clear instead.
	CustodianKeys   []string   `json:"custodian_keys,omitempty"`
	PlaintextShares bool       `json:"plaintext_shares,omitempty"`
	ExpiresAt       *time.Time `json:"expires_at,omitempty"`
	// Digest is the running session's RotationDigest: what every
	// submitter approves. PrevFingerprint is the current root's
	// commitments fingerprint (set with or without a session), which the
	// digest covers.
	Digest          string `json:"digest,omitempty"`
	PrevFingerprint string `json:"prev_commitments_fingerprint,omitempty"`
}

// PublicSealStatus is GET /v1/sys/status (and the unseal reply) for a
// caller without the cluster capability: what a load balancer and a
// custodian need, no addresses, Raft view or HSM detail. Its JSON fields
// are a subset of SealStatus's, so clients decode either into SealStatus.
type PublicSealStatus struct {
	NodeID       string `json:"node_id"`
	Initialized  bool   `json:"initialized"`
	Sealed       bool   `json:"sealed"`
	Progress     int    `json:"progress"`
	Threshold    int    `json:"threshold"`
	Custodians   int    `json:"custodians"`
	Fingerprint  string `json:"commitments_fingerprint,omitempty"`
	ShareIgnored string `json:"share_ignored,omitempty"`
	LeaderID     string `json:"leader_id,omitempty"`
	Applied      uint64 `json:"applied_index"`
	Version      string `json:"version,omitempty"`
	// CallerRemoved is set when the caller presented a node certificate
	// of the cluster CA whose node is no longer a member: a removed node
	// that lost the Raft log learns of its removal this way.
	CallerRemoved bool `json:"caller_removed,omitempty"`
}

// Public returns the part of s an unauthenticated caller may see.
func (s *SealStatus) Public() *PublicSealStatus {
	return &PublicSealStatus{
		NodeID: s.NodeID, Initialized: s.Initialized, Sealed: s.Sealed,
		Progress: s.Progress, Threshold: s.Threshold, Custodians: s.Custodians,
		Fingerprint: s.Fingerprint, ShareIgnored: s.ShareIgnored,
		LeaderID: s.LeaderID, Applied: s.Applied, Version: s.Version,
	}
}
