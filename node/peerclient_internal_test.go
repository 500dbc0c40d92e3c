package node

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/keyd/keyd/transport"
	"github.com/keyd/keyd/transport/devcerts"
)

// TestPeerCallsArePinnedToTheNodeID: a node with a certificate from the
// cluster CA (a removed node, say) that gossips another node's id with its
// own address must receive nothing meant for that node: no relayed
// custodian share, node share or forwarded write reaches it, because the
// handshake checks the server's node id before a byte of the request is
// sent.
func TestPeerCallsArePinnedToTheNodeID(t *testing.T) {
	ca, err := devcerts.NewCA("pin test")
	if err != nil {
		t.Fatal(err)
	}
	identity := func(id string) transport.Identity {
		cert, err := ca.IssueNode(id, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		return transport.Identity{NodeID: id, Cert: cert, CAs: ca.Pool()}
	}
	var got atomic.Int64
	rogue := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got.Add(1)
		_, _ = w.Write([]byte("{}"))
	}))
	rogue.TLS = transport.PeerServerConfig(identity("rogue"))
	rogue.StartTLS()
	defer rogue.Close()
	addr := rogue.Listener.Addr().String()

	c := newPeerClient("n1", []Peer{{ID: "n2", APIAddr: addr}, {ID: "rogue", APIAddr: addr}}, identity("n1"), slog.New(slog.DiscardHandler))
	defer c.closeIdle()
	if err := c.postJSON(context.Background(), "n2", "/v1/internal/node-share", []byte(`{"share":"secret"}`), nil); err == nil {
		t.Fatal("a node posing as n2 was sent n2's call")
	}
	req, _ := http.NewRequest(http.MethodPost, "https://"+addr+"/v1/keys", nil)
	if resp, err := c.doPeer("n2", req); err == nil {
		resp.Body.Close()
		t.Fatal("a write forwarded to n2 reached another node")
	}
	if n := got.Load(); n != 0 {
		t.Fatalf("the impostor received %d requests", n)
	}
	// The same node under its own id is reachable: the pin is what refused.
	if err := c.postJSON(context.Background(), "rogue", "/v1/internal/x", []byte("{}"), nil); err != nil {
		t.Fatalf("call to the node under its own id: %v", err)
	}
	if got.Load() != 1 {
		t.Fatal("the call under the node's own id did not arrive")
	}
}
