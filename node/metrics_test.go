package node_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/node"
)

// scrape GETs /v1/sys/metrics at addr with token (none when empty) and
// returns the status, the raw body and, for a 200, the parsed families.
func scrape(t *testing.T, hc *http.Client, addr, token string) (int, string, map[string]*dto.MetricFamily) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "https://"+addr+api.PathMetrics, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, string(body), nil
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("scrape %s: Content-Type %q, want the text format", addr, ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse the scrape of %s: %v\n%s", addr, err, body)
	}
	return resp.StatusCode, string(body), fams
}

// value returns the value of the sample of family name whose labels
// include all of labels (name=value pairs), and whether there is one. For
// a histogram it returns the sample count.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func mustValue(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	v, ok := value(fams, name, labels...)
	if !ok {
		t.Fatalf("no sample %s%v in the scrape", name, labels)
	}
	return v
}

// TestMetricsEndpoint scrapes GET /v1/sys/metrics on a real 3-node
// cluster, parses it with the Prometheus text parser and checks that the
// values move with what the cluster does: requests per operation and
// code, seal state, Raft state and indexes, key count, HSM and audit
// latency, gossip members. It needs the metrics capability; key names
// never appear.
func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Gossip: true, HSM: testcluster.HSMSoft})
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	c.Init(t, 1, 1)

	// Sealed, before any key.
	leader := c.WaitLeader(t)
	addr := c.Slot(leader).APIAddr
	_, _, fams := scrape(t, hc, addr, c.Token)
	if v := mustValue(t, fams, "keyd_sealed"); v != 1 {
		t.Fatalf("keyd_sealed before unseal: %v", v)
	}
	if v := mustValue(t, fams, "keyd_initialized"); v != 1 {
		t.Fatalf("keyd_initialized after init: %v", v)
	}

	c.Unseal(t, 1)
	cl := c.Client(t)
	ctx := ctxT(t)
	const secretName = "payroll-master-key-do-not-leak"
	leader = c.WaitLeader(t)
	addr = c.Slot(leader).APIAddr
	_, _, before := scrape(t, hc, addr, c.Token)
	keysBefore := mustValue(t, before, "keyd_keys")
	appliedBefore := mustValue(t, before, "keyd_raft_applied_index")
	encBefore, _ := value(before, "keyd_http_requests_total", "op", "key.encrypt", "code", "200")
	auditBefore := mustValue(t, before, "keyd_audit_write_duration_seconds")

	if _, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: secretName}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := cl.Encrypt(ctx, secretName, []byte("pay everyone twice"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cl.Encrypt(ctx, "no-such-key", []byte("x"), nil); err == nil {
		t.Fatal("encrypt with a missing key succeeded")
	}

	// Requests land on any node: sum the encrypt counts over the cluster.
	c.Eventually(t, 10*time.Second, func() error {
		var enc, notFound float64
		for i := range c.Size() {
			_, _, f := scrape(t, hc, c.Slot(i).APIAddr, c.Token)
			v, _ := value(f, "keyd_http_requests_total", "op", "key.encrypt", "code", "200")
			enc += v
			nf, _ := value(f, "keyd_http_requests_total", "op", "key.encrypt", "code", "404")
			notFound += nf
		}
		if enc < encBefore+3 || notFound < 1 {
			return fmt.Errorf("encrypt counts: %v ok (want >= %v), %v not found", enc, encBefore+3, notFound)
		}
		return nil
	})

	status, body, after := scrape(t, hc, addr, c.Token)
	if status != http.StatusOK {
		t.Fatalf("scrape: HTTP %d", status)
	}
	if strings.Contains(body, secretName) || strings.Contains(body, "pay everyone") {
		t.Fatalf("the scrape names a key or carries plaintext:\n%s", body)
	}
	if v := mustValue(t, after, "keyd_state_bytes"); v <= 0 {
		t.Errorf("keyd_state_bytes: %v, want the state database's size", v)
	}
	if v := mustValue(t, after, "keyd_keys"); v != keysBefore+1 {
		t.Errorf("keyd_keys: %v, want %v", v, keysBefore+1)
	}
	if v := mustValue(t, after, "keyd_raft_applied_index"); v <= appliedBefore {
		t.Errorf("keyd_raft_applied_index did not move: %v -> %v", appliedBefore, v)
	}
	if v := mustValue(t, after, "keyd_sealed"); v != 0 {
		t.Errorf("keyd_sealed after unseal: %v", v)
	}
	if v := mustValue(t, after, "keyd_raft_leader"); v != 1 {
		t.Errorf("keyd_raft_leader on the leader: %v", v)
	}
	if v := mustValue(t, after, "keyd_raft_state", "state", "Leader"); v != 1 {
		t.Errorf("keyd_raft_state{state=Leader}: %v", v)
	}
	if v := mustValue(t, after, "keyd_raft_term"); v < 1 {
		t.Errorf("keyd_raft_term: %v", v)
	}
	if v := mustValue(t, after, "keyd_raft_commit_index"); v < mustValue(t, after, "keyd_raft_applied_index") {
		t.Errorf("commit index %v below applied", v)
	}
	if v := mustValue(t, after, "keyd_audit_write_duration_seconds"); v <= auditBefore {
		t.Errorf("audit writes not timed: %v -> %v", auditBefore, v)
	}
	if _, ok := value(after, "keyd_audit_write_failures_total"); !ok {
		t.Errorf("no keyd_audit_write_failures_total")
	}
	// The soft HSM wrapped and unwrapped node shares after unseal.
	c.Eventually(t, 10*time.Second, func() error {
		_, _, f := scrape(t, hc, addr, c.Token)
		if v, _ := value(f, "keyd_hsm_call_duration_seconds", "call", "wrap", "outcome", "ok"); v < 1 {
			return fmt.Errorf("no timed HSM wrap yet")
		}
		if v, _ := value(f, "keyd_gossip_members", "state", "alive"); v != 3 {
			return fmt.Errorf("gossip alive members: %v, want 3", v)
		}
		return nil
	})
	// A follower: not leader, knows the leader, heard from it recently.
	_, _, f := scrape(t, hc, c.Slot((leader+1)%3).APIAddr, c.Token)
	if mustValue(t, f, "keyd_raft_leader") != 0 || mustValue(t, f, "keyd_raft_leader_known") != 1 ||
		mustValue(t, f, "keyd_raft_state", "state", "Follower") != 1 {
		t.Errorf("follower raft gauges wrong")
	}
	if v := mustValue(t, f, "keyd_raft_last_contact_seconds"); v < 0 || v > 5 {
		t.Errorf("follower last contact: %v s", v)
	}

	// Access: no token, and a token without the metrics capability.
	if status, _, _ := scrape(t, hc, addr, ""); status != http.StatusUnauthorized {
		t.Errorf("scrape without a token: HTTP %d, want 401", status)
	}
	tok, err := cl.CreateToken(ctx, api.CreateTokenRequest{Policies: []string{"auditor"}})
	if err != nil {
		t.Fatal(err)
	}
	if status, _, _ := scrape(t, hc, addr, tok.Token); status != http.StatusForbidden {
		t.Errorf("scrape with an auditor token: HTTP %d, want 403", status)
	}
	op, err := cl.CreateToken(ctx, api.CreateTokenRequest{Policies: []string{"operator"}})
	if err != nil {
		t.Fatal(err)
	}
	if status, _, _ := scrape(t, hc, addr, op.Token); status != http.StatusOK {
		t.Errorf("scrape with an operator token: HTTP %d, want 200", status)
	}
}

// TestMetricsUnauthenticated: with UnauthenticatedMetrics the endpoint
// answers without a token, even on a sealed node.
func TestMetricsUnauthenticated(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, testcluster.Options{Nodes: 1, Configure: func(_ int, cfg *node.Config) { cfg.UnauthenticatedMetrics = true }})
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	c.WaitLeader(t)
	status, body, fams := scrape(t, hc, c.Slot(0).APIAddr, "")
	if status != http.StatusOK {
		t.Fatalf("scrape without a token: HTTP %d %s", status, body)
	}
	if v := mustValue(t, fams, "keyd_initialized"); v != 0 {
		t.Fatalf("keyd_initialized before init: %v", v)
	}
	if _, ok := value(fams, "keyd_gossip_members"); ok {
		t.Fatalf("gossip members exported without gossip")
	}
}
