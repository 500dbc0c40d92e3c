// Package api holds keyd's wire types: request and response bodies, paths,
// headers and the stable error codes. It is imported by the server's HTTP
// layer and by the Go client, and depends only on the standard library.
package api

import "net/http"

// Code is a stable, documented error identifier. Codes are part of the API:
// never reuse or rename one, only add.
type Code string

// The error codes. docs/API.md documents each one with its HTTP status.
const (
	CodeBadRequest         Code = "bad_request"
	CodeTooLarge           Code = "request_too_large"
	CodeUnauthorized       Code = "unauthorized"
	CodeForbidden          Code = "forbidden"
	CodeNotFound           Code = "key_not_found"
	CodeExists             Code = "key_exists"
	CodeKeyDisabled        Code = "key_disabled"
	CodeKeyPendingDeletion Code = "key_pending_deletion"
	CodeUnsupported        Code = "unsupported_operation"
	CodeDecrypt            Code = "decrypt_failed"
	CodeVersionDisabled    Code = "key_version_disabled"
	CodeConflict           Code = "conflict"
	CodeSealed             Code = "sealed"
	CodeNotInitialized     Code = "not_initialized"
	CodeAlreadyInitialized Code = "already_initialized"
	CodeInvalidShare       Code = "invalid_share"
	CodeNotLeader          Code = "not_leader"
	CodeIndexTimeout       Code = "index_not_applied"
	CodeUnavailable        Code = "unavailable"
	CodeInternal           Code = "internal"
	// CodeResourceNotFound is a missing policy, token, identity, node or
	// endpoint; a missing key stays CodeNotFound ("key_not_found").
	CodeResourceNotFound Code = "not_found"
)

// Error is the body of every non-2xx reply. Message is safe to show to
// users: it never carries key material, plaintext or tokens.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	// Leader is the API address of the leader, set with CodeNotLeader when known.
	Leader string `json:"leader,omitempty"`
	// Index is the node's applied Raft index, when useful (CodeIndexTimeout).
	Index uint64 `json:"index,omitempty"`
	// RequestID echoes the request id so an operator can find the log line
	// behind a CodeInternal reply.
	RequestID string `json:"request_id,omitempty"`
	// Status is the HTTP status; it is not sent on the wire.
	Status int `json:"-"`
}

func (e *Error) Error() string { return "keyd: " + string(e.Code) + ": " + e.Message }

// Is matches by Code, so errors.Is(err, api.ErrSealed) works on both sides of
// the wire. For callers written before CodeResourceNotFound existed,
// ErrNotFound also matches it: errors.Is(err, api.ErrNotFound) means
// "not found" of any kind; ErrResourceNotFound matches only not_found.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && (t.Code == e.Code || (t.Code == CodeNotFound && e.Code == CodeResourceNotFound))
}

// Sentinels for errors.Is. Their messages are generic; replies carry their own.
var (
	ErrBadRequest         = &Error{Code: CodeBadRequest, Message: "bad request"}
	ErrTooLarge           = &Error{Code: CodeTooLarge, Message: "request too large"}
	ErrUnauthorized       = &Error{Code: CodeUnauthorized, Message: "missing or invalid token"}
	ErrForbidden          = &Error{Code: CodeForbidden, Message: "forbidden"}
	ErrNotFound           = &Error{Code: CodeNotFound, Message: "key not found"}
	ErrExists             = &Error{Code: CodeExists, Message: "key already exists"}
	ErrKeyDisabled        = &Error{Code: CodeKeyDisabled, Message: "key is disabled"}
	ErrKeyPendingDeletion = &Error{Code: CodeKeyPendingDeletion, Message: "key is scheduled for deletion"}
	ErrUnsupported        = &Error{Code: CodeUnsupported, Message: "operation not supported by this key type"}
	ErrDecrypt            = &Error{Code: CodeDecrypt, Message: "decryption failed"}
	ErrVersionDisabled    = &Error{Code: CodeVersionDisabled, Message: "key version below the minimum decryption version"}
	ErrConflict           = &Error{Code: CodeConflict, Message: "conflicting change"}
	ErrSealed             = &Error{Code: CodeSealed, Message: "node is sealed"}
	ErrNotInitialized     = &Error{Code: CodeNotInitialized, Message: "cluster is not initialized"}
	ErrAlreadyInitialized = &Error{Code: CodeAlreadyInitialized, Message: "cluster is already initialized"}
	ErrInvalidShare       = &Error{Code: CodeInvalidShare, Message: "invalid share"}
	ErrNotLeader          = &Error{Code: CodeNotLeader, Message: "no leader reachable"}
	ErrIndexTimeout       = &Error{Code: CodeIndexTimeout, Message: "index not applied in time"}
	ErrUnavailable        = &Error{Code: CodeUnavailable, Message: "service unavailable"}
	ErrInternal           = &Error{Code: CodeInternal, Message: "internal error"}
	ErrResourceNotFound   = &Error{Code: CodeResourceNotFound, Message: "not found"}
)

// StatusFor returns the HTTP status a code is sent with.
func StatusFor(c Code) int {
	switch c {
	case CodeBadRequest, CodeDecrypt, CodeInvalidShare, CodeUnsupported, CodeVersionDisabled:
		return http.StatusBadRequest
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case CodeForbidden:
		return http.StatusForbidden
	case CodeNotFound, CodeResourceNotFound:
		return http.StatusNotFound
	case CodeExists, CodeConflict, CodeAlreadyInitialized, CodeKeyDisabled, CodeKeyPendingDeletion:
		return http.StatusConflict
	case CodeNotLeader:
		return http.StatusMisdirectedRequest
	case CodeSealed, CodeNotInitialized, CodeUnavailable, CodeIndexTimeout:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// Retryable reports whether a request that failed with code c may succeed
// when retried later or on another node.
func Retryable(c Code) bool {
	switch c {
	case CodeNotLeader, CodeSealed, CodeUnavailable, CodeIndexTimeout:
		return true
	}
	return false
}
