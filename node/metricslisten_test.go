package node_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

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
