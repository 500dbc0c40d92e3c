package node_test

import (
	"os"
	"testing"
	"time"

	"github.com/keyd/keyd/internal/testcluster"
)

// TestSealReachingPeersOutOfOrder: the operator's seal is relayed to every
// node in parallel, so a peer can seal before the node whose share relays
// are still pending. Those relays, started before the seal, then reach the
// already-sealed peer and unseal it; once the relaying node seals too, the
// cluster the operator sealed keeps an unsealed node.
//
// Known hole, not fixed (it needs a cluster-wide seal epoch the relayed
// shares carry): skipped unless KEYD_KNOWN_HOLES is set.
func TestSealReachingPeersOutOfOrder(t *testing.T) {
	if !knownHoles() {
		t.Skip("known hole: relays of a node the seal reaches last unseal peers it reached first; set KEYD_KNOWN_HOLES=1")
	}
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	res := c.Init(t, 3, 2)
	c.Unseal(t, 2)
	ctx := ctxT(t)
	if err := c.Client(t).Seal(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < c.Size(); i++ {
		i := i
		c.Eventually(t, 10*time.Second, func() error {
			if !c.Node(i).Sealed() {
				return errUnsealed(c.Node(i).ID())
			}
			return nil
		})
	}

	started := make(chan string, 4)
	finished := make(chan string, 4)
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
			t.Fatal(err)
		}
	}
	for i := 0; i < 4; i++ {
		<-started
	}
	// The operator seals at node 1; its relayed seal reaches node 2 first.
	c.Node(1).SealLocal()
	c.Node(2).SealLocal()
	// Node 0's pending relays go out before the seal reaches it.
	close(release)
	for i := 0; i < 4; i++ {
		<-finished
	}
	c.Node(0).SealLocal()
	time.Sleep(time.Second)
	for i := 0; i < c.Size(); i++ {
		if !c.Node(i).Sealed() {
			t.Errorf("%s unsealed after the operator's seal reached every node, from shares given before it", c.Node(i).ID())
		}
	}
}

type errUnsealed string

func (e errUnsealed) Error() string { return string(e) + " unsealed" }

// knownHoles runs the tests of holes found and not fixed yet.
func knownHoles() bool { return os.Getenv("KEYD_KNOWN_HOLES") != "" }
