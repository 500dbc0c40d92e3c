package membership_test

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/keyd/keyd/internal/leakcheck"

	"github.com/keyd/keyd/membership"
)

func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m)
}

// testKey is a fixed cluster key for tests; it protects nothing.
var testKey = []byte("0123456789abcdef0123456789abcdef")

// metaBox holds a node's Meta behind a lock so tests can change it and call
// UpdateMeta, the way node/ will.
type metaBox struct {
	mu sync.Mutex
	m  membership.Meta
}

func (b *metaBox) get() membership.Meta {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m
}

func (b *metaBox) set(f func(*membership.Meta)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(&b.m)
}

type testNode struct {
	*membership.Gossip
	id   string
	meta *metaBox
}

// metaFor is the Meta node i publishes in the tests: three regions, distinct
// addresses, so a mix-up between nodes shows.
func metaFor(i int) membership.Meta {
	return membership.Meta{
		NodeID:   fmt.Sprintf("n%d", i),
		Region:   fmt.Sprintf("region-%d", i%3),
		APIAddr:  fmt.Sprintf("10.0.0.%d:8200", i+1),
		RaftAddr: fmt.Sprintf("10.0.0.%d:8201", i+1),
		Voter:    i < 3,
		Applied:  uint64(100 + i),
		HSMOK:    true,
		Version:  "0.1.0-test",
	}
}

// startNode starts node i on 127.0.0.1:0 and closes it at cleanup. mutate
// may adjust the config before New.
func startNode(t testing.TB, i int, profile membership.Profile, mutate func(*membership.Config)) *testNode {
	t.Helper()
	box := &metaBox{m: metaFor(i)}
	cfg := membership.Config{
		NodeID:    fmt.Sprintf("n%d", i),
		BindAddr:  "127.0.0.1:0",
		SecretKey: testKey,
		Profile:   profile,
		Meta:      box.get,
		Logger:    testLogger(),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	g, err := membership.New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.NodeID, err)
	}
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Errorf("Close(%s): %v", cfg.NodeID, err)
		}
	})
	return &testNode{Gossip: g, id: cfg.NodeID, meta: box}
}

// startCluster starts n nodes and joins each to node 0.
func startCluster(t testing.TB, n int, profile membership.Profile) []*testNode {
	t.Helper()
	nodes := make([]*testNode, n)
	for i := range nodes {
		nodes[i] = startNode(t, i, profile, nil)
	}
	for _, nd := range nodes[1:] {
		if _, err := nd.Join([]string{nodes[0].LocalAddr()}); err != nil {
			t.Fatalf("%s Join: %v", nd.id, err)
		}
	}
	return nodes
}

// testLogger logs memberlist's chatter to stderr when KEYD_TEST_DEBUG is set.
func testLogger() *slog.Logger {
	if os.Getenv("KEYD_TEST_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitFor polls cond until it holds or timeout passes, then fails with what.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// member returns id as seen by g.
func member(g *membership.Gossip, id string) (membership.Member, bool) {
	for _, m := range g.Members() {
		if m.NodeID == id {
			return m, true
		}
	}
	return membership.Member{}, false
}

// converged reports whether every node sees every other alive with its
// current Meta.
func converged(nodes []*testNode) bool {
	for _, obs := range nodes {
		ms := obs.Members()
		if len(ms) != len(nodes) {
			return false
		}
		for i, m := range ms { // sorted by NodeID; ids n0..n(k-1) sort the same for k <= 10
			if m.State != membership.StateAlive || m.Meta != nodes[i].meta.get() {
				return false
			}
		}
	}
	return true
}
