package node_test

import (
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

// TestRevokeReturnsOnceEveryNodeApplied: when a revoke returns, no
// reachable node accepts the token any more, without waiting for an
// index.
func TestRevokeReturnsOnceEveryNodeApplied(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	r := &raw{t: t, c: c, hc: hc}
	leader := c.WaitLeader(t)
	var k api.KeyInfo
	if st, code := r.do(leader, "POST", api.PathKeys, c.Token, api.CreateKeyRequest{Name: "k"}, &k); st != 200 {
		t.Fatalf("create: %d %s", st, code)
	}
	c.WaitApplied(t, k.Index)
	enc := api.EncryptRequest{Plaintext: []byte("x")}
	for round := 0; round < 5; round++ {
		tok, accessor := r.token("admin")
		var wr api.WriteResponse
		if st, code := r.do(leader, "POST", api.PathTokenRevoke, c.Token, api.RevokeTokenRequest{Accessor: accessor}, &wr); st != 200 {
			t.Fatalf("revoke: %d %s", st, code)
		}
		if len(wr.NotApplied) != 0 {
			t.Fatalf("revoke reports nodes that have not applied it: %v", wr.NotApplied)
		}
		var wg sync.WaitGroup
		for i := 0; i < 3; i++ {
			wg.Go(func() {
				if st, _ := r.do(i, "POST", api.KeyPath("k", "encrypt"), tok, enc, nil); st != http.StatusUnauthorized {
					t.Errorf("round %d: node %d accepts a revoked token right after the revoke returned: %d", round, i, st)
				}
			})
		}
		wg.Wait()
	}
}

// TestCutOffNodeRefusesTokensForWrites: a node that lost the leader for
// longer than its lease refuses token requests other than crypto calls;
// a revoke names the nodes it could not reach; the node catches up on
// healing.
func TestCutOffNodeRefusesTokensForWrites(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	r := &raw{t: t, c: c, hc: hc}
	leader := c.WaitLeader(t)
	var k api.KeyInfo
	if st, code := r.do(leader, "POST", api.PathKeys, c.Token, api.CreateKeyRequest{Name: "k"}, &k); st != 200 {
		t.Fatalf("create: %d %s", st, code)
	}
	tok, accessor := r.token("admin")
	victim := (leader + 1) % 3
	c.Isolate(t, victim)
	enc := api.EncryptRequest{Plaintext: []byte("x")}
	c.Eventually(t, 15*time.Second, func() error {
		if st, code := r.do(victim, "GET", api.KeyPath("k"), tok, nil, nil); st != http.StatusServiceUnavailable || code != api.CodeUnavailable {
			return &api.Error{Code: code, Message: "key read on a cut-off node still served"}
		}
		return nil
	})
	for _, w := range []struct {
		method, path string
		body         any
	}{
		{"POST", api.KeyPath("k", "rotate"), nil},
		{"GET", api.PathTokens, nil},
		{"GET", api.PathKeys, nil},
		{"POST", api.PathTokens, api.CreateTokenRequest{Policies: []string{"admin"}}},
	} {
		if st, code := r.do(victim, w.method, w.path, tok, w.body, nil); code != api.CodeUnavailable {
			t.Errorf("%s %s on a cut-off node: %d %s, want unavailable", w.method, w.path, st, code)
		}
	}
	// Crypto calls go on from the node's applied state.
	if st, code := r.do(victim, "POST", api.KeyPath("k", "encrypt"), tok, enc, nil); st != 200 {
		t.Fatalf("encrypt on a cut-off node: %d %s", st, code)
	}
	// A revoke names the node it could not reach.
	var wr api.WriteResponse
	if st, code := r.do(leader, "POST", api.PathTokenRevoke, c.Token, api.RevokeTokenRequest{Accessor: accessor}, &wr); st != 200 {
		t.Fatalf("revoke: %d %s", st, code)
	}
	if !slices.Equal(wr.NotApplied, []string{c.Slot(victim).ID}) {
		t.Fatalf("revoke reports not applied on %v, want [%s]", wr.NotApplied, c.Slot(victim).ID)
	}
	c.Heal(t)
	c.WaitApplied(t, wr.Index)
	if st, _ := r.do(victim, "POST", api.KeyPath("k", "encrypt"), tok, enc, nil); st != http.StatusUnauthorized {
		t.Fatalf("healed node accepts the revoked token: %d", st)
	}
	c.Eventually(t, 15*time.Second, func() error {
		if st, code := r.do(victim, "GET", api.KeyPath("k"), c.Token, nil, nil); st != 200 {
			return &api.Error{Code: code, Message: "healed node still refuses"}
		}
		return nil
	})
}
