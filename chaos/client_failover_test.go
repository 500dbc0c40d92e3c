package chaos

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
	"github.com/keyd/keyd/internal/testcluster"
)

// TestClientRidesThroughFailover runs a client with a mixed workload
// (crypto calls and idempotent rotations) against a 5-node, 3-region
// cluster while the leader is killed, a region is cut off and nodes
// restart. No call may fail within its deadline budget and no write may be
// applied twice.
func TestClientRidesThroughFailover(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 5, Regions: []string{"a", "b", "c"}, Gossip: true, HSM: testcluster.HSMSoft, DeadVoterTimeout: 10 * time.Second})
	c.Init(t, 3, 2)
	c.Unseal(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl, err := client.New(ctx, client.Config{Addrs: c.Addrs(), Token: c.Token, TLS: c.TLS(), Region: "a", MaxRetries: 20, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: "mixed"}); err != nil {
		t.Fatal(err)
	}

	var cryptoOK, cryptoFail, rotOK, rotFail atomic.Int64
	var firstErr struct {
		sync.Mutex
		err error
	}
	record := func(err error) {
		firstErr.Lock()
		if firstErr.err == nil {
			firstErr.err = err
		}
		firstErr.Unlock()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const budget = 15 * time.Second // per call: the deadline the application grants
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				cctx, ccancel := context.WithTimeout(ctx, budget)
				pt := fmt.Sprintf("w%d-%d", w, i)
				enc, err := cl.Encrypt(cctx, "mixed", []byte(pt), nil)
				if err == nil {
					var dec *api.DecryptResponse
					if dec, err = cl.Decrypt(cctx, "mixed", enc.Ciphertext, nil); err == nil && string(dec.Plaintext) != pt {
						err = errors.New("round trip mismatch")
					}
				}
				ccancel()
				if err != nil {
					cryptoFail.Add(1)
					record(err)
				} else {
					cryptoOK.Add(1)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}(w)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			wctx, wcancel := context.WithTimeout(ctx, budget)
			_, err := cl.RotateKey(wctx, "mixed")
			wcancel()
			if err != nil {
				rotFail.Add(1)
				record(err)
			} else {
				rotOK.Add(1)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	// Fault 1: kill the leader, then bring it back (warm rejoin).
	old := c.WaitLeader(t)
	c.Stop(t, old)
	c.WaitLeader(t)
	time.Sleep(500 * time.Millisecond)
	c.Restart(t, old)
	c.WaitUnsealed(t)

	// Fault 2: cut region c off (both of its... here one node), then heal.
	for i := 0; i < c.Size(); i++ {
		if c.Slot(i).Region == "c" {
			c.Isolate(t, i)
		}
	}
	time.Sleep(2 * time.Second)
	c.Heal(t)
	c.WaitLeader(t)

	// Fault 3: restart a follower.
	leader := c.WaitLeader(t)
	f := (leader + 1) % c.Size()
	c.Stop(t, f)
	time.Sleep(300 * time.Millisecond)
	c.Restart(t, f)
	c.WaitUnsealed(t)
	time.Sleep(500 * time.Millisecond)

	close(stop)
	wg.Wait()
	if n := cryptoFail.Load() + rotFail.Load(); n != 0 {
		t.Fatalf("%d calls failed within their %s budget (first: %v)", n, budget, firstErr.err)
	}
	info, err := cl.ReadKey(ctx, "mixed", true)
	if err != nil {
		t.Fatal(err)
	}
	if want := uint32(1 + rotOK.Load()); info.LatestVersion != want {
		t.Fatalf("key at version %d after %d acknowledged rotations: a write was applied twice or lost", info.LatestVersion, rotOK.Load())
	}
	t.Logf("crypto round trips ok=%d, rotations ok=%d, none failed, none duplicated", cryptoOK.Load(), rotOK.Load())
}
