package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/keyd/keyd/api"
)

// testShare is a well-formed share for tests against stubs.
const testShare = "keyd-share-v1-AQHs_KvH0RFR4Pdi0KHSA4E5pJpGeEJiK8Pbk486y79ZCSACyf0"

// failReader fails the test if anything reads it.
type failReader struct{ t *testing.T }

func (r failReader) Read([]byte) (int, error) {
	r.t.Error("stdin was read")
	return 0, errors.New("unexpected read")
}

func TestOperatorUnsealRefusesShareArgument(t *testing.T) {
	t.Parallel()
	const share = "keyd-share-v1-AQHs_KvH0RFR4Pdi0KHSA4E5pJpGeEJiK8Pbk486y79ZCSACyf0"
	for _, args := range [][]string{
		{"operator", "unseal", share},
		{"operator", "unseal", "-addr", "127.0.0.1:1", share},
		{"operator", "unseal", share, "-addr", "127.0.0.1:1"},
	} {
		t.Run(strings.Join(args[2:], " "), func(t *testing.T) {
			t.Parallel()
			c, out, errb := testCLI(t.Context(), map[string]string{envAddr: "127.0.0.1:1"}, failReader{t})
			err := c.run(args)
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("got err %v, want a usage error", err)
			}
			if got := exitCode(err); got != 2 {
				t.Fatalf("got exit code %d, want 2", got)
			}
			for _, s := range []string{errorLine(err), out.String(), errb.String()} {
				if strings.Contains(s, share) {
					t.Fatalf("the share was echoed: %q", s)
				}
			}
		})
	}
}

func TestReadLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr error
	}{
		{name: "line", in: "abc\nrest", want: "abc"},
		{name: "no newline", in: "abc", want: "abc"},
		{name: "spaces and CRLF", in: "  abc \r\n", want: "abc"},
		{name: "empty", in: "", want: ""},
		{name: "exactly the limit", in: strings.Repeat("a", 8) + "\n", want: strings.Repeat("a", 8)},
		{name: "too long", in: strings.Repeat("a", 9), wantErr: errLineTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := readLine(strings.NewReader(tt.in), 8)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got err %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// unsealStub is a TLS node stub for operator unseal: it answers status
// and cluster requests from a fixed topology and unseal requests with
// reply, counting the unseal requests it got.
type unsealStub struct {
	srv    *httptest.Server
	id     string
	sealed bool
	reply  api.SealStatus
	hits   atomic.Int64
	peers  func() []api.ClusterNode
}

func newUnsealStub(t *testing.T, id string, sealed bool, reply api.SealStatus, peers func() []api.ClusterNode) *unsealStub {
	t.Helper()
	s := &unsealStub{id: id, sealed: sealed, reply: reply, peers: peers}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case api.PathStatus:
			json.NewEncoder(w).Encode(&api.SealStatus{NodeID: s.id, Initialized: true, Sealed: s.sealed, Threshold: 3, Custodians: 5})
		case api.PathCluster:
			json.NewEncoder(w).Encode(&api.ClusterInfo{Node: s.id, Nodes: s.peers()})
		case api.PathUnseal:
			var in api.UnsealRequest
			if err := json.NewDecoder(r.Body).Decode(&in); err != nil || !strings.HasPrefix(in.Share, "keyd-share-v1-") {
				w.WriteHeader(http.StatusBadRequest)
				json.NewEncoder(w).Encode(&api.Error{Code: api.CodeBadRequest, Message: "bad share"})
				return
			}
			s.hits.Add(1)
			json.NewEncoder(w).Encode(&s.reply)
		default:
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(&api.Error{Code: api.CodeNotFound, Message: "no route"})
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *unsealStub) addr() string { return strings.TrimPrefix(s.srv.URL, "https://") }

// twoNodes starts an unsealed leader a and a sealed node b whose unseal
// reply is bReply; each lists both in its topology.
func twoNodes(t *testing.T, bReply api.SealStatus) (a, b *unsealStub) {
	t.Helper()
	var nodes []api.ClusterNode
	peers := func() []api.ClusterNode { return nodes }
	a = newUnsealStub(t, "na", false, api.SealStatus{NodeID: "na", Initialized: true}, peers)
	b = newUnsealStub(t, "nb", true, bReply, peers)
	nodes = []api.ClusterNode{
		{ID: "na", APIAddr: a.addr(), Voter: true, Leader: true, State: api.NodeAlive},
		{ID: "nb", APIAddr: b.addr(), Voter: true, Sealed: true, State: api.NodeAlive},
	}
	return a, b
}

// TestOperatorUnsealSendsToNamedNode (issue 9 hole 6): `operator unseal
// -addr NODE` must submit the share to NODE, not to another node the
// client prefers (an unsealed leader from KEYD_ADDR or the topology), and
// print what NODE reports.
func TestOperatorUnsealSendsToNamedNode(t *testing.T) {
	t.Parallel()
	a, b := twoNodes(t, api.SealStatus{NodeID: "nb", Initialized: true, Sealed: true, Progress: 1, Threshold: 3, Custodians: 5})
	env := map[string]string{envAddr: a.addr(), envToken: "kd_test", envCACert: caFile(t, a.srv)}
	out, errOut, err := runCmdErr(t, env, testShare+"\n", "operator", "unseal", "-addr", b.addr())
	if err != nil {
		t.Fatalf("operator unseal: %v (stderr %q)", err, errOut)
	}
	if got := a.hits.Load(); got != 0 {
		t.Fatalf("the share went to %s (%d requests), not to the named node", a.id, got)
	}
	if got := b.hits.Load(); got != 1 {
		t.Fatalf("the named node got %d unseal requests, want 1", got)
	}
	if !strings.Contains(out, "nb") || !strings.Contains(out, "1 of 3") || strings.Contains(out, "Unsealed") {
		t.Fatalf("got output %q, want nb's sealed state with progress 1 of 3", out)
	}
}

// TestOperatorUnsealRefusesSeveralAddrs: a share goes to one node, so
// several -addr values are a usage error, before stdin is read.
func TestOperatorUnsealRefusesSeveralAddrs(t *testing.T) {
	t.Parallel()
	c, _, _ := testCLI(t.Context(), nil, failReader{t})
	err := c.run([]string{"operator", "unseal", "-addr", "127.0.0.1:1,127.0.0.1:2"})
	if exitCode(err) != 2 {
		t.Fatalf("got err %v, want a usage error", err)
	}
}

// TestOperatorUnsealShareIgnored: a share the node did not use is
// reported on stderr with the node's reason; the exit code is 3 while the
// node stays sealed (the share did not count) and 0 once it is unsealed.
func TestOperatorUnsealShareIgnored(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		reply    api.SealStatus
		wantCode int
		wantOut  string
	}{
		{name: "duplicate", reply: api.SealStatus{NodeID: "nb", Initialized: true, Sealed: true, Progress: 2, Threshold: 3, ShareIgnored: "share 2 was already submitted"}, wantCode: exitShareIgnored, wantOut: "2 of 3"},
		{name: "already unsealed", reply: api.SealStatus{NodeID: "nb", Initialized: true, ShareIgnored: "node is already unsealed"}, wantCode: 0, wantOut: "Unsealed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, b := twoNodes(t, tt.reply)
			env := map[string]string{envAddr: b.addr(), envCACert: caFile(t, a.srv)}
			out, errOut, err := runCmdErr(t, env, testShare+"\n", "operator", "unseal")
			if got := exitCode(err); got != tt.wantCode {
				t.Fatalf("got exit code %d (err %v), want %d", got, err, tt.wantCode)
			}
			if b.hits.Load() != 1 || a.hits.Load() != 0 {
				t.Fatalf("unseal requests: a %d, b %d; want only b", a.hits.Load(), b.hits.Load())
			}
			all := errOut
			if err != nil {
				all += errorLine(err)
			}
			if !strings.Contains(all, "share ignored") || !strings.Contains(all, tt.reply.ShareIgnored) {
				t.Fatalf("got stderr %q, want the reason %q", all, tt.reply.ShareIgnored)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Fatalf("got output %q, want %q", out, tt.wantOut)
			}
		})
	}
}
