// Package client is the Go client of keyd. It discovers the cluster from a
// few seed addresses, routes writes to the Raft leader and crypto calls to a
// healthy node, retries what is safe to retry (writes carry one idempotency
// key across all their retries) and gives read-your-writes through the
// minimum-index header.
//
// # Topology
//
// New asks the seeds for the topology (GET /v1/sys/cluster, or
// /v1/sys/status when the token may not read it; a seed that has not
// answered within 300ms gets company from the next) and a background
// goroutine keeps it fresh: every Config.RefreshInterval, and soon after a
// not_leader answer or a connection failure. Nodes learned this way join
// the client's node set; nodes reported dead or left are tried last but
// never forgotten, since they may come back. Close stops the goroutine.
//
// # Routing and retries
//
// Writes go to the leader the topology names (any node forwards, so an
// unknown leader only costs a hop). Crypto calls and reads go to an alive,
// unsealed node in Config.Region, then to other alive unsealed nodes, then
// to anything, skipping nodes that failed in the last seconds. When a node
// fails with a connection error, sealed, unavailable or index-not-applied,
// the call moves at once to a node it has not tried yet; it backs off
// (exponential, full jitter, capped at 1s) only once every usable node
// failed in that round. The caller's context deadline bounds everything;
// Config.MaxRetries bounds the attempts (the CLI sets it very high and
// relies on its -timeout deadline instead). Opening a connection is
// bounded by Config.ConnectTimeout (1s for TCP, and 1s for TLS), so a dead
// node costs a call about a second. A not_leader hint naming a node no
// connection could be opened to during the call is stale (a follower that
// has not yet noticed its leader died) and is not followed at once.
// Config.OnRetry sees every retry. Health asks for 200 in every state
// (client.HealthAlways200), since the node's own codes are for load
// balancers.
//
// The package imports only [github.com/keyd/keyd/api] and the standard
// library, so applications never pull in raft, bbolt or cgo. It never puts
// tokens, shares, plaintext or key material into an error string.
package client
