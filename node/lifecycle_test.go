package node_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

func TestKeyLifecycle(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	ctx := ctxT(t)
	cl := c.Client(t)

	for _, typ := range []string{"aes256-gcm", "xchacha20-poly1305", "hmac-sha256", "ed25519", "ecdsa-p256"} {
		info, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: "t-" + typ, Type: typ})
		if err != nil || info.Type != typ {
			t.Fatalf("create %s: %+v %v", typ, info, err)
		}
	}
	// Pagination walks every key exactly once.
	var seen []string
	after := ""
	for {
		page, err := cl.ListKeys(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, page.Keys...)
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if len(seen) != 5 {
		t.Fatalf("listed %v", seen)
	}

	// Minimum decryption version retires old ciphertexts.
	v1, err := cl.Encrypt(ctx, "t-aes256-gcm", []byte("old"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.RotateKey(ctx, "t-aes256-gcm"); err != nil {
		t.Fatal(err)
	}
	two := uint32(2)
	if _, err := cl.ConfigureKey(ctx, "t-aes256-gcm", api.KeyConfigRequest{MinDecryptionVersion: &two}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Decrypt(ctx, "t-aes256-gcm", v1.Ciphertext, nil); !errors.Is(err, api.ErrVersionDisabled) {
		t.Fatalf("decrypt below min version: got %v", err)
	}
	// Reencrypt moves a ciphertext to the newest version without the
	// plaintext leaving the node.
	one := uint32(1)
	if _, err := cl.ConfigureKey(ctx, "t-aes256-gcm", api.KeyConfigRequest{MinDecryptionVersion: &one}); err != nil {
		t.Fatal(err)
	}
	re, err := cl.Reencrypt(ctx, "t-aes256-gcm", v1.Ciphertext, nil)
	if err != nil || re.Version != 2 {
		t.Fatalf("reencrypt: %+v %v", re, err)
	}

	// Disable, enable, schedule and cancel deletion.
	if _, err := cl.DisableKey(ctx, "t-hmac-sha256"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.HMAC(ctx, "t-hmac-sha256", []byte("m")); !errors.Is(err, api.ErrKeyDisabled) {
		t.Fatalf("hmac with disabled key: got %v", err)
	}
	if _, err := cl.EnableKey(ctx, "t-hmac-sha256"); err != nil {
		t.Fatal(err)
	}
	mac, err := cl.HMAC(ctx, "t-hmac-sha256", []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := cl.VerifyHMAC(ctx, "t-hmac-sha256", []byte("m2"), mac.Signature); err != nil || ok {
		t.Fatalf("verify-hmac of other message: %v %v", ok, err)
	}
	info, err := cl.ScheduleDeletion(ctx, "t-ecdsa-p256", 48*time.Hour)
	if err != nil || info.State != api.KeyPendingDeletion || info.DeletionAt == nil {
		t.Fatalf("schedule deletion: %+v %v", info, err)
	}
	if _, err := cl.Sign(ctx, "t-ecdsa-p256", []byte("m")); !errors.Is(err, api.ErrKeyPendingDeletion) {
		t.Fatalf("sign with key pending deletion: got %v", err)
	}
	if info, err = cl.CancelDeletion(ctx, "t-ecdsa-p256"); err != nil || info.State != api.KeyDisabled {
		t.Fatalf("cancel deletion: %+v %v", info, err)
	}

	// Batch: per-item results, one bad item does not fail the others.
	items := make([]api.EncryptRequest, 300)
	for i := range items {
		items[i] = api.EncryptRequest{Plaintext: []byte(fmt.Sprintf("item-%d", i))}
	}
	encs, err := cl.BatchEncrypt(ctx, "t-xchacha20-poly1305", items)
	if err != nil || len(encs) != 300 {
		t.Fatalf("batch encrypt: %d %v", len(encs), err)
	}
	decReq := make([]api.DecryptRequest, len(encs))
	for i, e := range encs {
		decReq[i] = api.DecryptRequest{Ciphertext: e.Ciphertext}
	}
	decReq[7].Ciphertext = "keyd:v1:AAAA"
	decs, err := cl.BatchDecrypt(ctx, "t-xchacha20-poly1305", decReq)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range decs {
		if i == 7 {
			if d.Error == nil || d.Error.Code != api.CodeDecrypt {
				t.Fatalf("bad item: %+v", d)
			}
			continue
		}
		if d.Error != nil || string(d.Plaintext) != fmt.Sprintf("item-%d", i) {
			t.Fatalf("item %d: %+v", i, d)
		}
	}

	// Data keys with and without a plaintext copy.
	dk, err := cl.GenerateDataKey(ctx, "t-aes256-gcm", api.DataKeyRequest{})
	if err != nil || len(dk.Plaintext) != 32 {
		t.Fatalf("datakey: %v", err)
	}
	back, err := cl.Decrypt(ctx, "t-aes256-gcm", dk.Ciphertext, nil)
	if err != nil || string(back.Plaintext) != string(dk.Plaintext) {
		t.Fatalf("datakey unwrap: %v", err)
	}
	dk, err = cl.GenerateDataKey(ctx, "t-aes256-gcm", api.DataKeyRequest{WithoutPlaintext: true})
	if err != nil || dk.Plaintext != nil {
		t.Fatalf("datakey without plaintext: %+v %v", dk, err)
	}

	// Linearizable read through any node.
	if _, err := c.ClientFor(t, c.Slot(2).APIAddr).ReadKey(ctx, "t-aes256-gcm", true); err != nil {
		t.Fatalf("consistent read: %v", err)
	}
}

// TestAutoRotation checks that the leader rotates a key once per period,
// including across a leader change.
func TestAutoRotation(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, SchedulerInterval: 50 * time.Millisecond})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	ctx := ctxT(t)
	cl := c.Client(t)
	start := time.Now()
	if _, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: "auto", RotationPeriod: "1s"}); err != nil {
		t.Fatal(err)
	}
	waitVersion := func(v uint32) {
		c.Eventually(t, 10*time.Second, func() error {
			info, err := cl.ReadKey(ctx, "auto", true)
			if err != nil {
				return err
			}
			if info.LatestVersion < v {
				return fmt.Errorf("version %d", info.LatestVersion)
			}
			return nil
		})
	}
	waitVersion(2)
	c.Stop(t, c.WaitLeader(t))
	c.WaitLeader(t)
	waitVersion(3)
	info, err := cl.ReadKey(ctx, "auto", true)
	if err != nil {
		t.Fatal(err)
	}
	// Never more rotations than elapsed periods.
	if max := uint32(time.Since(start)/time.Second) + 1; info.LatestVersion > max {
		t.Fatalf("rotated to version %d in %s", info.LatestVersion, time.Since(start))
	}
	for i := 1; i < len(info.Versions); i++ {
		if gap := info.Versions[i].CreatedAt.Sub(info.Versions[i-1].CreatedAt); gap < time.Second {
			t.Fatalf("versions %d and %d only %s apart", i, i+1, gap)
		}
	}
}
