package nodeshare

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyd/keyd/hsmbridge/soft"
	"github.com/keyd/keyd/shamir"
)

// A leader whose dealings keep failing (a peer down, say) stores its own
// share of each attempt before the delivery to peers fails. Those
// attempts must never push the share file of the dealing the FSM records
// off the disk: a restarted node would then find "no node share on disk"
// and stay sealed (TestColdRestartNeedsCustodians flaked this way).
func TestFailedDealingsKeepCommittedShare(t *testing.T) {
	ctx := context.Background()
	h, err := soft.Open(ctx, soft.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	const label = "keyd-test"
	if err := h.EnsureKey(ctx, label); err != nil {
		t.Fatal(err)
	}
	v := &Vault{Dir: t.TempDir(), NodeID: "n1", Label: label, HSM: h}

	deal := func() string {
		t.Helper()
		secret, err := shamir.NewSecret(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		defer secret.Destroy()
		shares, commits, err := shamir.Split(secret, 2, 3, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		fp := commits.Fingerprint()
		if err := v.Store(ctx, fp, shares[0]); err != nil {
			t.Fatal(err)
		}
		for _, sh := range shares {
			sh.Destroy()
		}
		return fp
	}
	committed := deal()
	var failed []string
	for i := 0; i < KeptDealings+3; i++ {
		failed = append(failed, deal())
	}
	if _, err := os.Stat(v.Path(committed)); err != nil {
		t.Fatalf("committed dealing's share file gone after %d failed dealings: %v", len(failed), err)
	}
	if _, err := v.Load(ctx, committed); err != nil {
		t.Fatalf("load committed share: %v", err)
	}
	v.Prune(committed)
	if _, err := v.Load(ctx, committed); err != nil {
		t.Fatalf("committed share pruned: %v", err)
	}
	if _, err := v.Load(ctx, failed[len(failed)-1]); err != nil {
		t.Fatalf("newest dealing's share pruned: %v", err)
	}
}

// Pruning runs only for a committed dealing and keeps its file, however
// old, plus the newest KeptDealings-1 others.
func TestPruneKeepsCommittedShare(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, age time.Duration) {
		t.Helper()
		p := filepath.Join(dir, name+FileSuffix)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		at := time.Now().Add(-age)
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
	write("committed", time.Hour)
	for i := 0; i < 6; i++ {
		write(fmt.Sprintf("attempt%d", i), time.Duration(6-i)*time.Minute)
	}
	PruneFiles(dir, "committed", KeptDealings-1)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, strings.TrimSuffix(e.Name(), FileSuffix))
	}
	want := []string{"attempt4", "attempt5", "committed"}
	if !slices.Equal(got, want) {
		t.Fatalf("after prune: %v, want %v", got, want)
	}
}
