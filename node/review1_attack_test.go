package node_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

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

// TestKVPathTricks: an app token with kv/app1/* tries to reach app2's
// secret through the raw HTTP API with dot segments, doubled and
// encoded slashes, case, list prefixes and cursors. Nothing of app2's
// is read, written or listed.
func TestKVPathTricks(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 1})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	r := &raw{t: t, c: c, hc: hc}
	doc := `{"rules":[{"effect":"allow","capabilities":["kv-read","kv-write","kv-list","kv-delete","kv-destroy"],"keys":["kv/app1/*"]}]}`
	if st, code := r.do(0, "PUT", api.PathPolicies+"/app1kv", c.Token, []byte(doc), nil); st != 200 {
		t.Fatalf("policy: %d %s", st, code)
	}
	app, _ := r.token("app1kv")
	var w api.KVSecret
	for _, p := range []string{"app1/db", "app2/x", "app1x/y"} {
		if st, code := r.do(0, "PUT", "/v1/kv/"+p, c.Token, api.KVWriteRequest{Data: map[string]string{"v": "secret-of-" + p}}, &w); st != 200 {
			t.Fatalf("put %s: %d %s", p, st, code)
		}
	}
	c.WaitApplied(t, w.Index)
	for _, p := range []string{
		"app1/../app2/x", "app1/..%2Fapp2/x", "app1%2F..%2Fapp2%2Fx", "app1/%2E%2E/app2/x",
		"app1//../app2/x", "app1/./../app2/x", "APP1/../app2/x", "app1/..", "app1%2F..",
	} {
		for _, m := range []string{"GET", "PUT", "DELETE"} {
			var body any
			if m == "PUT" {
				body = api.KVWriteRequest{Data: map[string]string{"v": "pwned"}}
			}
			var got api.KVSecret
			st, code := r.do(0, m, "/v1/kv/"+p, app, body, &got)
			if st == 200 {
				t.Errorf("%s /v1/kv/%s answered 200 (%+v)", m, p, got)
			}
			if strings.Contains(p, "%2") && st != 400 {
				// Encoded dot segments arrive decoded: refused as a bad
				// path, before the capability check could match them.
				t.Errorf("%s /v1/kv/%s: %d %s, want 400", m, p, st, code)
			}
		}
		for _, route := range []string{api.PathKVMeta, api.PathKVDestroy, api.PathKVUndelete} {
			m := "GET"
			if route != api.PathKVMeta {
				m = "POST"
			}
			if st, _ := r.do(0, m, route+p, app, api.KVVersionsRequest{Versions: []uint32{1}}, nil); st == 200 {
				t.Errorf("%s %s%s answered 200", m, route, p)
			}
		}
	}
	// Lists: another app's prefix, a prefix that only shares letters, a
	// cursor inside app2.
	for _, q := range []string{"", "app2/", "app", "app1", "app1/../app2/", "?after=app2/", "app2/?after=app1/"} {
		var l api.KVList
		if st, code := r.do(0, "GET", api.PathKVList+q, app, nil, &l); st != 200 && st != 400 && st != 307 {
			t.Fatalf("list %q: %d %s", q, st, code)
		}
		for _, p := range l.Paths {
			if p != "app1/db" {
				t.Errorf("list %q shows %s", q, p)
			}
		}
	}
	for _, p := range []string{"app2/x", "app1x/y"} {
		var got api.KVSecret
		if st, code := r.do(0, "GET", "/v1/kv/"+p, c.Token, nil, &got); st != 200 || got.Data["v"] != "secret-of-"+p || got.Version != 1 {
			t.Fatalf("%s changed: %d %s %+v", p, st, code, got)
		}
	}
}

