package main

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
)

// statusServer is a TLS node stub whose status reports applied(hit),
// hit counting from 1; cluster, when set, is served on GET
// /v1/sys/cluster. It counts status requests.
func statusServer(t *testing.T, applied func(hit int64) uint64, cluster func() *api.ClusterInfo) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == api.PathStatus:
			n := hits.Add(1)
			json.NewEncoder(w).Encode(&api.SealStatus{NodeID: r.Host, Initialized: true, Applied: applied(n)})
		case r.URL.Path == api.PathCluster && cluster != nil:
			json.NewEncoder(w).Encode(cluster())
		default:
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(&api.Error{Code: api.CodeNotFound, Message: "no route"})
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// fixed reports the same applied index on every status request.
func fixed(i uint64) func(int64) uint64 { return func(int64) uint64 { return i } }

// blackhole accepts connections and never answers, like a peer whose
// host is gone behind a firewall that still completes the handshake.
func blackhole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	holdSilently(t, ln)
	return ln.Addr().String()
}

// caFile writes the httptest servers' certificate (they share one) as a
// PEM file for KEYD_CACERT.
func caFile(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSettleSkipsDeadAndSilentNodes: after a write, settle waits for the
// nodes concurrently, each within a per-node budget. A node that never
// answers (b) is skipped silently, a node that stays behind (c1) gets a
// note, a node that catches up (c2) none, and a node the topology reports
// dead (d, also a seed) or left (e) is not contacted. The whole wait is
// given exactly one per-node budget and b comes before c1 and c2: waiting
// for the nodes one after another, or for b longer than its budget,
// leaves c1 and c2 unasked, which the test sees.
func TestSettleSkipsDeadAndSilentNodes(t *testing.T) {
	t.Parallel()
	const index = 50
	host := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "https://") }
	hole := blackhole(t)
	c1, c1Hits := statusServer(t, fixed(index-10), nil)
	c2, c2Hits := statusServer(t, func(hit int64) uint64 {
		if hit < 2 {
			return index - 1
		}
		return index
	}, nil)
	var topo func() *api.ClusterInfo
	d, dHits := statusServer(t, fixed(index), func() *api.ClusterInfo { return topo() })
	a, _ := statusServer(t, fixed(index), func() *api.ClusterInfo { return topo() })
	topo = func() *api.ClusterInfo {
		return &api.ClusterInfo{Node: "a", LeaderID: "a", Leader: host(a), Nodes: []api.ClusterNode{
			{ID: "a", APIAddr: host(a), Voter: true, Leader: true, State: api.NodeAlive},
			{ID: "b", APIAddr: hole, Voter: true, State: api.NodeAlive},
			{ID: "c1", APIAddr: host(c1), Voter: true, State: api.NodeAlive},
			{ID: "c2", APIAddr: host(c2), Voter: true, State: api.NodeAlive},
			{ID: "d", APIAddr: host(d), Voter: true, State: api.NodeDead},
			{ID: "e", APIAddr: "127.0.0.1:1", State: api.NodeLeft},
		}}
	}

	env := map[string]string{envAddr: host(a) + "," + host(d), envToken: "t", envCACert: caFile(t, a)}
	cli, _, errb := testCLI(t.Context(), env, nil)
	var cf clientFlags
	cl, err := cli.newClient(&cf)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	got := cli.settleTargets(t.Context(), cl, &cf, time.Second)
	if want := []string{host(a), hole, host(c1), host(c2)}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("got targets %v, want %v (d is dead, e left)", got, want)
	}
	const budget = time.Second
	cli.settleWith(cl, &cf, index, budget, budget)
	out := errb.String()
	if !strings.Contains(out, host(c1)+" has not applied index 50") {
		t.Fatalf("got stderr %q, want a note for the lagging node", out)
	}
	if strings.Count(out, "note:") != 1 {
		t.Fatalf("got stderr %q, want one note, for the lagging node only", out)
	}
	if n := c2Hits.Load(); n < 2 {
		t.Fatalf("got %d status requests to the node catching up, want at least 2", n)
	}
	if n := c1Hits.Load(); n < 1 {
		t.Fatalf("got %d status requests to the lagging node, want at least 1", n)
	}
	if n := dHits.Load(); n != 0 {
		t.Fatalf("got %d status requests to the dead node, want 0", n)
	}
}

func TestClientTLSEnv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := writeClientCert(t, dir)
	tests := []struct {
		name      string
		env       map[string]string
		wantNil   bool
		wantCert  bool
		wantUsage bool
		wantErr   error
	}{
		{name: "nothing set", env: map[string]string{}, wantNil: true},
		{name: "cert and key", env: map[string]string{envClientCert: certFile, envClientKey: keyFile}, wantCert: true},
		{name: "cert only", env: map[string]string{envClientCert: certFile}, wantUsage: true},
		{name: "key only", env: map[string]string{envClientKey: keyFile}, wantUsage: true},
		{name: "missing key file", env: map[string]string{envClientCert: certFile, envClientKey: filepath.Join(dir, "nope")}, wantErr: os.ErrNotExist},
		{name: "key and cert swapped", env: map[string]string{envClientCert: keyFile, envClientKey: certFile}, wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, _, _ := testCLI(t.Context(), tt.env, nil)
			tc, err := c.clientTLS()
			var ue *usageError
			switch {
			case tt.wantUsage:
				if !errors.As(err, &ue) {
					t.Fatalf("got %v, want a usage error", err)
				}
				return
			case tt.wantErr == errAny:
				if err == nil {
					t.Fatalf("got nil error, want one")
				}
				return
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v", err)
			}
			if (tc == nil) != tt.wantNil {
				t.Fatalf("got config %v, want nil: %v", tc, tt.wantNil)
			}
			if tt.wantCert {
				// Presented even when the node lists other acceptable CAs.
				cert, err := tc.GetClientCertificate(nil)
				if err != nil || cert == nil || len(cert.Certificate) != 1 {
					t.Fatalf("GetClientCertificate: got %v, %v, want the pair", cert, err)
				}
			}
		})
	}
}

