package node_test

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

// health GETs /v1/sys/health at addr with query q and returns the status
// and the decoded body.
func health(t *testing.T, hc *http.Client, addr, q string) (int, api.Health) {
	t.Helper()
	resp, err := hc.Get("https://" + addr + api.PathHealth + q)
	if err != nil {
		t.Fatalf("health %s%s: %v", addr, q, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var h api.Health
	if resp.StatusCode != http.StatusBadRequest {
		if err := json.Unmarshal(body, &h); err != nil || h.NodeID == "" {
			t.Fatalf("health %s%s: HTTP %d body %q is not a health body: %v", addr, q, resp.StatusCode, body, err)
		}
	}
	return resp.StatusCode, h
}

// TestHealthCodes checks the load-balancer status codes of GET
// /v1/sys/health in every state of a real cluster, as Vault users expect
// them: 501 not initialized, 503 sealed, 200 leader, 429 unsealed follower
// (200 with ?standbyok=true), each overridable by a query parameter, with
// the body unchanged. The client's Health and the CLI keep working on
// every code.
func TestHealthCodes(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	addr := c.Slot(0).APIAddr
	cl := c.ClientFor(t, c.Addrs()...)

	expect := func(addr, q string, want int) api.Health {
		t.Helper()
		got, h := health(t, hc, addr, q)
		if got != want {
			t.Fatalf("health %s%s: got HTTP %d (%+v), want %d", addr, q, got, h, want)
		}
		return h
	}
	clientHealth := func(addr string) api.Health {
		t.Helper()
		h, err := cl.Health(ctxT(t), addr)
		if err != nil {
			t.Fatalf("client Health(%s): %v", addr, err)
		}
		return *h
	}

	// Not initialized.
	c.WaitLeader(t)
	if h := expect(addr, "", 501); h.Initialized || !h.Sealed {
		t.Fatalf("uninitialized body: %+v", h)
	}
	expect(addr, "?uninitcode=200", 200)
	expect(addr, "?standbyok=true", 501)
	if h := clientHealth(addr); h.Initialized {
		t.Fatalf("client Health before init: %+v", h)
	}

	// Sealed.
	c.Init(t, 1, 1)
	if h := expect(addr, "", 503); !h.Initialized || !h.Sealed {
		t.Fatalf("sealed body: %+v", h)
	}
	expect(addr, "?sealedcode=200", 200)
	expect(addr, "?standbyok=true", 503)
	if h := clientHealth(addr); !h.Sealed {
		t.Fatalf("client Health while sealed: %+v", h)
	}

	// Unsealed: one leader, two followers.
	c.Unseal(t, 1)
	leader := c.WaitLeader(t)
	for i := range c.Size() {
		a := c.Slot(i).APIAddr
		if i == leader {
			if h := expect(a, "", 200); !h.Leader || h.Sealed {
				t.Fatalf("leader body: %+v", h)
			}
			expect(a, "?activecode=299", 299)
			expect(a, "?standbycode=200", 200)
			continue
		}
		if h := expect(a, "", 429); h.Leader || h.Sealed || !h.Initialized {
			t.Fatalf("follower body: %+v", h)
		}
		expect(a, "?standbyok=true", 200)
		expect(a, "?standbyok", 200)
		expect(a, "?standbyok=false", 429)
		expect(a, "?standbycode=200", 200)
		expect(a, "?standbyok=true&activecode=202", 202)
		if h := clientHealth(a); h.Leader || h.Sealed {
			t.Fatalf("client Health of a follower: %+v", h)
		}
	}

	// Bad parameters are refused, not ignored.
	for _, q := range []string{"?standbycode=abc", "?sealedcode=99", "?activecode=600", "?uninitcode=-1", "?standbyok=maybe"} {
		expect(addr, q, http.StatusBadRequest)
	}
	// The CLI still reads the status of every node.
	st, err := cl.Status(ctxT(t))
	if err != nil || st.NodeID == "" {
		t.Fatalf("client Status: %+v %v", st, err)
	}
}
