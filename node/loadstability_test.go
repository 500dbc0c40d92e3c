package node_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/node"
)

// TestNoLeaderChangeUnderLoad runs a sustained mixed load (creates through
// the leader, encrypts on every node over many keys, so cache misses
// unwrap) at full CPU for 30 s: the LAN timing profile must not
// mistake a busy leader for a dead one. The term and the leader are the
// same on every node before and after. Nothing here is timed: the load
// only has to keep every core busy for its duration.
//
// The profile is scaled by KEYD_TEST_TIMEOUT_SCALE (1 by default: the LAN
// profile as shipped), as every deadline of the suite is: a machine
// declared N times slower gets N times the Raft timeouts.
func TestNoLeaderChangeUnderLoad(t *testing.T) {
	const loadFor = 30 * time.Second // the "30 s at full CPU"
	// ctxT's 30 s would end the load early: setup, load and checks get
	// their own bound.
	ctx, cancelAll := context.WithTimeout(context.Background(), loadFor+testcluster.Scaled(30*time.Second))
	defer cancelAll()
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Configure: func(_ int, cfg *node.Config) {
		tm := node.TimingLAN
		cfg.Timing = node.Timing{Heartbeat: testcluster.Scaled(tm.Heartbeat), Election: testcluster.Scaled(tm.Election),
			LeaderLease: testcluster.Scaled(tm.LeaderLease), Commit: tm.Commit}
	}})
	c.Init(t, 3, 2)
	c.Unseal(t, 2)
	cl := c.Client(t)
	const keys = 200
	var last uint64
	for i := 0; i < keys; i++ {
		info, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: "k" + strconv.Itoa(i)})
		if err != nil {
			t.Fatal(err)
		}
		last = info.Index
	}
	c.WaitApplied(t, last)
	li := c.WaitLeader(t)
	leaderID := c.Node(li).ID()
	term := c.Node(li).RaftTerm()
	c.Eventually(t, 10*time.Second, func() error {
		for i := 0; i < c.Size(); i++ {
			if got := c.Node(i).RaftTerm(); got != term {
				return fmt.Errorf("node %d term %d, leader's %d", i, got, term)
			}
		}
		return nil
	})

	loadCtx, cancel := context.WithTimeout(ctx, loadFor)
	defer cancel()
	var wg sync.WaitGroup
	var ops, failed atomic.Int64
	for w := 0; w < 12; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			wcl := c.ClientFor(t, c.Slot(w%c.Size()).APIAddr)
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for seq := 0; loadCtx.Err() == nil; seq++ {
				var err error
				if w < 3 {
					_, err = cl.CreateKey(loadCtx, api.CreateKeyRequest{Name: fmt.Sprintf("load-%d-%d", w, seq)})
				} else {
					_, err = wcl.Encrypt(loadCtx, "k"+strconv.Itoa(rng.IntN(keys)), []byte("payload"), nil)
				}
				if err != nil && loadCtx.Err() == nil {
					failed.Add(1)
				} else if err == nil {
					ops.Add(1)
				}
			}
		}(w)
	}
	wg.Wait()
	if ops.Load() == 0 {
		t.Fatal("the load did nothing")
	}
	for i := 0; i < c.Size(); i++ {
		n := c.Node(i)
		if got := n.RaftTerm(); got != term {
			t.Errorf("%s: term %d after the load, %d before: an election happened", n.ID(), got, term)
		}
		if id, _ := n.Leader(); id != leaderID {
			t.Errorf("%s: leader %q after the load, %q before", n.ID(), id, leaderID)
		}
	}
	if f := failed.Load(); f != 0 {
		t.Errorf("%d of %d requests failed under load", f, f+ops.Load())
	}
	t.Logf("%d requests in %s", ops.Load(), loadFor)
}
