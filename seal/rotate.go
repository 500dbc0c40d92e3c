package seal

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/custodian"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/keyring"
	"github.com/keyd/keyd/node/errs"
	"github.com/keyd/keyd/shamir"
)

// rotationTTL bounds how long a root-rotation session waits for shares;
// after it, or after a cancel, anyone holding a share may start another.
const rotationTTL = 10 * time.Minute

// rotationReplyWindow is how long a completed rotation's reply is kept
// for a final submitter whose reply was lost.
const rotationReplyWindow = 5 * time.Minute

// rotation is the leader's in-memory root-rotation session. Only a
// custodian can open one (with a current share, on an unsealed cluster).
// Submitted shares live only here and are zeroed when the session ends.
// A leader change or a seal ends the session: custodians start again.
type rotation struct {
	mu      sync.Mutex
	nonce   string
	n, t    int
	started time.Time
	prev    []byte // commitments the session rotates from
	shares  map[int]shamir.Share
	// keys are the new shares' recipients (keyText as given); with
	// plaintext set the new shares go in the clear to the submitter who
	// completes the quorum, and to nobody else.
	keys      []custodian.Recipient
	keyText   []string
	plaintext bool
	// digest is the dealing every submitter must approve
	// (api.RotationDigest over prevFP and the parameters above).
	digest string
	prevFP string
	// done keeps the completed rotation's reply for a few minutes, so a
	// final submitter whose reply was lost can fetch it again with the
	// same nonce. Encrypted shares go to any holder of an old share;
	// plaintext ones only to the exact share that completed (by).
	done struct {
		nonce  string
		digest string
		prev   []byte
		at     time.Time
		result *api.RotateRootStatus
		by     shamir.Share
	}
}

func (r *rotation) resetLocked() {
	for i, sh := range r.shares {
		sh.Destroy()
		delete(r.shares, i)
	}
	r.nonce, r.prev = "", nil
	r.keys, r.keyText, r.plaintext = nil, nil, false
	r.digest, r.prevFP = "", ""
}

func (r *rotation) dropDoneLocked() {
	r.done.by.Destroy()
	r.done.nonce, r.done.prev, r.done.result, r.done.by = "", nil, nil, shamir.Share{}
	r.done.digest = ""
}

// activeLocked reports whether a session is running; an expired one's
// shares are zeroed here.
func (r *rotation) activeLocked() bool {
	if r.nonce != "" && time.Since(r.started) >= rotationTTL {
		r.resetLocked()
	}
	return r.nonce != ""
}

// statusLocked is the session's public state: never the nonce.
func (r *rotation) statusLocked(required int) *api.RotateRootStatus {
	exp := r.started.Add(rotationTTL).UTC()
	return &api.RotateRootStatus{
		Started: true, Progress: len(r.shares), Required: required, Custodians: r.n, Threshold: r.t,
		CustodianKeys: r.keyText, PlaintextShares: r.plaintext, ExpiresAt: &exp,
		Digest: r.digest, PrevFingerprint: r.prevFP,
	}
}

// checkApproval refuses a submission that does not approve the dealing
// named by digest: without an approval (bad_request) or with another
// one (conflict). Nothing is counted either way.
func checkApproval(approve, digest string) error {
	if approve == "" {
		return badRequest("approve required: the digest of the rotation you approve (the new custodian keys, N, T and the plaintext flag, as `keyd operator rotate-root status` shows them, digest %s); check the keys before you submit", digest)
	}
	if !api.SameRotationDigest(approve, digest) {
		return &errs.Conflict{Reason: fmt.Sprintf("approve does not match this rotation: its dealing (new custodian keys, N, T, plaintext flag) has digest %s; compare its keys with the ones agreed out of band (`keyd operator rotate-root status`) and cancel a session you do not accept; the share was not counted", digest)}
	}
	return nil
}

// RotateRootStatus reports the session on this node (the leader): its
// progress and parameters, never its nonce.
func (c *Custodians) RotateRootStatus() (*api.RotateRootStatus, error) {
	rec, commits, err := Commitments(c.store)
	if err != nil {
		return nil, err
	}
	r := &c.rot
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.activeLocked() {
		return &api.RotateRootStatus{Required: rec.Threshold, PrevFingerprint: commits.Fingerprint()}, nil
	}
	return r.statusLocked(rec.Threshold), nil
}

