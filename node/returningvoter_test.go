package node_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/node"
)

// TestReturningVoterDealtAtOnce: a voter that was down while the leader
// dealt node shares (after a custodian unseal) comes back holding only a
// share of the old dealing. It asks the leader for a share, and rejoins
// without custodians as soon as the leader has dealt it one, not at the
// leader's next node-share check (an hour here, so only the request can
// bring it back within the test's deadline).
func TestReturningVoterDealtAtOnce(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{
		Nodes: 3, HSM: testcluster.HSMSoft,
		Configure: func(_ int, cfg *node.Config) { cfg.NodeShareInterval = time.Hour },
	})
	res := c.Init(t, 3, 2)
	c.Unseal(t, 2)
	first := waitDealt(t, c)

	// Node 2 is down while the cluster is sealed and unsealed again: the
	// leader's re-dealing after the custodian unseal leaves it out.
	c.Stop(t, 2)
	ctx := ctxT(t)
	if err := c.Client(t).Seal(ctx); err != nil {
		t.Fatal(err)
	}
	c.Eventually(t, 10*time.Second, func() error {
		for i := 0; i < 2; i++ {
			if !c.Node(i).Sealed() {
				return fmt.Errorf("node %d unsealed", i)
			}
		}
		return nil
	})
	// The shares' relays to node 2 must have ended before it restarts, or
	// they would unseal it as custodian shares.
	relayed := make(chan string, 4)
	c.Node(0).SetShareRelayHook(func(string) func() { return func() { relayed <- "" } })
	addr := c.Slot(0).APIAddr
	cl := c.ClientFor(t, addr)
	for _, sh := range res.Shares[:2] {
		if _, err := cl.UnsealAt(ctx, addr, sh); err != nil {
			t.Fatalf("unseal: %v", err)
		}
	}
	var second string
	c.Eventually(t, 20*time.Second, func() error {
		a, b := c.Node(0).Status(), c.Node(1).Status()
		if a.Sealed || b.Sealed {
			return fmt.Errorf("not unsealed yet")
		}
		if a.NodeShare == "" || a.NodeShare == first || a.NodeShare != b.NodeShare {
			return fmt.Errorf("not re-dealt yet: %q %q", a.NodeShare, b.NodeShare)
		}
		second = a.NodeShare
		return nil
	})

	for i := 0; i < 4; i++ {
		select {
		case <-relayed:
		case <-time.After(time.Minute):
			t.Fatal("share relays did not end")
		}
	}
	start := time.Now()
	c.Restart(t, 2)
	c.Eventually(t, 60*time.Second, func() error {
		st := c.Node(2).Status()
		if st.Sealed {
			return fmt.Errorf("node 2 sealed: %s", st.SealReason)
		}
		if st.UnsealedBy != "warm-rejoin" {
			return fmt.Errorf("node 2 unsealed by %q", st.UnsealedBy)
		}
		return nil
	})
	t.Logf("node 2: restart to unsealed by warm rejoin in %s", time.Since(start).Round(time.Millisecond))
	if fp := c.Node(2).Status().NodeShare; fp == "" || fp == first || fp == second {
		t.Fatalf("node 2 holds dealing %q (first %q, second %q), want a newer one", fp, first, second)
	}
	c.EnsureSameState(t)
}
