package node_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

// TestSealStopsShareRelays is the attack on "sealed means sealed" through
// share relays: custodian shares submitted to one node are relayed to its
// peers, and a relay can be slow (a peer restarting, retries). A relay
// still pending when the operator seals must not reach a peer afterwards
// and unseal it with shares given before the seal.
func TestSealStopsShareRelays(t *testing.T) {
	c, res, allSealed := sealedCluster(t)
	ctx := ctxT(t)

	// Node 0's relays are held until the operator has sealed again.
	const relays = 4 // two shares, two peers
	started := make(chan string, relays)
	finished := make(chan string, relays)
	release := make(chan struct{})
	c.Node(0).SetShareRelayHook(func(peer string) func() {
		started <- peer
		<-release
		return func() { finished <- peer }
	})
	addr := c.Slot(0).APIAddr
	cl := c.ClientFor(t, addr)
	for _, sh := range res.Shares[:2] {
		if _, err := cl.UnsealAt(ctx, addr, sh); err != nil {
			t.Fatalf("unseal node 0: %v", err)
		}
	}
	if c.Node(0).Sealed() {
		t.Fatal("node 0 did not unseal from two shares")
	}
	for i := 0; i < relays; i++ {
		<-started
	}
	if err := c.Node(0).Seal(ctx); err != nil {
		t.Fatal(err)
	}
	c.Eventually(t, 10*time.Second, allSealed)
	close(release)
	for i := 0; i < relays; i++ {
		select {
		case <-finished:
		case <-time.After(30 * time.Second):
			t.Fatal("relays did not end")
		}
	}
	if err := allSealed(); err != nil {
		t.Fatalf("a share relay from before the seal unsealed a node: %v", err)
	}

	// Relays after the seal still work: shares given to node 0 now unseal
	// the whole cluster.
	c.Node(0).SetShareRelayHook(nil)
	for _, sh := range res.Shares[1:3] {
		if _, err := cl.UnsealAt(ctx, addr, sh); err != nil {
			t.Fatalf("unseal after the seal: %v", err)
		}
	}
	c.WaitUnsealed(t)
}

// sealedCluster starts three nodes (custodian threshold 2 of 3), unseals
// them and has an operator seal them, and returns a check that every node
// is sealed.
func sealedCluster(t *testing.T) (*testcluster.Cluster, *api.InitResponse, func() error) {
	t.Helper()
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	res := c.Init(t, 3, 2)
	c.Unseal(t, 2)
	if err := c.Client(t).Seal(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	allSealed := func() error {
		for i := 0; i < c.Size(); i++ {
			if !c.Node(i).Sealed() {
				return fmt.Errorf("%s unsealed", c.Node(i).ID())
			}
		}
		return nil
	}
	c.Eventually(t, 10*time.Second, allSealed)
	return c, res, allSealed
}
