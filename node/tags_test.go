package node_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

// TestTagPolicyAttacker: an analyst may decrypt keys tagged pseudo but
// none tagged pci, and the tags that decide are the stored ones: a caller
// cannot widen its access by tagging a key (that needs set-policy on it),
// by claiming tags in a request, or through create.
func TestTagPolicyAttacker(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 1})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	r := &raw{t: t, c: c, hc: hc}

	for name, doc := range map[string]string{
		"analyst": `{"rules":[{"effect":"allow","capabilities":["decrypt","read"],"keys":["tag:pseudo"]},{"effect":"deny","capabilities":["decrypt"],"keys":["tag:pci"]}]}`,
		// may create and reconfigure every key, but holds no set-policy
		"devops": `{"rules":[{"effect":"allow","capabilities":["create","rotate","read","encrypt"],"keys":["*"]}]}`,
	} {
		if st, code := r.do(0, "PUT", api.PathPolicies+"/"+name, c.Token, []byte(doc), nil); st != 200 {
			t.Fatalf("policy %s: %d %s", name, st, code)
		}
	}
	analyst, _ := r.token("analyst")
	devops, _ := r.token("devops")

	ct := map[string]string{}
	for name, tags := range map[string][]string{
		"users":  {"pii", "pseudo"},
		"cards":  {"pci", "pseudo"},
		"plain":  nil,
		"secret": {"pii"},
	} {
		var info api.KeyInfo
		if st, code := r.do(0, "POST", api.PathKeys, c.Token, api.CreateKeyRequest{Name: name, Tags: tags}, &info); st != 200 {
			t.Fatalf("create %s: %d %s", name, st, code)
		}
		if !slices.Equal(info.Tags, tags) {
			t.Fatalf("%s tags %v, want %v", name, info.Tags, tags)
		}
		var enc api.EncryptResponse
		if st, code := r.do(0, "POST", api.KeyPath(name, "encrypt"), c.Token, api.EncryptRequest{Plaintext: []byte("x")}, &enc); st != 200 {
			t.Fatalf("encrypt %s: %d %s", name, st, code)
		}
		ct[name] = enc.Ciphertext
	}
	decrypt := func(tok, key string) int {
		st, _ := r.do(0, "POST", api.KeyPath(key, "decrypt"), tok, api.DecryptRequest{Ciphertext: ct[key]}, nil)
		return st
	}

	// Attacker first: the analyst's reach is exactly the stored tags.
	for key, want := range map[string]int{"users": 200, "cards": 403, "plain": 403, "secret": 403} {
		if st := decrypt(analyst, key); st != want {
			t.Errorf("analyst decrypts %s: %d, want %d", key, st, want)
		}
	}
	// Tags claimed in a request are never honoured.
	if st, code := r.do(0, "POST", api.KeyPath("plain", "decrypt"), analyst, []byte(`{"ciphertext":"`+ct["plain"]+`","tags":["pseudo"]}`), nil); st != 403 && st != 400 {
		t.Errorf("decrypt with claimed tags: %d %s, want a refusal", st, code)
	}
	// devops may reconfigure keys but not tag them: tagging plain as
	// pseudo (or untagging cards) would widen the analyst's access.
	if st, code := r.do(0, "POST", api.KeyPath("plain", "config"), devops, api.KeyConfigRequest{Tags: &[]string{"pseudo"}}, nil); st != 403 {
		t.Fatalf("devops tags a key: %d %s, want 403", st, code)
	}
	if st, code := r.do(0, "POST", api.KeyPath("cards", "config"), devops, api.KeyConfigRequest{Tags: &[]string{}}, nil); st != 403 {
		t.Fatalf("devops untags a key: %d %s, want 403", st, code)
	}
	if st, code := r.do(0, "POST", api.PathKeys, devops, api.CreateKeyRequest{Name: "sneaky", Tags: []string{"pseudo"}}, nil); st != 403 {
		t.Fatalf("devops creates a tagged key: %d %s, want 403", st, code)
	}
	if st := decrypt(analyst, "plain"); st != 403 {
		t.Fatal("analyst reached plain after refused tag changes")
	}
	// Listing follows the same stored tags.
	var list api.KeyList
	if st, code := r.do(0, "GET", api.PathKeys, analyst, nil, &list); st != 200 || !slices.Equal(list.Keys, []string{"cards", "users"}) {
		t.Fatalf("analyst lists %v (%d %s), want cards and users", list.Keys, st, code)
	}

	// The admin (set-policy on every key) changes tags, audited as
	// key.config; the change takes effect at once.
	var info api.KeyInfo
	if st, code := r.do(0, "POST", api.KeyPath("cards", "config"), c.Token, api.KeyConfigRequest{Tags: &[]string{"pseudo"}}, &info); st != 200 {
		t.Fatalf("admin retags cards: %d %s", st, code)
	}
	c.WaitApplied(t, info.Index)
	if st := decrypt(analyst, "cards"); st != 200 {
		t.Fatalf("after untagging pci: %d", st)
	}
	if st, code := r.do(0, "POST", api.KeyPath("plain", "config"), c.Token, api.KeyConfigRequest{Tags: &[]string{"Bad Tag"}}, nil); st != 400 {
		t.Fatalf("invalid tag: %d %s", st, code)
	}
}