// TestDelegateCannotEscapeTagDeny: the admin denies an app decrypt on
// every key tagged pci. A delegated admin of the keys team-* (set-policy
// there, but not on every key) cannot remove that deny by editing
// policies (it names a tag, which only set-policy on * covers), so it
// must not be able to remove it by untagging team-cards either, nor pull
// a key into an analyst's "allow tag:pseudo" by tagging it.
func TestDelegateCannotEscapeTagDeny(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 1})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	r := &raw{t: t, c: c, hc: hc}
	for name, doc := range map[string]string{
		"team-app":   `{"rules":[{"effect":"allow","capabilities":["encrypt","decrypt","read"],"keys":["team-*"]}]}`,
		"no-pci":     `{"rules":[{"effect":"deny","capabilities":["decrypt"],"keys":["tag:pci"]}]}`,
		"team-admin": `{"rules":[{"effect":"allow","capabilities":["create","rotate","read","set-policy"],"keys":["team-*"]}]}`,
		"analyst":    `{"rules":[{"effect":"allow","capabilities":["decrypt","read"],"keys":["tag:pseudo"]}]}`,
	} {
		if st, code := r.do(0, "PUT", api.PathPolicies+"/"+name, c.Token, []byte(doc), nil); st != 200 {
			t.Fatalf("policy %s: %d %s", name, st, code)
		}
	}
	app, _ := r.token("team-app", "no-pci")
	delegate, _ := r.token("team-admin")
	var info api.KeyInfo
	if st, code := r.do(0, "POST", api.PathKeys, c.Token, api.CreateKeyRequest{Name: "team-cards", Tags: []string{"pci"}}, &info); st != 200 {
		t.Fatalf("create: %d %s", st, code)
	}
	if st, code := r.do(0, "POST", api.PathKeys, c.Token, api.CreateKeyRequest{Name: "team-plain"}, &info); st != 200 {
		t.Fatalf("create: %d %s", st, code)
	}
	c.WaitApplied(t, info.Index)
	var enc api.EncryptResponse
	if st, code := r.do(0, "POST", api.KeyPath("team-cards", "encrypt"), c.Token, api.EncryptRequest{Plaintext: []byte("4111111111111111")}, &enc); st != 200 {
		t.Fatalf("encrypt: %d %s", st, code)
	}
	decrypt := func() int {
		st, _ := r.do(0, "POST", api.KeyPath("team-cards", "decrypt"), app, api.DecryptRequest{Ciphertext: enc.Ciphertext}, nil)
		return st
	}
	if st := decrypt(); st != 403 {
		t.Fatalf("app decrypts a pci key: %d", st)
	}
	// The delegate cannot lift the deny through policies...
	if st, _ := r.do(0, "DELETE", api.PathPolicies+"/no-pci", delegate, nil, nil); st != 403 {
		t.Fatalf("delegate deletes the tag deny: %d", st)
	}
	// ...nor by untagging the key.
	if st, code := r.do(0, "POST", api.KeyPath("team-cards", "config"), delegate, api.KeyConfigRequest{Tags: &[]string{}}, &info); st != 403 {
		t.Errorf("delegate untags a pci key: %d %s, want 403", st, code)
	}
	c.WaitApplied(t, info.Index)
	if st := decrypt(); st != 403 {
		t.Errorf("app decrypts the pci key after the delegate's untag: %d", st)
	}
	// Nor widen the analyst's tag allow onto its keys.
	if st, code := r.do(0, "POST", api.KeyPath("team-plain", "config"), delegate, api.KeyConfigRequest{Tags: &[]string{"pseudo"}}, nil); st != 403 {
		t.Errorf("delegate tags a key pseudo: %d %s, want 403", st, code)
	}
	if st, code := r.do(0, "POST", api.PathKeys, delegate, api.CreateKeyRequest{Name: "team-new", Tags: []string{"pseudo"}}, nil); st != 403 {
		t.Errorf("delegate creates a key tagged pseudo: %d %s, want 403", st, code)
	}
	// Untagged creates and other config stay the delegate's.
	if st, code := r.do(0, "POST", api.PathKeys, delegate, api.CreateKeyRequest{Name: "team-ok"}, nil); st != 200 {
		t.Fatalf("delegate creates an untagged key: %d %s", st, code)
	}
}

