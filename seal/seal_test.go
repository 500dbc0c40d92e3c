package seal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/shamir"
)

// fakeNode is the store, the proposer and the host at once: an in-memory
// root record and a flag for the host's seal.
type fakeNode struct {
	mu       sync.Mutex
	rec      *fsm.InitRecord
	index    uint64
	unsealed bool
	opened   int
	rotated  int
	relayed  int
}

func (f *fakeNode) InitRecord() (*fsm.InitRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rec == nil {
		return nil, fsm.ErrNotInitialized
	}
	r := *f.rec
	return &r, nil
}

func (f *fakeNode) AppliedIndex() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.index
}

func (f *fakeNode) IsLeader() bool   { return true }
func (f *fakeNode) NotLeader() error { return api.ErrNotLeader }

func (f *fakeNode) Apply(ctx context.Context, c fsm.Command) (*fsm.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch c := c.(type) {
	case *fsm.Init:
		if f.rec != nil {
			return nil, fsm.ErrAlreadyInitialized
		}
		f.rec = &fsm.InitRecord{Custodians: c.Custodians, Threshold: c.Threshold, Commitments: c.Commitments, WrappedBarrier: c.WrappedBarrier,
			InitRequestID: c.InitRequestID, Params: c.Params, EncryptedShares: c.EncryptedShares, EncryptedAdminToken: c.EncryptedAdminToken}
	case *fsm.RotateRoot:
		if f.rec == nil || !bytes.Equal(f.rec.Commitments, c.PrevCommitments) {
			return nil, fsm.ErrConflict
		}
		f.rec = &fsm.InitRecord{Custodians: c.Custodians, Threshold: c.Threshold, Commitments: c.Commitments, WrappedBarrier: c.WrappedBarrier}
	default:
		return nil, errors.New("unexpected command")
	}
	f.index++
	return &fsm.Result{Index: f.index}, nil
}

func (f *fakeNode) Unsealed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unsealed
}

func (f *fakeNode) Open(secret *shamir.Secret, rec *fsm.InitRecord) error {
	secret.Destroy()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unsealed = true
	f.opened++
	return nil
}

func (f *fakeNode) RootRotated(secret *shamir.Secret) {
	secret.Destroy()
	f.mu.Lock()
	f.rotated++
	f.mu.Unlock()
}

func (f *fakeNode) RelayShare(string) {
	f.mu.Lock()
	f.relayed++
	f.mu.Unlock()
}

func (f *fakeNode) Removed() error { return nil }

func (f *fakeNode) CheckRoot(*shamir.Secret, *fsm.InitRecord) error { return nil }

