package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

type acked struct {
	plaintext  string
	ciphertext string
}

func rounds() int {
	if n, err := strconv.Atoi(os.Getenv("KEYD_CHAOS_ROUNDS")); err == nil && n > 0 && n <= 50 {
		return n
	}
	return 3
}

// TestFailoverDrill kills the leader and isolates a node in turn, with
// crypto traffic running, and checks every acknowledged ciphertext still
// decrypts and every acknowledged key still exists.
func TestFailoverDrill(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Regions: []string{"a", "b", "c"}})
	c.Init(t, 3, 2)
	c.Unseal(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl := c.Client(t)
	if _, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: "drill"}); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var cts []acked
	var keys []string
	var cryptoFailures int
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Crypto traffic: encrypts on whatever node answers; a sealed or
	// stopped node is skipped by the client.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			pt := fmt.Sprintf("payload-%d", i)
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			res, err := cl.Encrypt(cctx, "drill", []byte(pt), nil)
			ccancel()
			mu.Lock()
			if err == nil {
				cts = append(cts, acked{pt, res.Ciphertext})
			} else {
				cryptoFailures++
			}
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	// Lifecycle writes: each acknowledged key must survive.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("w-%d", i)
			wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := cl.CreateKey(wctx, api.CreateKeyRequest{Name: name})
			wcancel()
			if err == nil || errors.Is(err, api.ErrExists) {
				mu.Lock()
				keys = append(keys, name)
				mu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	for r := 0; r < rounds(); r++ {
		// Fault 1: kill the leader; a new one takes over; the old one
		// restarts sealed and is unsealed by custodians again.
		old := c.WaitLeader(t)
		c.Stop(t, old)
		c.WaitLeader(t)
		time.Sleep(300 * time.Millisecond)
		c.Restart(t, old)
		for _, sh := range c.Shares[:2] {
			if _, err := cl.UnsealAt(ctx, c.Slot(old).APIAddr, sh); err != nil {
				t.Fatalf("round %d: unseal restarted node: %v", r, err)
			}
		}
		c.WaitUnsealed(t)

		// Fault 2: isolate a follower; the majority keeps writing; the
		// isolated node cannot become a second leader.
		leader := c.WaitLeader(t)
		victim := (leader + 1) % c.Size()
		c.Isolate(t, victim)
		time.Sleep(1500 * time.Millisecond)
		if c.Node(victim).IsLeader() {
			t.Fatalf("round %d: isolated node became leader", r)
		}
		c.Heal(t)
		c.WaitLeader(t)
	}
	close(stop)
	wg.Wait()
	c.EnsureSameState(t)

	mu.Lock()
	defer mu.Unlock()
	if len(cts) == 0 || len(keys) == 0 {
		t.Fatalf("no traffic acknowledged: %d ciphertexts, %d keys", len(cts), len(keys))
	}
	// Every acknowledged ciphertext decrypts on every node.
	for i := 0; i < c.Size(); i++ {
		ncl := c.ClientFor(t, c.Slot(i).APIAddr)
		for _, a := range cts {
			res, err := ncl.Decrypt(ctx, "drill", a.ciphertext, nil)
			if err != nil || string(res.Plaintext) != a.plaintext {
				t.Fatalf("node %s: acknowledged ciphertext does not decrypt: %v", c.Slot(i).ID, err)
			}
		}
	}
	for _, k := range keys {
		if _, err := cl.ReadKey(ctx, k, true); err != nil {
			t.Fatalf("acknowledged key %s missing: %v", k, err)
		}
	}
	t.Logf("%d rounds: %d ciphertexts and %d keys acknowledged and verified; %d crypto calls failed beyond the client's retry budget", rounds(), len(cts), len(keys), cryptoFailures)
}
