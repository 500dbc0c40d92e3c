package node_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

// TestRootRotation rotates the root with a quorum of custodians in a
// 3-node cluster, changing N and T: old shares stop working, new ones
// unseal, every old ciphertext still decrypts, and node shares are
// re-dealt for the new root.
func TestRootRotation(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, HSM: testcluster.HSMSoft})
	c.Init(t, 5, 3)
	c.Unseal(t, 3)
	oldFP := waitDealt(t, c)
	ctx := ctxT(t)
	cl := c.Client(t)
	if _, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: "k"}); err != nil {
		t.Fatal(err)
	}
	var cts []string
	for i := 0; i < 10; i++ {
		res, err := cl.Encrypt(ctx, "k", []byte(fmt.Sprint("msg-", i)), nil)
		if err != nil {
			t.Fatal(err)
		}
		cts = append(cts, res.Ciphertext)
	}

	// No token is needed: a custodian starts with their share, and a
	// forged share is refused.
	anon := c.ClientFor(t, c.Addrs()...)
	st, err := anon.StartRootRotationWith(ctx, approveStart(t, c, api.RotateRootStart{Custodians: 4, Threshold: 2, PlaintextShares: true, Share: c.Shares[0]}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := anon.SubmitRotationShare(ctx, api.RotateRootSubmit{Nonce: st.Nonce, Share: forgeShare(t, c.Shares[1]), Approve: st.Digest}); !errors.Is(err, api.ErrInvalidShare) {
		t.Fatalf("forged share: got %v", err)
	}
	var done *api.RotateRootStatus
	for _, sh := range c.Shares[1:3] {
		if done, err = anon.SubmitRotationShare(ctx, api.RotateRootSubmit{Nonce: st.Nonce, Share: sh, Approve: st.Digest}); err != nil {
			t.Fatal(err)
		}
	}
	if !done.Complete || len(done.Shares) != 4 || done.Threshold != 2 {
		t.Fatalf("rotation reply: complete=%v shares=%d t=%d", done.Complete, len(done.Shares), done.Threshold)
	}
	c.WaitApplied(t, done.Index)
	// Node shares are re-dealt for the new root.
	c.Eventually(t, 20*time.Second, func() error {
		if fp := waitDealt(t, c); fp == oldFP {
			return errors.New("not re-dealt")
		}
		return nil
	})

	// Seal everything: old shares are rejected, two new ones unseal.
	if err := cl.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	c.Eventually(t, 10*time.Second, func() error {
		for i := 0; i < 3; i++ {
			if !c.Node(i).Sealed() {
				return errors.New("still unsealed")
			}
		}
		return nil
	})
	if _, err := anon.UnsealAt(ctx, c.Slot(0).APIAddr, c.Shares[0]); !errors.Is(err, api.ErrInvalidShare) {
		t.Fatalf("old share after rotation: got %v, want invalid_share", err)
	}
	c.Shares = done.Shares
	c.Unseal(t, 2)
	for i := 0; i < 3; i++ {
		ncl := c.ClientFor(t, c.Slot(i).APIAddr)
		for j, ct := range cts {
			res, err := ncl.Decrypt(ctx, "k", ct, nil)
			if err != nil || string(res.Plaintext) != fmt.Sprint("msg-", j) {
				t.Fatalf("node %d: old ciphertext %d: %v", i, j, err)
			}
		}
	}
}
