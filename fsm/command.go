package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Op identifies a replicated command. Values are part of the log format:
// never renumber, only append.
type Op uint8

const (
	opInvalid Op = iota
	OpInit
	OpCreateKey
	OpRotateKey
	OpSetKeyState
	OpConfigureKey
	OpScheduleDeletion
	OpCancelDeletion
	OpDeleteKey
	OpPutToken
	OpRevokeToken
	OpPutNodeShares
	OpRemoveNode
	OpPutPolicy
	OpDeletePolicy
	OpPutIdentity
	OpDeleteIdentity
	OpRotateRoot
	opMax // keep last
)

// formatVersion is the first byte of every encoded command.
const formatVersion = 1

// MaxCommandSize bounds an encoded command, well under raft's
// SuggestedMaxDataSize.
const MaxCommandSize = 256 << 10

// Meta is carried by every command: the client's request id (for
// deduplication of retried writes) and the proposer's clock, which is the
// only time the state machine uses, so every replica computes the same
// state.
type Meta struct {
	RequestID string    `json:"rid,omitempty"`
	At        time.Time `json:"at"`
	// Scope, when set, scopes RequestID to one caller (its principal id):
	// the same id from another caller is another request. Digest then
	// fingerprints the request (operation, target and body): the same
	// caller reusing the id with another Digest is refused with
	// ErrRequestReused.
	Scope  string `json:"rscope,omitempty"`
	Digest []byte `json:"rdigest,omitempty"`
}

// requestKey is the deduplication key of m: the bare request id, or the
// caller's scope and the id (HTTP header values cannot hold a NUL, so
// the two forms never collide).
func (m *Meta) requestKey() []byte {
	if m.Scope == "" {
		return []byte(m.RequestID)
	}
	return []byte(m.Scope + "\x00" + m.RequestID)
}

func (m *Meta) meta() *Meta { return m }

// Command is a replicated state change. The unexported methods close the
// set, so Apply's switch is exhaustive over the types in this package.
// Commands carry wrapped key material only.
type Command interface {
	op() Op
	meta() *Meta
}

// WrappedVersion is one customer key version as stored and replicated:
// material wrapped by barrier key BarrierVersion, with AAD binding the key
// name and version.
type WrappedVersion struct {
	Version        uint32    `json:"v"`
	BarrierVersion uint32    `json:"bv"`
	Wrapped        []byte    `json:"w"`
	PublicKey      []byte    `json:"pub,omitempty"`
	CreatedAt      time.Time `json:"at"`
}

// Init records the cluster's root commitments, the barrier keyring wrapped
// by the root key, and the initial admin token's hash.
type Init struct {
	Meta
	Custodians     int    `json:"n"`
	Threshold      int    `json:"t"`
	Commitments    []byte `json:"commitments"`
	WrappedBarrier []byte `json:"barrier"`
	AdminTokenHash []byte `json:"admin_hash"`
	// InitRequestID and Params (a hash of the init parameters) let the
	// leader answer a retried init (same request id, same parameters)
	// with the same reply; EncryptedShares and EncryptedAdminToken are
	// that reply's secrets, encrypted to the custodians' and the admin's
	// keys (empty when they were handed out in the clear).
	InitRequestID       string   `json:"init_rid,omitempty"`
	Params              []byte   `json:"init_params,omitempty"`
	EncryptedShares     []string `json:"encrypted_shares,omitempty"`
	EncryptedAdminToken string   `json:"encrypted_admin_token,omitempty"`
}

// CreateKey adds a key with its first version.
type CreateKey struct {
	Meta
	Name           string         `json:"name"`
	Type           string         `json:"type"`
	RotationPeriod time.Duration  `json:"rotation_period,omitempty"`
	Tags           []string       `json:"tags,omitempty"`
	Retention      time.Duration  `json:"retention,omitempty"`
	First          WrappedVersion `json:"first"`
}

// RotateKey adds version FromVersion+1. It fails with ErrConflict when the
// key's latest version is no longer FromVersion, which makes automatic
// rotation happen once even when two leaders race.
type RotateKey struct {
	Meta
	Name        string         `json:"name"`
	FromVersion uint32         `json:"from"`
	New         WrappedVersion `json:"new"`
}

