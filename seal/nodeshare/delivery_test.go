package nodeshare

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/keyd/keyd/hsmbridge"
	"github.com/keyd/keyd/hsmbridge/soft"
	"github.com/keyd/keyd/shamir"
	"github.com/keyd/keyd/sharex"
)

func openSoft(t *testing.T) hsmbridge.HSM {
	t.Helper()
	ctx := context.Background()
	h, err := soft.Open(ctx, soft.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	if err := h.EnsureKey(ctx, "keyd-test"); err != nil {
		t.Fatal(err)
	}
	return h
}

// The delivery key is made once, kept only wrapped by the HSM, and a
// share sealed to it opens only through that HSM: root on the disk (the
// file, another HSM) opens nothing.
func TestDeliveryKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	v := &Vault{Dir: dir, NodeID: "n2", Label: "keyd-test", HSM: openSoft(t)}

	if _, err := v.DeliveryPublic(ctx, false); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("without create, a missing key: %v", err)
	}
	// Concurrent first calls agree on one key.
	pubs := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := v.DeliveryPublic(ctx, true)
			if err != nil {
				t.Error(err)
			}
			pubs[i] = p
		}()
	}
	wg.Wait()
	for _, p := range pubs[1:] {
		if !bytes.Equal(p, pubs[0]) || len(p) != sharex.DeliveryKeySize {
			t.Fatalf("concurrent first calls made different keys")
		}
	}
	again, err := v.DeliveryPublic(ctx, true)
	if err != nil || !bytes.Equal(again, pubs[0]) {
		t.Fatalf("second call: %v, same key %v", err, bytes.Equal(again, pubs[0]))
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != DeliveryKeyFile {
		t.Fatalf("data directory holds %v, want only %s", entries, DeliveryKeyFile)
	}
	raw, err := os.ReadFile(filepath.Join(dir, DeliveryKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) < 32+16 {
		t.Fatalf("delivery key file is %d bytes: not wrapped", len(raw))
	}

	secret, err := shamir.NewSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	defer secret.Destroy()
	shares, commits, err := shamir.Split(secret, 2, 3, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	d := sharex.Delivery{Kind: sharex.NodeShare, Receiver: "n2", Dealer: "n1", Epoch: 1, Fingerprint: commits.Fingerprint()}
	eph, sealed, err := sharex.SealDelivery(pubs[0], d, shares[1])
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.OpenDelivery(ctx, d, eph, sealed)
	if err != nil {
		t.Fatal(err)
	}
	if commits.Verify(got) != nil || got.Index != shares[1].Index {
		t.Fatal("opened share does not verify")
	}

	// The same disk with another HSM (root on the disk, not the device).
	thief := &Vault{Dir: dir, NodeID: "n2", Label: "keyd-test", HSM: openSoft(t)}
	if _, err := thief.OpenDelivery(ctx, d, eph, sealed); !errors.Is(err, hsmbridge.ErrUnwrap) {
		t.Fatalf("another HSM opened the delivery: %v", err)
	}
	if _, err := thief.DeliveryPublic(ctx, true); !errors.Is(err, hsmbridge.ErrUnwrap) {
		t.Fatalf("another HSM read the delivery key: %v", err)
	}
	// The key file moved to another node id does not unwrap either.
	other := &Vault{Dir: dir, NodeID: "n3", Label: "keyd-test", HSM: v.HSM}
	if _, err := other.OpenDelivery(ctx, d, eph, sealed); !errors.Is(err, hsmbridge.ErrUnwrap) {
		t.Fatalf("the key file under another node id: %v", err)
	}
	// Pruning share files keeps the delivery key.
	v.Prune("none")
	if _, err := os.Stat(filepath.Join(dir, DeliveryKeyFile)); err != nil {
		t.Fatalf("prune removed the delivery key: %v", err)
	}
	if _, err := (&Vault{Dir: dir, NodeID: "n2"}).DeliveryPublic(ctx, true); !errors.Is(err, ErrNoHSM) {
		t.Fatalf("no HSM: %v", err)
	}
}