// TestKeyReportCountsEveryUse: the report's never_used lists "candidates
// for purge orphaned keys", so a key in daily use through a route other
// than keyd's single and batch crypto calls (the transit API, pseudonym,
// the PII batches, tokenization) must not land there: deleting it would
// shred the data (or every token of its vault).
func TestKeyReportCountsEveryUse(t *testing.T) {
	clk := &fakeClock{}
	c, r := usageCluster(t, 1, clk)
	ctx := ctxT(t)
	for name, typ := range map[string]string{"transit-only": "aes256-gcm", "pseudo-only": "hmac-sha256", "pseudo-batch": "hmac-sha256", "vault": "aes256-gcm", "orphan": "aes256-gcm"} {
		var info api.KeyInfo
		if st, code := r.do(0, "POST", api.PathKeys, c.Token, api.CreateKeyRequest{Name: name, Type: typ}, &info); st != 200 {
			t.Fatalf("create %s: %d %s", name, st, code)
		}
		c.WaitApplied(t, info.Index)
	}
	clk.Advance(800 * time.Hour)
	if st, code := r.do(0, "POST", api.PathTransit+"/encrypt/transit-only", c.Token, api.TransitEncryptRequest{TransitEncryptItem: api.TransitEncryptItem{Plaintext: []byte("p")}}, nil); st != 200 {
		t.Fatalf("transit encrypt: %d %s", st, code)
	}
	if st, code := r.do(0, "POST", api.KeyPath("pseudo-only", "pseudonym"), c.Token, api.PseudonymRequest{Value: []byte("alice")}, nil); st != 200 {
		t.Fatalf("pseudonym: %d %s", st, code)
	}
	if st, code := r.do(0, "POST", api.KeyPath("pseudo-batch", "batch", "pseudonym"), c.Token, api.BatchPseudonymRequest{Items: []api.PseudonymRequest{{Value: []byte("bob")}}}, nil); st != 200 {
		t.Fatalf("batch pseudonym: %d %s", st, code)
	}
	var tok api.TokenizeResponse
	if st, code := r.do(0, "POST", api.KeyPath("vault", "tokenize"), c.Token, api.TokenizeRequest{Value: "4111111111111111"}, &tok); st != 200 {
		t.Fatalf("tokenize: %d %s", st, code)
	}
	if err := c.Node(0).FlushUsage(ctx); err != nil {
		t.Fatal(err)
	}
	c.Eventually(t, 5*time.Second, func() error {
		var rep api.KeyReport
		if st, code := r.do(0, "GET", api.PathKeyReport+"?unused_for=720h", c.Token, nil, &rep); st != 200 {
			return fmt.Errorf("report: %d %s", st, code)
		}
		var never []string
		for _, k := range rep.NeverUsed {
			never = append(never, k.Name)
		}
		if !slices.Equal(never, []string{"orphan"}) {
			return fmt.Errorf("never used %v, want only [orphan]", never)
		}
		return nil
	})
	var u api.KeyUsage
	if st, code := r.do(0, "GET", api.KeyPath("vault", "usage"), c.Token, nil, &u); st != 200 || u.LastUsed == nil || len(u.Identities) != 1 {
		t.Fatalf("vault usage: %d %s %+v", st, code, u)
	}
}

// TestKeyReportTransitOldVersionNeeded: the report's not_needed versions
// are candidates for raising min_decryption_version. A version still
// decrypted through the transit API must be reported needed, or
// following the report breaks every transit client's old data.
func TestKeyReportTransitOldVersionNeeded(t *testing.T) {
	clk := &fakeClock{}
	c, r := usageCluster(t, 1, clk)
	ctx := ctxT(t)
	var info api.KeyInfo
	if st, code := r.do(0, "POST", api.PathKeys, c.Token, api.CreateKeyRequest{Name: "tk"}, &info); st != 200 {
		t.Fatalf("create: %d %s", st, code)
	}
	c.WaitApplied(t, info.Index)
	var enc api.TransitResponse
	enc.Data = &api.TransitResult{}
	if st, code := r.do(0, "POST", api.PathTransit+"/encrypt/tk", c.Token, api.TransitEncryptRequest{TransitEncryptItem: api.TransitEncryptItem{Plaintext: []byte("p")}}, &enc); st != 200 {
		t.Fatalf("transit encrypt: %d %s", st, code)
	}
	ct := enc.Data.(*api.TransitResult).Ciphertext
	if st, code := r.do(0, "POST", api.KeyPath("tk", "rotate"), c.Token, nil, &info); st != 200 {
		t.Fatalf("rotate: %d %s", st, code)
	}
	c.WaitApplied(t, info.Index)
	clk.Advance(time.Hour)
	for _, body := range []any{
		api.TransitCiphertextRequest{TransitCiphertextItem: api.TransitCiphertextItem{Ciphertext: ct}},
		api.TransitCiphertextRequest{BatchInput: []api.TransitCiphertextItem{{Ciphertext: ct}, {Ciphertext: ct}}},
	} {
		if st, code := r.do(0, "POST", api.PathTransit+"/decrypt/tk", c.Token, body, nil); st != 200 {
			t.Fatalf("transit decrypt: %d %s", st, code)
		}
	}
	if err := c.Node(0).FlushUsage(ctx); err != nil {
		t.Fatal(err)
	}
	c.Eventually(t, 5*time.Second, func() error {
		var rep api.KeyReport
		if st, code := r.do(0, "GET", api.PathKeyReport+"?unused_for=720h", c.Token, nil, &rep); st != 200 {
			return fmt.Errorf("report: %d %s", st, code)
		}
		for _, v := range rep.Versions {
			if v.Name == "tk" {
				if !slices.Equal(v.Needed, []uint32{1, 2}) {
					return fmt.Errorf("tk versions %+v: v1 is still decrypted, want it needed", v)
				}
				return nil
			}
		}
		return fmt.Errorf("tk missing from the versions section")
	})
}

