package node_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/keyring"
)

// TestCryptoShredding is the attacker's view of one key per data subject:
// once a key is destroyed (after its deletion window) no node holds it
// unwrapped, its material is zeroed everywhere, its ciphertexts never
// decrypt again, a snapshot taken after the destruction does not hold it
// and restoring that snapshot does not bring it back. On the way: a
// disabled key that every node had cached cannot be used on any node, and
// a sealed node's cache is empty.
func TestCryptoShredding(t *testing.T) {
	zw := watchZeroing(t)
	ctx := ctxT(t)
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 3, 2)
	c.Unseal(t, 2)
	cl := c.Client(t)
	const subject, other = "subject-7f3a", "other-subject"
	for _, n := range []string{subject, other} {
		info, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: n})
		if err != nil {
			t.Fatal(err)
		}
		c.WaitApplied(t, info.Index)
	}
	ct, err := cl.Encrypt(ctx, subject, []byte("date of birth"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Use both keys on every node, so every node caches them.
	cached := map[int]*keyring.Key{}
	for i := 0; i < c.Size(); i++ {
		ncl := c.ClientFor(t, c.Slot(i).APIAddr)
		if _, err := ncl.Decrypt(ctx, subject, ct.Ciphertext, nil); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		if _, err := ncl.Encrypt(ctx, other, []byte("x"), nil); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		n := c.Node(i)
		if !n.KeyCached(subject) || !n.KeyCached(other) {
			t.Fatalf("node %d did not cache the keys it used", i)
		}
		k, release, err := n.AcquireCryptoKey(subject)
		if err != nil {
			t.Fatal(err)
		}
		release()
		cached[i] = k
	}

	// Disabling a cached key: no node can use it any more.
	info, err := cl.DisableKey(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	c.WaitApplied(t, info.Index)
	for i := 0; i < c.Size(); i++ {
		n := c.Node(i)
		if n.KeyCached(other) {
			t.Fatalf("node %d still caches a disabled key", i)
		}
		if _, _, err := n.AcquireCryptoKey(other); !errors.Is(err, api.ErrKeyDisabled) {
			t.Fatalf("node %d: disabled key: %v", i, err)
		}
		if _, err := c.ClientFor(t, c.Slot(i).APIAddr).Encrypt(ctx, other, []byte("x"), nil); err == nil {
			t.Fatalf("node %d encrypted with a disabled key", i)
		}
	}

	// Schedule the deletion, then let the window pass.
	info, err = cl.ScheduleDeletion(ctx, subject, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c.WaitApplied(t, info.Index)
	for i := 0; i < c.Size(); i++ {
		if c.Node(i).KeyCached(subject) {
			t.Fatalf("node %d caches a key pending deletion", i)
		}
		if _, _, err := c.Node(i).AcquireCryptoKey(subject); !errors.Is(err, fsm.ErrKeyPendingDeletion) {
			t.Fatalf("node %d: key pending deletion: %v", i, err)
		}
	}
	if err := c.Node(c.WaitLeader(t)).DestroyKeyNow(ctx, subject); err != nil {
		t.Fatal(err)
	}
	c.Eventually(t, 15*time.Second, func() error {
		for i := 0; i < c.Size(); i++ {
			if _, _, err := c.Node(i).AcquireCryptoKey(subject); !errors.Is(err, fsm.ErrKeyNotFound) {
				return fmt.Errorf("node %d: destroyed key: %v", i, err)
			}
		}
		return nil
	})
	for i := 0; i < c.Size(); i++ {
		if c.Node(i).KeyCached(subject) {
			t.Fatalf("node %d caches a destroyed key", i)
		}
		if !zw.has(cached[i]) {
			t.Fatalf("node %d left the destroyed key's material unzeroed", i)
		}
		_, err := c.ClientFor(t, c.Slot(i).APIAddr).Decrypt(ctx, subject, ct.Ciphertext, nil)
		wantCode(t, fmt.Sprintf("node %d: decrypt with a destroyed key", i), err, api.CodeNotFound)
	}

	// A snapshot taken after the destruction does not hold the key, and
	// restoring it does not bring the key back.
	// On a busy machine the node the client picks may have just lost
	// contact with the leader (and refuses); try again until one serves.
	var file bytes.Buffer
	c.Eventually(t, 30*time.Second, func() error {
		file.Reset()
		return cl.SnapshotSave(ctx, &file)
	})
	if bytes.Contains(file.Bytes(), []byte(subject)) {
		t.Fatal("the snapshot taken after the destruction names the destroyed key")
	}
	c.Eventually(t, 30*time.Second, func() error {
		_, err := cl.SnapshotRestore(ctx, file.Bytes(), true)
		return err
	})
	c.Eventually(t, 15*time.Second, func() error {
		for i := 0; i < c.Size(); i++ {
			n := c.Node(i)
			if !n.Sealed() {
				return fmt.Errorf("%s still unsealed after a forced restore", n.ID())
			}
			if st := n.KeyCacheStats(); st.Size != 0 {
				return fmt.Errorf("sealed %s caches %d keys", n.ID(), st.Size)
			}
		}
		return nil
	})
	c.Unseal(t, 2)
	for i := 0; i < c.Size(); i++ {
		ncl := c.ClientFor(t, c.Slot(i).APIAddr)
		_, err := ncl.Decrypt(ctx, subject, ct.Ciphertext, nil)
		wantCode(t, fmt.Sprintf("node %d: decrypt after restoring a later snapshot", i), err, api.CodeNotFound)
		if _, err := ncl.ReadKey(ctx, subject, true); err == nil {
			t.Fatalf("node %d: the destroyed key is back after the restore", i)
		}
		if _, err := ncl.ReadKey(ctx, other, true); err != nil {
			t.Fatalf("node %d: the other key is gone after the restore: %v", i, err)
		}
	}
}