// TestTagDefaults: pci keys rotate at least every 90 days; pii and phi
// keys keep a deletion window of at least 7 days.
func TestTagDefaults(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 1})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	r := &raw{t: t, c: c, hc: hc}

	var info api.KeyInfo
	if st, code := r.do(0, "POST", api.PathKeys, c.Token, api.CreateKeyRequest{Name: "pan", Tags: []string{"pci"}}, &info); st != 200 {
		t.Fatalf("create: %d %s", st, code)
	}
	if info.RotationPeriod != (90 * 24 * time.Hour).String() {
		t.Fatalf("pci key rotation period %q, want 2160h", info.RotationPeriod)
	}
	if st, _ := r.do(0, "POST", api.PathKeys, c.Token, api.CreateKeyRequest{Name: "pan2", Tags: []string{"pci"}, RotationPeriod: "4000h"}, nil); st != 400 {
		t.Fatalf("pci key with a 4000h period: %d, want 400", st)
	}
	if st, _ := r.do(0, "POST", api.PathKeys, c.Token, api.CreateKeyRequest{Name: "pan3", Tags: []string{"pci"}, RotationPeriod: "720h"}, &info); st != 200 || info.RotationPeriod != "720h0m0s" {
		t.Fatalf("pci key with a 720h period: %d %q", st, info.RotationPeriod)
	}
	off := "0"
	if st, _ := r.do(0, "POST", api.KeyPath("pan", "config"), c.Token, api.KeyConfigRequest{RotationPeriod: &off}, nil); st != 400 {
		t.Fatalf("turning off rotation on a pci key: %d, want 400", st)
	}
	// Tagging an existing key pci gives it the rule's period.
	if st, _ := r.do(0, "POST", api.PathKeys, c.Token, api.CreateKeyRequest{Name: "later"}, nil); st != 200 {
		t.Fatal("create later")
	}
	if st, _ := r.do(0, "POST", api.KeyPath("later", "config"), c.Token, api.KeyConfigRequest{Tags: &[]string{"pci"}}, &info); st != 200 || info.RotationPeriod != "2160h0m0s" {
		t.Fatalf("tagging pci: %d %q", st, info.RotationPeriod)
	}

	if st, _ := r.do(0, "POST", api.PathKeys, c.Token, api.CreateKeyRequest{Name: "person-1", Tags: []string{"pii"}}, nil); st != 200 {
		t.Fatal("create pii key")
	}
	if st, _ := r.do(0, "POST", api.KeyPath("person-1", "schedule-deletion"), c.Token, api.ScheduleDeletionRequest{PendingWindow: "48h"}, nil); st != 400 {
		t.Fatalf("pii key with a 48h deletion window: %d, want 400", st)
	}
	if st, _ := r.do(0, "POST", api.KeyPath("person-1", "schedule-deletion"), c.Token, api.ScheduleDeletionRequest{PendingWindow: "168h"}, nil); st != 200 {
		t.Fatalf("pii key with a 168h deletion window: %d", st)
	}
	if st, _ := r.do(0, "POST", api.KeyPath("later", "schedule-deletion"), c.Token, api.ScheduleDeletionRequest{PendingWindow: "48h"}, nil); st != 200 {
		t.Fatalf("pci key with a 48h deletion window: %d", st)
	}
}