func newFake(t *testing.T) (*Custodians, *fakeNode) {
	f := &fakeNode{}
	c := New(Config{Store: f, Proposer: f, Host: f, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(c.Close)
	return c, f
}

func testToken() (string, [32]byte, error) {
	tok := "kd_test-token"
	return tok, sha256.Sum256([]byte(tok)), nil
}

const rid = "test-request-id-0123456789"

func initPlain(t *testing.T, c *Custodians, n, k int) *api.InitResponse {
	t.Helper()
	res, err := c.Init(context.Background(), rid, api.InitRequest{Custodians: n, Threshold: k, PlaintextShares: true}, testToken)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestUnsealFromShares(t *testing.T) {
	c, f := newFake(t)
	res := initPlain(t, c, 3, 2)
	ctx := context.Background()
	if ign, err := c.SubmitShare(ctx, res.Shares[0], false); err != nil || ign != "" {
		t.Fatalf("first share: %v %q", err, ign)
	}
	if ign, err := c.SubmitShare(ctx, res.Shares[0], false); err != nil || ign != "share 1 was already submitted" {
		t.Fatalf("duplicate: %v %q", err, ign)
	}
	if n, _ := c.Progress(); n != 1 || f.opened != 0 {
		t.Fatalf("progress %d, opened %d", n, f.opened)
	}
	if _, err := c.SubmitShare(ctx, res.Shares[2], true); err != nil {
		t.Fatal(err)
	}
	if f.opened != 1 || f.relayed != 2 {
		t.Fatalf("opened %d relayed %d", f.opened, f.relayed)
	}
	if ign, err := c.SubmitShare(ctx, res.Shares[1], false); err != nil || ign != "node is already unsealed" {
		t.Fatalf("after unseal: %v %q", err, ign)
	}
}

// TestInitPlaintextWindow: a plaintext init's reply is answered again
// only while the leader holds it in memory.
func TestInitPlaintextWindow(t *testing.T) {
	c, _ := newFake(t)
	res := initPlain(t, c, 3, 2)
	again := initPlain(t, c, 3, 2)
	if strings.Join(again.Shares, ",") != strings.Join(res.Shares, ",") || again.AdminToken != res.AdminToken {
		t.Fatal("retry: a different answer")
	}
	c.mu.Lock()
	if c.lastInit == nil || c.lastInit.timer == nil {
		c.mu.Unlock()
		t.Fatal("no reply kept")
	}
	c.dropInitReplyLocked() // the window passed
	c.mu.Unlock()
	_, err := c.Init(context.Background(), rid, api.InitRequest{Custodians: 3, Threshold: 2, PlaintextShares: true}, testToken)
	if !errors.Is(err, api.ErrAlreadyInitialized) || !strings.Contains(err.Error(), "gone") {
		t.Fatalf("retry after the window: got %v", err)
	}
}

// TestRotationExpiredSessionDoesNotBlock: a session nobody completes
// stops blocking new ones after rotationTTL; its nonce is then dead.
func TestRotationExpiredSessionDoesNotBlock(t *testing.T) {
	c, f := newFake(t)
	res := initPlain(t, c, 3, 2)
	ctx := context.Background()
	ok := api.RotationDigest(res.Fingerprint, 3, 2, nil, true)
	start := func(share string) (*api.RotateRootStatus, error) {
		return c.StartRootRotation(ctx, api.RotateRootStart{Custodians: 3, Threshold: 2, PlaintextShares: true, Share: share, Approve: ok})
	}
	if _, err := start(res.Shares[0]); !errors.Is(err, api.ErrSealed) {
		t.Fatalf("sealed host: got %v", err)
	}
	f.mu.Lock()
	f.unsealed = true
	f.mu.Unlock()
	first, err := start(res.Shares[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := start(res.Shares[1]); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("second start while running: got %v", err)
	}
	c.rot.mu.Lock()
	c.rot.started = c.rot.started.Add(-rotationTTL - time.Second)
	c.rot.mu.Unlock()
	if st, err := c.RotateRootStatus(); err != nil || st.Started {
		t.Fatalf("expired session still shown: %v", err)
	}
	c.rot.mu.Lock()
	held := len(c.rot.shares)
	c.rot.mu.Unlock()
	if held != 0 {
		t.Fatalf("an expired session still holds %d shares", held)
	}
	second, err := start(res.Shares[1])
	if err != nil {
		t.Fatalf("start after expiry: %v", err)
	}
	if _, err := c.SubmitRotationShare(ctx, api.RotateRootSubmit{Nonce: first.Nonce, Share: res.Shares[2], Approve: ok}); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("expired nonce: got %v", err)
	}
	done, err := c.SubmitRotationShare(ctx, api.RotateRootSubmit{Nonce: second.Nonce, Share: res.Shares[2], Approve: ok})
	if err != nil || !done.Complete || len(done.Shares) != 3 || f.rotated != 1 {
		t.Fatalf("completion: %v", err)
	}
	// The expired session's starter share is not the completing one.
	other, err := c.SubmitRotationShare(ctx, api.RotateRootSubmit{Nonce: second.Nonce, Share: res.Shares[1], Approve: ok})
	if err != nil || len(other.Shares) != 0 || !other.Complete {
		t.Fatalf("retry by a non-completing share: %v shares=%d", err, len(other.Shares))
	}
}

// ageKeys returns n fresh age recipients.
func ageKeys(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for range n {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, id.Recipient().String())
	}
	return out
}

// TestRotationOneCustodianCannotRedirectShares is the attacker: one
// custodian starts a rotation whose new custodian keys are all their own.
// A second custodian, who approves the dealing they were told of (the
// honest key list), is refused and their share is not counted; a share
// without an approval is refused too; only a submitter who approves the
// session's exact dealing adds a share.
func TestRotationOneCustodianCannotRedirectShares(t *testing.T) {
	c, f := newFake(t)
	res := initPlain(t, c, 5, 3)
	f.mu.Lock()
	f.unsealed = true
	f.mu.Unlock()
	ctx := context.Background()
	attackerKeys, honestKeys := ageKeys(t, 3), ageKeys(t, 3)
	st, err := c.StartRootRotation(ctx, api.RotateRootStart{Custodians: 3, Threshold: 2, CustodianKeys: attackerKeys, Share: res.Shares[0],
		Approve: api.RotationDigest(res.Fingerprint, 3, 2, attackerKeys, false)})
	if err != nil {
		t.Fatal(err)
	}
	progress := func() int {
		c.rot.mu.Lock()
		defer c.rot.mu.Unlock()
		return len(c.rot.shares)
	}
	told := api.RotationDigest(res.Fingerprint, 3, 2, honestKeys, false)
	_, err = c.SubmitRotationShare(ctx, api.RotateRootSubmit{Nonce: st.Nonce, Share: res.Shares[1], Approve: told})
	if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "approve") {
		t.Fatalf("a share approving another dealing: got %v, want conflict", err)
	}
	if n := progress(); n != 1 {
		t.Fatalf("the refused share was counted: %d shares held", n)
	}
	if _, err := c.SubmitRotationShare(ctx, api.RotateRootSubmit{Nonce: st.Nonce, Share: res.Shares[2]}); err == nil {
		t.Fatal("a share without an approval was accepted")
	}
	if n := progress(); n != 1 {
		t.Fatalf("the unapproved share was counted: %d shares held", n)
	}
	// Plaintext is part of the dealing: approving the same keys with the
	// other flag does not match either.
	if _, err := c.SubmitRotationShare(ctx, api.RotateRootSubmit{Nonce: st.Nonce, Share: res.Shares[2],
		Approve: api.RotationDigest(res.Fingerprint, 3, 2, attackerKeys, true)}); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("approval with another plaintext flag: got %v", err)
	}
	status, err := c.RotateRootStatus()
	if err != nil {
		t.Fatal(err)
	}
	if want := api.RotationDigest(res.Fingerprint, 3, 2, attackerKeys, false); status.Digest != want || status.PrevFingerprint != res.Fingerprint {
		t.Fatalf("status digest %q prev %q, want %q %q", status.Digest, status.PrevFingerprint, want, res.Fingerprint)
	}
	// A custodian who checked and approves this exact dealing adds a share.
	got, err := c.SubmitRotationShare(ctx, api.RotateRootSubmit{Nonce: st.Nonce, Share: res.Shares[1], Approve: strings.ToUpper(status.Digest)})
	if err != nil || got.Progress != 2 {
		t.Fatalf("approved share: %v", err)
	}
}

