package httpapi

import (
	"context"
	"errors"
	"strings"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/keyops"
	"github.com/keyd/keyd/node/errs"
	"github.com/keyd/keyd/shamir"
)

// errorTable maps domain sentinels to wire errors, in order. The first
// match wins. Messages are fixed strings: the underlying error's text is
// not sent, since it might mention internals.
var errorTable = []struct {
	err  error
	code api.Code
	msg  string
}{
	{fsm.ErrKeyNotFound, api.CodeNotFound, "key not found"},
	{fsm.ErrKeyExists, api.CodeExists, "a key with this name already exists"},
	{fsm.ErrKeyPendingDeletion, api.CodeKeyPendingDeletion, "key is scheduled for deletion; cancel the deletion first"},
	{fsm.ErrConflict, api.CodeConflict, ""},
	{fsm.ErrNotFound, api.CodeResourceNotFound, "not found"},
	{fsm.ErrNotInitialized, api.CodeNotInitialized, "cluster is not initialized"},
	{fsm.ErrAlreadyInitialized, api.CodeAlreadyInitialized, "cluster is already initialized"},
	{fsm.ErrInvalidCommand, api.CodeBadRequest, ""},
	{shamir.ErrShareEncoding, api.CodeInvalidShare, "share is malformed"},
	{shamir.ErrShareInvalid, api.CodeInvalidShare, "share does not match the cluster's commitments"},
	{context.DeadlineExceeded, api.CodeUnavailable, "request timed out"},
	{context.Canceled, api.CodeUnavailable, "request cancelled"},
}

// errorFor turns any error into a wire error; it is the only place that
// does. An *api.Error passes through; the node's typed errors (package
// node/errs) and the domain sentinels get their code; anything else is
// CodeInternal.
func errorFor(err error) *api.Error {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae
	}
	var (
		nl *errs.NotLeader
		nf *errs.NotFound
		co *errs.Conflict
	)
	switch {
	case errors.As(err, &nl):
		e := &api.Error{Code: api.CodeNotLeader, Message: "this node is not the leader", Leader: nl.Leader}
		if nl.ID == "" {
			e.Message = "no leader is known: an election is under way or the cluster has lost quorum; retry with the same request id"
		}
		return e
	case errors.As(err, &nf):
		return &api.Error{Code: api.CodeResourceNotFound, Message: "no such " + nf.What}
	case errors.As(err, &co):
		return &api.Error{Code: api.CodeConflict, Message: co.Reason}
	case errors.Is(err, errs.ErrSealed):
		return &api.Error{Code: api.CodeSealed, Message: "node is sealed"}
	case errors.Is(err, errs.ErrNotLeader):
		return &api.Error{Code: api.CodeNotLeader, Message: "this node is not the leader"}
	case errors.Is(err, errs.ErrNotFound):
		return &api.Error{Code: api.CodeResourceNotFound, Message: "not found"}
	case errors.Is(err, errs.ErrConflict):
		return &api.Error{Code: api.CodeConflict, Message: "conflicting change"}
	}
	// Crypto errors (keyring sentinels) have one table, in keyops, shared
	// with every API shape.
	if e := keyops.WireError(err); e != nil {
		return e
	}
	for _, m := range errorTable {
		if errors.Is(err, m.err) {
			msg := m.msg
			if msg == "" {
				// Conflict and invalid-command messages come from the FSM
				// and name only versions and fields.
				msg = strings.TrimPrefix(err.Error(), "fsm: ")
			}
			return &api.Error{Code: m.code, Message: msg}
		}
	}
	return &api.Error{Code: api.CodeInternal, Message: "internal error"}
}