// currentShare decodes a custodian share and verifies it against the
// current root. The caller destroys the share.
func (c *Custodians) currentShare(text string) (shamir.Share, *fsm.InitRecord, *shamir.Commitments, error) {
	if text == "" {
		return shamir.Share{}, nil, nil, &api.Error{Code: api.CodeInvalidShare, Message: "a current custodian share is required"}
	}
	sh, err := shamir.DecodeShare(text)
	if err != nil {
		return shamir.Share{}, nil, nil, &api.Error{Code: api.CodeInvalidShare, Message: "share is malformed (check for typos): " + err.Error()}
	}
	rec, commits, err := Commitments(c.store)
	if err != nil {
		sh.Destroy()
		return shamir.Share{}, nil, nil, err
	}
	if err := commits.Verify(sh); err != nil {
		sh.Destroy()
		return shamir.Share{}, nil, nil, &api.Error{Code: api.CodeInvalidShare, Message: fmt.Sprintf("share %d does not match the current root's commitments: %s", sh.Index, err.Error())}
	}
	return sh, rec, commits, nil
}

// rotationReady refuses rotation work off the leader or while sealed.
func (c *Custodians) rotationReady() error {
	if !c.prop.IsLeader() {
		return c.prop.NotLeader()
	}
	if !c.host.Unsealed() {
		return &api.Error{Code: api.CodeSealed, Message: "the leader is sealed: unseal the cluster before rotating its root"}
	}
	return nil
}

// StartRootRotation opens a session on the leader for a new dealing of
// custodian shares with threshold t. It needs a current custodian share,
// which counts as the first submission, so nobody without one can open a
// session, choose N and T or block custodians. A running session is not
// replaced until it expires or a share holder cancels it. The starter
// approves the dealing like every submitter (req.Approve, see
// api.RotationDigest). Only the reply to the start carries the nonce; the
// starter hands it to the others.
func (c *Custodians) StartRootRotation(ctx context.Context, req api.RotateRootStart) (*api.RotateRootStatus, error) {
	if req.Threshold < 1 || req.Custodians < req.Threshold || req.Custodians > shamir.MaxShares {
		return nil, badRequest("need 1 <= threshold <= custodians <= %d", shamir.MaxShares)
	}
	if err := c.rotationReady(); err != nil {
		return nil, err
	}
	rs, err := recipients(req.Custodians, req.CustodianKeys, req.PlaintextShares)
	if err != nil {
		return nil, err
	}
	sh, rec, commits, err := c.currentShare(req.Share)
	if err != nil {
		return nil, err
	}
	defer sh.Destroy()
	// The starter approves the dealing they ask for, like every other
	// submitter: the digest covers the current root and the parameters.
	prevFP := commits.Fingerprint()
	digest := api.RotationDigest(prevFP, req.Custodians, req.Threshold, req.CustodianKeys, req.PlaintextShares)
	if err := checkApproval(req.Approve, digest); err != nil {
		return nil, err
	}
	r := &c.rot
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.activeLocked() {
		return nil, &errs.Conflict{Reason: fmt.Sprintf("a root rotation is already in progress (%d of %d shares, expires %s); a holder of a current share can cancel it", len(r.shares), rec.Threshold, r.started.Add(rotationTTL).UTC().Format(time.RFC3339))}
	}
	r.resetLocked()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	r.nonce, r.n, r.t, r.started = hex.EncodeToString(b[:]), req.Custodians, req.Threshold, time.Now()
	r.prev = rec.Commitments
	r.keys, r.keyText, r.plaintext = rs, append([]string(nil), req.CustodianKeys...), req.PlaintextShares
	r.digest, r.prevFP = digest, prevFP
	if r.shares == nil {
		r.shares = map[int]shamir.Share{}
	}
	r.shares[sh.Index] = shamir.Share{Index: sh.Index, Value: append([]byte(nil), sh.Value...)}
	c.log.Info("root rotation started", "custodians", req.Custodians, "threshold", req.Threshold, "encrypted_shares", rs != nil, "by_share", sh.Index)
	if req.PlaintextShares {
		c.log.Warn("root rotation will hand out plaintext shares (plaintext_shares): the completing submitter sees every new share; use custodian_keys outside dev clusters and rehearsals")
	}
	if len(r.shares) >= rec.Threshold {
		return c.completeRotationLocked(ctx, rec, commits, sh)
	}
	st := r.statusLocked(rec.Threshold)
	st.Nonce = r.nonce
	return st, nil
}

