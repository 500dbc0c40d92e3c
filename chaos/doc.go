// Package chaos holds fault drills for keyd. Each drill runs real nodes
// (in process, on 127.0.0.1, through internal/testcluster), injects faults
// with the transport's fault layer and node stops, and checks the
// invariants users rely on:
//
//   - every acknowledged ciphertext still decrypts after every fault;
//   - writes acknowledged before a fault are present after it;
//   - a minority side never accepts a write, and crypto calls keep working
//     on every unsealed node, leader or not.
//
// Every loop is bounded in count and time. Run the drills with
//
//	go test -race ./chaos/
//
// Longer runs: KEYD_CHAOS_ROUNDS=N (default 3).
package chaos
