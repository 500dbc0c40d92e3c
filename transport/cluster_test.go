package transport_test

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyd/keyd/transport"
	"github.com/keyd/keyd/transport/devcerts"
)

// waitTimeout bounds every poll in the raft tests; generous because the
// machine is shared and -race slows raft down.
const waitTimeout = 30 * time.Second

// listFSM records every applied command.
type listFSM struct {
	mu  sync.Mutex
	got []string
}

func (f *listFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, string(l.Data))
	return nil
}

func (f *listFSM) entries() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

func (f *listFSM) Snapshot() (raft.FSMSnapshot, error) {
	return nil, errors.New("test fsm: no snapshots")
}
func (f *listFSM) Restore(io.ReadCloser) error { return errors.New("test fsm: no snapshots") }

type testNode struct {
	id    string
	raft  *raft.Raft
	fsm   *listFSM
	fault *transport.FaultLayer // nil unless the cluster was built with faults
}

// newRaftCluster starts n raft nodes on 127.0.0.1:0, each over its own
// transport.Layer (wrapped in a FaultLayer when faults is set), all with
// certificates from one devcerts CA, and bootstraps them as one cluster.
// Cleanup shuts every node down.
func newRaftCluster(t *testing.T, n int, faults bool) []*testNode {
	t.Helper()
	ca := newCA(t, "cluster")
	layers := make([]raft.StreamLayer, n)
	nodes := make([]*testNode, n)
	var servers []raft.Server
	for i := range n {
		id := fmt.Sprintf("n%d", i)
		l := newLayer(t, ca, id)
		nodes[i] = &testNode{id: id, fsm: &listFSM{}}
		layers[i] = l
		if faults {
			nodes[i].fault = transport.NewFaultLayer(l)
			layers[i] = nodes[i].fault
		}
		servers = append(servers, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(l.Addr().String())})
	}
	for i, nd := range nodes {
		cfg := raft.DefaultConfig()
		cfg.LocalID = raft.ServerID(nd.id)
		cfg.HeartbeatTimeout = 500 * time.Millisecond
		cfg.ElectionTimeout = 500 * time.Millisecond
		cfg.LeaderLeaseTimeout = 250 * time.Millisecond
		cfg.LogOutput = testLogOutput(nd.id)
		cfg.LogLevel = cmp.Or(os.Getenv("KEYD_RAFT_LOG_LEVEL"), "ERROR")
		trans := raft.NewNetworkTransport(layers[i], 3, 2*time.Second, io.Discard)
		r, err := raft.NewRaft(cfg, nd.fsm, raft.NewInmemStore(), raft.NewInmemStore(), raft.NewInmemSnapshotStore(), trans)
		if err != nil {
			t.Fatalf("NewRaft %s: %v", nd.id, err)
		}
		nd.raft = r
		t.Cleanup(func() {
			if err := r.Shutdown().Error(); err != nil {
				t.Errorf("shutdown %s: %v", nd.id, err)
			}
			_ = trans.Close()
		})
	}
	if err := nodes[0].raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	return nodes
}

