// Package fsm is keyd's replicated state machine: a raft.FSM (and
// raft.BatchingFSM) over a bbolt database that holds key metadata with
// wrapped key material, the wrapped barrier keyring, the root commitments,
// tokens and the request ids of recent writes.
//
// Each batch of log entries is applied in one bbolt transaction together
// with the last applied index, so a restart that replays the log skips
// what is already applied and never applies an entry twice.
package fsm

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketMeta       = []byte("meta")
	bucketKeys       = []byte("keys")
	bucketTokens     = []byte("tokens")
	bucketRequests   = []byte("requests")   // rid -> index
	bucketReqByTime  = []byte("requests_t") // at(8) | rid -> nil, for pruning
	bucketRemoved    = []byte("removed")    // node id -> removal time
	bucketPolicies   = []byte("policies")   // name -> PolicyRecord
	bucketIdentities = []byte("identities") // id -> IdentityRecord

	keyApplied    = []byte("applied")
	keyInit       = []byte("init")
	keyNodeShares = []byte("node_shares")
)

// RequestRetention is how long a request id is remembered for
// deduplication, measured on the proposers' clock.
const RequestRetention = 24 * time.Hour

// FSM is the replicated state machine. Apply, ApplyBatch, Snapshot and
// Restore are called by raft from one goroutine; the read methods are safe
// for concurrent use with them.
type FSM struct {
	path     string
	observer Observer

	mu sync.RWMutex // guards db against the swap in Restore
	db *bolt.DB
	// unsynced: commits skip fsync (unsynced.go); rebuilt: Open set a
	// database torn by a machine crash aside and started empty.
	unsynced bool
	rebuilt  bool
	applied  atomic.Uint64
	waits    waitIndex
	closed   atomic.Bool
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// Open opens (or creates) the state database at path, fsyncing every
// commit. obs may be nil.
func Open(path string, obs Observer) (*FSM, error) {
	return OpenWithOptions(path, obs, Options{})
}

// OpenWithOptions opens (or creates) the state database at path with the
// durability o asks for (unsynced.go). obs may be nil.
func OpenWithOptions(path string, obs Observer, o Options) (*FSM, error) {
	unsynced := o.SkipFsync && o.BootID != ""
	rebuilt, stale, err := prepareOpen(path, o.BootID, unsynced)
	if err != nil {
		return nil, err
	}
	db, err := openDB(path, unsynced)
	if err != nil {
		return nil, err
	}
	if stale {
		if err := syncAndClearMarker(db, path); err != nil {
			_ = db.Close()
			return nil, err
		}
	}
	f := &FSM{path: path, db: db, observer: obs, unsynced: unsynced, rebuilt: rebuilt}
	f.waits.init()
	idx, err := readApplied(db)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	f.applied.Store(idx)
	return f, nil
}

// boltOptions are the options of the state database. Every commit is
// still fsynced; the free page list is not written with it (bbolt rebuilds
// it from the tree when it opens the file, as etcd configures its bbolt),
// which makes each commit one page or more smaller, and it is kept as a
// map, whose allocations do not scan the whole list.
func boltOptions() *bolt.Options {
	return &bolt.Options{
		Timeout:        5 * time.Second,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	}
}

func openDB(path string, unsynced bool) (*bolt.DB, error) {
	opts := boltOptions()
	opts.NoSync = unsynced
	db, err := bolt.Open(path, 0o600, opts)
	if err != nil {
		return nil, fmt.Errorf("fsm: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketKeys, bucketTokens, bucketRequests, bucketReqByTime, bucketRemoved, bucketPolicies, bucketIdentities} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return ensureDerived(tx)
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("fsm: init buckets: %w", err)
	}
	return db, nil
}

func readApplied(db *bolt.DB) (uint64, error) {
	var idx uint64
	err := db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		if b == nil {
			return fmt.Errorf("%w: no meta bucket", ErrSnapshotCorrupt)
		}
		if v := b.Get(keyApplied); len(v) >= 8 {
			idx = binary.BigEndian.Uint64(v[:8])
		}
		return nil
	})
	return idx, err
}

// Close closes the database and releases every waiter with ErrClosed.
// It is idempotent.
func (f *FSM) Close() error {
	if f.closed.Swap(true) {
		return nil
	}
	f.waits.close()
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.unsynced {
		return f.db.Close()
	}
	// The marker goes only once every commit is on disk.
	err := syncAndClearMarker(f.db, f.path)
	return errors.Join(err, f.db.Close())
}

