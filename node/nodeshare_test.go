package node_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/hsmbridge/soft"
	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/shamir"
)

// waitDealt waits until every running node holds a share of one current
// dealing and returns its fingerprint.
func waitDealt(t *testing.T, c *testcluster.Cluster) string {
	t.Helper()
	var fp string
	c.Eventually(t, 20*time.Second, func() error {
		fp = ""
		for i := 0; i < c.Size(); i++ {
			n := c.Node(i)
			if n == nil {
				continue
			}
			st := n.Status()
			if st.NodeShare == "" {
				return fmt.Errorf("%s holds no node share", n.ID())
			}
			if fp == "" {
				fp = st.NodeShare
			} else if fp != st.NodeShare {
				return fmt.Errorf("nodes hold different dealings")
			}
		}
		return nil
	})
	return fp
}

func waitUnsealedBy(t *testing.T, c *testcluster.Cluster, i int, by string) time.Duration {
	t.Helper()
	start := time.Now()
	c.Eventually(t, 20*time.Second, func() error {
		n := c.Node(i)
		st := n.Status()
		if st.Sealed {
			return fmt.Errorf("%s sealed: %s", n.ID(), st.SealReason)
		}
		if st.UnsealedBy != by {
			return fmt.Errorf("%s unsealed by %q", n.ID(), st.UnsealedBy)
		}
		return nil
	})
	return time.Since(start)
}

// rollingRestart restarts every node in turn while a client encrypts and
// decrypts throughout; no custodian acts and no crypto call may fail.
func rollingRestart(t *testing.T, nodes int, hsm string) {
	c := testcluster.New(t, testcluster.Options{Nodes: nodes, HSM: hsm})
	c.Init(t, 5, 3)
	c.Unseal(t, 3)
	waitDealt(t, c)
	ctx := ctxT(t)
	cl := c.Client(t)
	if _, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: "live"}); err != nil {
		t.Fatal(err)
	}
	var failed, ok atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			pt := fmt.Sprint("msg-", i)
			enc, err := cl.Encrypt(cctx, "live", []byte(pt), nil)
			if err == nil {
				var dec *api.DecryptResponse
				dec, err = cl.Decrypt(cctx, "live", enc.Ciphertext, nil)
				if err == nil && string(dec.Plaintext) != pt {
					err = errors.New("round trip mismatch")
				}
			}
			cancel()
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			} else {
				ok.Add(1)
			}
		}
	}()
	for i := 0; i < nodes; i++ {
		c.Stop(t, i)
		c.WaitLeader(t)
		start := time.Now()
		c.Restart(t, i)
		waitUnsealedBy(t, c, i, "warm-rejoin")
		t.Logf("%s: start to unsealed by warm rejoin in %s", c.Slot(i).ID, time.Since(start).Round(time.Millisecond))
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d crypto calls failed during the rolling restart; first: %v", failed.Load(), failed.Load()+ok.Load(), firstErr.Load())
	}
	if ok.Load() == 0 {
		t.Fatal("no crypto calls succeeded")
	}
	c.EnsureSameState(t)
}

func TestWarmRejoinRollingRestart3Soft(t *testing.T) { rollingRestart(t, 3, testcluster.HSMSoft) }

func TestWarmRejoinRollingRestart5SoftHSM2(t *testing.T) {
	rollingRestart(t, 5, testcluster.HSMSoftHSM2)
}

// TestSwappedShareFileRefused replaces a node's share file with another
// node's: its HSM cannot unwrap it, so it stays sealed and says why.
func TestSwappedShareFileRefused(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, HSM: testcluster.HSMSoft})
	c.Init(t, 3, 2)
	c.Unseal(t, 2)
	fp := waitDealt(t, c)
	c.Stop(t, 0)
	other, err := os.ReadFile(filepath.Join(c.Slot(1).Dir, "node-shares", fp+".share"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.Slot(0).Dir, "node-shares", fp+".share"), other, 0o600); err != nil {
		t.Fatal(err)
	}
	c.Restart(t, 0)
	c.Eventually(t, 10*time.Second, func() error {
		st := c.Node(0).Status()
		if !st.Sealed {
			return errors.New("unsealed with another node's share")
		}
		if !strings.Contains(st.SealReason, "unwrap") {
			return fmt.Errorf("seal reason %q", st.SealReason)
		}
		return nil
	})
	// A wrong HSM key (a fresh, empty HSM) fails the same way.
	c.Stop(t, 0)
	c.SetHSM(0, soft.Config{Path: filepath.Join(t.TempDir(), "other-hsm")}, "keyd-node-share")
	c.Restart(t, 0)
	c.Eventually(t, 10*time.Second, func() error {
		st := c.Node(0).Status()
		if !st.Sealed || !strings.Contains(st.SealReason, "unwrap") {
			return fmt.Errorf("sealed=%v reason %q", st.Sealed, st.SealReason)
		}
		return nil
	})
	// Custodians can still unseal it.
	ctx := ctxT(t)
	cl := c.ClientFor(t, c.Slot(0).APIAddr)
	for _, sh := range c.Shares[:2] {
		if _, err := cl.UnsealAt(ctx, c.Slot(0).APIAddr, sh); err != nil {
			t.Fatal(err)
		}
	}
	waitUnsealedBy(t, c, 0, "custodians")
}

