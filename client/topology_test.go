package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/keyd/keyd/api"
)

// exactCalls counts the requests host got for exactly method and path.
func (s *simNet) exactCalls(host, method, path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		if c.Host == host && c.Method == method && c.Path == path {
			n++
		}
	}
	return n
}

// topo builds a topology of nodes given as "host:port region state" with
// optional flags "leader" and "sealed".
func topo(specs ...string) *api.ClusterInfo {
	ci := &api.ClusterInfo{Node: "x", Index: 7}
	for _, spec := range specs {
		f := strings.Fields(spec)
		cn := api.ClusterNode{ID: "id-" + f[0], APIAddr: f[0], Region: f[1], State: f[2], Voter: true}
		for _, flag := range f[3:] {
			switch flag {
			case "leader":
				cn.Leader = true
				ci.Leader, ci.LeaderID = f[0], cn.ID
			case "sealed":
				cn.Sealed = true
			}
		}
		ci.Nodes = append(ci.Nodes, cn)
	}
	return ci
}

func newSimClient(t *testing.T, s *simNet, cfg Config) *Client {
	t.Helper()
	cfg.HTTPClient = s.client()
	if cfg.Token == "" {
		cfg.Token = "tok"
	}
	c, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func TestTopologyLearnedInNew(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := newSimNet("s:1", "l:1", "u:1")
		s.leader = "l:1"
		s.setCluster(topo("s:1 eu alive", "l:1 us alive leader", "u:1 us alive"))
		c := newSimClient(t, s, Config{Addrs: []string{"s:1"}, Region: "us"})
		defer c.Close()

		got := c.Topology()
		if len(got) != 3 || got[1].Region != "us" || !got[1].Leader {
			t.Fatalf("Topology after New: got %+v, want the 3 nodes of the cluster", got)
		}
		got[0].ID = "mutated"
		if c.Topology()[0].ID == "mutated" {
			t.Errorf("Topology: got a shared slice, want a copy")
		}
		for range 4 {
			if _, err := c.Encrypt(t.Context(), "k", []byte("x"), nil); err != nil {
				t.Fatalf("Encrypt: %v", err)
			}
		}
		if n := s.hits("s:1", api.PathKeys); n != 0 {
			t.Errorf("crypto calls at the seed in another region: got %d, want 0", n)
		}
		if _, err := c.CreateKey(t.Context(), api.CreateKeyRequest{Name: "k"}); err != nil {
			t.Fatalf("CreateKey: %v", err)
		}
		for _, h := range []string{"s:1", "u:1"} {
			if n := s.exactCalls(h, http.MethodPost, api.PathKeys); n != 0 {
				t.Errorf("writes at follower %s: got %d, want 0 (the leader is known)", h, n)
			}
		}
		if n := s.exactCalls("l:1", http.MethodPost, api.PathKeys); n != 1 {
			t.Errorf("writes at leader: got %d, want 1", n)
		}
	})
}

func TestTopologyFallback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		token     string
		noCluster int
		noTopo    bool // serve no cluster at all (404 from every node)
		wantState string
		wantAsked bool // /v1/sys/cluster was asked
	}{
		{"cluster", "tok", 0, false, api.NodeAlive, true},
		{"no token", "", 0, false, api.NodeUnknown, false},
		{"401", "tok", http.StatusUnauthorized, false, api.NodeUnknown, true},
		{"403", "tok", http.StatusForbidden, false, api.NodeUnknown, true},
		{"sealed", "tok", http.StatusServiceUnavailable, false, api.NodeUnknown, true},
		{"404", "tok", 0, true, api.NodeUnknown, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				s := newSimNet("a:1", "b:1")
				s.leader = "b:1"
				if !tt.noTopo {
					s.setCluster(topo("a:1 eu alive", "b:1 eu alive leader"))
				}
				s.set("a:1", func(n *simNode) { n.noCluster = tt.noCluster })
				c, err := New(t.Context(), Config{Addrs: []string{"a:1"}, Token: tt.token, RefreshInterval: -1, HTTPClient: s.client()})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				got := c.Topology()
				if len(got) != 2 {
					t.Fatalf("Topology: got %+v, want 2 nodes", got)
				}
				for _, n := range got {
					if n.State != tt.wantState {
						t.Errorf("node %s: got state %q, want %q", n.APIAddr, n.State, tt.wantState)
					}
				}
				if asked := s.hits("a:1", api.PathCluster) > 0; asked != tt.wantAsked {
					t.Errorf("cluster asked: got %v, want %v", asked, tt.wantAsked)
				}
				if _, err := c.RotateKey(t.Context(), "k"); err != nil {
					t.Fatalf("RotateKey: %v", err)
				}
				if n := s.hits("a:1", api.KeyPath("k", "rotate")); n != 0 {
					t.Errorf("writes at the follower: got %d, want 0 (leader learned from %s)", n, tt.name)
				}
			})
		})
	}
}

