package node_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

func clusterOf(t *testing.T, c *testcluster.Cluster) *api.ClusterInfo {
	t.Helper()
	return c.Node(c.WaitLeader(t)).ClusterInfo()
}

func votersByRegion(info *api.ClusterInfo) (voters []string, perRegion map[string]int) {
	perRegion = map[string]int{}
	for _, n := range info.Nodes {
		if n.Voter {
			voters = append(voters, n.ID)
			perRegion[n.Region]++
		}
	}
	sort.Strings(voters)
	return voters, perRegion
}

func noRegionQuorum(voters []string, per map[string]int) error {
	for r, k := range per {
		if k >= len(voters)/2+1 && len(per) >= 3 {
			return fmt.Errorf("region %s holds %d of %d voters", r, k, len(voters))
		}
	}
	return nil
}

// TestMembershipRegions runs a 5-node cluster in 3 regions: join,
// promotion, dead-node detection, replacement and removal, with the
// leader keeping voters spread.
func TestMembershipRegions(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Regions: []string{"a", "b", "c"}, Gossip: true, HSM: testcluster.HSMSoft})
	c.Init(t, 3, 2)
	c.Unseal(t, 2)
	n4 := c.AddNode(t, "a")
	n5 := c.AddNode(t, "b")

	// Both joiners enter as non-voters and are promoted: 5 voters, 2/2/1.
	c.Eventually(t, 30*time.Second, func() error {
		voters, per := votersByRegion(clusterOf(t, c))
		if len(voters) != 5 {
			return fmt.Errorf("voters %v", voters)
		}
		return noRegionQuorum(voters, per)
	})
	// The joiners unseal by warm rejoin once they hold node shares.
	c.WaitUnsealed(t)
	waitDealt(t, c)

	// Topology shows a sealed node as sealed (an operator-sealed node
	// waits for custodians rather than rejoining).
	c.Node(n4).SealLocal()
	c.Eventually(t, 10*time.Second, func() error {
		for _, n := range clusterOf(t, c).Nodes {
			if n.ID == c.Slot(n4).ID && !n.Sealed {
				return fmt.Errorf("n4 not shown sealed")
			}
		}
		return nil
	})

	ctx := ctxT(t)
	for _, sh := range c.Shares[:2] {
		if _, err := c.ClientFor(t, c.Slot(n4).APIAddr).UnsealAt(ctx, c.Slot(n4).APIAddr, sh); err != nil {
			t.Fatal(err)
		}
	}

	// Kill n5: every other node sees it dead; time it.
	c.Stop(t, n5)
	killed := time.Now()
	id5 := c.Slot(n5).ID
	c.Eventually(t, 15*time.Second, func() error {
		for i := 0; i < c.Size(); i++ {
			n := c.Node(i)
			if n == nil {
				continue
			}
			for _, m := range n.ClusterInfo().Nodes {
				if m.ID == id5 && m.State != api.NodeDead {
					return fmt.Errorf("%s sees %s as %s", n.ID(), id5, m.State)
				}
			}
		}
		return nil
	})
	t.Logf("every node saw the killed node as dead after %s", time.Since(killed).Round(time.Millisecond))

	// After DeadVoterTimeout the dead voter is demoted; 4 live nodes give
	// 3 voters, one per region.
	c.Eventually(t, 30*time.Second, func() error {
		info := clusterOf(t, c)
		voters, per := votersByRegion(info)
		if len(voters) != 3 || len(per) != 3 {
			return fmt.Errorf("voters %v per region %v", voters, per)
		}
		for _, v := range voters {
			if v == id5 {
				return fmt.Errorf("dead node still a voter")
			}
		}
		return nil
	})

	// Remove n4 for good: it stays out although it is alive in gossip.
	leader := c.WaitLeader(t)
	id4 := c.Slot(n4).ID
	if err := c.Node(leader).RemoveNode(ctx, "", id4); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		// The removed node no longer follows the cluster: ask the leader.
		for _, n := range c.Node(leader).ClusterInfo().Nodes {
			if n.ID == id4 && (n.Voter || n.NonVoter) {
				t.Fatalf("removed node %s is back in the Raft configuration", id4)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	voters, per := votersByRegion(c.Node(leader).ClusterInfo())
	if err := noRegionQuorum(voters, per); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(voters, ","), c.Slot(leader).ID) {
		t.Fatalf("leader not a voter: %v", voters)
	}
}
