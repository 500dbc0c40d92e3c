package fsm

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// Snapshot format:
//
//	magic "KEYDSNAP" | format version (1 byte) | database length (8 bytes, BE)
//	| bbolt database bytes | SHA-256 over everything before it (32 bytes)
//
// The database holds wrapped material only, like the Raft log.
var snapMagic = []byte("KEYDSNAP")

const (
	snapVersion   = 1
	snapHeaderLen = 8 + 1 + 8
	// maxSnapshotDB bounds what Restore accepts, so a corrupt length
	// cannot make it write without end.
	maxSnapshotDB = 64 << 30
)

type snapshot struct {
	f  *FSM
	tx *bolt.Tx
}

// Snapshot opens a read transaction; the copy happens in Persist, while
// Apply continues.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed.Load() {
		return nil, ErrClosed
	}
	tx, err := f.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("fsm: snapshot: %w", err)
	}
	return &snapshot{f: f, tx: tx}, nil
}

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	err := WriteSnapshot(sink, s.tx)
	if err != nil {
		return errors.Join(err, sink.Cancel())
	}
	return sink.Close()
}

func (s *snapshot) Release() { _ = s.tx.Rollback() }

// WriteSnapshot writes the database seen by tx in the snapshot format.
func WriteSnapshot(w io.Writer, tx *bolt.Tx) error {
	h := sha256.New()
	mw := io.MultiWriter(w, h)
	var hdr [snapHeaderLen]byte
	copy(hdr[:], snapMagic)
	hdr[8] = snapVersion
	binary.BigEndian.PutUint64(hdr[9:], uint64(tx.Size()))
	if _, err := mw.Write(hdr[:]); err != nil {
		return fmt.Errorf("fsm: write snapshot header: %w", err)
	}
	n, err := tx.WriteTo(mw)
	if err != nil {
		return fmt.Errorf("fsm: write snapshot: %w", err)
	}
	if n != tx.Size() {
		return fmt.Errorf("fsm: write snapshot: wrote %d of %d bytes", n, tx.Size())
	}
	if _, err := w.Write(h.Sum(nil)); err != nil {
		return fmt.Errorf("fsm: write snapshot checksum: %w", err)
	}
	return nil
}

// ParseSnapshotHeader checks the header and returns the database length.
func ParseSnapshotHeader(b []byte) (uint64, error) {
	if len(b) < snapHeaderLen {
		return 0, fmt.Errorf("%w: header of %d bytes", ErrSnapshotCorrupt, len(b))
	}
	if !bytes.Equal(b[:8], snapMagic) {
		return 0, fmt.Errorf("%w: bad magic", ErrSnapshotCorrupt)
	}
	if b[8] != snapVersion {
		return 0, fmt.Errorf("%w: unknown format version %d", ErrSnapshotCorrupt, b[8])
	}
	n := binary.BigEndian.Uint64(b[9:snapHeaderLen])
	if n == 0 || n > maxSnapshotDB {
		return 0, fmt.Errorf("%w: database length %d", ErrSnapshotCorrupt, n)
	}
	return n, nil
}

// Restore replaces the state with a snapshot. The snapshot is written to a
// temporary file and fully verified (checksum, format, readable database)
// before it replaces the current database by an atomic rename; a corrupt
// snapshot is rejected and the current state is kept.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	tmp := f.path + ".restore"
	if err := verifySnapshotTo(rc, tmp); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	idx, err := f.swapDB(tmp)
	if err != nil {
		return err
	}
	// As in ApplyBatch: the observer's views first, then the index, so
	// whoever sees idx published also sees the restored views.
	if f.observer != nil {
		f.observer(Event{Index: idx, Restored: true})
	}
	f.applied.Store(idx)
	f.waits.trigger(idx)
	return nil
}

// swapDB replaces the database file with the verified file at tmp and
// returns the restored applied index, which it does not publish.
func (f *FSM) swapDB(tmp string) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed.Load() {
		_ = os.Remove(tmp)
		return 0, ErrClosed
	}
	if err := f.db.Close(); err != nil {
		_ = os.Remove(tmp)
		return 0, fmt.Errorf("fsm: restore: close current: %w", err)
	}
	renameErr := os.Rename(tmp, f.path)
	db, err := openDB(f.path, f.unsynced)
	if err != nil {
		// Without a database the replica cannot continue.
		panic(fmt.Sprintf("fsm: restore: reopen failed, halting replica: %v", errors.Join(renameErr, err)))
	}
	f.db = db
	if renameErr != nil {
		_ = os.Remove(tmp)
		return 0, fmt.Errorf("fsm: restore: %w", renameErr)
	}
	// The caller publishes idx (f.applied) once the observer has run.
	return readApplied(db)
}

// VerifySnapshot reads a whole snapshot and checks its format and
// checksum, writing nothing. Operators use it on backups.
func VerifySnapshot(r io.Reader) error {
	_, err := copySnapshot(r, io.Discard)
	return err
}

func verifySnapshotTo(r io.Reader, path string) error {
	out, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	bw := bufio.NewWriter(out)
	_, err = copySnapshot(r, bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// Open the candidate read-only and check its structure.
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("%w: database: %v", ErrSnapshotCorrupt, err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketKeys, bucketTokens} {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("%w: missing bucket %s", ErrSnapshotCorrupt, b)
			}
		}
		return nil
	})
}

func copySnapshot(r io.Reader, w io.Writer) (int64, error) {
	h := sha256.New()
	tr := io.TeeReader(r, h)
	var hdr [snapHeaderLen]byte
	if _, err := io.ReadFull(tr, hdr[:]); err != nil {
		return 0, fmt.Errorf("%w: header: %v", ErrSnapshotCorrupt, err)
	}
	n, err := ParseSnapshotHeader(hdr[:])
	if err != nil {
		return 0, err
	}
	copied, err := io.CopyN(w, tr, int64(n))
	if err != nil {
		return copied, fmt.Errorf("%w: database truncated at %d of %d bytes", ErrSnapshotCorrupt, copied, n)
	}
	return copied, checkSum(r, h)
}

func checkSum(r io.Reader, h hash.Hash) error {
	var sum [sha256.Size]byte
	if _, err := io.ReadFull(r, sum[:]); err != nil {
		return fmt.Errorf("%w: checksum missing", ErrSnapshotCorrupt)
	}
	if !bytes.Equal(sum[:], h.Sum(nil)) {
		return fmt.Errorf("%w: checksum mismatch", ErrSnapshotCorrupt)
	}
	return nil
}
