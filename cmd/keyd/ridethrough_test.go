package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

// clusterEnv returns the client environment of an initialised, unsealed
// in-process cluster.
func clusterEnv(t *testing.T, c *testcluster.Cluster) map[string]string {
	t.Helper()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, c.CA.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return map[string]string{envAddr: strings.Join(c.Addrs(), ","), envToken: c.Token, envCACert: ca}
}

// silentAt listens on addr and accepts connections without ever
// answering, like a frozen process or a host that completes the TCP
// handshake and then hangs: a client must not wait on it for long. The
// listener is rebound until the closed node's port is free.
func silentAt(t *testing.T, addr string) {
	t.Helper()
	var ln net.Listener
	deadline := time.Now().Add(testcluster.Scaled(5 * time.Second))
	for {
		var err error
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rebind %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	holdSilently(t, ln)
}

// TestCLIRidesThroughLeaderKill kills the leader of a real 3-node cluster
// and at that moment starts `keyd key create`: the write must ride through
// the election (retrying with its request id) instead of failing with
// not_leader, say it waits for a leader rather than suggesting a lost
// quorum, and return within about 2 s even though the dead leader's
// address now accepts connections and never answers. `keyd status` then
// answers within about a second with one row per node.
func TestCLIRidesThroughLeaderKill(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	env := clusterEnv(t, c)
	if _, err := runCmd(t, env, "", "key", "create", "warm"); err != nil {
		t.Fatalf("key create before the kill: %v", err)
	}

	leader := c.WaitLeader(t)
	dead := c.Slot(leader).APIAddr
	c.Stop(t, leader)
	silentAt(t, dead)

	start := time.Now()
	out, stderr, err := runCmdErr(t, env, "", "key", "create", "during-election")
	took := time.Since(start)
	t.Logf("key create during the election took %s; stderr: %q", took, stderr)
	if err != nil {
		t.Fatalf("key create during the election: %v (%s); stderr %q", err, errorLine(err), stderr)
	}
	if !strings.Contains(out, "during-election") {
		t.Fatalf("key create: got %q, want the key", out)
	}
	if strings.Contains(stderr, "lost quorum") {
		t.Fatalf("stderr %q suggests a lost quorum during a normal election", stderr)
	}
	// The aim is 2 s on an idle machine; a loaded CI machine gets the usual
	// scale.
	if limit := testcluster.Scaled(2 * time.Second); took > limit {
		t.Fatalf("key create took %s, want under %s", took, limit)
	}
	if _, err := runCmd(t, env, "", "key", "read", "during-election"); err != nil {
		t.Fatalf("key read after the election: %v", err)
	}

	start = time.Now()
	js, stderr, err := runCmdErr(t, env, "", "status", "-json")
	took = time.Since(start)
	t.Logf("status with a node down took %s", took)
	if err != nil {
		t.Fatalf("status: %v; stderr %q", err, stderr)
	}
	if limit := testcluster.Scaled(1500 * time.Millisecond); took > limit {
		t.Fatalf("status took %s with a node down, want about a second (limit %s)", took, limit)
	}
	var rows []nodeStatus
	if err := json.Unmarshal([]byte(js), &rows); err != nil {
		t.Fatalf("status -json: %v in %q", err, js)
	}
	up := 0
	for _, r := range rows {
		if r.Status != nil {
			up++
		}
	}
	if len(rows) != 3 || up != 2 {
		t.Fatalf("status: got %d rows, %d answering, want 3 rows, 2 answering:\n%s", len(rows), up, js)
	}
}

// TestCLIGivesUpAtTimeout checks the other side: with no quorum at all the
// write keeps waiting until -timeout and then says so, instead of failing
// at once or hanging.
func TestCLIGivesUpAtTimeout(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	env := clusterEnv(t, c)
	leader := c.WaitLeader(t)
	c.Stop(t, leader)
	c.Stop(t, (leader+1)%3)

	start := time.Now()
	_, stderr, err := runCmdErr(t, env, "", "key", "create", "no-quorum", "-timeout", "1500ms")
	took := time.Since(start)
	if err == nil {
		t.Fatal("key create without quorum succeeded")
	}
	if took < 500*time.Millisecond || took > testcluster.Scaled(3*time.Second) {
		t.Fatalf("gave up after %s, want about the 1.5s timeout", took)
	}
	line := errorLine(err)
	if !strings.Contains(line, "gave up after -timeout 1.5s") || !strings.Contains(stderr, "waiting for a leader") {
		t.Fatalf("got error %q, stderr %q; want the timeout named and a waiting note", line, stderr)
	}
	if exitCode(err) != 1 {
		t.Fatalf("exit code %d, want 1", exitCode(err))
	}
}

// proxyTo listens on a new loopback port and relays every connection to
// target, like a published container port in front of a node's
// advertised address.
func proxyTo(t *testing.T, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { _, _ = io.Copy(u, c); u.Close() }()
				_, _ = io.Copy(c, u)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// TestStatusOneRowPerNode: a node reached at a seed address (a published
// port) and listed by its peers at its advertised address is one row, not
// two; a peer that does not answer keeps its row.
func TestStatusOneRowPerNode(t *testing.T) {
	t.Parallel()
	var self string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != api.PathStatus {
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(&api.Error{Code: api.CodeNotFound, Message: "no route"})
			return
		}
		_ = json.NewEncoder(w).Encode(&api.SealStatus{NodeID: "n1", Initialized: true, LeaderID: "n1", Peers: []api.Peer{
			{ID: "n1", APIAddr: self, Voter: true, Leader: true},
			{ID: "n2", APIAddr: "127.0.0.1:1", Voter: true},
		}})
	}))
	t.Cleanup(srv.Close)
	self = strings.TrimPrefix(srv.URL, "https://")
	published := proxyTo(t, self)

	env := map[string]string{envAddr: published, envCACert: caFile(t, srv)}
	js, stderr, err := runCmdErr(t, env, "", "status", "-format", "json")
	if err != nil {
		t.Fatalf("status: %v; stderr %q", err, stderr)
	}
	var rows []nodeStatus
	if err := json.Unmarshal([]byte(js), &rows); err != nil {
		t.Fatalf("status -json: %v in %q", err, js)
	}
	if len(rows) != 2 || rows[0].Status == nil || rows[0].Status.NodeID != "n1" || rows[1].Status != nil {
		t.Fatalf("got rows %s, want n1 once (at %s) and the unreachable n2", js, published)
	}
}

