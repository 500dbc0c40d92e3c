package fsm

import (
	"errors"
	"testing"
	"time"
)

// TestCheckKeyCommandsBesideWriter: the key-record commands are checked
// in a read-only transaction, so the leader's precheck does not queue
// behind the FSM's write transaction (held through its commit and fsync).
func TestCheckKeyCommandsBesideWriter(t *testing.T) {
	t.Parallel()
	f := openTest(t, nil)
	d := &driver{t: t, f: f}
	if res := d.apply(initCmd()); res.Err != nil {
		t.Fatal(res.Err)
	}
	if res := d.apply(&CreateKey{Meta: Meta{At: t0}, Name: "k", Type: "aes256-gcm", First: wv(1)}); res.Err != nil {
		t.Fatal(res.Err)
	}
	tests := []struct {
		name string
		cmd  Command
		want error
	}{
		{"create new", &CreateKey{Meta: Meta{At: t0}, Name: "k2", Type: "aes256-gcm", First: wv(1)}, nil},
		{"create exists", &CreateKey{Meta: Meta{At: t0}, Name: "k", Type: "aes256-gcm", First: wv(1)}, ErrKeyExists},
		{"create bad", &CreateKey{Meta: Meta{At: t0}, Name: "k3", Type: "aes256-gcm", First: wv(2)}, ErrInvalidCommand},
		{"rotate", &RotateKey{Meta: Meta{At: t0}, Name: "k", FromVersion: 1, New: wv(2)}, nil},
		{"rotate stale", &RotateKey{Meta: Meta{At: t0}, Name: "k", FromVersion: 2, New: wv(3)}, ErrConflict},
		{"rotate missing", &RotateKey{Meta: Meta{At: t0}, Name: "nope", FromVersion: 1, New: wv(2)}, ErrKeyNotFound},
		{"disable", &SetKeyState{Meta: Meta{At: t0}, Name: "k"}, nil},
		{"schedule in past", &ScheduleDeletion{Meta: Meta{At: t0}, Name: "k", DeleteAt: t0}, ErrInvalidCommand},
		{"cancel unscheduled", &CancelDeletion{Meta: Meta{At: t0}, Name: "k"}, ErrConflict},
	}
	// Hold bbolt's single writer, as ApplyBatch does during its commit.
	f.mu.RLock()
	tx, err := f.db.Begin(true)
	f.mu.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	for _, tt := range tests {
		done := make(chan error, 1)
		go func() { done <- f.Check(tt.cmd) }()
		select {
		case err := <-done:
			if !errors.Is(err, tt.want) {
				t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: Check waited for the writer", tt.name)
		}
	}
	if !checkReadOnly(&CreateKey{}) || checkReadOnly(&PutToken{}) {
		t.Fatal("checkReadOnly: create must be read-only, a token write not")
	}
}
