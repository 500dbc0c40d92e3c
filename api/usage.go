package api

import "time"

// Key usage and reports (see docs/PII.md, "Tags, usage and retention").
//
//	GET  /v1/keys/{name}/usage                      read -> KeyUsage
//	GET  /v1/sys/key-report?unused_for=720h         audit-read -> KeyReport
//	POST /v1/internal/usage                         node certificate; UsageBatch
const (
	PathKeyReport     = "/v1/sys/key-report"
	PathInternalUsage = "/v1/internal/usage"
)

// DefaultUnusedFor is the report's unused_for when none is given.
const DefaultUnusedFor = 720 * time.Hour

// UseStat is when something was last used and how often, as flushed to
// the replicated state (uses a node has not flushed yet are missing).
type UseStat struct {
	LastUsed time.Time `json:"last_used"`
	Count    uint64    `json:"count"`
}

// VersionUsage is the use of one key version.
type VersionUsage struct {
	Version uint32 `json:"version"`
	UseStat
}

// IdentityUsage is one caller's use ("token:<accessor>", "cert:<id>").
type IdentityUsage struct {
	Identity string `json:"identity"`
	UseStat
}

// KeyUsage is GET /v1/keys/{name}/usage.
type KeyUsage struct {
	Name string `json:"name"`
	// LastUsed is nil for a key never used.
	LastUsed   *time.Time      `json:"last_used,omitempty"`
	Count      uint64          `json:"count"`
	Versions   []VersionUsage  `json:"versions"`
	Identities []IdentityUsage `json:"identities"`
	Index      uint64          `json:"index"`
}

// ReportKey is one key in a KeyReport.
type ReportKey struct {
	Name           string     `json:"name"`
	State          string     `json:"state"`
	Tags           []string   `json:"tags,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	RotatedAt      time.Time  `json:"rotated_at"`
	RotationPeriod string     `json:"rotation_period,omitempty"`
	LastUsed       *time.Time `json:"last_used,omitempty"`
	Count          uint64     `json:"count"`
	// RotationDueAt is when automatic rotation is (or was) due.
	RotationDueAt *time.Time `json:"rotation_due_at,omitempty"`
}

// ReportVersions says which of a key's versions data still needs: a
// version is needed when it was used after it stopped being the latest
// (something decrypted or verified with it since the rotation), or when
// it is the latest.
type ReportVersions struct {
	Name      string   `json:"name"`
	Latest    uint32   `json:"latest"`
	Min       uint32   `json:"min_decryption_version"`
	Needed    []uint32 `json:"needed"`
	NotNeeded []uint32 `json:"not_needed"`
}

// ReportCredential is a token or certificate identity in a KeyReport.
type ReportCredential struct {
	// Kind is "token" or "identity"; ID the accessor or identity id.
	Kind      string     `json:"kind"`
	ID        string     `json:"id"`
	Name      string     `json:"name,omitempty"`
	Policies  []string   `json:"policies"`
	CreatedAt time.Time  `json:"created_at"`
	LastUsed  *time.Time `json:"last_used,omitempty"`
}

// KeyReport is GET /v1/sys/key-report.
type KeyReport struct {
	At        time.Time `json:"at"`
	UnusedFor string    `json:"unused_for"`
	// Unused were used, but not within UnusedFor.
	Unused []ReportKey `json:"unused"`
	// NeverUsed (orphans) have no recorded use and are older than
	// UnusedFor.
	NeverUsed   []ReportKey      `json:"never_used"`
	RotationDue []ReportKey      `json:"rotation_due"`
	Versions    []ReportVersions `json:"versions"`
	// StaleCredentials are tokens and identities not used within
	// UnusedFor (and older than it).
	StaleCredentials []ReportCredential `json:"stale_credentials"`
	Index            uint64             `json:"index"`
}

// UsageBatch is what a node flushes to the leader: its uses since the
// last flush, aggregated (the latest time and the count per key version,
// per key and identity, per identity).
type UsageBatch struct {
	Node       string          `json:"node"`
	Seq        uint64          `json:"seq"`
	Keys       []KeyUseDelta   `json:"keys,omitempty"`
	Principals []IdentityUsage `json:"principals,omitempty"`
}

// KeyUseDelta is one key's uses in a UsageBatch.
type KeyUseDelta struct {
	Name       string          `json:"name"`
	Versions   []VersionUsage  `json:"versions,omitempty"`
	Identities []IdentityUsage `json:"identities,omitempty"`
}