func TestLastNewline(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 5000)
	tests := []struct {
		name string
		in   string
		want int64
	}{
		{name: "empty", in: "", want: 0},
		{name: "whole lines", in: "a\nb\n", want: 4},
		{name: "partial tail", in: "a\nb\n{\"seq\":3", want: 4},
		{name: "no newline", in: "abc", want: 0},
		{name: "newline before a long tail", in: "a\n" + long, want: 2},
		{name: "long lines", in: long + "\n" + long + "\n" + long, want: int64(2*len(long) + 2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := lastNewline(strings.NewReader(tt.in), int64(len(tt.in)))
			if err != nil || got != tt.want {
				t.Fatalf("got %d, %v, want %d", got, err, tt.want)
			}
		})
	}
}

// TestAdminUsageErrors: mistakes in the new commands are usage errors
// (exit 2) found before any node is contacted.
func TestAdminUsageErrors(t *testing.T) {
	t.Parallel()
	env := map[string]string{envAddr: "127.0.0.1:1"}
	tests := [][]string{
		{"policy", "write", "p1"},
		{"policy", "write", "p1", "file", "extra"},
		{"policy", "write", "p1", "file", "-app", "a-*"},
		{"policy", "read"},
		{"policy", "frobnicate"},
		{"token", "create"},
		{"token", "create", "-policy", "p1", "-ttl", "10s"},
		{"token", "create", "-policy", "p1", "-ttl", "soon"},
		{"token", "revoke"},
		{"identity", "create", "-policy", "p1"},
		{"identity", "create", "-cert", "x.pem", "-id", "ab", "-policy", "p1"},
		{"identity", "create", "-cert", "x.pem"},
		{"operator", "join", "127.0.0.1:1"},
		{"operator", "join", "-seed", "127.0.0.1:7946"},
		{"operator", "remove"},
		{"audit", "fetch", "-addr", "127.0.0.1:1"},
		{"audit", "fetch", "-out", "x.log"},
		{"peers", "extra"},
		{"whoami", "extra"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			c, _, _ := testCLI(t.Context(), env, failReader{t})
			err := c.run(args)
			if got := exitCode(err); got != 2 {
				t.Fatalf("got exit code %d (err %v), want 2", got, err)
			}
		})
	}
}

func TestPrintPeers(t *testing.T) {
	t.Parallel()
	c, out, errb := testCLI(t.Context(), nil, nil)
	ci := &api.ClusterInfo{Node: "n1", Nodes: []api.ClusterNode{
		{ID: "n1", Region: "eu", APIAddr: "10.0.0.1:8200", Voter: true, State: api.NodeAlive, Applied: 12, LastContactMS: 0},
		{ID: "n2", Region: "us", APIAddr: "10.0.0.2:8200", NonVoter: true, State: api.NodeSuspect, Sealed: true, Applied: 9, LastContactMS: 1500},
		{ID: "n3", State: api.NodeLeft, LastContactMS: -1},
	}}
	if err := printPeers(c, ci); err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"NODE", "REGION", "API", "VOTER", "LEADER", "STATE", "SEALED", "APPLIED", "LAST-CONTACT"},
		{"n1", "eu", "10.0.0.1:8200", "voter", "-", "alive", "false", "12", "0s"},
		{"n2", "us", "10.0.0.2:8200", "non-voter", "-", "suspect", "true", "9", "1.5s"},
		{"n3", "-", "-", "-", "-", "left", "false", "0", "-"},
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got\n%s\nwant %d lines", out, len(want))
	}
	for i, w := range want {
		if got := strings.Fields(lines[i]); strings.Join(got, " ") != strings.Join(w, " ") {
			t.Fatalf("line %d: got %q, want %q", i, got, w)
		}
	}
	if !strings.Contains(errb.String(), "knows no leader") {
		t.Fatalf("got stderr %q, want the no-leader note", errb)
	}
}

// FuzzLastNewline checks the backward block scan against a plain search.
func FuzzLastNewline(f *testing.F) {
	f.Add([]byte("a\nb\n{\"seq\":3"))
	f.Add([]byte(strings.Repeat("x", 4097) + "\n" + strings.Repeat("y", 4095)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := lastNewline(bytes.NewReader(b), int64(len(b)))
		want := int64(bytes.LastIndexByte(b, '\n') + 1)
		if err != nil || got != want {
			t.Fatalf("got %d, %v, want %d", got, err, want)
		}
	})
}

// holdSilently accepts every connection on ln and never answers, like a
// frozen process; the test's cleanup closes ln and the held connections.
func holdSilently(t *testing.T, ln net.Listener) {
	t.Helper()
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
}