// SetKeyState enables or disables a key.
type SetKeyState struct {
	Meta
	Name    string `json:"name"`
	Enabled bool   `json:"enabled"`
}

// ConfigureKey changes a key's settings; nil fields are left unchanged.
type ConfigureKey struct {
	Meta
	Name                 string         `json:"name"`
	MinDecryptionVersion *uint32        `json:"min_decryption_version,omitempty"`
	RotationPeriod       *time.Duration `json:"rotation_period,omitempty"`
	// Tags, when non-nil, replaces the key's tags (empty: none).
	Tags      *[]string      `json:"tags,omitempty"`
	Retention *time.Duration `json:"retention,omitempty"`
}

// ScheduleDeletion disables a key until DeleteAt, when the leader deletes it.
type ScheduleDeletion struct {
	Meta
	Name     string    `json:"name"`
	DeleteAt time.Time `json:"delete_at"`
}

// CancelDeletion returns a key scheduled for deletion to the disabled state.
type CancelDeletion struct {
	Meta
	Name string `json:"name"`
}

// DeleteKey removes a key whose deletion time has passed. DeleteAt must
// match the key's schedule, so a cancelled and rescheduled deletion is not
// applied early by a stale proposal.
type DeleteKey struct {
	Meta
	Name     string    `json:"name"`
	DeleteAt time.Time `json:"delete_at"`
}

