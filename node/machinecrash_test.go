package node_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/node"
)

// TestStateRebuiltAfterMachineCrash: the state database commits without
// fsync by default, so a machine crash may tear it. A node that comes back
// from one (its unsynced marker names another boot) must set the torn file
// aside and rebuild its state from Raft, from the last snapshot and the log
// after it, or from the whole log, and then serve the same state as its
// peers. It must never open the torn file.
func TestStateRebuiltAfterMachineCrash(t *testing.T) {
	for _, withSnapshot := range []bool{false, true} {
		t.Run(fmt.Sprintf("snapshot=%v", withSnapshot), func(t *testing.T) {
			c := testcluster.New(t, testcluster.Options{
				Nodes: 3, HSM: testcluster.HSMSoft,
				Configure: func(_ int, cfg *node.Config) {
					if withSnapshot {
						cfg.SnapshotThreshold = 8
						cfg.RaftSnapshotCheck = 50 * time.Millisecond
					}
				},
			})
			c.Init(t, 3, 2)
			c.Unseal(t, 2)
			waitDealt(t, c)
			ctx := ctxT(t)
			cl := c.Client(t)
			var last uint64
			for i := 0; i < 20; i++ {
				k, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: fmt.Sprint("before-", i)})
				if err != nil {
					t.Fatal(err)
				}
				last = k.Index
			}
			enc, err := cl.Encrypt(ctx, "before-3", []byte("kept"), nil)
			if err != nil {
				t.Fatal(err)
			}
			const victim = 2
			dir := c.Slot(victim).Dir
			state := filepath.Join(dir, "state.db")
			c.WaitApplied(t, last)
			if _, err := os.Stat(state + ".unsynced"); err != nil {
				t.Fatalf("state database not running unsynced by default: %v", err)
			}
			if withSnapshot {
				c.Eventually(t, 20*time.Second, func() error {
					snaps, _ := os.ReadDir(filepath.Join(dir, "raft", "snapshots"))
					if len(snaps) == 0 {
						return fmt.Errorf("no Raft snapshot on %s yet", c.Slot(victim).ID)
					}
					return nil
				})
			}

			// The machine crashes: the marker stays with the old boot's
			// id and the database file is torn.
			c.Stop(t, victim)
			if err := os.WriteFile(state+".unsynced", []byte("boot-before-the-crash\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(state, []byte("half a page, then the power went"), 0o600); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 5; i++ {
				if _, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: fmt.Sprint("during-", i)}); err != nil {
					t.Fatal(err)
				}
			}

			c.Restart(t, victim)
			waitUnsealedBy(t, c, victim, "warm-rejoin")
			c.EnsureSameState(t)
			if _, err := os.Stat(fsm.DiscardedPath(state)); err != nil {
				t.Fatalf("torn database not set aside: %v", err)
			}
			vc := c.ClientFor(t, c.Slot(victim).APIAddr)
			dec, err := vc.Decrypt(ctx, "before-3", enc.Ciphertext, nil)
			if err != nil || string(dec.Plaintext) != "kept" {
				t.Fatalf("decrypt on the rebuilt node: %v", err)
			}
		})
	}
}
