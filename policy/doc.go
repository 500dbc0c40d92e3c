// Package policy decides who may do what: it parses policy documents that
// grant or deny capabilities on key-name patterns, compiles an identity's
// policies into an immutable [Set], and answers [Set.Allowed] on the
// request path without allocating.
//
// It owns no storage, no identities and no I/O: policies live in the FSM
// and identities are bound to policy names elsewhere. It never sees key
// material.
package policy
