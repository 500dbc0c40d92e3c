package httpapi

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/keyring"
	"github.com/keyd/keyd/node/errs"
	"github.com/keyd/keyd/shamir"
)

func TestErrorFor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want api.Code
	}{
		{"api error passes through", api.ErrSealed, api.CodeSealed},
		{"wrapped api error", fmt.Errorf("x: %w", api.ErrNotLeader), api.CodeNotLeader},
		{"key not found", fmt.Errorf("read: %w", fsm.ErrKeyNotFound), api.CodeNotFound},
		{"key exists", fsm.ErrKeyExists, api.CodeExists},
		{"pending deletion", fsm.ErrKeyPendingDeletion, api.CodeKeyPendingDeletion},
		{"conflict", fmt.Errorf("%w: key is at version 3", fsm.ErrConflict), api.CodeConflict},
		{"not initialized", fsm.ErrNotInitialized, api.CodeNotInitialized},
		{"already initialized", fsm.ErrAlreadyInitialized, api.CodeAlreadyInitialized},
		{"invalid command", fsm.ErrInvalidCommand, api.CodeBadRequest},
		{"version too old", keyring.ErrVersionTooOld, api.CodeVersionDisabled},
		{"unknown version", keyring.ErrUnknownVersion, api.CodeDecrypt},
		{"malformed", keyring.ErrMalformed, api.CodeDecrypt},
		{"decrypt", keyring.ErrDecrypt, api.CodeDecrypt},
		{"unsupported", keyring.ErrUnsupported, api.CodeUnsupported},
		{"unknown key type", keyring.ErrUnknownKeyType, api.CodeBadRequest},
		{"share encoding", shamir.ErrShareEncoding, api.CodeInvalidShare},
		{"share invalid", &shamir.ShareError{Index: 2, Err: shamir.ErrShareInvalid}, api.CodeInvalidShare},
		{"deadline", context.DeadlineExceeded, api.CodeUnavailable},
		{"unknown error is internal", errors.New("disk on fire: /secret/path"), api.CodeInternal},
		{"node sealed", fmt.Errorf("x: %w", errs.ErrSealed), api.CodeSealed},
		{"node not leader", &errs.NotLeader{ID: "n2", Leader: "10.0.0.2:8200"}, api.CodeNotLeader},
		{"node not leader, none known", errs.ErrNotLeader, api.CodeNotLeader},
		{"missing policy", &errs.NotFound{What: "policy"}, api.CodeResourceNotFound},
		{"missing entry in the fsm", fsm.ErrNotFound, api.CodeResourceNotFound},
		{"node conflict", &errs.Conflict{Reason: "changed meanwhile"}, api.CodeConflict},
		{"request id reused", fsm.ErrRequestReused, api.CodeConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := errorFor(tt.err)
			if got.Code != tt.want {
				t.Fatalf("got %s, want %s", got.Code, tt.want)
			}
			if got.Message == "" {
				t.Fatal("empty message")
			}
			if tt.want == api.CodeInternal && got.Message != "internal error" {
				t.Fatalf("internal error leaks detail: %q", got.Message)
			}
		})
	}
}

func TestJSONErrorDoesNotEchoInput(t *testing.T) {
	t.Parallel()
	for _, body := range []string{`{"plaintext":"SECRETSECRET`, `{"plaintext" SECRET}`, `{"plaintext":SECRET}`} {
		c := &call{body: []byte(body)}
		var req api.EncryptRequest
		err := c.decode(&req)
		if err == nil {
			t.Fatalf("%q decoded", body)
		}
		if e := errorFor(err); e.Code != api.CodeBadRequest || containsFold(e.Message, "SECRET") {
			t.Fatalf("%q: got %s %q", body, e.Code, e.Message)
		}
	}
}

func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// TestNodeErrorsMatchWireSentinels: the node's typed errors match their
// api sentinels under errors.Is, and the leader address survives.
func TestNodeErrorsMatchWireSentinels(t *testing.T) {
	t.Parallel()
	pairs := []struct {
		err  error
		want *api.Error
	}{
		{errs.ErrSealed, api.ErrSealed},
		{fmt.Errorf("w: %w", errs.ErrSealed), api.ErrSealed},
		{&errs.NotLeader{}, api.ErrNotLeader},
		{&errs.NotFound{What: "token"}, api.ErrResourceNotFound},
		{&errs.NotFound{What: "token"}, api.ErrNotFound},
		{&errs.Conflict{Reason: "x"}, api.ErrConflict},
	}
	for _, p := range pairs {
		if !errors.Is(p.err, p.want) {
			t.Errorf("%v does not match %v", p.err, p.want)
		}
	}
	if errors.Is(errs.ErrSealed, api.ErrNotLeader) {
		t.Error("sealed matches not_leader")
	}
	if errors.Is(api.ErrNotFound, api.ErrResourceNotFound) {
		t.Error("key_not_found matches not_found")
	}
	if got := errorFor(&errs.NotLeader{ID: "n2", Leader: "10.0.0.2:8200"}); got.Leader != "10.0.0.2:8200" {
		t.Errorf("leader address lost: %+v", got)
	}
}
