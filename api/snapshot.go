package api

import "time"

// Operator snapshots (disaster recovery).
//
//	GET  /v1/sys/snapshot                   -> the snapshot file (application/octet-stream)
//	POST /v1/sys/snapshot/restore[?force=true]  body: the snapshot file -> SnapshotRestoreResponse
//
// Both run on the leader only: a follower answers not_leader with the
// leader's address (the file is never relayed between nodes).
const (
	PathSnapshot        = "/v1/sys/snapshot"
	PathSnapshotRestore = "/v1/sys/snapshot/restore"
	// MaxSnapshotBytes caps a snapshot upload.
	MaxSnapshotBytes = 512 << 20
	// ContentTypeSnapshot is the media type of a snapshot file.
	ContentTypeSnapshot = "application/vnd.keyd.snapshot"
)

// SnapshotCounts are the numbers of records in a snapshot.
type SnapshotCounts struct {
	Keys       int `json:"keys"`
	Versions   int `json:"versions"`
	Policies   int `json:"policies"`
	Tokens     int `json:"tokens"`
	Identities int `json:"identities"`
}

// SnapshotRestoreResponse describes a restored snapshot. The cluster is
// sealed after a restore: a quorum of the custodians of the snapshot's
// cluster (commitments Cluster) unseals it, which also checks the
// snapshot's MAC with the root.
type SnapshotRestoreResponse struct {
	Cluster string `json:"cluster"`
	// Index is the snapshot's index in the cluster it was taken from;
	// RestoredAt is the Raft index of the restore in this cluster.
	Index      uint64         `json:"index"`
	RestoredAt uint64         `json:"restored_at"`
	Time       time.Time      `json:"time"`
	Counts     SnapshotCounts `json:"counts"`
	Sealed     bool           `json:"sealed"`
}
