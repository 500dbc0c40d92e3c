package node_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/keyring"
	"github.com/keyd/keyd/node"
)

// zeroWatch records the keys the keystore zeroes.
type zeroWatch struct {
	mu     sync.Mutex
	zeroed map[*keyring.Key]bool
}

func watchZeroing(t *testing.T) *zeroWatch {
	w := &zeroWatch{zeroed: map[*keyring.Key]bool{}}
	node.SetKeyZeroHook(func(k *keyring.Key) {
		w.mu.Lock()
		w.zeroed[k] = true
		w.mu.Unlock()
	})
	t.Cleanup(func() { node.SetKeyZeroHook(nil) })
	return w
}

func (w *zeroWatch) has(k *keyring.Key) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.zeroed[k]
}

// TestKeyHeldAcrossSealAndRotation holds a key as an in-flight request
// does while the node seals and while the key is rotated: the request
// still computes the right HMAC, and the material is zeroed exactly when
// the last holder releases it.
func TestKeyHeldAcrossSealAndRotation(t *testing.T) {
	zw := watchZeroing(t)
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 3, 2)
	c.Unseal(t, 2)
	ctx := ctxT(t)
	cl := c.Client(t)
	if _, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: "mac", Type: string(keyring.HMACSHA256)}); err != nil {
		t.Fatal(err)
	}
	msg := []byte("pay 10 to alice")
	want, err := cl.HMAC(ctx, "mac", msg)
	if err != nil {
		t.Fatal(err)
	}
	li := c.WaitLeader(t)
	n := c.Node(li)
	k, release, err := n.AcquireCryptoKey("mac")
	if err != nil {
		t.Fatal(err)
	}

	// Seal while the request holds the key.
	n.SealLocal()
	if !n.Sealed() {
		t.Fatal("not sealed")
	}
	if zw.has(k) {
		t.Fatal("key zeroed under an in-flight request")
	}
	got, err := k.HMAC(msg)
	if err != nil || got != want.Signature {
		t.Fatalf("HMAC across a seal: %q, %v; want %q", got, err, want.Signature)
	}
	release()
	if !zw.has(k) {
		t.Fatal("key not zeroed after the last release following a seal")
	}
	if _, err := k.HMAC(msg); err == nil {
		t.Fatal("zeroed key still computes")
	}
	if _, _, err := n.AcquireCryptoKey("mac"); !errors.Is(err, api.ErrSealed) {
		t.Fatalf("acquire on a sealed node: %v", err)
	}

	// Rotation replaces the key: the old one (all its versions) is
	// zeroed once the request holding it ends.
	for _, sh := range c.Shares[:2] {
		if _, err := c.ClientFor(t, c.Slot(li).APIAddr).UnsealAt(ctx, c.Slot(li).APIAddr, sh); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitUnsealed(t)
	old, releaseOld, err := n.AcquireCryptoKey("mac")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.RotateKey(ctx, "mac"); err != nil {
		t.Fatal(err)
	}
	c.Eventually(t, 10*time.Second, func() error {
		k2, rel, err := n.AcquireCryptoKey("mac")
		if err != nil {
			return err
		}
		defer rel()
		if k2.Latest() != 2 {
			return fmt.Errorf("latest %d", k2.Latest())
		}
		return nil
	})
	if zw.has(old) {
		t.Fatal("replaced key zeroed under an in-flight request")
	}
	if got, err := old.HMAC(msg); err != nil || got != want.Signature {
		t.Fatalf("HMAC with the replaced key: %q, %v", got, err)
	}
	releaseOld()
	if !zw.has(old) {
		t.Fatal("replaced key material left to the garbage collector")
	}
}
