package httpapi

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/keyring"
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
