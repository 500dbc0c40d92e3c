package node_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
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
	c, res, first := hourlyDealing(t)
	second := dealWithout(t, c, res, 2, first)
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

// hourlyDealing starts three nodes with soft HSMs whose leader checks
// node-share dealing only hourly (so only events make it deal), unsealed,
// and returns the custodian shares and the first dealing.
func hourlyDealing(t *testing.T) (*testcluster.Cluster, *api.InitResponse, string) {
	t.Helper()
	c := testcluster.New(t, testcluster.Options{
		Nodes: 3, HSM: testcluster.HSMSoft,
		Configure: func(_ int, cfg *node.Config) { cfg.NodeShareInterval = time.Hour },
	})
	res := c.Init(t, 3, 2)
	c.Unseal(t, 2)
	return c, res, waitDealt(t, c)
}

// dealWithout stops victim (not node 0) and has the cluster sealed and
// unsealed again by custodians through node 0, so that the leader re-deals
// without the victim. It returns the new dealing once node 0's share
// relays have ended (they would otherwise unseal a restarted victim as
// custodian shares).
func dealWithout(t *testing.T, c *testcluster.Cluster, res *api.InitResponse, victim int, first string) string {
	t.Helper()
	c.Stop(t, victim)
	return reDeal(t, c, res, first)
}

// sealThrough has an operator seal the cluster through node via and waits
// until every running node is sealed.
func sealThrough(t *testing.T, c *testcluster.Cluster, via int) {
	t.Helper()
	if err := c.ClientFor(t, c.Slot(via).APIAddr).Seal(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	c.Eventually(t, 10*time.Second, func() error {
		for i := 0; i < c.Size(); i++ {
			if n := c.Node(i); n != nil && !n.Sealed() {
				return errUnsealed(n.ID())
			}
		}
		return nil
	})
}

// reDeal seals the cluster and unseals it again by custodians through
// node 0, so that the leader re-deals to the voters that are up; see
// dealWithout.
func reDeal(t *testing.T, c *testcluster.Cluster, res *api.InitResponse, first string) string {
	t.Helper()
	ctx := ctxT(t)
	sealThrough(t, c, 0)
	relayed := make(chan string, 4)
	c.Node(0).SetShareRelayHook(func(string) func() { return func() { relayed <- "" } })
	defer c.Node(0).SetShareRelayHook(nil)
	addr := c.Slot(0).APIAddr
	cl := c.ClientFor(t, addr)
	for _, sh := range res.Shares[:2] {
		if _, err := cl.UnsealAt(ctx, addr, sh); err != nil {
			t.Fatalf("unseal: %v", err)
		}
	}
	var second string
	c.Eventually(t, 20*time.Second, func() error {
		second = ""
		for i := 0; i < c.Size(); i++ {
			n := c.Node(i)
			if n == nil {
				continue
			}
			st := n.Status()
			if st.Sealed || st.NodeShare == "" || st.NodeShare == first || (second != "" && st.NodeShare != second) {
				return fmt.Errorf("%s not unsealed and re-dealt yet: %q", n.ID(), st.NodeShare)
			}
			second = st.NodeShare
		}
		return nil
	})
	for i := 0; i < 2*(c.Size()-1); i++ {
		select {
		case <-relayed:
		case <-time.After(time.Minute):
			t.Fatal("share relays did not end")
		}
	}
	return second
}
