package node_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDealMeInRefusingVoter measures what one voter gets from the leader
// with DealMeIn when it refuses every share it is dealt (a compromised
// voter, or one whose share store fails while its HSM looks fine): each
// request past the 250 ms gap is a full re-dealing (a split, an HSM wrap
// on every other voter, a Raft write), where without the request the
// leader would look again only at its next node-share check (an hour
// here). The leader backs off each such voter's requests.
func TestDealMeInRefusingVoter(t *testing.T) {
	c, _, _ := hourlyDealing(t)
	leader := c.WaitLeader(t)
	victim := (leader + 1) % 3
	// The victim can no longer store a node share.
	dir := filepath.Join(c.Slot(victim).Dir, "node-shares")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A custodian unseal makes the leader re-deal: the victim is left out.
	first := c.Node(leader).Status().NodeShare
	ctx := ctxT(t)
	sealThrough(t, c, 0)
	// Through node 0: the victim cannot open the shares relayed to it
	// either (they are sealed to its delivery key, stored with its
	// shares), so it stays sealed.
	cl := c.ClientFor(t, c.Slot(0).APIAddr)
	for _, sh := range c.Shares[:2] {
		if _, err := cl.UnsealAt(ctx, c.Slot(0).APIAddr, sh); err != nil {
			t.Fatal(err)
		}
	}
	c.Eventually(t, 20*time.Second, func() error {
		for i := 0; i < 3; i++ {
			if i != victim && c.Node(i).Sealed() {
				return fmt.Errorf("%s still sealed", c.Node(i).ID())
			}
		}
		return nil
	})
	leader = c.WaitLeader(t)
	if leader == victim {
		t.Skip("the victim became leader")
	}
	c.Eventually(t, 20*time.Second, func() error {
		if fp := c.Node(leader).Status().NodeShare; fp == "" || fp == first {
			return errUnsealed("not re-dealt")
		}
		return nil
	})
	seen := map[string]bool{c.Node(leader).Status().NodeShare: true}
	end := time.Now().Add(6 * time.Second)
	for time.Now().Before(end) {
		if err := c.Node(leader).DealMeIn(c.Node(victim).ID()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(260 * time.Millisecond)
		seen[c.Node(leader).Status().NodeShare] = true
	}
	t.Logf("dealings in 6 s driven by one refusing voter: %d", len(seen)-1)
	// Backing off from 250 ms, doubling: 0, 0.25, 0.75, 1.75, 3.75 s.
	if len(seen)-1 > 6 {
		t.Errorf("one voter made the leader re-deal %d times in 6 s", len(seen)-1)
	}
}