func TestCryptoRouting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		region string
		topo   *api.ClusterInfo
		want   []string // hosts that may serve; the others must get nothing
	}{
		{"local alive", "us", topo("a:1 eu alive leader", "b:1 us alive", "c:1 us alive"), []string{"b:1", "c:1"}},
		{"local sealed", "us", topo("a:1 eu alive leader", "b:1 us alive sealed", "c:1 us alive sealed"), []string{"a:1"}},
		{"local dead or left", "us", topo("a:1 eu alive leader", "b:1 us dead", "c:1 us left"), []string{"a:1"}},
		{"local suspect", "us", topo("a:1 eu alive", "b:1 us suspect", "c:1 us suspect leader"), []string{"a:1"}},
		{"all dead still tried", "us", topo("a:1 eu dead", "b:1 us dead", "c:1 us dead"), []string{"a:1", "b:1", "c:1"}},
		{"no region", "", topo("a:1 eu alive", "b:1 us dead", "c:1 us alive"), []string{"a:1", "c:1"}},
		{"unknown region", "ap", topo("a:1 eu sealed", "b:1 us alive", "c:1 us alive"), []string{"b:1", "c:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				s := newSimNet("a:1", "b:1", "c:1")
				s.setCluster(tt.topo)
				c := newSimClient(t, s, Config{Addrs: []string{"a:1", "b:1", "c:1"}, Region: tt.region})
				defer c.Close()
				for range 6 {
					if _, err := c.Encrypt(t.Context(), "k", []byte("x"), nil); err != nil {
						t.Fatalf("Encrypt: %v", err)
					}
				}
				served := 0
				for _, h := range []string{"a:1", "b:1", "c:1"} {
					n := s.hits(h, api.PathKeys)
					served += n
					if n > 0 && !slices.Contains(tt.want, h) {
						t.Errorf("crypto calls at %s: got %d, want 0 (want only %v)", h, n, tt.want)
					}
				}
				if served != 6 {
					t.Errorf("crypto calls: got %d, want 6 (one attempt each)", served)
				}
			})
		})
	}
}

