package fsm

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// crash closes the database the way a dead process leaves it: no final
// sync and the unsynced marker still in place.
func crash(t *testing.T, f *FSM) {
	t.Helper()
	f.closed.Store(true)
	f.waits.close()
	if err := f.db.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestUnsyncedRestart covers how an unsynced state database is reopened:
// kept after a clean close or a process crash on the same boot, set aside
// after a machine crash (another boot), whatever the file then holds.
func TestUnsyncedRestart(t *testing.T) {
	t.Parallel()
	const bootA, bootB = "boot-a", "boot-b"
	tests := []struct {
		name        string
		stop        func(*testing.T, *FSM)
		tear        bool // the machine crash tore the file
		reopenBoot  string
		wantRebuilt bool
	}{
		{"clean close, same boot", func(t *testing.T, f *FSM) { closeOK(t, f) }, false, bootA, false},
		{"clean close, after a reboot", func(t *testing.T, f *FSM) { closeOK(t, f) }, false, bootB, false},
		{"process crash, same boot", crash, false, bootA, false},
		{"machine crash", crash, false, bootB, true},
		{"machine crash, torn file", crash, true, bootB, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path, f, d := openUnsyncedInit(t, bootA)
			if !f.Unsynced() || f.Rebuilt() {
				t.Fatalf("first open: unsynced %v rebuilt %v", f.Unsynced(), f.Rebuilt())
			}
			d.apply(&CreateKey{Meta: Meta{At: t0}, Name: "k", Type: "aes256-gcm", First: wv(1)})
			want := dump(t, f)
			tt.stop(t, f)
			if tt.tear {
				if err := os.WriteFile(path, []byte("torn by a power loss"), 0o600); err != nil {
					t.Fatal(err)
				}
			}

			g, err := OpenWithOptions(path, nil, Options{SkipFsync: true, BootID: tt.reopenBoot})
			if err != nil {
				t.Fatal(err)
			}
			defer closeOK(t, g)
			if g.Rebuilt() != tt.wantRebuilt {
				t.Fatalf("rebuilt = %v, want %v", g.Rebuilt(), tt.wantRebuilt)
			}
			_, discardedErr := os.Stat(DiscardedPath(path))
			if tt.wantRebuilt {
				if g.AppliedIndex() != 0 {
					t.Fatalf("rebuilt database starts at index %d", g.AppliedIndex())
				}
				if discardedErr != nil {
					t.Fatalf("torn database not kept aside: %v", discardedErr)
				}
				return
			}
			if !errors.Is(discardedErr, fs.ErrNotExist) {
				t.Fatalf("database set aside without a machine crash: %v", discardedErr)
			}
			if g.AppliedIndex() != d.idx || dump(t, g) != want {
				t.Fatalf("state lost: applied %d of %d", g.AppliedIndex(), d.idx)
			}
		})
	}
}

func closeOK(t *testing.T, f *FSM) {
	t.Helper()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(markerPath(f.path)); f.unsynced && !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("marker left after a clean close: %v", err)
	}
}

// TestUnsyncedNeedsBootID: without a boot id a machine crash could not be
// told from a process crash, so every commit is fsynced and no marker is
// written.
func TestUnsyncedNeedsBootID(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	f, err := OpenWithOptions(path, nil, Options{SkipFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer closeOK(t, f)
	if f.Unsynced() {
		t.Fatal("unsynced without a boot id")
	}
	if _, err := os.Stat(markerPath(path)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("marker written: %v", err)
	}
}

// TestUnsyncedMarkerHonouredWhenSynced: a node that ran unsynced and went
// down with the machine may come back with fsync turned on (state_fsync:
// true, set after the crash) or without a readable boot id. The marker of
// the unsynced run must still be read: the file may be torn whatever the
// new run's durability. A marker of this boot (a process crash) keeps the
// database, which is synced before the marker goes.
func TestUnsyncedMarkerHonouredWhenSynced(t *testing.T) {
	t.Parallel()
	const bootA, bootB = "boot-a", "boot-b"
	tests := []struct {
		name        string
		reopen      Options
		wantRebuilt bool
	}{
		{"machine crash, reopened with fsync", Options{BootID: bootB}, true},
		{"machine crash, reopened without a boot id", Options{SkipFsync: true}, true},
		{"process crash, reopened with fsync", Options{BootID: bootA}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path, f, d := openUnsyncedInit(t, bootA)
			want := dump(t, f)
			crash(t, f)

			g, err := OpenWithOptions(path, nil, tt.reopen)
			if err != nil {
				t.Fatal(err)
			}
			defer closeOK(t, g)
			if g.Unsynced() {
				t.Fatal("reopened unsynced")
			}
			if g.Rebuilt() != tt.wantRebuilt {
				t.Fatalf("rebuilt = %v, want %v (a torn file would be served)", g.Rebuilt(), tt.wantRebuilt)
			}
			if !tt.wantRebuilt && (g.AppliedIndex() != d.idx || dump(t, g) != want) {
				t.Fatalf("state lost: applied %d of %d", g.AppliedIndex(), d.idx)
			}
			if _, err := os.Stat(markerPath(path)); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("marker of the unsynced run left behind: %v", err)
			}
		})
	}
}

// TestUnsyncedSyncFailurePoisons: when Close cannot fsync the unsynced
// database (an I/O error: Linux may then drop the dirty pages), the
// marker must make the next open set the file aside, even on this boot.
func TestUnsyncedSyncFailurePoisons(t *testing.T) {
	t.Parallel()
	path, f, _ := openUnsyncedInit(t, "boot-a")
	// The database's file goes away under it: its Sync fails.
	if err := f.db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err == nil {
		t.Fatal("Close reported no sync error")
	}
	g, err := OpenWithOptions(path, nil, Options{SkipFsync: true, BootID: "boot-a"})
	if err != nil {
		t.Fatal(err)
	}
	defer closeOK(t, g)
	if !g.Rebuilt() {
		t.Fatal("database whose final fsync failed reopened as if intact")
	}
}

// openUnsyncedInit opens a new unsynced state database under boot and
// applies an Init to it.
func openUnsyncedInit(t *testing.T, boot string) (string, *FSM, *driver) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	f, err := OpenWithOptions(path, nil, Options{SkipFsync: true, BootID: boot})
	if err != nil {
		t.Fatal(err)
	}
	d := &driver{t: t, f: f}
	d.apply(initCmd())
	return path, f, d
}
