package node_test

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/node"
)

// fakeClock is real time plus an offset the test moves forward, so times
// the FSM takes from the real clock (key creation) stay comparable.
type fakeClock struct{ off atomic.Int64 }

func (f *fakeClock) Now() time.Time          { return time.Now().Add(time.Duration(f.off.Load())) }
func (f *fakeClock) Advance(d time.Duration) { f.off.Add(int64(d)) }

func usageCluster(t *testing.T, nodes int, clk *fakeClock) (*testcluster.Cluster, *raw) {
	c := testcluster.New(t, testcluster.Options{Nodes: nodes, Configure: func(_ int, cfg *node.Config) {
		cfg.Usage.Now = clk.Now
		cfg.Usage.FlushInterval = time.Hour // the test flushes
	}})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	return c, &raw{t: t, c: c, hc: hc}
}

// TestUsageReportAfterWorkload runs a known workload spread over the
// nodes, flushes, and checks counts, times, the per-node aggregation (one
// usage write per node that served requests) and every report section.
func TestUsageReportAfterWorkload(t *testing.T) {
	clk := &fakeClock{}
	c, r := usageCluster(t, 3, clk)
	ctx := ctxT(t)
	leader := c.WaitLeader(t)
	create := func(req api.CreateKeyRequest) {
		var info api.KeyInfo
		if st, code := r.do(leader, "POST", api.PathKeys, c.Token, req, &info); st != 200 {
			t.Fatalf("create %s: %d %s", req.Name, st, code)
		}
		c.WaitApplied(t, info.Index)
	}
	enc := func(slot int, key string) api.EncryptResponse {
		var out api.EncryptResponse
		if st, code := r.do(slot, "POST", api.KeyPath(key, "encrypt"), c.Token, api.EncryptRequest{Plaintext: []byte("p")}, &out); st != 200 {
			t.Fatalf("encrypt %s on %d: %d %s", key, slot, st, code)
		}
		return out
	}
	rotate := func(key string) {
		var info api.KeyInfo
		if st, code := r.do(leader, "POST", api.KeyPath(key, "rotate"), c.Token, nil, &info); st != 200 {
			t.Fatalf("rotate %s: %d %s", key, st, code)
		}
		c.WaitApplied(t, info.Index)
	}
	for _, k := range []string{"k1", "k2", "k3-orphan", "k4"} {
		create(api.CreateKeyRequest{Name: k})
	}
	create(api.CreateKeyRequest{Name: "k5-due", RotationPeriod: "1h"})
	idle, idleAccessor := r.token("operator")

	// k2 is used once; k4 is used, rotated and never used again (its v1
	// is no longer needed); then 800 hours pass.
	enc(0, "k2")
	enc(0, "k4")
	rotate("k4")
	clk.Advance(800 * time.Hour)
	used := clk.Now()

	// k1: five encryptions (v1) over the three nodes, a rotation, two
	// more (v2) and one decryption of an old v1 ciphertext.
	var old api.EncryptResponse
	for i := 0; i < 5; i++ {
		old = enc(i%3, "k1")
	}
	rotate("k1")
	enc(1, "k1")
	enc(2, "k1")
	if st, code := r.do(1, "POST", api.KeyPath("k1", "decrypt"), c.Token, api.DecryptRequest{Ciphertext: old.Ciphertext}, nil); st != 200 {
		t.Fatalf("decrypt: %d %s", st, code)
	}

	// One usage write per node with uses, whatever the request count.
	var before uint64
	pending := 0
	for i := 0; i < c.Size(); i++ {
		before += c.Node(i).UsageFlushes()
		if c.Node(i).UsagePending() {
			pending++
		}
	}
	for i := 0; i < c.Size(); i++ {
		if err := c.Node(i).FlushUsage(ctx); err != nil {
			t.Fatalf("flush %d: %v", i, err)
		}
	}
	var after uint64
	for i := 0; i < c.Size(); i++ {
		after += c.Node(i).UsageFlushes()
	}
	if pending != 3 || after-before != uint64(pending) {
		t.Fatalf("%d usage writes for %d nodes with uses (want one each)", after-before, pending)
	}

	var u api.KeyUsage
	c.Eventually(t, 5*time.Second, func() error {
		if st, code := r.do(leader, "GET", api.KeyPath("k1", "usage"), c.Token, nil, &u); st != 200 {
			return fmt.Errorf("usage: %d %s", st, code)
		}
		if u.Count != 8 {
			return fmt.Errorf("k1 count %d, want 8", u.Count)
		}
		return nil
	})
	if len(u.Versions) != 2 || u.Versions[0].Count != 6 || u.Versions[1].Count != 2 {
		t.Fatalf("k1 versions %+v, want v1=6 v2=2", u.Versions)
	}
	if u.LastUsed == nil || u.LastUsed.Before(used) {
		t.Fatalf("k1 last used %v, want after %v", u.LastUsed, used)
	}
	if len(u.Identities) != 1 || !strings.HasPrefix(u.Identities[0].Identity, "token:") || u.Identities[0].Count != 8 {
		t.Fatalf("k1 identities %+v", u.Identities)
	}

	var rep api.KeyReport
	if st, code := r.do(leader, "GET", api.PathKeyReport+"?unused_for=720h", c.Token, nil, &rep); st != 200 {
		t.Fatalf("report: %d %s", st, code)
	}
	names := func(ks []api.ReportKey) []string {
		var out []string
		for _, k := range ks {
			out = append(out, k.Name)
		}
		return out
	}
	if got := names(rep.Unused); !slices.Equal(got, []string{"k2", "k4"}) {
		t.Errorf("unused %v, want [k2 k4]", got)
	}
	if got := names(rep.NeverUsed); !slices.Equal(got, []string{"k3-orphan", "k5-due"}) {
		t.Errorf("never used %v, want [k3-orphan k5-due]", got)
	}
	if got := names(rep.RotationDue); !slices.Equal(got, []string{"k5-due"}) {
		t.Errorf("rotation due %v, want [k5-due]", got)
	}
	vers := map[string]api.ReportVersions{}
	for _, v := range rep.Versions {
		vers[v.Name] = v
	}
	if v := vers["k1"]; !slices.Equal(v.Needed, []uint32{1, 2}) || len(v.NotNeeded) != 0 {
		t.Errorf("k1 versions %+v, want both needed", v)
	}
	if v := vers["k4"]; !slices.Equal(v.Needed, []uint32{2}) || !slices.Equal(v.NotNeeded, []uint32{1}) {
		t.Errorf("k4 versions %+v, want v1 not needed", v)
	}
	var stale []string
	for _, cr := range rep.StaleCredentials {
		stale = append(stale, cr.ID)
	}
	if !slices.Equal(stale, []string{idleAccessor}) {
		t.Errorf("stale credentials %v, want only the idle token %s", stale, idleAccessor)
	}

	// Token list shows each credential's last use.
	var toks api.TokenList
	if st, code := r.do(leader, "GET", api.PathTokens, c.Token, nil, &toks); st != 200 {
		t.Fatalf("token list: %d %s", st, code)
	}
	for _, tk := range toks.Tokens {
		if tk.Accessor == idleAccessor && tk.LastUsed != nil {
			t.Errorf("idle token shows a last use")
		}
		if tk.Accessor != idleAccessor && tk.LastUsed == nil {
			t.Errorf("admin token %s shows no last use", tk.Accessor)
		}
	}

	// The report needs audit-read; the idle app token has none.
	if st, _ := r.do(leader, "GET", api.PathKeyReport, idle, nil, nil); st != 403 {
		t.Fatalf("app token reads the report: %d", st)
	}
	for _, bad := range []string{"0s", "-1h", "30d", "99999999h", strings.Repeat("1", 40) + "h"} {
		if st, _ := r.do(leader, "GET", api.PathKeyReport+"?unused_for="+bad, c.Token, nil, nil); st != 400 {
			t.Errorf("unused_for=%s: %d, want 400", bad, st)
		}
	}
}

