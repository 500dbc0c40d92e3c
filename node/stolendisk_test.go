package node_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/node"
	"github.com/keyd/keyd/shamir"
	"github.com/keyd/keyd/sharex"
)

// impostor is root on one node's disk without its HSM: it answers at the
// node's address with the node's certificate (a file on that disk) while
// the node is down, claims a working HSM, offers a delivery key of its
// own and records every share sent to it.
type impostor struct {
	id  string
	own *ecdh.PrivateKey
	hc  *http.Client

	mu         sync.Mutex
	relays     []map[string]json.RawMessage
	deliveries []map[string]json.RawMessage
	askedKey   int
}

func startImpostor(t *testing.T, c *testcluster.Cluster, slot int) *impostor {
	t.Helper()
	id := c.Slot(slot).ID
	cert, err := c.CA.IssueNode(id, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	own, err := sharex.NewDeliveryKey()
	if err != nil {
		t.Fatal(err)
	}
	im := &impostor{id: id, own: own}
	record := func(into *[]map[string]json.RawMessage) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var m map[string]json.RawMessage
			if json.NewDecoder(r.Body).Decode(&m) == nil {
				im.mu.Lock()
				*into = append(*into, m)
				im.mu.Unlock()
			}
			_, _ = io.WriteString(w, "{}")
		}
	}
	mux := http.NewServeMux()
	// Anything else: a node that cannot serve, so clients go elsewhere.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(api.Error{Code: api.CodeUnavailable, Message: "impostor"})
	})
	mux.HandleFunc("GET "+api.PathStatus, func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(api.SealStatus{NodeID: id, HSM: "ok", Sealed: true, Initialized: true})
	})
	mux.HandleFunc("POST "+api.PathInternalUnsealShare, record(&im.relays))
	mux.HandleFunc("POST "+api.PathInternalNodeShare, record(&im.deliveries))
	mux.HandleFunc("POST "+api.PathInternalDeliveryKey, func(w http.ResponseWriter, r *http.Request) {
		im.mu.Lock()
		im.askedKey++
		im.mu.Unlock()
		_ = json.NewEncoder(w).Encode(api.DeliveryKey{Node: id, PublicKey: own.PublicKey().Bytes()})
	})
	ln, err := net.Listen("tcp", c.Slot(slot).APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert}}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	im.hc = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, RootCAs: c.CA.Pool(),
	}}}
	t.Cleanup(im.hc.CloseIdleConnections)
	return im
}

// checkRelays fails t if the impostor can use any custodian share relayed
// to it: one in the clear, or one sealed to a key it holds.
func (im *impostor) checkRelays(t *testing.T, c *testcluster.Cluster, relayer string) {
	t.Helper()
	im.mu.Lock()
	defer im.mu.Unlock()
	if len(im.relays) == 0 {
		t.Fatal("no custodian share was relayed to the victim's address: the test did not exercise the relay")
	}
	rb, err := c.Node(0).RootCommitments()
	if err != nil {
		t.Fatal(err)
	}
	root, err := shamir.UnmarshalCommitments(rb)
	if err != nil {
		t.Fatal(err)
	}
	var clear []shamir.Share
	for _, m := range im.relays {
		if raw, ok := m["share"]; ok {
			var text string
			_ = json.Unmarshal(raw, &text)
			if sh, err := shamir.DecodeShare(text); err == nil {
				clear = append(clear, sh)
			}
			continue
		}
		var req api.UnsealRequest
		b, _ := json.Marshal(m)
		_ = json.Unmarshal(b, &req)
		d := sharex.Delivery{Kind: sharex.CustodianRelay, Receiver: im.id, Dealer: relayer, Epoch: req.GivenAt, Fingerprint: root.Fingerprint()}
		if _, err := sharex.OpenDelivery(im.own, d, req.Ephemeral, req.Sealed); err == nil {
			t.Error("the impostor opened a relayed custodian share with its own key")
		}
	}
	if len(clear) > 0 {
		if secret, err := shamir.Combine(root, clear); err == nil {
			secret.Destroy()
			t.Errorf("root on %s's disk collected %d custodian shares in the clear from relays and combined the root", im.id, len(clear))
		} else {
			t.Errorf("root on %s's disk collected %d custodian shares in the clear from relays", im.id, len(clear))
		}
	}
}

