package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/keyd/keyd/internal/durable"
	bolt "go.etcd.io/bbolt"
)

// Running the state database without fsync.
//
// The state database is a function of the Raft log: every change to it
// comes from a committed entry, and the log (fsynced by the log store on
// every append, on a quorum of nodes before a write is acknowledged) and
// Raft's snapshots hold all of it. The database's own fsyncs only let a
// restarted node resume where it stopped instead of restoring the last
// snapshot and replaying the log after it; they cost two fsyncs per commit
// on the path of every write, on every node.
//
// With Options.SkipFsync the database commits without fsync. A process
// crash loses nothing (its writes are in the kernel's page cache); a
// machine crash (power loss, kernel panic) may leave a torn file. A marker
// file next to the database records the boot id of the kernel that ran it
// unsynced, and a clean Close syncs the database and removes the marker.
// Open finds a marker of another boot only after a machine crash during
// an unsynced run: it then sets the database aside (renamed to
// <path>.discarded, never read again) and starts empty, and Rebuilt tells
// the caller to have Raft restore the last snapshot and replay the log.

// Options are how Open treats the database's durability.
type Options struct {
	// SkipFsync commits without fsync, guarded by the boot-id marker.
	SkipFsync bool
	// BootID identifies the running kernel (BootID()); empty turns
	// SkipFsync off, since a machine crash could not be told apart from a
	// process crash.
	BootID string
}

// bootIDPath is where Linux publishes the id of the running boot.
const bootIDPath = "/proc/sys/kernel/random/boot_id"

// BootID returns the running kernel's boot id, or "" where there is none.
func BootID() string {
	b, err := os.ReadFile(bootIDPath)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// markerPath is the unsynced-run marker of the database at path.
func markerPath(path string) string { return path + ".unsynced" }

// DiscardedPath is where a database torn by a machine crash is set aside.
func DiscardedPath(path string) string { return path + ".discarded" }

// prepareOpen decides, before the database is opened, whether the file at
// path can be trusted, and sets it aside if not: a marker left by an
// unsynced run under another boot, or one this run cannot compare (it has
// no boot id), means the machine may have gone down with commits only in
// its page cache. The marker is read whatever this run's durability: a
// node that crashed unsynced may come back with fsync turned on. With
// unsynced it then writes this boot's marker; otherwise stale reports a
// marker to remove once the database is synced (syncAndClearMarker).
func prepareOpen(path, bootID string, unsynced bool) (discarded, stale bool, err error) {
	marker := markerPath(path)
	prev, err := os.ReadFile(marker)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Closed cleanly, or never run unsynced: every commit is on disk.
	case err != nil:
		return false, false, fmt.Errorf("fsm: read %s: %w", marker, err)
	default:
		stale = true
		if bootID == "" || !bytes.Equal(bytes.TrimSpace(prev), []byte(bootID)) {
			// Run unsynced under another boot and not closed: the
			// machine went down with commits possibly only in its page
			// cache.
			if err := os.Rename(path, DiscardedPath(path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return false, false, fmt.Errorf("fsm: set aside a database torn by a machine crash: %w", err)
			}
			discarded = true
		}
	}
	if !unsynced {
		return discarded, stale, nil
	}
	return discarded, false, writeMarker(path, bootID)
}

// syncAndClearMarker puts every commit of db on disk, then removes the
// marker of the unsynced run that made them (on Close, and when a synced
// run opens the database of an unsynced one that was not closed). If the
// fsync fails it poisons the marker instead: Linux may drop the pages
// whose write-back failed, so even a restart on this boot must set the
// file aside.
func syncAndClearMarker(db *bolt.DB, path string) error {
	if err := db.Sync(); err != nil {
		return errors.Join(fmt.Errorf("fsm: sync the state database: %w", err), writeMarker(path, "sync failed"))
	}
	if err := os.Remove(markerPath(path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("fsm: remove unsynced marker: %w", err)
	}
	return syncDirOf(path)
}

// writeMarker makes the marker of the database at path say content, on
// disk before it returns.
func writeMarker(path, content string) error {
	marker := markerPath(path)
	f, err := os.OpenFile(marker, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("fsm: %w", err)
	}
	_, err = f.WriteString(content + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsm: write %s: %w", marker, err)
	}
	return syncDirOf(path)
}

// syncDirOf makes a change to the directory entries next to path durable.
func syncDirOf(path string) error {
	if err := durable.SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("fsm: sync %s: %w", filepath.Dir(path), err)
	}
	return nil
}