// Rebuilt reports whether Open set aside a database torn by a machine
// crash and started empty: Raft must restore its last snapshot into the
// FSM and replay the log after it.
func (f *FSM) Rebuilt() bool { return f.rebuilt }

// Unsynced reports whether commits skip fsync (unsynced.go).
func (f *FSM) Unsynced() bool { return f.unsynced }

// AppliedIndex returns the last log index applied.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// Apply applies one log entry. It returns *Result.
func (f *FSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies entries in one bbolt transaction. It returns one
// *Result per entry. Entries at or below the applied index (a replay after
// restart) are skipped. A bbolt failure panics: the replica can no longer
// be trusted and must stop rather than diverge.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	ev := Event{}
	changed := map[string]*KeyRecord{}
	var last uint64
	f.mu.RLock()
	err := f.db.Update(func(tx *bolt.Tx) error {
		applied := f.applied.Load()
		a := applier{tx: tx, changed: changed, ev: &ev}
		for i, l := range logs {
			if l.Index <= applied {
				out[i] = &Result{Index: l.Index, Duplicate: true}
				continue
			}
			last = l.Index
			if l.Type != raft.LogCommand {
				out[i] = &Result{Index: l.Index}
				continue
			}
			out[i] = a.apply(l.Index, l.Data)
		}
		if last == 0 {
			return nil
		}
		var buf [16]byte
		binary.BigEndian.PutUint64(buf[:8], last)
		binary.BigEndian.PutUint64(buf[8:], logs[len(logs)-1].Term)
		return tx.Bucket(bucketMeta).Put(keyApplied, buf[:])
	})
	f.mu.RUnlock()
	if err != nil {
		panic(fmt.Sprintf("fsm: bbolt update failed, halting replica: %v", err))
	}
	if last == 0 {
		return out
	}
	// The observer runs before the index is published: whoever sees
	// AppliedIndex >= last (WaitApplied, X-Keyd-Min-Index, a revoke
	// waiting for every node) also sees the in-memory views (unwrapped
	// keys, the token table) at last.
	if f.observer != nil && (len(changed) > 0 || len(ev.Deleted) > 0 || ev.Init || ev.Tokens || ev.NodeShares || ev.Root || ev.Sealed) {
		ev.Index = last
		for _, k := range changed {
			if k != nil {
				ev.Keys = append(ev.Keys, k)
			}
		}
		f.observer(ev)
	}
	f.applied.Store(last)
	f.waits.trigger(last)
	return out
}

// WaitApplied blocks until index is applied, ctx ends (ctx.Err()) or the
// FSM closes (ErrClosed).
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	if f.applied.Load() >= index {
		return nil
	}
	ch := f.waits.wait(index)
	if f.applied.Load() >= index {
		return nil
	}
	select {
	case <-ch:
		if f.applied.Load() >= index {
			return nil
		}
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *FSM) view(fn func(tx *bolt.Tx) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed.Load() {
		return ErrClosed
	}
	return f.db.View(fn)
}

// Key returns the record of name, or ErrKeyNotFound.
func (f *FSM) Key(name string) (*KeyRecord, error) {
	var rec *KeyRecord
	err := f.view(func(tx *bolt.Tx) error {
		var err error
		rec, err = getKey(tx, name)
		return err
	})
	return rec, err
}

// ListKeys returns up to limit key names after the given name, in order,
// and whether more follow.
func (f *FSM) ListKeys(after string, limit int) ([]string, bool, error) {
	return f.ListKeysFunc(after, limit, nil)
}

// ListKeysFunc is ListKeys over the names keep accepts (every name when
// keep is nil): up to limit accepted names after `after`, and whether
// another accepted name follows. Names keep refuses neither count towards
// limit nor make `more` true, so a filtered page is as full as the
// accepted names allow.
func (f *FSM) ListKeysFunc(after string, limit int, keep func(name string) bool) ([]string, bool, error) {
	var names []string
	more := false
	err := f.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketKeys).Cursor()
		var k []byte
		if after == "" {
			k, _ = c.First()
		} else {
			k, _ = c.Seek([]byte(after))
			if k != nil && string(k) == after {
				k, _ = c.Next()
			}
		}
		for ; k != nil; k, _ = c.Next() {
			if keep != nil && !keep(string(k)) {
				continue
			}
			if len(names) == limit {
				more = true
				break
			}
			names = append(names, string(k))
		}
		return nil
	})
	return names, more, err
}

// ForEachKey calls fn for every key record in name order. fn must not
// retain the record beyond the call unless it copies it (the record is
// freshly decoded, so retaining it is in fact safe).
func (f *FSM) ForEachKey(fn func(*KeyRecord) error) error {
	return f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketKeys).ForEach(func(_, v []byte) error {
			var rec KeyRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("fsm: decode key record: %w", err)
			}
			return fn(&rec)
		})
	})
}