// TestPrintPeersWithoutGossip: without gossip the answering node does not
// know its peers' state, seal or applied index; peers says so instead of
// printing "unknown", "false" and 0.
func TestPrintPeersWithoutGossip(t *testing.T) {
	t.Parallel()
	c, out, errb := testCLI(t.Context(), nil, nil)
	ci := &api.ClusterInfo{Node: "n1", LeaderID: "n1", Nodes: []api.ClusterNode{
		{ID: "n1", Region: "eu", APIAddr: "10.0.0.1:8200", Voter: true, Leader: true, State: api.NodeAlive, Applied: 12},
		{ID: "n2", Region: "eu", APIAddr: "10.0.0.2:8200", Voter: true, State: api.NodeUnknown},
	}}
	if err := printPeers(c, ci); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("got\n%s", out)
	}
	if got := strings.Join(strings.Fields(lines[1]), " "); got != "n1 eu 10.0.0.1:8200 voter * alive false 12 0s" {
		t.Errorf("answering node: %q", got)
	}
	if got := strings.Join(strings.Fields(lines[2]), " "); got != "n2 eu 10.0.0.2:8200 voter - - - - -" {
		t.Errorf("peer without gossip: %q", got)
	}
	if !strings.Contains(errb.String(), "gossip is off on node n1") {
		t.Errorf("stderr %q, want the gossip-off note", errb)
	}
}

// TestDevHSMLine: the dev banner names the HSM each node uses.
func TestDevHSMLine(t *testing.T) {
	for kind, want := range map[string]string{
		devHSMSoft: "software", devHSMSoftHSM2: "SoftHSM2", devHSMNone: "none",
	} {
		if got := devHSMLine(kind, "/d"); !strings.Contains(got, want) {
			t.Errorf("devHSMLine(%q) = %q, want it to name %s", kind, got, want)
		}
	}
}
