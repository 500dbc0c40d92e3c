package node

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestPruneScheduledSnapshots checks count and age retention on crafted
// files: only scheduled snapshots are touched, the newest always stays,
// and stale temporaries go.
func TestPruneScheduledSnapshots(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	mk := func(dir, name string, age time.Duration) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
	}
	names := func(dir string) []string {
		es, _ := os.ReadDir(dir)
		var out []string
		for _, e := range es {
			out = append(out, e.Name())
		}
		slices.Sort(out)
		return out
	}
	snap := func(i int) string {
		return scheduledPrefix + now.Add(time.Duration(i-10)*time.Hour).Format("20060102T150405.000Z") + "-1" + scheduledSuffix
	}
	setup := func() string {
		dir := t.TempDir()
		for i := 1; i <= 5; i++ {
			mk(dir, snap(i), time.Duration(10-i)*time.Hour)
		}
		mk(dir, "operator-copy.snap", 100*time.Hour)
		mk(dir, scheduledTemp+"old", 2*time.Hour)
		mk(dir, scheduledTemp+"inflight", 0)
		return dir
	}
	node := func(dir string, retain int, age time.Duration) *Node {
		return &Node{cfg: Config{SnapshotDir: dir, SnapshotInterval: time.Minute, SnapshotRetain: retain, SnapshotMaxAge: age}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	}

	dir := setup()
	node(dir, 2, 0).pruneScheduledSnapshots(now)
	want := []string{scheduledTemp + "inflight", snap(4), snap(5), "operator-copy.snap"}
	slices.Sort(want)
	if got := names(dir); !slices.Equal(got, want) {
		t.Fatalf("count retention: got %v, want %v", got, want)
	}

	dir = setup()
	node(dir, 0, 6*time.Hour+30*time.Minute).pruneScheduledSnapshots(now) // ages 9,8,7,6,5 h
	want = []string{scheduledTemp + "inflight", snap(4), snap(5), "operator-copy.snap"}
	slices.Sort(want)
	if got := names(dir); !slices.Equal(got, want) {
		t.Fatalf("age retention: got %v, want %v", got, want)
	}

	dir = setup()
	node(dir, 0, time.Minute).pruneScheduledSnapshots(now)
	if got := names(dir); !slices.Contains(got, snap(5)) || slices.Contains(got, snap(4)) {
		t.Fatalf("the newest snapshot must survive any age limit: %v", got)
	}
}
