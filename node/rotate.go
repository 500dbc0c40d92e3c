package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/keyring"
	"github.com/keyd/keyd/shamir"
)

// rotationTTL bounds how long a root-rotation session waits for shares.
const rotationTTL = 15 * time.Minute

// rotation is the leader's in-memory root-rotation session. Submitted
// shares live only here and are zeroed when the session ends. A leader
// change ends the session: custodians start again.
type rotation struct {
	mu      sync.Mutex
	nonce   string
	n, t    int
	started time.Time
	prev    []byte // commitments the session rotates from
	shares  map[int]shamir.Share
	// done keeps the completed rotation's reply for a few minutes, so a
	// final submitter whose reply was lost can fetch the new shares by
	// retrying with the same nonce and a valid old share.
	done struct {
		nonce  string
		prev   []byte
		at     time.Time
		result *api.RotateRootStatus
	}
}

func (r *rotation) resetLocked() {
	for i, sh := range r.shares {
		sh.Destroy()
		delete(r.shares, i)
	}
	r.nonce, r.prev = "", nil
}

func (r *rotation) activeLocked() bool {
	return r.nonce != "" && time.Since(r.started) < rotationTTL
}

// RotateRootStatus reports the session on this node (the leader).
func (n *Node) RotateRootStatus() (*api.RotateRootStatus, error) {
	rec, _, err := n.commitments()
	if err != nil {
		return nil, err
	}
	r := &n.rotation
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.activeLocked() {
		return &api.RotateRootStatus{Required: rec.Threshold}, nil
	}
	return &api.RotateRootStatus{Started: true, Nonce: r.nonce, Progress: len(r.shares), Required: rec.Threshold, Custodians: r.n, Threshold: r.t}, nil
}

// StartRootRotation opens a session on the leader for a new dealing of
// custodians shares with threshold t. A running session is not replaced
// until it expires, so nobody can cancel custodians' progress.
func (n *Node) StartRootRotation(ctx context.Context, req api.RotateRootStart) (*api.RotateRootStatus, error) {
	if req.Threshold < 1 || req.Custodians < req.Threshold || req.Custodians > shamir.MaxShares {
		return nil, badRequest("need 1 <= threshold <= custodians <= %d", shamir.MaxShares)
	}
	if !n.IsLeader() {
		return nil, n.notLeader()
	}
	rec, _, err := n.commitments()
	if err != nil {
		return nil, err
	}
	r := &n.rotation
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.activeLocked() {
		return nil, &api.Error{Code: api.CodeConflict, Message: "a root rotation is already in progress"}
	}
	r.resetLocked()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	r.nonce, r.n, r.t, r.started = hex.EncodeToString(b[:]), req.Custodians, req.Threshold, time.Now()
	r.prev = rec.Commitments
	if r.shares == nil {
		r.shares = map[int]shamir.Share{}
	}
	n.log.Info("root rotation started", "custodians", req.Custodians, "threshold", req.Threshold)
	return &api.RotateRootStatus{Started: true, Nonce: r.nonce, Required: rec.Threshold, Custodians: r.n, Threshold: r.t}, nil
}

// SubmitRotationShare takes one current custodian share. A share that
// does not verify against the current commitments is rejected and named.
// With the threshold reached, the leader rotates the root and returns the
// new custodian shares, once.
func (n *Node) SubmitRotationShare(ctx context.Context, req api.RotateRootSubmit) (*api.RotateRootStatus, error) {
	if !n.IsLeader() {
		return nil, n.notLeader()
	}
	sh, err := shamir.DecodeShare(req.Share)
	if err != nil {
		return nil, &api.Error{Code: api.CodeInvalidShare, Message: "share is malformed (check for typos): " + shortErr(err)}
	}
	defer sh.Destroy()
	rec, commits, err := n.commitments()
	if err != nil {
		return nil, err
	}
	r := &n.rotation
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done.result != nil && req.Nonce == r.done.nonce && time.Since(r.done.at) < 5*time.Minute {
		prev, err := shamir.UnmarshalCommitments(r.done.prev)
		if err == nil && prev.Verify(sh) == nil {
			return r.done.result, nil
		}
		return nil, &api.Error{Code: api.CodeInvalidShare, Message: "share does not match the rotated-from root"}
	}
	if !r.activeLocked() || req.Nonce != r.nonce {
		return nil, &api.Error{Code: api.CodeConflict, Message: "no root rotation with this nonce is in progress"}
	}
	if !bytes.Equal(r.prev, rec.Commitments) {
		r.resetLocked()
		return nil, &api.Error{Code: api.CodeConflict, Message: "the root changed during the rotation; start again"}
	}
	if err := commits.Verify(sh); err != nil {
		return nil, &api.Error{Code: api.CodeInvalidShare, Message: fmt.Sprintf("share %d does not match the current root's commitments: %s", sh.Index, shortErr(err))}
	}
	if _, dup := r.shares[sh.Index]; !dup {
		r.shares[sh.Index] = shamir.Share{Index: sh.Index, Value: append([]byte(nil), sh.Value...)}
	}
	status := &api.RotateRootStatus{Started: true, Nonce: r.nonce, Progress: len(r.shares), Required: rec.Threshold, Custodians: r.n, Threshold: r.t}
	if len(r.shares) < rec.Threshold {
		return status, nil
	}
	var shares []shamir.Share
	for _, s := range r.shares {
		shares = append(shares, s)
	}
	sort.Slice(shares, func(i, j int) bool { return shares[i].Index < shares[j].Index })
	out, err := n.rotateRoot(ctx, rec, commits, shares, r.n, r.t)
	nonce := r.nonce
	r.resetLocked()
	if err != nil {
		return nil, err
	}
	r.done.nonce, r.done.prev, r.done.at, r.done.result = nonce, rec.Commitments, time.Now(), out
	return out, nil
}

