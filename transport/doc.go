// Package transport owns keyd's node-to-node security: the mutual-TLS
// configurations for Raft and the HTTPS API, the node identity carried as a
// URI SAN (spiffe://keyd/node/<id>) in certificates from the cluster CA, the
// TLS stream layer Raft runs over, and a fault-injecting wrapper for tests.
//
// It must never accept a peer whose certificate does not chain to the
// cluster CA and carry a node identity, never log or return key material,
// and import no other keyd package.
package transport
