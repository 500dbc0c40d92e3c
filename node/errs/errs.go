// Package errs holds the node's typed errors: sealed, not leader, not
// found and conflict. Node code returns these (or the fsm, keyring and
// shamir sentinels); node/httpapi's errorFor is the one place that turns
// any of them into an api.Error for the wire.
//
// For callers in Go, each also matches its wire sentinel under errors.Is
// (errors.Is(err, api.ErrSealed) holds for ErrSealed), so code written
// against the api sentinels keeps working while node code moves to these.
package errs

import (
	"errors"

	"github.com/keyd/keyd/api"
)

// kind is a sentinel that also matches the api.Error of its code.
type kind struct {
	msg  string
	code api.Code
}

func (k *kind) Error() string { return k.msg }

// Is matches the api.Error sentinel of the same code (and, as on the
// wire, api.ErrNotFound matches a not_found of any kind).
func (k *kind) Is(target error) bool {
	ae, ok := target.(*api.Error)
	return ok && errors.Is(&api.Error{Code: k.code}, ae)
}

// Sentinels.
var (
	// ErrSealed: this node is sealed (or not initialised).
	ErrSealed error = &kind{"node: sealed", api.CodeSealed}
	// ErrNotLeader: the write must run on the leader (see NotLeader for
	// the leader's address).
	ErrNotLeader error = &kind{"node: not the leader", api.CodeNotLeader}
	// ErrNotFound: a policy, token, identity or node does not exist (a
	// missing key is fsm.ErrKeyNotFound).
	ErrNotFound error = &kind{"node: not found", api.CodeResourceNotFound}
	// ErrConflict: the change conflicts with the current state.
	ErrConflict error = &kind{"node: conflict", api.CodeConflict}
)

// NotLeader is ErrNotLeader with the leader's node id and API address
// (ID "" when no leader is known; Leader "" when its address is unknown).
type NotLeader struct{ ID, Leader string }

func (e *NotLeader) Error() string {
	if e.ID == "" {
		return "node: no leader is known: an election is under way or the cluster has lost quorum; retry with the same request id"
	}
	return "node: this node is not the leader"
}

// Is matches ErrNotLeader and api.ErrNotLeader.
func (e *NotLeader) Is(target error) bool {
	return target == ErrNotLeader || ErrNotLeader.(*kind).Is(target)
}

// NotFound is ErrNotFound naming what is missing: "policy", "token",
// "identity", "node".
type NotFound struct{ What string }

func (e *NotFound) Error() string { return "no such " + e.What }

// Is matches ErrNotFound and api.ErrResourceNotFound.
func (e *NotFound) Is(target error) bool {
	return target == ErrNotFound || ErrNotFound.(*kind).Is(target)
}

// Conflict is ErrConflict with a reason safe to show to callers.
type Conflict struct{ Reason string }

func (e *Conflict) Error() string { return e.Reason }

// Is matches ErrConflict and api.ErrConflict.
func (e *Conflict) Is(target error) bool {
	return target == ErrConflict || ErrConflict.(*kind).Is(target)
}
