// Package client is the Go client of keyd. It discovers the cluster from a
// few seed addresses, routes writes to the Raft leader and crypto calls to a
// healthy node, retries what is safe to retry (writes carry one idempotency
// key across all their retries) and gives read-your-writes through the
// minimum-index header.
//
// The package imports only [github.com/keyd/keyd/api] and the standard
// library, so applications never pull in raft, bbolt or cgo. It never puts
// tokens, shares, plaintext or key material into an error string.
package client
