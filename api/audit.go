package api

import "time"

// Audit anchors: every node commits its audit chain head through Raft, so
// every node holds every node's anchors and audit public key.
const (
	// PathAuditAnchors is GET: a node's audit public key and anchors from
	// the replicated state (?node=ID; default: the answering node). Needs
	// audit-read. Ask a node other than the one being audited.
	PathAuditAnchors = "/v1/sys/audit/anchors"
	// PathInternalAuditAnchor is POST between nodes (node certificate):
	// a node asks the leader to commit its chain head or public key.
	PathInternalAuditAnchor = "/v1/internal/audit-anchor"
)

// AuditAnchor is one committed chain head: Head is the SHA-256 (hex) of
// the node's audit line with sequence number Seq.
type AuditAnchor struct {
	Seq  uint64    `json:"seq"`
	Head string    `json:"head"`
	At   time.Time `json:"at"`
}

// AuditAnchors is GET /v1/sys/audit/anchors, and the file `keyd audit
// anchors` exports for offline verification.
type AuditAnchors struct {
	Node      string        `json:"node"`
	PublicKey string        `json:"public_key,omitempty"` // hex ed25519; empty until the node has been unsealed once
	Anchors   []AuditAnchor `json:"anchors"`
	// Index is the Raft index the answering node had applied.
	Index uint64 `json:"index"`
}

// AuditAnchorRequest is the body of POST /v1/internal/audit-anchor. Seq
// and Head (hex) give a chain head to anchor; PublicKey (hex) registers
// the node's audit key. Either may be empty.
type AuditAnchorRequest struct {
	Node      string `json:"node"`
	Seq       uint64 `json:"seq,omitempty"`
	Head      string `json:"head,omitempty"`
	PublicKey string `json:"public_key,omitempty"`
}