// SubmitRotationShare takes one current custodian share. It counts only
// when req.Approve is the session's digest: one custodian who starts a
// session listing keys they control gets no share from a custodian who
// approved another dealing. A share that does not verify against the
// current commitments is rejected and named.
// With the threshold reached, the leader rotates the root and returns the
// new custodian shares: encrypted to the session's custodian keys, or in
// the clear to this submitter only.
func (c *Custodians) SubmitRotationShare(ctx context.Context, req api.RotateRootSubmit) (*api.RotateRootStatus, error) {
	if err := c.rotationReady(); err != nil {
		return nil, err
	}
	sh, err := shamir.DecodeShare(req.Share)
	if err != nil {
		return nil, &api.Error{Code: api.CodeInvalidShare, Message: "share is malformed (check for typos): " + err.Error()}
	}
	defer sh.Destroy()
	rec, commits, err := Commitments(c.store)
	if err != nil {
		return nil, err
	}
	r := &c.rot
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done.result != nil && time.Since(r.done.at) >= rotationReplyWindow {
		r.dropDoneLocked()
	}
	if r.done.result != nil && req.Nonce != "" && subtle.ConstantTimeCompare([]byte(req.Nonce), []byte(r.done.nonce)) == 1 {
		if err := checkApproval(req.Approve, r.done.digest); err != nil {
			return nil, err
		}
		return r.replayLocked(sh)
	}
	if !r.activeLocked() || subtle.ConstantTimeCompare([]byte(req.Nonce), []byte(r.nonce)) != 1 {
		return nil, &errs.Conflict{Reason: "no root rotation with this nonce is in progress"}
	}
	if !bytes.Equal(r.prev, rec.Commitments) {
		r.resetLocked()
		return nil, &errs.Conflict{Reason: "the root changed during the rotation; start again"}
	}
	// Checked before the share is looked at: a share given for another
	// dealing than the session's is never counted.
	if err := checkApproval(req.Approve, r.digest); err != nil {
		return nil, err
	}
	if err := commits.Verify(sh); err != nil {
		return nil, &api.Error{Code: api.CodeInvalidShare, Message: fmt.Sprintf("share %d does not match the current root's commitments: %s", sh.Index, err.Error())}
	}
	if _, dup := r.shares[sh.Index]; dup {
		return r.statusLocked(rec.Threshold), nil
	}
	r.shares[sh.Index] = shamir.Share{Index: sh.Index, Value: append([]byte(nil), sh.Value...)}
	if len(r.shares) < rec.Threshold {
		return r.statusLocked(rec.Threshold), nil
	}
	return c.completeRotationLocked(ctx, rec, commits, sh)
}

// replayLocked answers a retry of a completed rotation's submission. The
// share must belong to the rotated-from root; plaintext shares go only to
// the share that completed the rotation.
func (r *rotation) replayLocked(sh shamir.Share) (*api.RotateRootStatus, error) {
	prev, err := shamir.UnmarshalCommitments(r.done.prev)
	if err != nil || prev.Verify(sh) != nil {
		return nil, &api.Error{Code: api.CodeInvalidShare, Message: "share does not match the rotated-from root"}
	}
	res := r.done.result
	if len(res.Shares) == 0 {
		return res, nil
	}
	if sh.Index == r.done.by.Index && subtle.ConstantTimeCompare(sh.Value, r.done.by.Value) == 1 {
		return res, nil
	}
	// Done, but the plaintext shares belong to the completing submitter.
	out := *res
	out.Shares = nil
	return &out, nil
}

