package node_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	dto "github.com/prometheus/client_model/go"

	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/node"
)

// raftCounter reads one of a node's counters from its registry.
func raftCounter(t *testing.T, n *node.Node, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := n.Metrics().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	fams := map[string]*dto.MetricFamily{}
	for _, f := range mfs {
		fams[f.GetName()] = f
	}
	v, ok := value(fams, name, labels...)
	if !ok {
		t.Fatalf("%s: no %s %v", n.ID(), name, labels)
	}
	return v
}

// fastCluster is a converged 3-node cluster with the WAN profile: its
// heartbeat timeout (2s) is far above its leader lease (1s), where the
// fast path puts the election, so the mechanism is told apart from the
// normal timeouts by the counters, not by timing.
func fastCluster(t *testing.T) (*testcluster.Cluster, int) {
	t.Helper()
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Configure: func(_ int, cfg *node.Config) {
		cfg.Timing = node.TimingWAN
	}})
	li := c.WaitLeader(t)
	leaderID := c.Node(li).ID()
	c.Eventually(t, 20*time.Second, func() error {
		for i := 0; i < c.Size(); i++ {
			if id, _ := c.Node(i).Leader(); id != leaderID {
				return fmt.Errorf("%s follows %q", c.Node(i).ID(), id)
			}
		}
		return nil
	})
	return c, li
}

// TestFastElectionAfterLeaderStop stops the leader the way a crash does
// for its peers (its sockets close, its Raft port refuses dials, no
// leadership transfer): a survivor starts the election on that evidence
// (keyd_raft_fast_elections_total) and a new leader is elected.
func TestFastElectionAfterLeaderStop(t *testing.T) {
	c, li := fastCluster(t)
	old := c.Node(li).ID()
	c.Stop(t, li)
	nl := c.WaitLeader(t)
	if id := c.Node(nl).ID(); id == old {
		t.Fatalf("leader still %s", id)
	}
	var fast, refused float64
	for i := 0; i < c.Size(); i++ {
		if i == li {
			continue
		}
		n := c.Node(i)
		fast += raftCounter(t, n, "keyd_raft_fast_elections_total")
		refused += raftCounter(t, n, "keyd_raft_leader_probes_total", "result", "refused")
		// The profile's timeouts come back once a leader is known.
		c.Eventually(t, 10*time.Second, func() error {
			if got := n.RaftTimeouts(); got != node.TimingWAN {
				return fmt.Errorf("%s: timeouts %+v, want the profile's", n.ID(), got)
			}
			return nil
		})
	}
	if refused == 0 {
		t.Errorf("no survivor found the stopped leader's port refusing dials")
	}
	if fast == 0 {
		t.Errorf("no survivor started a fast election; the new leader came from the normal timeouts")
	}
}

// TestNoFastElectionWhileLeaderAlive ends the leader's connections to a
// follower while the leader runs (its port open): the follower probes the
// leader, finds it alive and starts no election.
func TestNoFastElectionWhileLeaderAlive(t *testing.T) {
	c, li := fastCluster(t)
	fi := (li + 1) % c.Size()
	f := c.Node(fi)
	term := c.Node(li).RaftTerm()
	addr := raft.ServerAddress(c.Slot(fi).RaftAddr)
	for round := 0; round < 3; round++ {
		before := raftCounter(t, f, "keyd_raft_leader_probes_total", "result", "open")
		// Block closes the leader's connections to the follower;
		// Unblock lets it redial at once.
		c.Slot(li).Faults.Block(addr)
		c.Slot(li).Faults.Unblock(addr)
		c.Eventually(t, 10*time.Second, func() error {
			if raftCounter(t, f, "keyd_raft_leader_probes_total", "result", "open") <= before {
				return fmt.Errorf("%s did not probe the leader", f.ID())
			}
			return nil
		})
	}
	for i := 0; i < c.Size(); i++ {
		n := c.Node(i)
		if v := raftCounter(t, n, "keyd_raft_fast_elections_total"); v != 0 {
			t.Errorf("%s: %v fast elections with the leader alive", n.ID(), v)
		}
		if v := raftCounter(t, n, "keyd_raft_leader_probes_total", "result", "refused"); v != 0 {
			t.Errorf("%s: leader's port refused %v dials while it ran", n.ID(), v)
		}
		if got := n.RaftTerm(); got != term {
			t.Errorf("%s: term %d, was %d: an election happened", n.ID(), got, term)
		}
	}
}
