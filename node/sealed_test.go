package node_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/node"
	"github.com/keyd/keyd/policy"
)

// sealedWrite is one admin write an attacker (or a careless operator)
// tries against a sealed cluster with the admin token.
type sealedWrite struct {
	name, method, path string
	body               any
}

func sealedWrites(accessor, identity string) []sealedWrite {
	pol := []byte(`{"name":"p2","rules":[{"effect":"allow","capabilities":["encrypt"],"keys":["k*"]}]}`)
	window := "48h"
	return []sealedWrite{
		{"token create (admin)", "POST", api.PathTokens, api.CreateTokenRequest{Policies: []string{"admin"}}},
		{"identity create", "POST", api.PathIdentities, api.CreateIdentityRequest{ID: "ab" + identity[2:], Policies: []string{"admin"}}},
		{"identity delete", "DELETE", api.PathIdentities + "/" + identity, nil},
		{"policy write", "PUT", api.PathPolicies + "/p2", pol},
		{"policy delete", "DELETE", api.PathPolicies + "/p1", nil},
		{"token revoke", "POST", api.PathTokenRevoke, api.RevokeTokenRequest{Accessor: accessor}},
		{"key create", "POST", api.PathKeys, api.CreateKeyRequest{Name: "k2"}},
		{"key rotate", "POST", api.KeyPath("k1", "rotate"), nil},
		{"key disable", "POST", api.KeyPath("k1", "disable"), nil},
		{"key enable", "POST", api.KeyPath("k1", "enable"), nil},
		{"key config", "POST", api.KeyPath("k1", "config"), api.KeyConfigRequest{RotationPeriod: &window}},
		{"key schedule deletion", "POST", api.KeyPath("k1", "schedule-deletion"), api.ScheduleDeletionRequest{}},
		{"key cancel deletion", "POST", api.KeyPath("k1", "cancel-deletion"), nil},
		{"node remove", "POST", api.PathRemove, api.RemoveRequest{NodeID: "n3"}},
		{"cluster view", "GET", api.PathCluster, nil},
		{"token list", "GET", api.PathTokens, nil},
		{"key read", "GET", api.KeyPath("k1"), nil},
		{"whoami", "GET", api.PathWhoAmI, nil},
	}
}

// appliedIndexes returns every running node's applied index.
func appliedIndexes(c *testcluster.Cluster) []uint64 {
	out := make([]uint64, c.Size())
	for i := range out {
		if n := c.Node(i); n != nil {
			out[i] = n.AppliedIndex()
		}
	}
	return out
}

func tryWhileSealed(t *testing.T, r *raw, c *testcluster.Cluster, slots []int, accessor, identity string) {
	t.Helper()
	before := appliedIndexes(c)
	for _, slot := range slots {
		for _, w := range sealedWrites(accessor, identity) {
			st, code := r.do(slot, w.method, w.path, c.Token, w.body, nil)
			if st != http.StatusServiceUnavailable || code != api.CodeSealed {
				t.Errorf("slot %d, %s while sealed: got %d %q, want 503 sealed", slot, w.name, st, code)
			}
		}
	}
	after := appliedIndexes(c)
	for i := range before {
		if after[i] != before[i] {
			t.Errorf("node %d applied index moved from %d to %d while sealed", i, before[i], after[i])
		}
	}
}

