package node_test

import (
	"errors"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
)

// TestSealReachingPeersOutOfOrder: the operator's seal is relayed to every
// node in parallel, so a peer can seal before the node whose share relays
// are still pending. The seal is recorded in the Raft log, so every node
// seals when it applies it, and a share relayed with an index from before
// the seal (given before it) is refused by a node that applied it, in
// whatever order the relays arrive. Shares given after the seal still
// unseal.
func TestSealReachingPeersOutOfOrder(t *testing.T) {
	c, res, allSealed := sealedCluster(t)
	ctx := ctxT(t)
	firstSeal := c.Node(0).LastSealIndex()
	if firstSeal == 0 {
		t.Fatal("the operator's seal is not in the Raft log")
	}

	// A follower (held) is unsealed by custodians; its relays to the
	// others are held until the seal has reached them.
	leader := c.WaitLeader(t)
	held := (leader + 1) % 3
	other := (leader + 2) % 3
	started := make(chan string, 4)
	finished := make(chan string, 4)
	release := make(chan struct{})
	c.Node(held).SetShareRelayHook(func(peer string) func() {
		started <- peer
		<-release
		return func() { finished <- peer }
	})
	addr := c.Slot(held).APIAddr
	cl := c.ClientFor(t, addr)
	for _, sh := range res.Shares[:2] {
		if _, err := cl.UnsealAt(ctx, addr, sh); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 4; i++ {
		<-started
	}
	// The operator's seal reaches the leader (which records it) and the
	// other follower before the held one.
	c.Node(other).SealRelayed(ctx, 0)
	c.Node(leader).SealRelayed(ctx, 0)
	c.Eventually(t, 10*time.Second, func() error {
		if c.Node(other).LastSealIndex() <= firstSeal {
			return errUnsealed(c.Node(other).ID() + " has not applied the second seal and is not sealed")
		}
		return nil
	})
	close(release)
	for i := 0; i < 4; i++ {
		<-finished
	}
	c.Eventually(t, 10*time.Second, allSealed)
	if err := allSealed(); err != nil {
		t.Fatalf("after the operator's seal, from shares given before it: %v", err)
	}

	// The rule itself: a relayed share given before the last seal is
	// refused; one given after it counts.
	n := c.Node(other)
	last := n.LastSealIndex()
	for _, sh := range res.Shares[:2] {
		if _, err := n.SubmitRelayedShare(ctx, c.Slot(held).ID, api.UnsealRequest{Share: sh, GivenAt: last - 1}); !errors.Is(err, api.ErrConflict) {
			t.Fatalf("share relayed from before the seal: got %v, want conflict", err)
		}
	}
	if !n.Sealed() {
		t.Fatal("shares from before the seal unsealed a node")
	}
	c.Node(held).SetShareRelayHook(nil)
	for _, sh := range res.Shares[:2] {
		if _, err := n.SubmitRelayedShare(ctx, c.Slot(held).ID, api.UnsealRequest{Share: sh, GivenAt: last}); err != nil {
			t.Fatalf("share relayed after the seal: %v", err)
		}
	}
	if n.Sealed() {
		t.Fatal("shares given after the seal did not unseal")
	}
}

type errUnsealed string

func (e errUnsealed) Error() string { return string(e) + " unsealed" }
