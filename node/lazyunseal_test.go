package node_test

import (
	"strconv"
	"testing"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

// TestUnsealAndRejoinUnwrapNoKey: neither the custodians' unseal nor a
// warm rejoin unwraps customer keys; the first crypto call on a node
// unwraps the one key it uses, and a second call hits the cache.
func TestUnsealAndRejoinUnwrapNoKey(t *testing.T) {
	ctx := ctxT(t)
	c := testcluster.New(t, testcluster.Options{Nodes: 3, HSM: testcluster.HSMSoft})
	c.Init(t, 3, 2)
	c.Unseal(t, 2)
	cl := c.Client(t)
	const keys = 40
	var last uint64
	for i := 0; i < keys; i++ {
		info, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: "k" + strconv.Itoa(i)})
		if err != nil {
			t.Fatal(err)
		}
		last = info.Index
	}
	c.WaitApplied(t, last) // every node holds every key before the restart
	for i := 0; i < c.Size(); i++ {
		if u := c.Node(i).KeyUnwraps(); u != 0 {
			t.Fatalf("node %d unwrapped %d keys without a crypto call", i, u)
		}
	}
	victim := (c.WaitLeader(t) + 1) % c.Size()
	c.Stop(t, victim)
	c.WaitLeader(t)
	c.Restart(t, victim)
	waitUnsealedBy(t, c, victim, "warm-rejoin")
	n := c.Node(victim)
	if u, st := n.KeyUnwraps(), n.KeyCacheStats(); u != 0 || st.Size != 0 {
		t.Fatalf("warm rejoin unwrapped %d keys, caches %d", u, st.Size)
	}
	ncl := c.ClientFor(t, c.Slot(victim).APIAddr)
	for i := 0; i < 2; i++ {
		if _, err := ncl.Encrypt(ctx, "k7", []byte("x"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if u, st := n.KeyUnwraps(), n.KeyCacheStats(); u != 1 || st.Size != 1 || st.Hits < 1 {
		t.Fatalf("after two calls on one key: %d unwraps, cache %+v", u, st)
	}
}