// TestUsageFlushedOnClose: a follower's uses reach the replicated state
// when it stops cleanly, without waiting for the interval.
func TestUsageFlushedOnClose(t *testing.T) {
	clk := &fakeClock{}
	c, r := usageCluster(t, 3, clk)
	leader := c.WaitLeader(t)
	var info api.KeyInfo
	if st, code := r.do(leader, "POST", api.PathKeys, c.Token, api.CreateKeyRequest{Name: "k"}, &info); st != 200 {
		t.Fatalf("create: %d %s", st, code)
	}
	c.WaitApplied(t, info.Index)
	f := (leader + 1) % 3
	for i := 0; i < 3; i++ {
		if st, code := r.do(f, "POST", api.KeyPath("k", "encrypt"), c.Token, api.EncryptRequest{Plaintext: []byte("p")}, nil); st != 200 {
			t.Fatalf("encrypt: %d %s", st, code)
		}
	}
	c.Stop(t, f)
	var u api.KeyUsage
	if st, code := r.do(leader, "GET", api.KeyPath("k", "usage"), c.Token, nil, &u); st != 200 || u.Count != 3 {
		t.Fatalf("after the follower stopped: %d %s, count %d, want 3", st, code, u.Count)
	}
}

// TestRetentionSchedulesDeletion: once a key's retention has passed (on
// the injected clock) the leader schedules its deletion with the usual
// window, audited as the system's act; keys without retention stay.
func TestRetentionSchedulesDeletion(t *testing.T) {
	clk := &fakeClock{}
	c, r := usageCluster(t, 1, clk)
	for _, req := range []api.CreateKeyRequest{
		{Name: "session", Retention: "24h"},
		{Name: "person", Retention: "48h", Tags: []string{"pii"}},
		{Name: "forever"},
	} {
		if st, code := r.do(0, "POST", api.PathKeys, c.Token, req, nil); st != 200 {
			t.Fatalf("create %s: %d %s", req.Name, st, code)
		}
	}
	if st, _ := r.do(0, "POST", api.PathKeys, c.Token, api.CreateKeyRequest{Name: "typo", Retention: "10m"}, nil); st != 400 {
		t.Fatalf("a 10m retention: %d, want 400", st)
	}
	read := func(name string) api.KeyInfo {
		var info api.KeyInfo
		if st, code := r.do(0, "GET", api.KeyPath(name), c.Token, nil, &info); st != 200 {
			t.Fatalf("read %s: %d %s", name, st, code)
		}
		return info
	}
	if info := read("session"); info.Retention != "24h0m0s" || info.State != "enabled" {
		t.Fatalf("session %+v", info)
	}
	clk.Advance(25 * time.Hour)
	at := clk.Now()
	c.Eventually(t, 10*time.Second, func() error {
		if s := read("session").State; s != "pending_deletion" {
			return fmt.Errorf("session is %s", s)
		}
		return nil
	})
	info := read("session")
	if d := info.DeletionAt.Sub(at); d < node.DefaultDeletionWindow-time.Minute || d > node.DefaultDeletionWindow+time.Minute {
		t.Fatalf("deletion at %v, want about %v after %v", info.DeletionAt, node.DefaultDeletionWindow, at)
	}
	if s := read("person").State; s != "enabled" {
		t.Fatalf("person (48h retention) is %s after 25h", s)
	}
	if s := read("forever").State; s != "enabled" {
		t.Fatalf("forever is %s", s)
	}
	var log bytes.Buffer
	c.Eventually(t, 10*time.Second, func() error {
		log.Reset()
		if err := c.Node(0).WriteAuditLog(&log); err != nil {
			return err
		}
		if !strings.Contains(log.String(), `"op":"key.retention_deletion"`) || !strings.Contains(log.String(), `"identity":"system:retention"`) {
			return fmt.Errorf("no retention record in the audit log")
		}
		return nil
	})
	if n := strings.Count(log.String(), `"op":"key.retention_deletion"`); n != 1 {
		t.Fatalf("%d retention records, want 1 (a later pass must not reschedule)", n)
	}
}