// TestStolenDiskVoterCollectsNothing: root on one voter's disk (its node
// certificate and key are plain files) but without its HSM. While the
// voter is down the attacker stands in for it (impostor). The cluster is
// sealed and unsealed by custodians (their shares are relayed to every
// peer) and the leader re-deals node shares; the attacker then asks to
// be dealt in and offers a delivery key of its own.
//
// Before delivery keys, the relays handed the attacker the custodian
// shares in the clear and the leader delivered the voter's new node share
// in the clear: either was the root (the node share through share
// requests to the unsealed peers). Now both are sealed to the voter's
// delivery key, pinned when it joined, which only its HSM unwraps: the
// attacker receives nothing it can open, and cannot re-pin the key.
func TestStolenDiskVoterCollectsNothing(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	c, res, first := hourlyDealing(t)
	const victim = 2
	vid := c.Slot(victim).ID
	pinned, err := c.Node(0).PinnedDeliveryKey(vid)
	if err != nil || len(pinned) != sharex.DeliveryKeySize {
		t.Fatalf("the victim's delivery key was not pinned by its first dealing: %x, %v", pinned, err)
	}
	c.Stop(t, victim)
	im := startImpostor(t, c, victim)

	// A cold unseal through node 0 relays the custodian shares to every
	// peer, the impostor included, and the leader re-deals.
	reDeal(t, c, res, first)
	leader := c.WaitLeader(t)
	c.Eventually(t, 20*time.Second, func() error {
		im.mu.Lock()
		n := len(im.deliveries)
		im.mu.Unlock()
		if n > 0 {
			return nil
		}
		resp, err := im.hc.Post("https://"+c.Slot(leader).APIAddr+api.PathInternalDealMeIn, "application/json", bytes.NewReader([]byte("{}")))
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		return errors.New("no node share delivered to the impostor yet")
	})

	im.checkRelays(t, c, c.Slot(0).ID)
	im.mu.Lock()
	defer im.mu.Unlock()
	for _, m := range im.deliveries {
		if _, ok := m["share"]; ok {
			t.Error("the leader delivered the victim's node share in the clear")
			continue
		}
		var d api.NodeShareDelivery
		b, _ := json.Marshal(m)
		_ = json.Unmarshal(b, &d)
		commits, err := shamir.UnmarshalCommitments(d.Commitments)
		if err != nil {
			t.Fatal(err)
		}
		sd := sharex.Delivery{Kind: sharex.NodeShare, Receiver: vid, Dealer: c.Slot(leader).ID, Epoch: d.Epoch, Fingerprint: commits.Fingerprint()}
		if _, err := sharex.OpenDelivery(im.own, sd, d.Ephemeral, d.Sealed); err == nil {
			t.Error("the impostor opened the victim's node share with its own key")
		}
	}
	if im.askedKey != 0 {
		t.Errorf("the leader asked the impostor for a delivery key %d times (the victim's key is pinned)", im.askedKey)
	}
	if now, err := c.Node(leader).PinnedDeliveryKey(vid); err != nil || !bytes.Equal(now, pinned) {
		t.Fatalf("the victim's pinned delivery key changed: %v", err)
	}
}

// TestStolenDiskStandbyCollectsNothing: the same attacker on a standby
// (a non-voter beyond max_voters, with an HSM but never dealt a node
// share). Its key is pinned when it joins, so the custodian shares of a
// cold unseal are relayed to it sealed, not in the clear.
func TestStolenDiskStandbyCollectsNothing(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	c := testcluster.New(t, testcluster.Options{
		Nodes: 3, Regions: []string{"a", "b", "c"}, Gossip: true, HSM: testcluster.HSMSoft,
		Configure: func(_ int, cfg *node.Config) { cfg.MaxVoters = 3 },
	})
	res := c.Init(t, 3, 2)
	c.Unseal(t, 2)
	standby := c.AddNode(t, "a")
	sid := c.Slot(standby).ID
	c.Eventually(t, 30*time.Second, func() error {
		member := false
		for _, n := range clusterOf(t, c).Nodes {
			if n.ID == sid {
				if n.Voter {
					return fmt.Errorf("%s was promoted", sid)
				}
				member = true
			}
		}
		if !member {
			return fmt.Errorf("%s not a member yet", sid)
		}
		if pub, err := c.Node(0).PinnedDeliveryKey(sid); err != nil || pub == nil {
			return fmt.Errorf("%s's delivery key not pinned yet (%v)", sid, err)
		}
		return nil
	})
	c.Stop(t, standby)
	im := startImpostor(t, c, standby)

	ctx := ctxT(t)
	sealThrough(t, c, 0)
	relayed := make(chan string, 16)
	c.Node(0).SetShareRelayHook(func(peer string) func() { return func() { relayed <- peer } })
	defer c.Node(0).SetShareRelayHook(nil)
	cl := c.ClientFor(t, c.Slot(0).APIAddr)
	for _, sh := range res.Shares[:2] {
		if _, err := cl.UnsealAt(ctx, c.Slot(0).APIAddr, sh); err != nil {
			t.Fatalf("unseal: %v", err)
		}
	}
	for got := 0; got < 2; {
		select {
		case p := <-relayed:
			if p == sid {
				got++
			}
		case <-time.After(time.Minute):
			t.Fatal("share relays to the standby did not end")
		}
	}
	im.checkRelays(t, c, c.Slot(0).ID)
}
