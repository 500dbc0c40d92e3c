package membership_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyd/keyd/membership"
)

func TestConvergeFive(t *testing.T) {
	t.Parallel()
	start := time.Now()
	nodes := startCluster(t, 5, membership.ProfileLocal)
	waitFor(t, 20*time.Second, "5 nodes to converge", func() bool { return converged(nodes) })
	t.Logf("5 nodes converged %v after the first New", time.Since(start))

	// Gossip addresses are the ones each node reports for itself.
	for i, m := range nodes[0].Members() {
		if got, want := m.GossipAddr, nodes[i].LocalAddr(); got != want {
			t.Errorf("%s GossipAddr: got %q, want %q", m.NodeID, got, want)
		}
	}
}

func TestUpdateMetaPropagates(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, membership.ProfileLocal)
	waitFor(t, 20*time.Second, "3 nodes to converge", func() bool { return converged(nodes) })

	nodes[1].meta.set(func(m *membership.Meta) { m.Sealed = true; m.Applied = 4242 })
	if err := nodes[1].UpdateMeta(5 * time.Second); err != nil {
		t.Fatalf("UpdateMeta: %v", err)
	}
	waitFor(t, 10*time.Second, "everyone to see n1 sealed at 4242", func() bool {
		for _, nd := range nodes {
			m, ok := member(nd.Gossip, "n1")
			if !ok || !m.Sealed || m.Applied != 4242 || m.State != membership.StateAlive {
				return false
			}
		}
		return true
	})
}

func TestUpdateMetaRejectsBadMeta(t *testing.T) {
	t.Parallel()
	nd := startNode(t, 0, membership.ProfileLocal, nil)
	nd.meta.set(func(m *membership.Meta) { m.Version = strings.Repeat("v", membership.MaxMetaSize) })
	if err := nd.UpdateMeta(time.Second); !errors.Is(err, membership.ErrMetaTooLarge) {
		t.Fatalf("got %v, want %v", err, membership.ErrMetaTooLarge)
	}
	// The last good Meta is still what the node publishes.
	if m, _ := member(nd.Gossip, "n0"); m.Meta != metaFor(0) {
		t.Fatalf("got %+v, want %+v", m.Meta, metaFor(0))
	}
}

// TestDeadDetection measures how long the LAN profile takes for every other
// node to see a crashed (closed without Leave) node as dead. It is not
// parallel so the figure is not skewed by other tests.
func TestDeadDetection(t *testing.T) {
	nodes := startCluster(t, 5, membership.ProfileLAN)
	waitFor(t, 20*time.Second, "5 nodes to converge", func() bool { return converged(nodes) })

	victim, others := nodes[4], nodes[:4]
	start := time.Now()
	if err := victim.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	seen := make([]time.Duration, len(others))
	waitFor(t, 20*time.Second, "all nodes to see n4 dead", func() bool {
		all := true
		for i, nd := range others {
			if seen[i] != 0 {
				continue
			}
			if m, ok := member(nd.Gossip, victim.id); ok && m.State == membership.StateDead {
				seen[i] = time.Since(start)
			} else {
				all = false
			}
		}
		return all
	})
	t.Logf("dead detection (LAN profile, 5 nodes, loopback): first %v, all %v, per node %v",
		slices.Min(seen), slices.Max(seen), seen)

	// The survivors stay alive to each other.
	for _, nd := range others {
		for _, m := range nd.Members() {
			if m.NodeID != victim.id && m.State != membership.StateAlive {
				t.Errorf("%s sees %s %s, want alive", nd.id, m.NodeID, m.State)
			}
		}
	}
}

func TestLeave(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, membership.ProfileLocal)
	waitFor(t, 20*time.Second, "3 nodes to converge", func() bool { return converged(nodes) })

	leaver := nodes[2]
	if err := leaver.Leave(5 * time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	waitFor(t, 10*time.Second, "everyone to see n2 left", func() bool {
		for _, nd := range nodes {
			if m, ok := member(nd.Gossip, leaver.id); !ok || m.State != membership.StateLeft {
				return false
			}
		}
		return true
	})

	if _, err := leaver.Join([]string{nodes[0].LocalAddr()}); !errors.Is(err, membership.ErrLeft) {
		t.Errorf("Join after Leave: got %v, want %v", err, membership.ErrLeft)
	}
	if err := leaver.UpdateMeta(time.Second); !errors.Is(err, membership.ErrLeft) {
		t.Errorf("UpdateMeta after Leave: got %v, want %v", err, membership.ErrLeft)
	}
	if err := leaver.Leave(time.Second); err != nil {
		t.Errorf("second Leave: got %v, want nil", err)
	}
}

