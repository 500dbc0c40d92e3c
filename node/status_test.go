package node_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

// TestStatusHidesTopologyWithoutToken: the unauthenticated status shows
// what a load balancer and a custodian need, never addresses, the Raft
// view or HSM errors; a credential with the cluster capability sees all.
func TestStatusHidesTopologyWithoutToken(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 3, 2)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	r := &raw{t: t, c: c, hc: hc}
	follower := (c.WaitLeader(t) + 1) % 3

	rawStatus := func(token string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+c.Slot(follower).APIAddr+api.PathStatus, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("status: %d %s", resp.StatusCode, b)
		}
		return string(b)
	}
	hidden := func(body string) {
		t.Helper()
		for i := 0; i < 3; i++ {
			for _, addr := range []string{c.Slot(i).APIAddr, c.Slot(i).RaftAddr} {
				if strings.Contains(body, addr) {
					t.Fatalf("status reveals address %s: %s", addr, body)
				}
			}
		}
		for _, field := range []string{`"peers"`, `"raft_state"`, `"hsm"`, `"leader"`, `"seal_reason"`, `"node_share"`, `"term"`} {
			if strings.Contains(body, field) {
				t.Fatalf("status reveals %s: %s", field, body)
			}
		}
		for _, field := range []string{`"initialized":true`, `"sealed":`, `"threshold":2`, `"custodians":3`, `"progress":0`, `"version"`} {
			if !strings.Contains(body, field) {
				t.Fatalf("status lacks %s: %s", field, body)
			}
		}
	}
	// Sealed, without a token.
	hidden(rawStatus(""))
	c.Unseal(t, 2)
	hidden(rawStatus(""))
	hidden(rawStatus("kd_not-a-token"))
	app, _ := r.token("auditor")
	hidden(rawStatus(app))

	// With the cluster capability: the full view.
	full := rawStatus(c.Token)
	for _, want := range []string{`"peers"`, `"raft_state"`, c.Slot(0).RaftAddr} {
		if !strings.Contains(full, want) {
			t.Fatalf("full status lacks %s: %s", want, full)
		}
	}
}