// TestSealedClusterRefusesWrites: a sealed node answers everything but
// health, status, init and unseal with `sealed` and proposes nothing, on
// a cluster that was never unsealed and on one sealed by an operator.
func TestSealedClusterRefusesWrites(t *testing.T) {
	// Audit anchors are the one Raft write a sealed cluster makes (nodes
	// anchor their chains, unseal attempts included, at once; see
	// docs/API.md "Sealed nodes"): this test counts client writes, so the
	// periodic anchor is kept out of its window.
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Configure: func(_ int, cfg *node.Config) { cfg.AuditAnchorInterval = time.Hour }})
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	r := &raw{t: t, c: c, hc: hc}

	// An uninitialised cluster is sealed, and init still works.
	c.Init(t, 1, 1)
	leader := c.WaitLeader(t)
	follower := (leader + 1) % 3
	const identity = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tryWhileSealed(t, r, c, []int{leader, follower}, "0123456789abcdef", identity)

	// The open routes still answer.
	var st api.SealStatus
	if code, ec := r.do(follower, "GET", api.PathStatus, "", nil, &st); code != 200 || !st.Sealed {
		t.Fatalf("status while sealed: %d %s sealed=%v", code, ec, st.Sealed)
	}
	// Health answers with the sealed code (503) by default, for load
	// balancers; it is not refused.
	if code, ec := r.do(follower, "GET", api.PathHealth, "", nil, nil); code != 503 || ec != "" {
		t.Fatalf("health while sealed: %d %s", code, ec)
	}

	// Unseal, create things to act on, then seal through the API.
	c.Unseal(t, 1)
	pol := []byte(`{"name":"p1","rules":[{"effect":"allow","capabilities":["encrypt"],"keys":["k*"]}]}`)
	if code, ec := r.do(leader, "PUT", api.PathPolicies+"/p1", c.Token, pol, nil); code != 200 {
		t.Fatalf("policy: %d %s", code, ec)
	}
	_, accessor := r.token("p1")
	var id api.IdentityInfo
	if code, ec := r.do(leader, "POST", api.PathIdentities, c.Token, api.CreateIdentityRequest{ID: identity, Policies: []string{"p1"}}, &id); code != 200 {
		t.Fatalf("identity: %d %s", code, ec)
	}
	var key api.KeyInfo
	if code, ec := r.do(leader, "POST", api.PathKeys, c.Token, api.CreateKeyRequest{Name: "k1"}, &key); code != 200 {
		t.Fatalf("key: %d %s", code, ec)
	}
	c.WaitApplied(t, key.Index)
	if code, ec := r.do(follower, "POST", api.PathSeal, c.Token, nil, nil); code != 200 {
		t.Fatalf("seal: %d %s", code, ec)
	}
	c.Eventually(t, 15*time.Second, func() error {
		for i := 0; i < 3; i++ {
			if !c.Node(i).Sealed() {
				return errors.New(c.Node(i).ID() + " still unsealed")
			}
		}
		return nil
	})
	tryWhileSealed(t, r, c, []int{0, 1, 2}, accessor, identity)
}

// TestSealedLeaderRefusesForwardedWrites: an unsealed follower forwards a
// write to a sealed leader, which refuses it; the leader's propose path
// refuses lifecycle writes while sealed even when called directly.
func TestSealedLeaderRefusesForwardedWrites(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Configure: func(_ int, cfg *node.Config) { cfg.AuditAnchorInterval = time.Hour }})
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	r := &raw{t: t, c: c, hc: hc}
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	leader := c.WaitLeader(t)
	follower := (leader + 1) % 3
	c.Node(leader).SealLocal()

	before := appliedIndexes(c)
	if code, ec := r.do(follower, "POST", api.PathTokens, c.Token, api.CreateTokenRequest{Policies: []string{"admin"}}, nil); code != http.StatusServiceUnavailable || ec != api.CodeSealed {
		t.Fatalf("token create through an unsealed follower to a sealed leader: %d %s", code, ec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Node(leader).CreateToken(ctx, "", api.CreateTokenRequest{Policies: []string{"admin"}}, func(*policy.Policy) error { return nil }); !errors.Is(err, api.ErrSealed) {
		t.Fatalf("CreateToken on a sealed leader: %v, want sealed", err)
	}
	if err := c.Node(leader).DeleteIdentity(ctx, "", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", func(*policy.Policy) error { return nil }); !errors.Is(err, api.ErrSealed) {
		t.Fatalf("DeleteIdentity on a sealed leader: %v, want sealed", err)
	}
	after := appliedIndexes(c)
	for i := range before {
		if after[i] != before[i] {
			t.Errorf("node %d applied index moved from %d to %d", i, before[i], after[i])
		}
	}
}