// TestCryptoFailoverWithoutBackoff checks that a crypto call whose node
// fails moves to the next node at once: in a synctest bubble no backoff
// means no time passes at all.
func TestCryptoFailoverWithoutBackoff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		fail     func(s *simNet, first string) // breaks nodes after the first call
		wantHost string                        // "" means any of the us nodes
		wantWait bool                          // every node fails at first: a backoff is due
	}{
		{"preferred node killed", func(s *simNet, first string) {
			s.set(first, func(n *simNode) { n.down = true })
		}, "", false},
		{"preferred killed, other local sealed", func(s *simNet, _ string) {
			s.set("b:1", func(n *simNode) { n.down = true })
			s.set("c:1", func(n *simNode) { n.sealed = true })
		}, "a:1", false},
		{"all sealed", func(s *simNet, _ string) {
			for _, h := range []string{"a:1", "b:1", "c:1"} {
				s.set(h, func(n *simNode) { n.sealed = true })
			}
		}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				s := newSimNet("a:1", "b:1", "c:1")
				s.leader = "b:1"
				s.setCluster(topo("a:1 eu alive", "b:1 us alive leader", "c:1 us alive"))
				c := newSimClient(t, s, Config{Addrs: []string{"b:1"}, Region: "us", RefreshInterval: time.Hour})
				defer c.Close()
				r, err := c.Encrypt(t.Context(), "k", []byte("x"), nil)
				if err != nil {
					t.Fatalf("Encrypt: %v", err)
				}
				first := strings.TrimPrefix(r.Ciphertext, "keyd:v1:")
				if first != "b:1" && first != "c:1" {
					t.Fatalf("first Encrypt served by %s, want a us node", first)
				}
				tt.fail(s, first)
				if tt.wantWait {
					ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
					defer cancel()
					start := time.Now()
					_, err := c.Encrypt(ctx, "k", []byte("x"), nil)
					if !errors.Is(err, api.ErrSealed) {
						t.Fatalf("Encrypt: got %v, want ErrSealed", err)
					}
					if time.Since(start) == 0 {
						t.Errorf("Encrypt with every node sealed: no backoff, want one between rounds")
					}
					return
				}
				start := time.Now()
				r, err = c.Encrypt(t.Context(), "k", []byte("x"), nil)
				if err != nil {
					t.Fatalf("Encrypt after failure: %v", err)
				}
				if d := time.Since(start); d != 0 {
					t.Errorf("Encrypt after failure took %v of fake time, want 0 (no backoff)", d)
				}
				got := strings.TrimPrefix(r.Ciphertext, "keyd:v1:")
				if tt.wantHost != "" && got != tt.wantHost {
					t.Errorf("served by %s, want %s", got, tt.wantHost)
				}
				if got == first {
					t.Errorf("served by the failed node %s", got)
				}
			})
		})
	}
}

func TestWriteFollowsNewLeaderAfterKill(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := newSimNet("a:1", "b:1", "c:1")
		s.leader = "a:1"
		s.setCluster(topo("a:1 eu alive leader", "b:1 eu alive", "c:1 eu alive"))
		c := newSimClient(t, s, Config{Addrs: []string{"b:1"}, MaxRetries: 10})
		defer c.Close()
		s.set("a:1", func(n *simNode) { n.down = true })
		s.mu.Lock()
		s.leader = "c:1"
		s.cluster = topo("a:1 eu dead", "b:1 eu alive", "c:1 eu alive leader")
		s.mu.Unlock()
		if _, err := c.CreateKey(t.Context(), api.CreateKeyRequest{Name: "k"}); err != nil {
			t.Fatalf("CreateKey: %v", err)
		}
		calls := s.callsTo(api.PathKeys)
		var ids []string
		for _, cl := range calls {
			if cl.Path == api.PathKeys {
				ids = append(ids, cl.RequestID)
			}
		}
		if len(ids) == 0 || slices.Compact(slices.Clone(ids))[0] != ids[0] || len(slices.Compact(slices.Clone(ids))) != 1 {
			t.Errorf("request ids: got %v, want one id reused by every attempt", ids)
		}
		if n := s.exactCalls("c:1", http.MethodPost, api.PathKeys); n != 1 {
			t.Errorf("writes at the new leader: got %d, want 1", n)
		}
	})
}

