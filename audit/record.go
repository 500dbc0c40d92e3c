package audit

import (
	"crypto/ed25519"
	"encoding/binary"
	"time"
)

// OpCheckpoint is the Op of checkpoint records. [Logger.Log] refuses it.
const OpCheckpoint = "audit.checkpoint"

// Record is one line of the audit log. Callers fill the descriptive fields;
// [Logger.Log] fills Seq, Node, Prev and (when zero) Time.
//
// Sensitive values (plaintext, ciphertext, encryption context, tokens)
// must go into Hashed as [Logger.HMAC] outputs, never raw: Log rejects a
// Hashed value that is not 64 lowercase hex digits.
type Record struct {
	Seq        uint64            `json:"seq"`
	Time       time.Time         `json:"time"`
	Node       string            `json:"node"`
	Identity   string            `json:"identity,omitempty"` // e.g. "token:<first 8 hex of the token hash>", never the token
	Op         string            `json:"op"`                 // e.g. "key.encrypt", "sys.unseal"
	Key        string            `json:"key,omitempty"`
	Version    uint32            `json:"version,omitempty"`
	Target     string            `json:"target,omitempty"`   // what a non-key operation acted on: "policy:app1", "token:<accessor>", "node:n2", a path
	Items      int               `json:"items,omitempty"`    // batch: items in the request
	Failed     int               `json:"failed,omitempty"`   // batch: items that failed
	Versions   []uint32          `json:"versions,omitempty"` // batch: the distinct key versions the items used
	Outcome    string            `json:"outcome"`            // "ok" or an error code
	RequestID  string            `json:"request_id,omitempty"`
	Source     string            `json:"source,omitempty"` // remote address
	Hashed     map[string]string `json:"hashed,omitempty"` // name -> hex HMAC-SHA256 under the log's HMAC key
	Prev       string            `json:"prev"`             // hex SHA-256 of the previous line's bytes; "" only for seq 1
	Checkpoint *Checkpoint       `json:"checkpoint,omitempty"`
}

// Checkpoint is the payload of a checkpoint record (Op [OpCheckpoint]).
// Signature is ed25519 over [CheckpointDomain] || seq (8 bytes, big
// endian) || head (the 32 raw hash bytes). Because head is the hash of
// the previous line, which holds the hash of the one before, one valid
// signature vouches for every line up to it.
type Checkpoint struct {
	Count     uint64 `json:"count"` // records since the previous checkpoint (or the start of the chain)
	Head      string `json:"head"`  // hex SHA-256 of the previous line; equals the record's Prev
	Signature []byte `json:"sig"`
}

// CheckpointDomain separates checkpoint signatures from anything else the
// signing key might sign.
const CheckpointDomain = "keyd-audit-checkpoint-v1"

// CheckpointMessage is what a checkpoint's signature covers.
func CheckpointMessage(seq uint64, head [32]byte) []byte { return checkpointMessage(seq, head) }

func checkpointMessage(seq uint64, head [32]byte) []byte {
	msg := make([]byte, 0, len(CheckpointDomain)+8+32)
	msg = append(msg, CheckpointDomain...)
	msg = binary.BigEndian.AppendUint64(msg, seq)
	return append(msg, head[:]...)
}

func verifyCheckpoint(pub ed25519.PublicKey, seq uint64, head [32]byte, sig []byte) bool {
	return len(sig) == ed25519.SignatureSize && ed25519.Verify(pub, checkpointMessage(seq, head), sig)
}

// body is the part of a Record a caller's goroutine encodes before the
// record is queued; the writer adds seq and prev in front of it. Field
// order is free in JSON, and the chain hashes the exact bytes, so
// splicing is as good as encoding the whole Record and moves the JSON
// work off the single writer goroutine.
type body struct {
	Time      time.Time         `json:"time"`
	Node      string            `json:"node"`
	Identity  string            `json:"identity,omitempty"`
	Op        string            `json:"op"`
	Key       string            `json:"key,omitempty"`
	Version   uint32            `json:"version,omitempty"`
	Target    string            `json:"target,omitempty"`
	Items     int               `json:"items,omitempty"`
	Failed    int               `json:"failed,omitempty"`
	Versions  []uint32          `json:"versions,omitempty"`
	Outcome   string            `json:"outcome"`
	RequestID string            `json:"request_id,omitempty"`
	Source    string            `json:"source,omitempty"`
	Hashed    map[string]string `json:"hashed,omitempty"`
}

// maxLine bounds one line of the log, for the writer and the readers.
const maxLine = 1 << 20

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Anchor is a chain head a node committed through Raft: the SHA-256 of
// the line with sequence number Seq, as hex. Every node holds every
// node's anchors, so a node's own disk cannot rewrite what they pin.
type Anchor struct {
	Seq  uint64 `json:"seq"`
	Head string `json:"head"`
}

// Head is the durable end of a chain: the seq and SHA-256 of the last
// line written and fsynced.
type Head struct {
	Seq  uint64
	Hash [32]byte
}