// PutToken stores a token's hash (never the token) with its policies.
type PutToken struct {
	Meta
	Hash      []byte    `json:"hash"`
	Name      string    `json:"name,omitempty"`
	Policies  []string  `json:"policies"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// RevokeToken removes a token.
type RevokeToken struct {
	Meta
	Hash []byte `json:"hash"`
}

// PutNodeShares records a dealing of the root secret to the voters' HSMs:
// the Feldman commitments and which node holds which share index. Only
// nodes that confirmed they stored their share are listed.
type PutNodeShares struct {
	Meta
	Epoch       uint64         `json:"epoch"`
	Threshold   int            `json:"t"`
	Commitments []byte         `json:"commitments"`
	Holders     map[string]int `json:"holders"`
	Voters      []string       `json:"voters"`
}

func (*PutNodeShares) op() Op { return OpPutNodeShares }

// RemoveNode tombstones a node id: the leader will not add it back to the
// Raft configuration when it shows up in gossip again. A removed machine
// rejoins under a new node id with an empty data directory.
type RemoveNode struct {
	Meta
	NodeID string `json:"node_id"`
}

func (*RemoveNode) op() Op { return OpRemoveNode }

// PutPolicy stores a policy document (validated by the proposer with
// package policy).
type PutPolicy struct {
	Meta
	Name string `json:"name"`
	Doc  []byte `json:"doc"`
	// PolicyCAS, when Check is set, makes the write conditional on the
	// stored document the proposer authorized against.
	PolicyCAS
}

// DeletePolicy removes a policy.
type DeletePolicy struct {
	Meta
	Name string `json:"name"`
	PolicyCAS
}

// PolicyCAS is a compare-and-set condition on a stored policy: with
// Check set, the command applies only if the stored document is exactly
// Prev (nil: no policy of that name is stored), and fails with
// ErrConflict otherwise. The proposer authorizes a policy change against
// the old document; the condition makes sure that is the document
// replaced.
type PolicyCAS struct {
	Check bool   `json:"check,omitempty"`
	Prev  []byte `json:"prev,omitempty"`
}

// PutIdentity binds a client-certificate identity (the SHA-256 of the
// certificate's public key, hex) to policies.
type PutIdentity struct {
	Meta
	ID       string   `json:"id"`
	Name     string   `json:"name,omitempty"`
	Policies []string `json:"policies"`
}

// DeleteIdentity removes an identity.
type DeleteIdentity struct {
	Meta
	ID string `json:"id"`
}

// RotateRoot replaces the root: new custodian commitments (possibly a new
// N and T) and the unchanged barrier keyring wrapped under the new root
// key. Old custodian shares stop verifying.
type RotateRoot struct {
	Meta
	Custodians     int    `json:"n"`
	Threshold      int    `json:"t"`
	Commitments    []byte `json:"commitments"`
	WrappedBarrier []byte `json:"barrier"`
	// PrevCommitments must equal the current commitments, so two
	// concurrent rotations cannot both apply.
	PrevCommitments []byte `json:"prev"`
}

func (*RotateRoot) op() Op { return OpRotateRoot }

func (*PutPolicy) op() Op      { return OpPutPolicy }
func (*DeletePolicy) op() Op   { return OpDeletePolicy }
func (*PutIdentity) op() Op    { return OpPutIdentity }
func (*DeleteIdentity) op() Op { return OpDeleteIdentity }

func (*Init) op() Op             { return OpInit }
func (*CreateKey) op() Op        { return OpCreateKey }
func (*RotateKey) op() Op        { return OpRotateKey }
func (*SetKeyState) op() Op      { return OpSetKeyState }
func (*ConfigureKey) op() Op     { return OpConfigureKey }
func (*ScheduleDeletion) op() Op { return OpScheduleDeletion }
func (*CancelDeletion) op() Op   { return OpCancelDeletion }
func (*DeleteKey) op() Op        { return OpDeleteKey }
func (*PutToken) op() Op         { return OpPutToken }
func (*RevokeToken) op() Op      { return OpRevokeToken }

func newCommand(op Op) Command {
	switch op {
	case OpInit:
		return new(Init)
	case OpCreateKey:
		return new(CreateKey)
	case OpRotateKey:
		return new(RotateKey)
	case OpSetKeyState:
		return new(SetKeyState)
	case OpConfigureKey:
		return new(ConfigureKey)
	case OpScheduleDeletion:
		return new(ScheduleDeletion)
	case OpCancelDeletion:
		return new(CancelDeletion)
	case OpDeleteKey:
		return new(DeleteKey)
	case OpPutToken:
		return new(PutToken)
	case OpRevokeToken:
		return new(RevokeToken)
	case OpPutNodeShares:
		return new(PutNodeShares)
	case OpRemoveNode:
		return new(RemoveNode)
	case OpPutPolicy:
		return new(PutPolicy)
	case OpDeletePolicy:
		return new(DeletePolicy)
	case OpPutIdentity:
		return new(PutIdentity)
	case OpDeleteIdentity:
		return new(DeleteIdentity)
	case OpRotateRoot:
		return new(RotateRoot)
	}
	if op == OpRecordUsage {
		return new(RecordUsage)
	}
	if op == OpSealCluster {
		return new(SealCluster)
	}
	if op == OpPinDeliveryKey {
		return new(PinDeliveryKey)
	}
	if c := newAuditCommand(op); c != nil {
		return c
	}
	return newKVCommand(op)
}

// Encode returns [formatVersion][op][JSON body].
func Encode(c Command) ([]byte, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: nil command", ErrInvalidCommand)
	}
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("fsm: encode %T: %w", c, err)
	}
	out := make([]byte, 0, 2+len(body))
	out = append(out, formatVersion, byte(c.op()))
	out = append(out, body...)
	if len(out) > MaxCommandSize {
		return nil, fmt.Errorf("%w: command of %d bytes exceeds %d", ErrInvalidCommand, len(out), MaxCommandSize)
	}
	return out, nil
}

// Decode parses an encoded command. Unknown versions and ops give
// ErrUnknownCommand; a malformed body gives ErrInvalidCommand.
func Decode(b []byte) (Command, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: %d bytes", ErrInvalidCommand, len(b))
	}
	if b[0] != formatVersion {
		return nil, fmt.Errorf("%w: format version %d", ErrUnknownCommand, b[0])
	}
	c := newCommand(Op(b[1]))
	if c == nil {
		return nil, fmt.Errorf("%w: op %d", ErrUnknownCommand, b[1])
	}
	if err := json.Unmarshal(b[2:], c); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		if errors.As(err, &se) || errors.As(err, &te) {
			return nil, fmt.Errorf("%w: %v", ErrInvalidCommand, err)
		}
		return nil, fmt.Errorf("%w: body", ErrInvalidCommand)
	}
	return c, nil
}
