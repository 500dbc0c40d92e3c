package fsm

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Apply returns them inside *Result; callers branch with
// errors.Is.
var (
	ErrInvalidCommand     = errors.New("fsm: invalid command")
	ErrUnknownCommand     = errors.New("fsm: unknown command")
	ErrKeyNotFound        = errors.New("fsm: key not found")
	ErrKeyExists          = errors.New("fsm: key exists")
	ErrKeyPendingDeletion = errors.New("fsm: key is scheduled for deletion")
	ErrConflict           = errors.New("fsm: conflicting change")
	ErrNotInitialized     = errors.New("fsm: not initialized")
	ErrAlreadyInitialized = errors.New("fsm: already initialized")
	ErrSnapshotCorrupt    = errors.New("fsm: snapshot corrupt")
	ErrClosed             = errors.New("fsm: closed")
	ErrNotFound           = errors.New("fsm: not found")
	// ErrRequestReused: a caller reused a request id for a different
	// request (another operation, target or body). It wraps ErrConflict.
	ErrRequestReused = fmt.Errorf("%w: request id already used by this caller for a different request", ErrConflict)
)

// Key states as stored.
const (
	StateEnabled         = "enabled"
	StateDisabled        = "disabled"
	StatePendingDeletion = "pending_deletion"
)

// KeyRecord is a customer key as stored in the FSM: metadata and wrapped
// versions 1..len(Versions), in order.
type KeyRecord struct {
	Name                 string           `json:"name"`
	Type                 string           `json:"type"`
	State                string           `json:"state"`
	CreatedAt            time.Time        `json:"created_at"`
	RotatedAt            time.Time        `json:"rotated_at"`
	DeletionAt           time.Time        `json:"deletion_at,omitzero"`
	MinDecryptionVersion uint32           `json:"min_decryption_version"`
	RotationPeriod       time.Duration    `json:"rotation_period,omitempty"`
	Versions             []WrappedVersion `json:"versions"`

	// Tags classify the key (sorted, validated by the proposer); policies
	// match them and some bring stricter defaults.
	Tags []string `json:"tags,omitempty"`
	// Retention, when set, makes the leader schedule the key's deletion
	// once CreatedAt+Retention has passed.
	Retention time.Duration `json:"retention,omitempty"`
}

// Latest returns the newest version number.
func (k *KeyRecord) Latest() uint32 { return uint32(len(k.Versions)) }

// RotationDue reports whether automatic rotation is due at now.
func (k *KeyRecord) RotationDue(now time.Time) bool {
	return k.RotationPeriod > 0 && k.State == StateEnabled && !now.Before(k.RotatedAt.Add(k.RotationPeriod))
}

// InitRecord is the cluster's root record.
type InitRecord struct {
	Custodians     int       `json:"n"`
	Threshold      int       `json:"t"`
	Commitments    []byte    `json:"commitments"`
	WrappedBarrier []byte    `json:"barrier"`
	At             time.Time `json:"at"`
	// Set by Init only (a root rotation drops them): what a retried init
	// needs to get the same answer. See Init.
	InitRequestID       string   `json:"init_rid,omitempty"`
	Params              []byte   `json:"init_params,omitempty"`
	EncryptedShares     []string `json:"encrypted_shares,omitempty"`
	EncryptedAdminToken string   `json:"encrypted_admin_token,omitempty"`
}

// NodeSharesRecord is the current dealing of node shares.
type NodeSharesRecord struct {
	Epoch       uint64         `json:"epoch"`
	Threshold   int            `json:"t"`
	Commitments []byte         `json:"commitments"`
	Holders     map[string]int `json:"holders"`
	Voters      []string       `json:"voters"`
	At          time.Time      `json:"at"`
}

// PolicyRecord is a stored policy document.
type PolicyRecord struct {
	Name      string    `json:"name"`
	Doc       []byte    `json:"doc"`
	UpdatedAt time.Time `json:"updated_at"`
}

// IdentityRecord binds a certificate identity to policies.
type IdentityRecord struct {
	ID        string    `json:"id"`
	Name      string    `json:"name,omitempty"`
	Policies  []string  `json:"policies"`
	CreatedAt time.Time `json:"created_at"`
}

// TokenRecord is a token's hash and policies.
type TokenRecord struct {
	Hash      []byte    `json:"hash"`
	Name      string    `json:"name,omitempty"`
	Policies  []string  `json:"policies"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// Result is what the FSM returns from applying one log entry.
type Result struct {
	// Index is the log index the change was applied at. For a duplicate
	// request id it is the index of the original application.
	Index uint64
	// Duplicate is set when the request id was seen before and nothing
	// was applied this time.
	Duplicate bool
	// Err is the command's own error (a sentinel of this package), if any.
	// A failed command changes nothing.
	Err error
	// Key is the record a CreateKey or RotateKey wrote (nil otherwise,
	// and for a duplicate), so that the proposer answers with its own
	// write, not with whatever a later command of the batch made of the
	// key (a rotation answering with the next rotation's version).
	// It is shared with the observer's event: read it, never change it.
	Key *KeyRecord
}

// Event tells the observer what an applied batch changed. It is delivered
// synchronously after the change is committed and before waiters on the
// index are released, so a reader that waited for an index sees the
// observer's view of it.
type Event struct {
	Index uint64
	// Keys holds the new records of keys that changed.
	Keys []*KeyRecord
	// Deleted names keys that were removed.
	Deleted []string
	// Init is set when the cluster was initialized in this batch.
	Init bool
	// Tokens is set when tokens, policies or identities changed.
	Tokens bool
	// NodeShares is set when a new node-share dealing was recorded.
	NodeShares bool
	// Root is set when the root was rotated.
	Root bool
	// Restored is set after a snapshot restore: every view must be rebuilt.
	Restored bool
	// Sealed is set when an operator sealed the cluster (SealCluster).
	Sealed bool
}

// Observer receives Events. It must be fast and must not call back into
// Apply; it may read the FSM.
type Observer func(Event)