// completeRotationLocked rotates the root with the session's shares; by
// is the share that completed the quorum.
func (c *Custodians) completeRotationLocked(ctx context.Context, rec *fsm.InitRecord, commits *shamir.Commitments, by shamir.Share) (*api.RotateRootStatus, error) {
	r := &c.rot
	var shares []shamir.Share
	for _, s := range r.shares {
		shares = append(shares, s)
	}
	sort.Slice(shares, func(i, j int) bool { return shares[i].Index < shares[j].Index })
	out, err := c.rotateRoot(ctx, rec, commits, shares, r.n, r.t, r.keys)
	nonce, keys, digest := r.nonce, r.keyText, r.digest
	r.resetLocked()
	if err != nil {
		return nil, err
	}
	out.CustodianKeys = keys
	r.dropDoneLocked()
	r.done.nonce, r.done.prev, r.done.at, r.done.result = nonce, rec.Commitments, time.Now(), out
	r.done.digest = digest
	out.Digest = digest
	r.done.by = shamir.Share{Index: by.Index, Value: append([]byte(nil), by.Value...)}
	return out, nil
}

// CancelRootRotation ends the running session. Any holder of a current
// custodian share may cancel, for example a session whose recipients the
// other custodians do not accept.
func (c *Custodians) CancelRootRotation(ctx context.Context, req api.RotateRootCancel) (*api.RotateRootStatus, error) {
	if !c.prop.IsLeader() {
		return nil, c.prop.NotLeader()
	}
	sh, rec, _, err := c.currentShare(req.Share)
	if err != nil {
		return nil, err
	}
	defer sh.Destroy()
	r := &c.rot
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.activeLocked() {
		return nil, &errs.Conflict{Reason: "no root rotation is in progress"}
	}
	r.resetLocked()
	c.log.Info("root rotation cancelled", "by_share", sh.Index)
	return &api.RotateRootStatus{Required: rec.Threshold}, nil
}

// rotateRoot combines the current root, deals a new one and re-wraps the
// (unchanged) barrier keyring under it. Key material is not touched.
func (c *Custodians) rotateRoot(ctx context.Context, rec *fsm.InitRecord, commits *shamir.Commitments, shares []shamir.Share, custodians, threshold int, rs []custodian.Recipient) (*api.RotateRootStatus, error) {
	old, err := shamir.Combine(commits, shares)
	if err != nil {
		return nil, &api.Error{Code: api.CodeInvalidShare, Message: err.Error()}
	}
	// A restored snapshot is bound to its root by a MAC: re-rooting an
	// unverified (possibly tampered) state would skip that check for good.
	if err := c.host.CheckRoot(old, rec); err != nil {
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
	ring, err := keyring.OpenKeyring(oldRoot, rec.WrappedBarrier, BarrierAAD)
	oldRoot.Destroy()
	if err != nil {
		return nil, fmt.Errorf("seal: open barrier keyring with the current root: %w", err)
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
	wrapped, err := ring.Seal(newRoot, BarrierAAD)
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
	// Encrypted before the root changes: a failure here changes nothing.
	out := &api.RotateRootStatus{Started: true, Complete: true, Custodians: custodians, Threshold: threshold, Fingerprint: newCommits.Fingerprint(), PlaintextShares: rs == nil}
	if out.Shares, out.EncryptedShares, err = encryptShares(newShares, rs); err != nil {
		secret.Destroy()
		return nil, err
	}
	res, err := c.prop.Apply(ctx, &fsm.RotateRoot{
		Meta: fsm.Meta{At: time.Now().UTC()}, Custodians: custodians, Threshold: threshold,
		Commitments: cb, WrappedBarrier: wrapped, PrevCommitments: rec.Commitments,
	})
	if err != nil {
		secret.Destroy()
		return nil, err
	}
	// The host keeps the new secret for node-share dealing and re-deals
	// at once: the old dealing no longer commits to the root.
	c.host.RootRotated(secret)
	out.Index = res.Index
	c.log.Info("root rotated", "custodians", custodians, "threshold", threshold, "commitments", newCommits.Fingerprint())
	return out, nil
}