func TestJoinRejected(t *testing.T) {
	t.Parallel()
	otherKey := []byte("fedcba9876543210fedcba9876543210")
	tests := []struct {
		name   string
		seed   func(*membership.Config)
		joiner func(*membership.Config)
	}{
		{"different key", nil, func(c *membership.Config) { c.SecretKey = otherKey }},
		{"different key size", nil, func(c *membership.Config) { c.SecretKey = otherKey[:16] }},
		{"joiner without key", nil, func(c *membership.Config) {
			c.SecretKey, c.InsecureNoEncryption = nil, true
		}},
		{"seed without key", func(c *membership.Config) {
			c.SecretKey, c.InsecureNoEncryption = nil, true
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			seed := startNode(t, 0, membership.ProfileLocal, tt.seed)
			joiner := startNode(t, 1, membership.ProfileLocal, tt.joiner)
			n, err := joiner.Join([]string{seed.LocalAddr()})
			if !errors.Is(err, membership.ErrJoin) || n != 0 {
				t.Fatalf("Join: got %d, %v; want 0, %v", n, err, membership.ErrJoin)
			}
			for _, nd := range []*testNode{seed, joiner} {
				if ms := nd.Members(); len(ms) != 1 || ms[0].NodeID != nd.id {
					t.Errorf("%s members: got %v, want only itself", nd.id, ms)
				}
			}
		})
	}
}

func TestJoinNoSeeds(t *testing.T) {
	t.Parallel()
	nd := startNode(t, 0, membership.ProfileLocal, nil)
	if _, err := nd.Join(nil); !errors.Is(err, membership.ErrJoin) {
		t.Fatalf("got %v, want %v", err, membership.ErrJoin)
	}
}

// TestOnChange checks that events arrive in order for joins, updates, and
// departures, and that an OnChange that blocks does not stall gossip.
func TestOnChange(t *testing.T) {
	t.Parallel()
	var (
		mu     sync.Mutex
		events []membership.Member
	)
	release := make(chan struct{})
	blocked := make(chan struct{}, 1)
	n0 := startNode(t, 0, membership.ProfileLocal, func(c *membership.Config) {
		c.OnChange = func(m membership.Member) {
			select {
			case blocked <- struct{}{}:
				<-release // hold up the first event until the cluster has converged
			default:
			}
			mu.Lock()
			events = append(events, m)
			mu.Unlock()
		}
	})
	// Registered after startNode, so it runs before Close (cleanups are LIFO).
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce)

	nodes := []*testNode{n0, startNode(t, 1, membership.ProfileLocal, nil), startNode(t, 2, membership.ProfileLocal, nil)}
	for _, nd := range nodes[1:] {
		if _, err := nd.Join([]string{n0.LocalAddr()}); err != nil {
			t.Fatalf("Join: %v", err)
		}
	}
	waitFor(t, 20*time.Second, "convergence with OnChange blocked", func() bool { return converged(nodes) })
	<-blocked
	releaseOnce()

	nodes[1].meta.set(func(m *membership.Meta) { m.HSMOK = false })
	if err := nodes[1].UpdateMeta(5 * time.Second); err != nil {
		t.Fatalf("UpdateMeta: %v", err)
	}
	if err := nodes[2].Leave(5 * time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	type ev struct {
		id    string
		state membership.State
	}
	want := []ev{{"n1", membership.StateAlive}, {"n2", membership.StateAlive}, {"n1", membership.StateAlive}, {"n2", membership.StateLeft}}
	waitFor(t, 10*time.Second, "n1 update and n2 departure events", func() bool {
		mu.Lock()
		defer mu.Unlock()
		var got []ev
		for _, m := range events {
			if m.NodeID != "n0" {
				got = append(got, ev{m.NodeID, m.State})
			}
		}
		return slices.Equal(got, want)
	})
	mu.Lock()
	defer mu.Unlock()
	if last := events[len(events)-2]; last.NodeID != "n1" || last.HSMOK {
		t.Errorf("update event: got %+v, want n1 with HSMOK false", last)
	}
}

