package node_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/shamir"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// forgeShare returns a well-encoded share with the index of a real one and
// a value that is not on the dealt polynomial.
func forgeShare(t *testing.T, real string) string {
	t.Helper()
	sh, err := shamir.DecodeShare(real)
	if err != nil {
		t.Fatal(err)
	}
	other, err := shamir.DecodeShare(real)
	if err != nil {
		t.Fatal(err)
	}
	// Add one to the scalar's low byte: still canonical, wrong value.
	v := append([]byte(nil), other.Value...)
	v[0]++
	forged := shamir.EncodeShare(shamir.Share{Index: sh.Index, Value: v})
	if forged == "" || forged == real {
		t.Fatal("could not forge a share")
	}
	return forged
}

func TestClusterLifecycle(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	leader := c.WaitLeader(t)
	res := c.Init(t, 5, 3)
	if len(res.Shares) != 5 || res.AdminToken == "" {
		t.Fatalf("init: %d shares", len(res.Shares))
	}
	follower := (leader + 1) % 3
	fAddr := c.Slot(follower).APIAddr
	ctx := ctxT(t)
	fcl := c.ClientFor(t, fAddr)

	// Sealed: crypto and lifecycle calls are refused with a stable code.
	if _, err := fcl.Encrypt(ctx, "k", []byte("x"), nil); !errors.Is(err, api.ErrSealed) && !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("encrypt while sealed: got %v", err)
	}

	// A forged share is rejected and named; progress does not move.
	_, err := fcl.UnsealAt(ctx, fAddr, forgeShare(t, res.Shares[0]))
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeInvalidShare || !bytes.Contains([]byte(ae.Message), []byte("share 1")) {
		t.Fatalf("forged share: got %v", err)
	}
	// A typo is caught by the checksum.
	typo := []byte(res.Shares[1])
	typo[len(typo)-3] ^= 1
	if _, err := fcl.UnsealAt(ctx, fAddr, string(typo)); !errors.Is(err, api.ErrInvalidShare) {
		t.Fatalf("typo share: got %v", err)
	}
	st, err := fcl.StatusOf(ctx, fAddr)
	if err != nil || st.Progress != 0 || !st.Sealed || st.Threshold != 3 {
		t.Fatalf("status after bad shares: %+v %v", st, err)
	}

	// Three good shares to a follower unseal every node.
	for i, sh := range res.Shares[2:] {
		st, err := fcl.UnsealAt(ctx, fAddr, sh)
		if err != nil {
			t.Fatalf("share %d: %v", i+3, err)
		}
		if i < 2 && (st.Progress != i+1 || !st.Sealed) {
			t.Fatalf("after share %d: progress %d sealed %v", i+3, st.Progress, st.Sealed)
		}
	}
	c.WaitUnsealed(t)

	// Lifecycle through a follower (forwarded to the leader).
	info, err := fcl.CreateKey(ctx, api.CreateKeyRequest{Name: "orders", Type: "aes256-gcm"})
	if err != nil {
		t.Fatalf("create via follower: %v", err)
	}
	if info.LatestVersion != 1 || info.Index == 0 {
		t.Fatalf("create: %+v", info)
	}
	if _, err := fcl.CreateKey(ctx, api.CreateKeyRequest{Name: "orders"}); !errors.Is(err, api.ErrExists) {
		t.Fatalf("duplicate create: got %v", err)
	}
	old, err := fcl.Encrypt(ctx, "orders", []byte("before rotation"), []byte("ctx"))
	if err != nil {
		t.Fatal(err)
	}
	rot, err := fcl.RotateKey(ctx, "orders")
	if err != nil || rot.LatestVersion != 2 {
		t.Fatalf("rotate: %+v %v", rot, err)
	}

	// Encrypt on one node, decrypt on another; read-your-writes after the
	// rotation through the min index the client carries.
	a := c.ClientFor(t, c.Slot(0).APIAddr)
	b := c.ClientFor(t, c.Slot(2).APIAddr)
	c.WaitApplied(t, rot.Index)
	enc, err := a.Encrypt(ctx, "orders", []byte("hello"), []byte("ctx"))
	if err != nil || enc.Version != 2 {
		t.Fatalf("encrypt: %+v %v", enc, err)
	}
	dec, err := b.Decrypt(ctx, "orders", enc.Ciphertext, []byte("ctx"))
	if err != nil || string(dec.Plaintext) != "hello" {
		t.Fatalf("decrypt on another node: %v", err)
	}
	if _, err := b.Decrypt(ctx, "orders", enc.Ciphertext, []byte("other")); !errors.Is(err, api.ErrDecrypt) {
		t.Fatalf("wrong context: got %v", err)
	}
	dec, err = b.Decrypt(ctx, "orders", old.Ciphertext, []byte("ctx"))
	if err != nil || string(dec.Plaintext) != "before rotation" {
		t.Fatalf("old version: %v", err)
	}

	// A write with a fixed request id, retried across a leader kill,
	// applies once.
	rid := "retry-across-failover"
	first, err := c.Client(t).CreateKey(testclientRID(ctx, rid), api.CreateKeyRequest{Name: "once"})
	if err != nil {
		t.Fatal(err)
	}
	leader = c.WaitLeader(t)
	c.Stop(t, leader)
	newLeader := c.WaitLeader(t)
	if newLeader == leader {
		t.Fatal("stopped node still leader")
	}
	cl := c.Client(t)
	again, err := cl.CreateKey(testclientRID(ctx, rid), api.CreateKeyRequest{Name: "once"})
	if err != nil {
		t.Fatalf("retry with same request id: %v", err)
	}
	if again.Index != first.Index || again.LatestVersion != 1 {
		t.Fatalf("retry applied again: first index %d, retry %d", first.Index, again.Index)
	}
	// Writes keep working through the new leader.
	if _, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: "after-failover", Type: "ed25519"}); err != nil {
		t.Fatalf("write after failover: %v", err)
	}
	sig, err := cl.Sign(ctx, "after-failover", []byte("msg"))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := cl.Verify(ctx, "after-failover", []byte("msg"), sig.Signature); err != nil || !ok {
		t.Fatalf("verify: %v %v", ok, err)
	}

	// The old node restarts sealed, catches up, and unseals with shares.
	c.Restart(t, leader)
	rcl := c.ClientFor(t, c.Slot(leader).APIAddr)
	for _, sh := range res.Shares[:3] {
		if _, err := rcl.UnsealAt(ctx, c.Slot(leader).APIAddr, sh); err != nil {
			t.Fatalf("unseal restarted node: %v", err)
		}
	}
	c.WaitUnsealed(t)
	c.EnsureSameState(t)
	dec, err = rcl.Decrypt(ctx, "orders", enc.Ciphertext, []byte("ctx"))
	if err != nil || string(dec.Plaintext) != "hello" {
		t.Fatalf("decrypt on restarted node: %v", err)
	}

	// Seal seals every node and zeroes key material.
	if err := cl.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	c.Eventually(t, 10*time.Second, func() error {
		for i := 0; i < c.Size(); i++ {
			if n := c.Node(i); n != nil && !n.Sealed() {
				return fmt.Errorf("%s unsealed", n.ID())
			}
		}
		return nil
	})
	if _, err := cl.Encrypt(ctx, "orders", []byte("x"), nil); !errors.Is(err, api.ErrSealed) {
		t.Fatalf("encrypt after seal: got %v", err)
	}
}

