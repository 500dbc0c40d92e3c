package node_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/node"
	"github.com/keyd/keyd/seal/nodeshare"
)

// waitPinned waits until every running node has applied a pinned delivery
// key for every running node (a cluster with HSMs pins them in the
// background as nodes join).
func waitPinned(t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	c.Eventually(t, 20*time.Second, func() error {
		for i := 0; i < c.Size(); i++ {
			n := c.Node(i)
			if n == nil {
				continue
			}
			for j := 0; j < c.Size(); j++ {
				if c.Node(j) == nil {
					continue
				}
				if pub, err := n.PinnedDeliveryKey(c.Slot(j).ID); err != nil || pub == nil {
					return fmt.Errorf("%s has no pin for %s yet (%v)", n.ID(), c.Slot(j).ID, err)
				}
			}
		}
		return nil
	})
}

// A forced restore onto the same nodes keeps what describes those nodes:
// their delivery-key pins (the custodian unseal it requires relays shares
// sealed to them, and nobody gets to pin a key afresh) and the tombstones
// of nodes removed before it (reconciliation must not add them back).
func TestForcedRestoreKeepsLocalState(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	c, _, _ := hourlyDealing(t)
	ctx := ctxT(t)
	leader := c.WaitLeader(t)
	removed := 1
	if leader == removed {
		removed = 2
	}
	rid := c.Slot(removed).ID
	if err := c.Node(leader).RemoveNode(ctx, "", rid); err != nil {
		t.Fatal(err)
	}
	c.Stop(t, removed)
	pins := map[string][]byte{}
	for i := 0; i < 3; i++ {
		id := c.Slot(i).ID
		pub, err := c.Node(leader).PinnedDeliveryKey(id)
		if err != nil || pub == nil {
			t.Fatalf("%s not pinned: %v", id, err)
		}
		pins[id] = pub
	}
	var file bytes.Buffer
	cl := c.ClientFor(t, c.Slot(leader).APIAddr)
	if err := cl.SnapshotSave(ctx, &file); err != nil {
		t.Fatal(err)
	}
	res, err := cl.SnapshotRestore(ctx, file.Bytes(), true)
	if err != nil {
		t.Fatal(err)
	}
	c.WaitApplied(t, res.Index)
	for i := 0; i < 3; i++ {
		if i == removed {
			continue
		}
		for id, want := range pins {
			if got, err := c.Node(i).PinnedDeliveryKey(id); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("after the forced restore, %s's pin on node %d: %x, %v", id, i, got, err)
			}
		}
		if !c.Node(i).Tombstoned(rid) {
			t.Fatalf("after the forced restore, node %d forgot that %s was removed", i, rid)
		}
	}
}

// A voter whose delivery key is gone (its node-shares directory was
// wiped; the same holds for a replaced HSM) cannot open what is sealed to
// its pin. It must not make a new key under the same id, its status must
// say why, and the leader must not re-deal for it on every check.
func TestLostDeliveryKey(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	c := testcluster.New(t, testcluster.Options{
		Nodes: 3, HSM: testcluster.HSMSoft,
		Configure: func(_ int, cfg *node.Config) { cfg.NodeShareInterval = 200 * time.Millisecond },
	})
	c.Init(t, 3, 2)
	c.Unseal(t, 2)
	waitDealt(t, c)
	leader := c.WaitLeader(t)
	victim := (leader + 1) % 3
	vid := c.Slot(victim).ID
	pinned, err := c.Node(leader).PinnedDeliveryKey(vid)
	if err != nil || pinned == nil {
		t.Fatalf("victim not pinned: %v", err)
	}
	c.Stop(t, victim)
	if err := os.Remove(filepath.Join(c.Slot(victim).Dir, "node-shares", nodeshare.DeliveryKeyFile)); err != nil {
		t.Fatal(err)
	}
	c.Restart(t, victim)
	c.Eventually(t, 20*time.Second, func() error {
		if st := c.Node(victim).Status().NodeShares; !strings.Contains(st, "delivery key is lost") {
			return fmt.Errorf("victim's node_shares status: %q", st)
		}
		return nil
	})
	if _, err := c.Node(victim).DeliveryKey(ctxT(t)); err == nil {
		t.Fatal("a node whose key is pinned made a new delivery key")
	}
	if _, err := os.Stat(filepath.Join(c.Slot(victim).Dir, "node-shares", nodeshare.DeliveryKeyFile)); !os.IsNotExist(err) {
		t.Fatalf("a delivery key file came back: %v", err)
	}
	// A custodian unseal makes the leader re-deal; the
	// victim cannot open its new share (nor relayed custodian shares; it
	// may still rejoin warm from its old share before the re-dealing) and
	// is left out.
	ctx := ctxT(t)
	first := c.Node(leader).Status().NodeShare
	sealThrough(t, c, leader)
	// Through the leader, so that it is unsealed by custodians (and so
	// re-deals), not by the relays of another node.
	leader = c.WaitLeader(t)
	if leader == victim {
		t.Skip("the victim leads")
	}
	cl := c.ClientFor(t, c.Slot(leader).APIAddr)
	for _, sh := range c.Shares[:2] {
		if _, err := cl.UnsealAt(ctx, c.Slot(leader).APIAddr, sh); err != nil {
			t.Fatal(err)
		}
	}
	c.Eventually(t, 30*time.Second, func() error {
		if fp := c.Node(leader).Status().NodeShare; fp == "" || fp == first {
			return fmt.Errorf("not re-dealt yet: leader %s status %+v", c.Node(leader).ID(), c.Node(leader).Status())
		}
		return nil
	})
	// The leader re-deals now and then for the voter that lacks a share,
	// backing off while it refuses (before: a dealing on every check).
	_, attempts0 := c.Node(leader).NodeShareCounters()
	ticks0, _ := c.Node(leader).NodeShareCounters()
	c.Eventually(t, 60*time.Second, func() error {
		ticks, _ := c.Node(leader).NodeShareCounters()
		if ticks-ticks0 < 40 {
			return fmt.Errorf("%d checks so far", ticks-ticks0)
		}
		return nil
	})
	ticks, attempts := c.Node(leader).NodeShareCounters()
	t.Logf("%d dealings in %d checks", attempts-attempts0, ticks-ticks0)
	if attempts-attempts0 > (ticks-ticks0)/4 {
		t.Errorf("the leader dealt %d times in %d checks for a voter that cannot open its share", attempts-attempts0, ticks-ticks0)
	}
	if got, _ := c.Node(leader).PinnedDeliveryKey(vid); !bytes.Equal(got, pinned) {
		t.Fatal("the victim's pin changed")
	}
}
