package node

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

func openClosingStore(t *testing.T) *closingStore {
	t.Helper()
	s, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(t.TempDir(), "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	return &closingStore{s: s}
}

// A heartbeat handler still running when the node closes its Raft store
// persists a newer term; raft panics on any error from that write. After
// Close the write must be dropped without an error, and reads must fail.
func TestClosingStoreAfterClose(t *testing.T) {
	c := openClosingStore(t)
	if err := c.SetUint64([]byte("CurrentTerm"), 3); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.SetUint64([]byte("CurrentTerm"), 4); err != nil {
		t.Fatalf("term write after close: %v (raft would panic)", err)
	}
	if err := c.Set([]byte("LastVoteCand"), []byte("n2")); err != nil {
		t.Fatalf("stable write after close: %v", err)
	}
	if _, err := c.GetUint64([]byte("CurrentTerm")); err != errStoreClosed {
		t.Fatalf("read after close: %v", err)
	}
	if err := c.StoreLog(&raft.Log{Index: 1}); err != errStoreClosed {
		t.Fatalf("log write after close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

// Close waits for a call in progress instead of closing the database
// under it.
func TestClosingStoreCloseWaitsForCalls(t *testing.T) {
	c := openClosingStore(t)
	if !c.enter() { // a call in progress
		t.Fatal("store closed")
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned under a call in progress: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := c.s.SetUint64([]byte("CurrentTerm"), 5); err != nil {
		t.Fatalf("write in progress failed: %v", err)
	}
	c.mu.RUnlock()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}