func TestBackgroundRefresh(t *testing.T) {
	t.Parallel()
	t.Run("periodic", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			s := newSimNet("a:1", "b:1", "c:1")
			s.setCluster(topo("a:1 eu alive leader", "b:1 eu alive"))
			c := newSimClient(t, s, Config{Addrs: []string{"a:1"}, RefreshInterval: 10 * time.Second})
			defer c.Close()
			if n := len(c.Topology()); n != 2 {
				t.Fatalf("Topology: got %d nodes, want 2", n)
			}
			s.setCluster(topo("a:1 eu alive leader", "b:1 eu alive", "c:1 eu alive"))
			time.Sleep(9 * time.Second)
			synctest.Wait()
			if n := len(c.Topology()); n != 2 {
				t.Fatalf("Topology before the interval: got %d nodes, want 2", n)
			}
			time.Sleep(2 * time.Second)
			synctest.Wait()
			if n := len(c.Topology()); n != 3 {
				t.Fatalf("Topology after the interval: got %d nodes, want 3", n)
			}
		})
	})
	t.Run("after not_leader", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			s := newSimNet("a:1", "b:1", "c:1")
			s.leader = "a:1"
			s.setCluster(topo("a:1 eu alive leader", "b:1 eu alive"))
			c := newSimClient(t, s, Config{Addrs: []string{"a:1"}, RefreshInterval: time.Hour})
			defer c.Close()
			s.mu.Lock()
			s.leader = "c:1"
			s.cluster = topo("a:1 eu alive", "b:1 eu alive", "c:1 eu alive leader")
			s.mu.Unlock()
			if _, err := c.RotateKey(t.Context(), "k"); err != nil {
				t.Fatalf("RotateKey: %v", err)
			}
			time.Sleep(2 * refreshEvery)
			synctest.Wait()
			got := c.Topology()
			if len(got) != 3 || !got[2].Leader {
				t.Fatalf("Topology after not_leader: got %+v, want c:1 as leader", got)
			}
		})
	})
	t.Run("off", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			s := newSimNet("a:1", "b:1")
			s.setCluster(topo("a:1 eu alive leader"))
			c := newSimClient(t, s, Config{Addrs: []string{"a:1"}, RefreshInterval: -1})
			defer c.Close()
			if c.kickC != nil {
				t.Fatalf("refresh goroutine started with RefreshInterval < 0")
			}
			s.setCluster(topo("a:1 eu alive leader", "b:1 eu alive"))
			time.Sleep(time.Hour)
			if n := len(c.Topology()); n != 1 {
				t.Errorf("Topology with refresh off: got %d nodes, want 1", n)
			}
		})
	})
}

func TestNewWithoutReachableNode(t *testing.T) {
	t.Parallel()
	for _, interval := range []time.Duration{0, -1} {
		t.Run(interval.String(), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				s := newSimNet("a:1", "b:1")
				s.leader = "b:1"
				s.setCluster(topo("a:1 eu alive", "b:1 eu alive leader"))
				s.set("a:1", func(n *simNode) { n.down = true })
				start := time.Now()
				c := newSimClient(t, s, Config{Addrs: []string{"a:1"}, RefreshInterval: interval})
				defer c.Close()
				if d := time.Since(start); d > DefaultTimeout {
					t.Errorf("New took %v, want at most %v", d, DefaultTimeout)
				}
				if got := c.Topology(); got != nil {
					t.Fatalf("Topology with no node reachable: got %+v, want nil", got)
				}
				s.set("a:1", func(n *simNode) { n.down = false })
				time.Sleep(maxFailDelay)
				synctest.Wait()
				if interval == 0 {
					if n := len(c.Topology()); n != 2 {
						t.Errorf("Topology after the seed came back: got %d nodes, want 2 (background retry)", n)
					}
				}
				// Either way, a write learns the leader lazily and goes there.
				if _, err := c.RotateKey(t.Context(), "k"); err != nil {
					t.Fatalf("RotateKey: %v", err)
				}
				if n := s.hits("a:1", api.KeyPath("k", "rotate")); n != 0 {
					t.Errorf("writes at the follower: got %d, want 0", n)
				}
			})
		})
	}
}

func TestCloseStopsRefresh(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := newSimNet("a:1")
		s.setCluster(topo("a:1 eu alive leader"))
		c := newSimClient(t, s, Config{Addrs: []string{"a:1"}, RefreshInterval: time.Second})
		c.Close()
		select {
		case <-c.done:
		default:
			t.Fatalf("refresh goroutine still running after Close")
		}
		before := s.hits("a:1", api.PathCluster)
		time.Sleep(10 * time.Second)
		if after := s.hits("a:1", api.PathCluster); after != before {
			t.Errorf("topology requests after Close: got %d more, want 0", after-before)
		}
		if _, err := c.Cluster(t.Context()); !errors.Is(err, ErrClosed) {
			t.Errorf("Cluster after Close: got %v, want ErrClosed", err)
		}
		if n := len(c.Topology()); n != 1 {
			t.Errorf("Topology after Close: got %d nodes, want the last known 1", n)
		}
	})
}