// TestKeyReportPinnedVersionsNeeded: pseudonyms pinned to an old
// version (kept stable across rotations) and FPE values decrypted under
// an old version use that version: the report must call it needed.
func TestKeyReportPinnedVersionsNeeded(t *testing.T) {
	clk := &fakeClock{}
	c, r := usageCluster(t, 1, clk)
	ctx := ctxT(t)
	for name, typ := range map[string]string{"ps": "hmac-sha256", "fpe": "ff1-aes256"} {
		var info api.KeyInfo
		if st, code := r.do(0, "POST", api.PathKeys, c.Token, api.CreateKeyRequest{Name: name, Type: typ}, &info); st != 200 {
			t.Fatalf("create %s: %d %s", name, st, code)
		}
		c.WaitApplied(t, info.Index)
	}
	var fe api.FPEResponse
	if st, code := r.do(0, "POST", api.KeyPath("fpe", "fpe", "encrypt"), c.Token, api.FPERequest{Value: "4111111111111111", Format: "card"}, &fe); st != 200 {
		t.Fatalf("fpe encrypt: %d %s", st, code)
	}
	for _, name := range []string{"ps", "fpe"} {
		var info api.KeyInfo
		if st, code := r.do(0, "POST", api.KeyPath(name, "rotate"), c.Token, nil, &info); st != 200 {
			t.Fatalf("rotate %s: %d %s", name, st, code)
		}
		c.WaitApplied(t, info.Index)
	}
	clk.Advance(time.Hour)
	if st, code := r.do(0, "POST", api.KeyPath("ps", "pseudonym"), c.Token, api.PseudonymRequest{Value: []byte("alice"), Version: 1}, nil); st != 200 {
		t.Fatalf("pseudonym: %d %s", st, code)
	}
	if st, code := r.do(0, "POST", api.KeyPath("fpe", "fpe", "decrypt"), c.Token, api.FPERequest{Value: fe.Value, Format: "card", Version: fe.Version}, nil); st != 200 {
		t.Fatalf("fpe decrypt: %d %s", st, code)
	}
	if err := c.Node(0).FlushUsage(ctx); err != nil {
		t.Fatal(err)
	}
	c.Eventually(t, 5*time.Second, func() error {
		var rep api.KeyReport
		if st, code := r.do(0, "GET", api.PathKeyReport+"?unused_for=720h", c.Token, nil, &rep); st != 200 {
			return fmt.Errorf("report: %d %s", st, code)
		}
		seen := 0
		for _, v := range rep.Versions {
			if v.Name == "ps" || v.Name == "fpe" {
				seen++
				if !slices.Equal(v.Needed, []uint32{1, 2}) {
					return fmt.Errorf("%s versions %+v: v1 is still used, want it needed", v.Name, v)
				}
			}
		}
		if seen != 2 {
			return fmt.Errorf("%d of 2 keys in the versions section", seen)
		}
		return nil
	})
}
