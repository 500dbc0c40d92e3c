package node_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/node"
)

func TestMetricsListenAddr(t *testing.T) {
	for in, want := range map[string]string{"9102": "127.0.0.1:9102", ":9102": "127.0.0.1:9102", "0.0.0.0:9102": "0.0.0.0:9102", "[::1]:9102": "[::1]:9102"} {
		if got := node.MetricsListenAddr(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// TestMetricsListener: the separate listener serves the metrics over
// plain HTTP without a token, and nothing else; the API still needs a
// token for them.
func TestMetricsListener(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := testcluster.New(t, testcluster.Options{Nodes: 1, Configure: func(_ int, cfg *node.Config) { cfg.MetricsListener = ln }})
	c.WaitLeader(t)
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := hc.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	st, body := get("/metrics")
	if st != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", st, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fams["keyd_sealed"]; !ok {
		t.Fatalf("no keyd_sealed in %d families", len(fams))
	}
	if st, _ := get("/v1/sys/status"); st != http.StatusNotFound {
		t.Fatalf("the metrics listener serves /v1/sys/status: %d", st)
	}
	hcTLS := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hcTLS.CloseIdleConnections)
	if st, _, _ := scrape(t, hcTLS, c.Slot(0).APIAddr, ""); st != http.StatusUnauthorized {
		t.Fatalf("the API's metrics without a token: %d", st)
	}
}

// TestRaftPeerLastContactMetric: the leader exports, per follower, the
// time since it last reached it; it grows for a stopped follower, and
// followers export none.
func TestRaftPeerLastContactMetric(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Configure: func(_ int, cfg *node.Config) { cfg.UnauthenticatedMetrics = true }})
	leader := c.WaitLeader(t)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	var followers []int
	for i := 0; i < 3; i++ {
		if i != leader {
			followers = append(followers, i)
		}
	}
	c.Eventually(t, 10*time.Second, func() error {
		_, _, fams := scrape(t, hc, c.Slot(leader).APIAddr, "")
		for _, f := range followers {
			v, ok := value(fams, "keyd_raft_peer_last_contact_seconds", "peer", c.Slot(f).ID)
			if !ok || v < 0 || v > 5 {
				return fmt.Errorf("peer %s: %v %v", c.Slot(f).ID, v, ok)
			}
		}
		if _, ok := value(fams, "keyd_raft_peer_last_contact_seconds", "peer", c.Slot(leader).ID); ok {
			return fmt.Errorf("the leader reports contact with itself")
		}
		return nil
	})
	_, _, fams := scrape(t, hc, c.Slot(followers[0]).APIAddr, "")
	if _, ok := fams["keyd_raft_peer_last_contact_seconds"]; ok {
		t.Fatal("a follower exports per-peer contact")
	}
	stopped := followers[1]
	c.Stop(t, stopped)
	c.Eventually(t, 15*time.Second, func() error {
		l := c.WaitLeader(t)
		_, _, fams := scrape(t, hc, c.Slot(l).APIAddr, "")
		v, ok := value(fams, "keyd_raft_peer_last_contact_seconds", "peer", c.Slot(stopped).ID)
		if !ok || v < 1 {
			return fmt.Errorf("stopped peer: %v %v", v, ok)
		}
		return nil
	})
}