// InitRecord returns the root record, or ErrNotInitialized.
func (f *FSM) InitRecord() (*InitRecord, error) {
	var rec *InitRecord
	err := f.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keyInit)
		if v == nil {
			return ErrNotInitialized
		}
		rec = new(InitRecord)
		return json.Unmarshal(v, rec)
	})
	return rec, err
}

// NodeShares returns the current node-share dealing, or nil when none
// was recorded.
func (f *FSM) NodeShares() (*NodeSharesRecord, error) {
	var rec *NodeSharesRecord
	err := f.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keyNodeShares)
		if v == nil {
			return nil
		}
		rec = new(NodeSharesRecord)
		return json.Unmarshal(v, rec)
	})
	return rec, err
}

// Removed reports whether a node id was removed from the cluster.
func (f *FSM) Removed(id string) bool {
	var found bool
	_ = f.view(func(tx *bolt.Tx) error {
		found = tx.Bucket(bucketRemoved).Get([]byte(id)) != nil
		return nil
	})
	return found
}

// Policies returns every stored policy.
func (f *FSM) Policies() ([]*PolicyRecord, error) {
	var out []*PolicyRecord
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPolicies).ForEach(func(_, v []byte) error {
			var rec PolicyRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("fsm: decode policy: %w", err)
			}
			out = append(out, &rec)
			return nil
		})
	})
	return out, err
}

// Identities returns every certificate identity.
func (f *FSM) Identities() ([]*IdentityRecord, error) {
	var out []*IdentityRecord
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketIdentities).ForEach(func(_, v []byte) error {
			var rec IdentityRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("fsm: decode identity: %w", err)
			}
			out = append(out, &rec)
			return nil
		})
	})
	return out, err
}

// Tokens returns every token record.
func (f *FSM) Tokens() ([]*TokenRecord, error) {
	var out []*TokenRecord
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTokens).ForEach(func(_, v []byte) error {
			var rec TokenRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("fsm: decode token record: %w", err)
			}
			out = append(out, &rec)
			return nil
		})
	})
	return out, err
}

// Request looks up m's request id in its scope: the index the request
// was applied at and true when it is remembered, or ErrRequestReused when
// the same caller used the id for a request with another digest. A Meta
// without a request id was never seen.
func (f *FSM) Request(m Meta) (uint64, bool, error) {
	if m.RequestID == "" {
		return 0, false, nil
	}
	var (
		idx uint64
		err error
	)
	_ = f.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRequests).Get(m.requestKey())
		if len(v) < 8 {
			return nil
		}
		if m.Scope != "" && !bytes.Equal(v[8:], m.Digest) {
			err = ErrRequestReused
			return nil
		}
		idx = binary.BigEndian.Uint64(v[:8])
		return nil
	})
	return idx, idx != 0, err
}

// RequestIndex returns the index a request id was applied at, if it is
// still remembered.
func (f *FSM) RequestIndex(rid string) (uint64, bool) {
	var idx uint64
	_ = f.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketRequests).Get([]byte(rid)); len(v) >= 8 {
			idx = binary.BigEndian.Uint64(v[:8])
		}
		return nil
	})
	return idx, idx != 0
}

func getKey(tx *bolt.Tx, name string) (*KeyRecord, error) {
	v := tx.Bucket(bucketKeys).Get([]byte(name))
	if v == nil {
		return nil, ErrKeyNotFound
	}
	var rec KeyRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, fmt.Errorf("fsm: decode key record %q: %w", name, err)
	}
	return &rec, nil
}

// Dump writes a deterministic description of the state (without the
// applied index) for comparing replicas in tests.
func (f *FSM) Dump(w io.Writer) error {
	return f.view(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketKeys, bucketTokens, bucketRequests, bucketRemoved, bucketPolicies, bucketIdentities} {
			err := tx.Bucket(name).ForEach(func(k, v []byte) error {
				_, err := fmt.Fprintf(w, "%s/%x=%x\n", name, k, v)
				return err
			})
			if err != nil {
				return err
			}
		}
		if err := dumpUsage(tx, w); err != nil {
			return err
		}
		if err := dumpAudit(tx, w); err != nil {
			return err
		}
		for _, k := range [][]byte{keyInit, keyNodeShares} {
			if v := tx.Bucket(bucketMeta).Get(k); v != nil {
				if _, err := fmt.Fprintf(w, "%s=%x\n", k, v); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