// rotateRoot combines the current root, deals a new one and re-wraps the
// (unchanged) barrier keyring under it. Key material is not touched.
func (n *Node) rotateRoot(ctx context.Context, rec *fsm.InitRecord, commits *shamir.Commitments, shares []shamir.Share, custodians, threshold int) (*api.RotateRootStatus, error) {
	old, err := shamir.Combine(commits, shares)
	if err != nil {
		return nil, &api.Error{Code: api.CodeInvalidShare, Message: shortErr(err)}
	}
	if err := n.checkRestoreMAC(old, rec); err != nil {
		old.Destroy()
		return nil, err
	}
	ob := old.Bytes()
	old.Destroy()
	oldRoot, err := keyring.DeriveRootKey(ob)
	clear(ob)
	if err != nil {
		return nil, err
	}
	ring, err := keyring.OpenKeyring(oldRoot, rec.WrappedBarrier, barrierAAD)
	oldRoot.Destroy()
	if err != nil {
		return nil, fmt.Errorf("node: open barrier keyring with the current root: %w", err)
	}
	defer ring.Destroy()

	secret, err := shamir.NewSecret(rand.Reader)
	if err != nil {
		return nil, err
	}
	newShares, newCommits, err := shamir.Split(secret, threshold, custodians, rand.Reader)
	if err != nil {
		secret.Destroy()
		return nil, err
	}
	defer func() {
		for _, sh := range newShares {
			sh.Destroy()
		}
	}()
	nb := secret.Bytes()
	newRoot, err := keyring.DeriveRootKey(nb)
	clear(nb)
	if err != nil {
		secret.Destroy()
		return nil, err
	}
	wrapped, err := ring.Seal(newRoot, barrierAAD)
	newRoot.Destroy()
	if err != nil {
		secret.Destroy()
		return nil, err
	}
	cb, err := newCommits.MarshalBinary()
	if err != nil {
		secret.Destroy()
		return nil, err
	}
	res, err := n.apply(ctx, &fsm.RotateRoot{
		Meta: fsm.Meta{At: time.Now().UTC()}, Custodians: custodians, Threshold: threshold,
		Commitments: cb, WrappedBarrier: wrapped, PrevCommitments: rec.Commitments,
	})
	if err != nil {
		secret.Destroy()
		return nil, err
	}
	// Keep the new secret for node-share dealing and re-deal at once:
	// the old dealing no longer commits to the root.
	n.sealer.mu.Lock()
	if n.sealer.secret != nil {
		n.sealer.secret.Destroy()
	}
	n.sealer.secret = secret
	n.sealer.redeal = true
	n.sealer.mu.Unlock()
	select {
	case n.dealNow <- struct{}{}:
	default:
	}
	out := &api.RotateRootStatus{Started: true, Complete: true, Custodians: custodians, Threshold: threshold, Fingerprint: newCommits.Fingerprint(), Index: res.Index}
	for _, sh := range newShares {
		out.Shares = append(out.Shares, shamir.EncodeShare(sh))
	}
	n.log.Info("root rotated", "custodians", custodians, "threshold", threshold, "commitments", newCommits.Fingerprint())
	return out, nil
}

// onRootRotated drops a non-leader's copy of the old secret: it can no
// longer deal node shares for the new root (the leader re-deals).
func (n *Node) onRootRotated() {
	if n.IsLeader() {
		return
	}
	n.sealer.mu.Lock()
	if n.sealer.secret != nil {
		n.sealer.secret.Destroy()
		n.sealer.secret = nil
	}
	n.sealer.mu.Unlock()
}
