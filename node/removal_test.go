package node_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/sharex"
	"github.com/keyd/keyd/transport"
)

// asNode returns an HTTP client presenting a cluster certificate for id,
// as the removed node (or whoever holds its certificate) would.
func asNode(t *testing.T, c *testcluster.Cluster, id string) *http.Client {
	t.Helper()
	ident, err := c.CA.Identity(id, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: transport.PeerClientConfig(ident)}, Timeout: 10 * time.Second}
	t.Cleanup(cl.CloseIdleConnections)
	return cl
}

func postStatus(t *testing.T, cl *http.Client, addr, path string, body any) int {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := cl.Post("https://"+addr+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRemovedNodeStaysSealed removes a live voter: it seals itself and
// zeroes its keys, a later custodian unseal through another node does not
// reach it, relayed shares do not unseal it, and peers refuse its
// share requests and relays.
func TestRemovedNodeStaysSealed(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, HSM: testcluster.HSMSoft})
	c.Init(t, 3, 2)
	c.Unseal(t, 2)
	fp := waitDealt(t, c)
	leader := c.WaitLeader(t)
	victim := (leader + 1) % 3
	other := (leader + 2) % 3
	victimID := c.Slot(victim).ID
	ctx := ctxT(t)
	if err := c.Node(leader).RemoveNode(ctx, "", victimID); err != nil {
		t.Fatal(err)
	}
	// The removed node learns of its removal and seals itself.
	c.Eventually(t, 20*time.Second, func() error {
		st := c.Node(victim).Status()
		if !st.Sealed {
			return errors.New("removed node still unsealed")
		}
		if !strings.Contains(st.SealReason, "removed") {
			return fmt.Errorf("seal reason %q", st.SealReason)
		}
		return nil
	})
	if _, _, err := c.Node(victim).AcquireCryptoKey("anything"); !errors.Is(err, api.ErrSealed) {
		t.Fatalf("removed node's keystore: %v", err)
	}

	// Seal the cluster and unseal it through the leader: the shares
	// reach the remaining member, never the removed node.
	if err := c.Node(leader).Seal(ctx); err != nil {
		t.Fatal(err)
	}
	cl := c.ClientFor(t, c.Slot(leader).APIAddr)
	for _, sh := range c.Shares[:2] {
		if _, err := cl.UnsealAt(ctx, c.Slot(leader).APIAddr, sh); err != nil {
			t.Fatal(err)
		}
	}
	c.Eventually(t, 20*time.Second, func() error {
		if c.Node(other).Sealed() || c.Node(leader).Sealed() {
			return errors.New("members still sealed")
		}
		return nil
	})
	if st := c.Node(victim).Status(); !st.Sealed || st.Progress != 0 {
		t.Fatalf("removed node received relayed shares: sealed=%v progress=%d", st.Sealed, st.Progress)
	}
	// Even shares handed to it directly do not unseal it.
	for _, sh := range c.Shares[:2] {
		_, _ = c.Node(victim).SubmitShare(ctx, sh, true)
	}
	if !c.Node(victim).Sealed() {
		t.Fatal("removed node unsealed from custodian shares")
	}

	// Peers refuse the removed node's share requests and relays.
	as := asNode(t, c, victimID)
	req, _, err := sharex.NewRequest(victimID, fp)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{leader, other} {
		if code := postStatus(t, as, c.Slot(i).APIAddr, "/v1/internal/share-request", req); code != http.StatusForbidden {
			t.Fatalf("share request from the removed node to %s: status %d, want 403", c.Slot(i).ID, code)
		}
		if code := postStatus(t, as, c.Slot(i).APIAddr, "/v1/internal/unseal-share", api.UnsealRequest{Share: c.Shares[2]}); code != http.StatusForbidden {
			t.Fatalf("relayed share from the removed node to %s: status %d, want 403", c.Slot(i).ID, code)
		}
	}
	// The remaining members no longer list it as a peer.
	for _, i := range []int{leader, other} {
		for _, p := range c.Node(i).RelayPeers() {
			if p == victimID {
				t.Fatalf("%s still relays to the removed node", c.Slot(i).ID)
			}
		}
	}
}

// TestRemovedIsolatedNodeSealsItself removes a node that no longer
// receives the log (neither the tombstone nor the new configuration
// reach it): it learns from its peers and seals itself.
func TestRemovedIsolatedNodeSealsItself(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 3, 2)
	c.Unseal(t, 2)
	leader := c.WaitLeader(t)
	victim := (leader + 1) % 3
	victimID := c.Slot(victim).ID
	c.Isolate(t, victim)
	ctx := ctxT(t)
	if err := c.Node(leader).RemoveNode(ctx, "", victimID); err != nil {
		t.Fatal(err)
	}
	c.Eventually(t, 30*time.Second, func() error {
		st := c.Node(victim).Status()
		if !st.Sealed {
			return errors.New("isolated removed node still unsealed")
		}
		if !strings.Contains(st.SealReason, "removed") {
			return fmt.Errorf("seal reason %q", st.SealReason)
		}
		return nil
	})
}
