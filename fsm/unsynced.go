package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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

// prepareUnsynced decides, before the database is opened, whether the file
// at path can be trusted, sets it aside if not, and writes this boot's
// marker. It reports whether the database was set aside.
func prepareUnsynced(path, bootID string) (discarded bool, err error) {
	marker := markerPath(path)
	prev, err := os.ReadFile(marker)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Closed cleanly, or never run unsynced: every commit is on disk.
	case err != nil:
		return false, fmt.Errorf("fsm: read %s: %w", marker, err)
	case !bytes.Equal(bytes.TrimSpace(prev), []byte(bootID)):
		// Run unsynced under another boot and not closed: the machine
		// went down with commits possibly only in its page cache.
		if err := os.Rename(path, DiscardedPath(path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("fsm: set aside a database torn by a machine crash: %w", err)
		}
		discarded = true
	}
	if err := writeSynced(marker, []byte(bootID+"\n")); err != nil {
		return discarded, err
	}
	return discarded, syncDir(filepath.Dir(path))
}

// finishUnsynced runs after the database was synced and closed: every
// commit is on disk, so the marker goes.
func finishUnsynced(path string) error {
	if err := os.Remove(markerPath(path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("fsm: remove unsynced marker: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("fsm: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsm: write %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsm: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsm: sync %s: %w", dir, err)
	}
	return nil
}
