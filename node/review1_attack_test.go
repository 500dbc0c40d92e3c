package node_test

import (
	"net/http"
	"testing"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

// TestRetentionNeedsDelete: a retention makes the cluster schedule the
// key's deletion on its own, so setting (or removing) one is a deletion
// decision. A caller that may only create and reconfigure keys (rotate,
// "every lifecycle change that is not a deletion") must not be able to
// shred a key by giving it a one-day retention, nor create keys that
// delete themselves, nor strip a retention an admin set.
func TestRetentionNeedsDelete(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 1})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	r := &raw{t: t, c: c, hc: hc}

	for name, doc := range map[string]string{
		"devops": `{"rules":[{"effect":"allow","capabilities":["create","rotate","read"],"keys":["*"]}]}`,
		"reaper": `{"rules":[{"effect":"allow","capabilities":["create","rotate","read","delete"],"keys":["*"]}]}`,
	} {
		if st, code := r.do(0, "PUT", api.PathPolicies+"/"+name, c.Token, []byte(doc), nil); st != 200 {
			t.Fatalf("policy %s: %d %s", name, st, code)
		}
	}
	devops, _ := r.token("devops")
	reaper, _ := r.token("reaper")
	var info api.KeyInfo
	if st, code := r.do(0, "POST", api.PathKeys, c.Token, api.CreateKeyRequest{Name: "orders"}, &info); st != 200 {
		t.Fatalf("create: %d %s", st, code)
	}
	if st, code := r.do(0, "POST", api.PathKeys, c.Token, api.CreateKeyRequest{Name: "ledger", Retention: "87600h"}, &info); st != 200 {
		t.Fatalf("create ledger: %d %s", st, code)
	}
	c.WaitApplied(t, info.Index)
	day, none := "24h", "0"

	// Attacker first: rotate-only caller schedules a shred.
	if st, code := r.do(0, "POST", api.KeyPath("orders", "config"), devops, api.KeyConfigRequest{Retention: &day}, nil); st != 403 {
		t.Errorf("rotate-only caller sets a retention: %d %s, want 403", st, code)
	}
	if st, code := r.do(0, "POST", api.KeyPath("ledger", "config"), devops, api.KeyConfigRequest{Retention: &none}, nil); st != 403 {
		t.Errorf("rotate-only caller removes a retention: %d %s, want 403", st, code)
	}
	if st, code := r.do(0, "POST", api.PathKeys, devops, api.CreateKeyRequest{Name: "selfdestruct", Retention: day}, nil); st != 403 {
		t.Errorf("create-only caller creates a key with a retention: %d %s, want 403", st, code)
	}
	var orders api.KeyInfo
	if st, _ := r.do(0, "GET", api.KeyPath("orders"), c.Token, nil, &orders); st != 200 || orders.Retention != "" {
		t.Fatalf("orders after refused config: %d retention %q", st, orders.Retention)
	}
	// Rotate-only changes without a retention still work.
	if st, code := r.do(0, "POST", api.PathKeys, devops, api.CreateKeyRequest{Name: "plain"}, nil); st != 200 {
		t.Fatalf("devops creates a plain key: %d %s", st, code)
	}
	// A caller holding delete may.
	if st, code := r.do(0, "POST", api.KeyPath("orders", "config"), reaper, api.KeyConfigRequest{Retention: &day}, &info); st != 200 || info.Retention == "" {
		t.Fatalf("caller with delete sets a retention: %d %s %q", st, code, info.Retention)
	}
	if st, code := r.do(0, "POST", api.PathKeys, reaper, api.CreateKeyRequest{Name: "temp", Retention: day}, nil); st != 200 {
		t.Fatalf("caller with delete creates with a retention: %d %s", st, code)
	}
}