func TestStatusDoesNotReplaceFullTopology(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := newSimNet("a:1", "b:1")
		s.setCluster(topo("a:1 eu alive leader", "b:1 us alive"))
		c := newSimClient(t, s, Config{Addrs: []string{"a:1"}})
		defer c.Close()
		if _, err := c.Status(t.Context()); err != nil {
			t.Fatalf("Status: %v", err)
		}
		for _, n := range c.Topology() {
			if n.State != api.NodeAlive || n.Region == "" {
				t.Errorf("node %s after Status: got state %q region %q, want the full topology kept", n.APIAddr, n.State, n.Region)
			}
		}
	})
}

func TestClusterJoinRemove(t *testing.T) {
	t.Parallel()
	a, b := newFakeNode(t), newFakeNode(t)
	ci := &api.ClusterInfo{Node: "a", LeaderID: "a", Leader: a.hostPort(), Index: 9, Nodes: []api.ClusterNode{
		{ID: "a", Region: "eu", APIAddr: a.hostPort(), Voter: true, Leader: true, State: api.NodeAlive, HSMOK: true},
		{ID: "b", Region: "us", APIAddr: b.hostPort(), NonVoter: true, State: api.NodeSuspect, LastContactMS: 1200},
	}}
	a.cluster, b.cluster = ci, ci
	c := newTestClient(t, Config{Addrs: []string{a.addr()}, TLS: tlsConfigFor(a, b)})

	t.Run("cluster", func(t *testing.T) {
		got, err := c.Cluster(t.Context())
		if err != nil {
			t.Fatalf("Cluster: %v", err)
		}
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(ci)
		if string(gb) != string(wb) {
			t.Errorf("Cluster: got %s, want %s", gb, wb)
		}
		if tb, _ := json.Marshal(c.Topology()); string(tb) != mustJSON(ci.Nodes) {
			t.Errorf("Topology: got %s, want %s", tb, mustJSON(ci.Nodes))
		}
	})
	t.Run("cluster without token", func(t *testing.T) {
		c2, err := New(t.Context(), Config{Addrs: []string{a.addr()}, TLS: tlsConfigFor(a), MaxRetries: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		if _, err := c2.Cluster(t.Context()); !errors.Is(err, api.ErrUnauthorized) {
			t.Errorf("Cluster without token: got %v, want ErrUnauthorized", err)
		}
	})
	t.Run("join", func(t *testing.T) {
		seeds := []string{"10.0.0.1:7946", "10.0.0.2:7946"}
		before := len(a.requests(http.MethodPost, api.PathJoin))
		r, err := c.Join(t.Context(), b.hostPort(), seeds)
		if err != nil {
			t.Fatalf("Join: %v", err)
		}
		if r.Contacted != 2 {
			t.Errorf("Contacted: got %d, want 2", r.Contacted)
		}
		got := b.requests(http.MethodPost, api.PathJoin)
		if len(got) != 1 {
			t.Fatalf("join requests at the new node: got %d, want 1", len(got))
		}
		var req api.JoinRequest
		if err := json.Unmarshal(got[0].Body, &req); err != nil || !slices.Equal(req.Seeds, seeds) {
			t.Errorf("join body: got %s, want seeds %v", got[0].Body, seeds)
		}
		if n := len(a.requests(http.MethodPost, api.PathJoin)) - before; n != 0 {
			t.Errorf("join requests at another node: got %d, want 0", n)
		}
		if _, err := c.Join(t.Context(), b.hostPort(), nil); !errors.Is(err, api.ErrBadRequest) {
			t.Errorf("Join without seeds: got %v, want ErrBadRequest", err)
		}
		if _, err := c.Join(t.Context(), "http://x:1", seeds); !errors.Is(err, ErrInvalidAddr) {
			t.Errorf("Join with a bad address: got %v, want ErrInvalidAddr", err)
		}
	})
	t.Run("remove", func(t *testing.T) {
		// b is a follower: it points writes at a, as a node without
		// forwarding would.
		b.setHook(func(_ *fakeNode, w http.ResponseWriter, r *http.Request, _ []byte) bool {
			if isWrite(r) {
				writeErr(w, api.CodeNotLeader, "not the leader", a.hostPort())
				return true
			}
			return false
		})
		a.mu.Lock()
		a.dropAfterApply = 1 // the first reply is lost: the retry must not apply twice
		a.mu.Unlock()
		if err := c.Remove(t.Context(), "b"); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		got := a.requests(http.MethodPost, api.PathRemove)
		if len(got) != 2 || got[0].RequestID == "" || got[0].RequestID != got[1].RequestID {
			t.Fatalf("remove attempts: got %+v, want 2 with one request id", got)
		}
		a.mu.Lock()
		applied := a.applied[got[0].RequestID]
		a.mu.Unlock()
		if applied != 1 {
			t.Errorf("remove applied: got %d, want 1", applied)
		}
		if n := len(b.requests(http.MethodPost, api.PathRemove)); n > 1 {
			t.Errorf("remove at a follower: got %d, want at most 1 (after the leader's connection broke)", n)
		}
		if err := c.Remove(t.Context(), ""); !errors.Is(err, api.ErrBadRequest) {
			t.Errorf("Remove(\"\"): got %v, want ErrBadRequest", err)
		}
	})
}

func TestRemoveEmptyReply(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := newSimNet("a:1", "b:1")
		s.leader = "b:1"
		s.setCluster(topo("a:1 eu alive", "b:1 eu alive leader"))
		c := newSimClient(t, s, Config{Addrs: []string{"a:1"}})
		defer c.Close()
		if err := c.Remove(t.Context(), "id-a:1"); err != nil {
			t.Fatalf("Remove with an empty 200 reply: %v", err)
		}
		if n := s.exactCalls("b:1", http.MethodPost, api.PathRemove); n != 1 {
			t.Errorf("remove at the leader: got %d, want 1", n)
		}
	})
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// FuzzLearnCluster feeds arbitrary topology replies through decoding and
// learning: the node table stays bounded and the leader, when set, is a
// normalized address of a known node.
func FuzzLearnCluster(f *testing.F) {
	f.Add([]byte(mustJSON(topo("a:1 eu alive leader", "b:1 us dead"))))
	f.Add([]byte(`{"leader":"http://evil:1","nodes":[{"api_addr":"::::"},{"api_addr":"x:1","leader":true,"state":"left"}]}`))
	f.Add([]byte(`{"nodes":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var ci api.ClusterInfo
		if decodeReply(200, "application/json", data, &ci) != nil {
			return
		}
		c, err := New(t.Context(), Config{Addrs: []string{"seed:1"}, RefreshInterval: -1,
			HTTPClient: &http.Client{Transport: newSimNet()}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.learnCluster(&ci)
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.nodes) > maxNodes || len(c.nodes) != len(c.byAddr) {
			t.Fatalf("node table: got %d nodes, %d addresses; want equal and at most %d", len(c.nodes), len(c.byAddr), maxNodes)
		}
		if c.leader != "" {
			if u, err := normalizeAddr(c.leader); err != nil || u != c.leader || c.byAddr[c.leader] == nil {
				t.Fatalf("leader %q: not a known normalized address", c.leader)
			}
		}
		if len(c.topo) != len(ci.Nodes) {
			t.Fatalf("topology: got %d nodes, want %d", len(c.topo), len(ci.Nodes))
		}
		_ = c.pickLocked(time.Now(), nil)
	})
}
