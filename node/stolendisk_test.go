package node_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/shamir"
	"github.com/keyd/keyd/sharex"
)

// TestStolenDiskVoterCollectsNothing: root on one voter's disk (its node
// certificate and key are plain files) but without its HSM. While the
// voter is down the attacker answers at its address with its certificate
// and claims a working HSM. The cluster is sealed and unsealed by
// custodians (their shares are relayed to every peer) and the leader
// re-deals node shares; the attacker then asks to be dealt in and offers
// a delivery key of its own.
//
// Before delivery keys, the relays handed the attacker the custodian
// shares in the clear and the leader delivered the voter's new node share
// in the clear: either was the root (the node share through share
// requests to the unsealed peers). Now both are sealed to the voter's
// delivery key, pinned at its first dealing, which only its HSM unwraps:
// the attacker receives nothing it can open, and cannot re-pin the key.
func TestStolenDiskVoterCollectsNothing(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	c, res, first := hourlyDealing(t)
	const victim = 2
	vid := c.Slot(victim).ID
	pinned, err := c.Node(0).PinnedDeliveryKey(vid)
	if err != nil || len(pinned) != sharex.DeliveryKeySize {
		t.Fatalf("the victim's delivery key was not pinned at its first dealing: %x, %v", pinned, err)
	}
	c.Stop(t, victim)

	// The attacker, with the victim's certificate from its disk, at the
	// victim's address.
	cert, err := c.CA.IssueNode(vid, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	own, err := sharex.NewDeliveryKey()
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu         sync.Mutex
		relays     []map[string]json.RawMessage
		deliveries []map[string]json.RawMessage
		askedKey   int
	)
	record := func(into *[]map[string]json.RawMessage) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var m map[string]json.RawMessage
			if json.NewDecoder(r.Body).Decode(&m) == nil {
				mu.Lock()
				*into = append(*into, m)
				mu.Unlock()
			}
			_, _ = io.WriteString(w, "{}")
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.PathStatus, func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(api.SealStatus{HSM: "ok", Sealed: true, Initialized: true})
	})
	mux.HandleFunc("POST "+api.PathInternalUnsealShare, record(&relays))
	mux.HandleFunc("POST "+api.PathInternalNodeShare, record(&deliveries))
	mux.HandleFunc("POST "+api.PathInternalDeliveryKey, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		askedKey++
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(api.DeliveryKey{Node: vid, PublicKey: own.PublicKey().Bytes()})
	})
	ln, err := net.Listen("tcp", c.Slot(victim).APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert}}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	defer srv.Close()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, RootCAs: c.CA.Pool(),
	}}}
	defer hc.CloseIdleConnections()

	// A cold unseal through node 0 relays the custodian shares to every
	// peer, the attacker included, and the leader re-deals.
	reDeal(t, c, res, first)
	leader := c.WaitLeader(t)
	c.Eventually(t, 20*time.Second, func() error {
		mu.Lock()
		n := len(deliveries)
		mu.Unlock()
		if n > 0 {
			return nil
		}
		resp, err := hc.Post("https://"+c.Slot(leader).APIAddr+api.PathInternalDealMeIn, "application/json", bytes.NewReader([]byte("{}")))
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		return errors.New("no node share delivered to the attacker yet")
	})

	mu.Lock()
	defer mu.Unlock()
	rb, err := c.Node(0).RootCommitments()
	if err != nil {
		t.Fatal(err)
	}
	root, err := shamir.UnmarshalCommitments(rb)
	if err != nil {
		t.Fatal(err)
	}
	var custodianShares []shamir.Share
	if len(relays) == 0 {
		t.Fatal("no custodian share was relayed to the victim's address: the test did not exercise the relay")
	}
	for _, m := range relays {
		if raw, ok := m["share"]; ok {
			var text string
			_ = json.Unmarshal(raw, &text)
			if sh, err := shamir.DecodeShare(text); err == nil {
				custodianShares = append(custodianShares, sh)
			}
			continue
		}
		var req api.UnsealRequest
		b, _ := json.Marshal(m)
		_ = json.Unmarshal(b, &req)
		d := sharex.Delivery{Kind: sharex.CustodianRelay, Receiver: vid, Dealer: c.Slot(0).ID, Epoch: req.GivenAt, Fingerprint: root.Fingerprint()}
		if _, err := sharex.OpenDelivery(own, d, req.Ephemeral, req.Sealed); err == nil {
			t.Error("the attacker opened a relayed custodian share with its own key")
		}
	}
	if len(custodianShares) > 0 {
		secret, err := shamir.Combine(root, custodianShares)
		if err == nil {
			secret.Destroy()
			t.Errorf("root on one voter's disk collected %d custodian shares in the clear from relays and combined the root", len(custodianShares))
		} else {
			t.Errorf("root on one voter's disk collected %d custodian shares in the clear from relays", len(custodianShares))
		}
	}
	for _, m := range deliveries {
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
		if _, err := sharex.OpenDelivery(own, sd, d.Ephemeral, d.Sealed); err == nil {
			t.Error("the attacker opened the victim's node share with its own key")
		}
	}
	if askedKey != 0 {
		t.Errorf("the leader asked the impostor for a delivery key %d times (the victim's key is pinned)", askedKey)
	}
	if now, err := c.Node(leader).PinnedDeliveryKey(vid); err != nil || !bytes.Equal(now, pinned) {
		t.Fatalf("the victim's pinned delivery key changed: %v", err)
	}
}