func TestNewInvalidConfig(t *testing.T) {
	t.Parallel()
	ok := membership.Config{NodeID: "n1", BindAddr: "127.0.0.1:0", SecretKey: testKey}
	tests := []struct {
		name   string
		mutate func(*membership.Config)
		want   error
	}{
		{"no node id", func(c *membership.Config) { c.NodeID = "" }, membership.ErrInvalidConfig},
		{"no bind addr", func(c *membership.Config) { c.BindAddr = "" }, membership.ErrInvalidConfig},
		{"bad port", func(c *membership.Config) { c.BindAddr = "127.0.0.1:99999" }, membership.ErrInvalidConfig},
		{"bad advertise", func(c *membership.Config) { c.AdvertiseAddr = "10.0.0.1" }, membership.ErrInvalidConfig},
		{"no key", func(c *membership.Config) { c.SecretKey = nil }, membership.ErrInvalidConfig},
		{"short key", func(c *membership.Config) { c.SecretKey = testKey[:15] }, membership.ErrInvalidConfig},
		{"unknown profile", func(c *membership.Config) { c.Profile = "fast" }, membership.ErrInvalidConfig},
		{"meta too large", func(c *membership.Config) {
			c.Meta = func() membership.Meta { return membership.Meta{Region: strings.Repeat("r", 600)} }
		}, membership.ErrMetaTooLarge},
		{"meta invalid", func(c *membership.Config) {
			c.Meta = func() membership.Meta { return membership.Meta{Region: "\n"} }
		}, membership.ErrMetaInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := ok
			tt.mutate(&cfg)
			g, err := membership.New(cfg)
			if !errors.Is(err, tt.want) {
				if g != nil {
					_ = g.Close()
				}
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCloseIdempotentAndFinal(t *testing.T) {
	t.Parallel()
	nd := startNode(t, 0, membership.ProfileLocal, func(c *membership.Config) { c.OnChange = func(membership.Member) {} })
	for i := range 2 {
		if err := nd.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	if _, err := nd.Join([]string{"127.0.0.1:1"}); !errors.Is(err, membership.ErrClosed) {
		t.Errorf("Join: got %v, want %v", err, membership.ErrClosed)
	}
	if err := nd.UpdateMeta(time.Second); !errors.Is(err, membership.ErrClosed) {
		t.Errorf("UpdateMeta: got %v, want %v", err, membership.ErrClosed)
	}
	if err := nd.Leave(time.Second); !errors.Is(err, membership.ErrClosed) {
		t.Errorf("Leave: got %v, want %v", err, membership.ErrClosed)
	}
	if ms := nd.Members(); len(ms) != 1 || ms[0].Meta != metaFor(0) {
		t.Errorf("Members after Close: got %+v, want the last view of itself", ms)
	}
}

// BenchmarkConverge5 reports how long 5 fresh nodes joined through one seed
// take until every node sees all five alive with the right Meta.
func BenchmarkConverge5(b *testing.B) {
	var total time.Duration
	for b.Loop() {
		start := time.Now()
		nodes := make([]*testNode, 5)
		var closers []func() error
		for i := range nodes {
			g, err := membership.New(membership.Config{
				NodeID: metaFor(i).NodeID, BindAddr: "127.0.0.1:0", SecretKey: testKey,
				Profile: membership.ProfileLAN, Meta: func() membership.Meta { return metaFor(i) },
			})
			if err != nil {
				b.Fatal(err)
			}
			closers = append(closers, g.Close)
			nodes[i] = &testNode{Gossip: g, id: metaFor(i).NodeID, meta: &metaBox{m: metaFor(i)}}
		}
		for _, nd := range nodes[1:] {
			if _, err := nd.Join([]string{nodes[0].LocalAddr()}); err != nil {
				b.Fatal(err)
			}
		}
		waitFor(b, 20*time.Second, "convergence", func() bool { return converged(nodes) })
		total += time.Since(start)
		b.StopTimer()
		for _, c := range closers {
			_ = c()
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/converge")
}

// TestLogsGoThroughSlog checks that memberlist's own output reaches the
// configured logger with its levels mapped (a stream from a node with the
// wrong key is an error, not debug noise) and that the cluster key never
// does.
func TestLogsGoThroughSlog(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	seed := startNode(t, 0, membership.ProfileLocal, func(c *membership.Config) { c.Logger = logger })
	joiner := startNode(t, 1, membership.ProfileLocal, func(c *membership.Config) {
		c.SecretKey = []byte("fedcba9876543210")
	})
	if _, err := joiner.Join([]string{seed.LocalAddr()}); !errors.Is(err, membership.ErrJoin) {
		t.Fatalf("Join: got %v, want %v", err, membership.ErrJoin)
	}
	waitFor(t, 5*time.Second, "memberlist to log the rejected stream", func() bool {
		for line := range strings.Lines(buf.String()) {
			if strings.Contains(line, "lib=memberlist") && strings.Contains(line, "level=ERROR") {
				return true
			}
		}
		return false
	})
	for line := range strings.Lines(buf.String()) {
		if strings.Contains(line, "[ERR]") || strings.Contains(line, "[WARN]") || strings.Contains(line, "[DEBUG]") {
			t.Errorf("memberlist level prefix left in the message: %s", line)
		}
		if strings.Contains(line, string(testKey)) || strings.Contains(line, fmt.Sprintf("%x", testKey)) {
			t.Errorf("cluster key in log: %s", line)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
