package node

import (
	"errors"
	"sync"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// errStoreClosed is returned by the Raft log store once the node closed it.
var errStoreClosed = errors.New("node: raft log store closed")

// closingStore is the Raft log and stable store with a safe Close.
//
// raft's NetworkTransport answers heartbeats on its connection goroutines,
// outside the Raft main loop, and neither raft.Shutdown nor the
// transport's Close waits for a handler already running. Such a handler
// may persist a newer term after the store is closed, and raft panics on
// any error from that write ("failed to save current term"), killing the
// process during an orderly shutdown. Close therefore waits for calls in
// progress, and later stable-store writes are dropped: they come from a
// Raft instance that has already shut down, so nothing reads them, and the
// node relearns the term from its peers when it starts again. Reads and
// log writes after Close fail with errStoreClosed.
type closingStore struct {
	mu     sync.RWMutex
	closed bool
	s      *raftboltdb.BoltStore
}

var (
	_ raft.LogStore    = (*closingStore)(nil)
	_ raft.StableStore = (*closingStore)(nil)
)

func (c *closingStore) enter() bool {
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return false
	}
	return true
}

// Close closes the underlying store once the calls in progress return.
func (c *closingStore) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	return c.s.Close()
}

func (c *closingStore) FirstIndex() (uint64, error) {
	if !c.enter() {
		return 0, errStoreClosed
	}
	defer c.mu.RUnlock()
	return c.s.FirstIndex()
}

func (c *closingStore) LastIndex() (uint64, error) {
	if !c.enter() {
		return 0, errStoreClosed
	}
	defer c.mu.RUnlock()
	return c.s.LastIndex()
}

func (c *closingStore) GetLog(index uint64, log *raft.Log) error {
	if !c.enter() {
		return errStoreClosed
	}
	defer c.mu.RUnlock()
	return c.s.GetLog(index, log)
}

func (c *closingStore) StoreLog(log *raft.Log) error {
	if !c.enter() {
		return errStoreClosed
	}
	defer c.mu.RUnlock()
	return c.s.StoreLog(log)
}

func (c *closingStore) StoreLogs(logs []*raft.Log) error {
	if !c.enter() {
		return errStoreClosed
	}
	defer c.mu.RUnlock()
	return c.s.StoreLogs(logs)
}

func (c *closingStore) DeleteRange(lo, hi uint64) error {
	if !c.enter() {
		return errStoreClosed
	}
	defer c.mu.RUnlock()
	return c.s.DeleteRange(lo, hi)
}

func (c *closingStore) Set(key, val []byte) error {
	if !c.enter() {
		return nil // dropped after Close: see the type's comment
	}
	defer c.mu.RUnlock()
	return c.s.Set(key, val)
}

func (c *closingStore) Get(key []byte) ([]byte, error) {
	if !c.enter() {
		return nil, errStoreClosed
	}
	defer c.mu.RUnlock()
	return c.s.Get(key)
}

func (c *closingStore) SetUint64(key []byte, val uint64) error {
	if !c.enter() {
		return nil // dropped after Close: see the type's comment
	}
	defer c.mu.RUnlock()
	return c.s.SetUint64(key, val)
}

func (c *closingStore) GetUint64(key []byte) (uint64, error) {
	if !c.enter() {
		return 0, errStoreClosed
	}
	defer c.mu.RUnlock()
	return c.s.GetUint64(key)
}