// TestRotationStartNeedsApproval: the starter's own share counts only
// with an approval of the parameters it sends; a plaintext session needs
// plaintext approved.
func TestRotationStartNeedsApproval(t *testing.T) {
	c, f := newFake(t)
	res := initPlain(t, c, 3, 2)
	f.mu.Lock()
	f.unsealed = true
	f.mu.Unlock()
	ctx := context.Background()
	keys := ageKeys(t, 3)
	for _, approve := range []string{"", api.RotationDigest(res.Fingerprint, 3, 2, keys, false), api.RotationDigest("other", 3, 2, nil, true)} {
		if _, err := c.StartRootRotation(ctx, api.RotateRootStart{Custodians: 3, Threshold: 2, PlaintextShares: true, Share: res.Shares[0], Approve: approve}); err == nil {
			t.Fatalf("start approving %q opened a session", approve)
		}
	}
	if st, err := c.RotateRootStatus(); err != nil || st.Started {
		t.Fatalf("a refused start left a session: %v", err)
	}
	st, err := c.StartRootRotation(ctx, api.RotateRootStart{Custodians: 3, Threshold: 2, PlaintextShares: true, Share: res.Shares[0],
		Approve: api.RotationDigest(res.Fingerprint, 3, 2, nil, true)})
	if err != nil || st.Progress != 1 || st.Digest == "" {
		t.Fatalf("approved start: %v", err)
	}
}

// TestRotationRetryNeedsApproval: after completion, a retry with the
// nonce is answered only for the completed session's digest.
func TestRotationRetryNeedsApproval(t *testing.T) {
	c, f := newFake(t)
	res := initPlain(t, c, 3, 2)
	f.mu.Lock()
	f.unsealed = true
	f.mu.Unlock()
	ctx := context.Background()
	keys := ageKeys(t, 3)
	ok := api.RotationDigest(res.Fingerprint, 3, 2, keys, false)
	st, err := c.StartRootRotation(ctx, api.RotateRootStart{Custodians: 3, Threshold: 2, CustodianKeys: keys, Share: res.Shares[0], Approve: ok})
	if err != nil {
		t.Fatal(err)
	}
	done, err := c.SubmitRotationShare(ctx, api.RotateRootSubmit{Nonce: st.Nonce, Share: res.Shares[1], Approve: ok})
	if err != nil || !done.Complete || done.Digest != ok {
		t.Fatalf("completion: %v", err)
	}
	for _, approve := range []string{"", api.RotationDigest(res.Fingerprint, 3, 2, ageKeys(t, 3), false)} {
		if _, err := c.SubmitRotationShare(ctx, api.RotateRootSubmit{Nonce: st.Nonce, Share: res.Shares[1], Approve: approve}); err == nil {
			t.Fatalf("retry approving %q answered", approve)
		}
	}
	again, err := c.SubmitRotationShare(ctx, api.RotateRootSubmit{Nonce: st.Nonce, Share: res.Shares[1], Approve: ok})
	if err != nil || strings.Join(again.EncryptedShares, ",") != strings.Join(done.EncryptedShares, ",") {
		t.Fatalf("approved retry: %v", err)
	}
}

// TestUnsealShareRacesDropPending: the last custodian share arrives while
// another path (warm rejoin, a seal) drops the pending shares. Combine
// used to read the pending shares after the lock was released, so the
// drop zeroed them under it: a valid share was refused as "share
// invalid" (and -race saw the race).
func TestUnsealShareRacesDropPending(t *testing.T) {
	c, f := newFake(t)
	res := initPlain(t, c, 3, 2)
	ctx := context.Background()
	for i := 0; i < 200; i++ {
		f.mu.Lock()
		f.unsealed = false
		f.mu.Unlock()
		if _, err := c.SubmitShare(ctx, res.Shares[0], true); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := c.SubmitShare(ctx, res.Shares[1], true)
			done <- err
		}()
		// Drop at a different moment each round, so some drops land
		// while the share is being combined.
		time.Sleep(time.Duration(i%20) * 20 * time.Microsecond)
		c.DropPending()
		if err := <-done; err != nil {
			t.Fatalf("round %d: a valid share refused: %v", i, err)
		}
		c.DropPending()
	}
}