// TestRemovedNodeShareUseless removes a voter; the leader re-deals for the
// remaining voters and the removed node's share no longer verifies.
func TestRemovedNodeShareUseless(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, HSM: testcluster.HSMSoft})
	c.Init(t, 3, 2)
	c.Unseal(t, 2)
	oldFP := waitDealt(t, c)
	leader := c.WaitLeader(t)
	victim := (leader + 1) % 3
	victimID := c.Slot(victim).ID
	ctx := ctxT(t)
	if err := c.Node(leader).RemoveServer(ctx, victimID); err != nil {
		t.Fatal(err)
	}
	c.Stop(t, victim)
	var newFP string
	c.Eventually(t, 20*time.Second, func() error {
		st := c.Node(leader).Status()
		if st.NodeShare == "" || st.NodeShare == oldFP {
			return errors.New("not re-dealt yet")
		}
		newFP = st.NodeShare
		return nil
	})
	// Unwrap the removed node's old share with its own HSM, as an
	// attacker holding its disk and HSM could, and check it against the
	// new dealing.
	h, err := soft.Open(ctx, soft.Config{Path: filepath.Join(c.Slot(victim).Dir, "hsm")})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	wrapped, err := os.ReadFile(filepath.Join(c.Slot(victim).Dir, "node-shares", oldFP+".share"))
	if err != nil {
		t.Fatal(err)
	}
	pt, err := h.Unwrap(ctx, "keyd-node-share", wrapped, []byte("keyd node share v1\x00"+victimID+"\x00"+oldFP))
	if err != nil {
		t.Fatal(err)
	}
	old, err := shamir.UnmarshalShare(pt)
	if err != nil {
		t.Fatal(err)
	}
	st := c.Node(leader).Status()
	if st.NodeShare != newFP {
		t.Fatalf("dealing changed again: %s", st.NodeShare)
	}
	commits := currentNodeShareCommitments(t, c, leader)
	if err := commits.Verify(old); !errors.Is(err, shamir.ErrShareInvalid) && !errors.Is(err, shamir.ErrShareIndex) {
		t.Fatalf("removed node's old share against the new dealing: got %v, want invalid", err)
	}
	if _, err := os.Stat(filepath.Join(c.Slot(victim).Dir, "node-shares", newFP+".share")); err == nil {
		t.Fatal("removed node received a share of the new dealing")
	}
}

// TestColdRestartNeedsCustodians stops the whole cluster: node shares alone
// must not unseal it.
func TestColdRestartNeedsCustodians(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, HSM: testcluster.HSMSoft})
	c.Init(t, 3, 2)
	c.Unseal(t, 2)
	waitDealt(t, c)
	for i := 0; i < 3; i++ {
		c.Stop(t, i)
	}
	for i := 0; i < 3; i++ {
		c.Restart(t, i)
	}
	c.WaitLeader(t)
	// Every node keeps trying to rejoin and reports why it cannot.
	c.Eventually(t, 10*time.Second, func() error {
		for i := 0; i < 3; i++ {
			st := c.Node(i).Status()
			if !st.Sealed {
				return fmt.Errorf("%s unsealed without custodians", st.NodeID)
			}
			if !strings.Contains(st.SealReason, "custodian shares needed") {
				return fmt.Errorf("%s reason %q", st.NodeID, st.SealReason)
			}
		}
		return nil
	})
	for i := 0; i < 3; i++ {
		if !c.Node(i).Sealed() {
			t.Fatalf("node %d unsealed without custodians", i)
		}
	}
	start := time.Now()
	c.Unseal(t, 2)
	t.Logf("last custodian share to every node serving: %s", time.Since(start).Round(time.Millisecond))
}