// TestNoSecretsAtRest writes known plaintexts and data keys, stops the
// cluster and scans every file under the data directories and the logs.
func TestNoSecretsAtRest(t *testing.T) {
	var logs bytes.Buffer
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Log: &logs})
	res := c.Init(t, 3, 2)
	c.Unseal(t, 2)
	ctx := ctxT(t)
	cl := c.Client(t)
	secrets := [][]byte{[]byte(res.AdminToken)}
	for _, sh := range res.Shares {
		secrets = append(secrets, []byte(sh))
		dec, err := shamir.DecodeShare(sh)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, append([]byte(nil), dec.Value...))
	}
	for i, typ := range []string{"aes256-gcm", "xchacha20-poly1305", "hmac-sha256"} {
		name := fmt.Sprintf("k%d", i)
		if _, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: name, Type: typ}); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.RotateKey(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 20; i++ {
		pt := []byte(fmt.Sprintf("PLAINTEXT-MARKER-%03d-do-not-store", i))
		secrets = append(secrets, pt)
		if _, err := cl.Encrypt(ctx, "k0", pt, []byte("CONTEXT-MARKER")); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.HMAC(ctx, "k2", pt); err != nil {
			t.Fatal(err)
		}
		dk, err := cl.GenerateDataKey(ctx, "k1", api.DataKeyRequest{})
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, dk.Plaintext)
	}
	c.Close()
	var scanned int
	for i := 0; i < c.Size(); i++ {
		err := filepath.Walk(c.Slot(i).Dir, func(path string, fi os.FileInfo, err error) error {
			if err != nil || fi.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			scanned++
			for _, s := range secrets {
				if bytes.Contains(data, s) {
					t.Errorf("%s contains a secret", path)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if scanned < 3 {
		t.Fatalf("scanned only %d files", scanned)
	}
	for _, s := range secrets {
		if bytes.Contains(logs.Bytes(), s) {
			t.Error("logs contain a secret")
		}
	}
	if logs.Len() == 0 {
		t.Fatal("no logs captured")
	}
}
