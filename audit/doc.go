// Package audit writes and verifies keyd's tamper-evident audit trail: an
// append-only file of JSON lines, each carrying the SHA-256 of the line
// before it, with periodic ed25519-signed checkpoints. Records are group
// committed: one write and one fsync per batch of concurrent callers.
//
// The package must never write a secret: sensitive values enter a record
// only as keyed HMACs ([Logger.HMAC]), and the HMAC and signing keys never
// appear in an error, a log line or a formatted value.
package audit