func newLayer(t testing.TB, ca *devcerts.CA, id string) *transport.Layer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := transport.NewLayer(ln, nodeIdentity(t, ca, id), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// waitLeader polls until one node of among reports itself leader and
// returns it.
func waitLeader(t *testing.T, among []*testNode) *testNode {
	t.Helper()
	var leader *testNode
	waitFor(t, waitTimeout, "a leader", func() bool {
		for _, nd := range among {
			if nd.raft.State() == raft.Leader {
				leader = nd
				return true
			}
		}
		return false
	})
	return leader
}

// apply commits data through whichever of among is leader, retrying while
// leadership moves.
func apply(t *testing.T, among []*testNode, data string) {
	t.Helper()
	var last error
	waitFor(t, waitTimeout, "apply "+data, func() bool {
		for _, nd := range among {
			if nd.raft.State() != raft.Leader {
				continue
			}
			last = nd.raft.Apply([]byte(data), 5*time.Second).Error()
			return last == nil
		}
		return false
	})
}

// waitEntries polls until every node in nodes has applied exactly want,
// counting an entry repeated back to back once: apply retries after an
// ambiguous error (ErrLeadershipLost, timeout), and the first attempt may
// still have committed.
func waitEntries(t *testing.T, nodes []*testNode, want []string) {
	t.Helper()
	waitFor(t, waitTimeout, fmt.Sprintf("entries %q on all nodes", want), func() bool {
		for _, nd := range nodes {
			if !slices.Equal(slices.Compact(nd.fsm.entries()), want) {
				return false
			}
		}
		return true
	})
}

func TestRaftClusterOverLayer(t *testing.T) {
	t.Parallel()
	nodes := newRaftCluster(t, 3, false)
	leader := waitLeader(t, nodes)
	if err := leader.raft.Apply([]byte("x"), 5*time.Second).Error(); err != nil {
		t.Fatalf("Apply on leader %s: %v", leader.id, err)
	}
	waitEntries(t, nodes, []string{"x"})
}

func TestFaultIsolateLeader(t *testing.T) {
	t.Parallel()
	nodes := newRaftCluster(t, 3, true)
	apply(t, nodes, "before")
	waitEntries(t, nodes, []string{"before"})

	old := waitLeader(t, nodes)
	var rest []*testNode
	for _, nd := range nodes {
		if nd != old {
			rest = append(rest, nd)
		}
	}
	old.fault.Isolate()
	waitLeader(t, rest)
	apply(t, rest, "during")
	waitEntries(t, rest, []string{"before", "during"})
	if got := slices.Compact(old.fsm.entries()); !slices.Equal(got, []string{"before"}) {
		t.Fatalf("isolated node applied %q, want only [before]", got)
	}

	old.fault.Heal()
	apply(t, nodes, "after")
	waitEntries(t, nodes, []string{"before", "during", "after"})
	waitFor(t, waitTimeout, "one leader agreed by all", func() bool {
		addr, id := nodes[0].raft.LeaderWithID()
		if id == "" {
			return false
		}
		for _, nd := range nodes[1:] {
			if a, i := nd.raft.LeaderWithID(); a != addr || i != id {
				return false
			}
		}
		return true
	})
}

func TestFaultSymmetricPartition(t *testing.T) {
	t.Parallel()
	nodes := newRaftCluster(t, 3, true)
	// Partition only a converged cluster: a follower that has not yet
	// received the bootstrap configuration cannot campaign.
	apply(t, nodes, "before")
	waitEntries(t, nodes, []string{"before"})
	old := waitLeader(t, nodes)
	var rest []*testNode
	for _, nd := range nodes {
		if nd != old {
			rest = append(rest, nd)
		}
	}
	// Cut old from both others, in both directions, by blocking on each
	// side of each link.
	for _, nd := range rest {
		old.fault.Block(addrOf(nd))
		nd.fault.Block(addrOf(old))
	}
	waitLeader(t, rest)
	apply(t, rest, "during")
	waitEntries(t, rest, []string{"before", "during"})
	if got := slices.Compact(old.fsm.entries()); !slices.Equal(got, []string{"before"}) {
		t.Fatalf("partitioned node applied %q, want only [before]", got)
	}
	for _, nd := range nodes {
		nd.fault.Heal()
	}
	waitEntries(t, nodes, []string{"before", "during"})
}

func addrOf(nd *testNode) raft.ServerAddress {
	return raft.ServerAddress(nd.fault.Addr().String())
}

// testLogOutput keeps raft quiet unless KEYD_RAFT_LOG=1, for debugging.
func testLogOutput(id string) io.Writer {
	if os.Getenv("KEYD_RAFT_LOG") == "1" {
		return prefixWriter(id + " ")
	}
	return io.Discard
}

type prefixWriter string

func (p prefixWriter) Write(b []byte) (int, error) {
	_, err := os.Stderr.Write(append([]byte(p), b...))
	return len(b), err
}
