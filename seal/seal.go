// Package seal runs keyd's custodian ceremonies on one node: init (dealing
// the root secret to custodians), unsealing from custodian shares, and
// root rotation. One type, Custodians, owns the pending unseal shares, a
// recent init's reply and the rotation session; it reaches the rest of
// the node only through the small interfaces below (the replicated store,
// a proposer and the host node), never through the node's internals.
//
// Custodian secrets leave a node only encrypted to each custodian's own
// age key, unless a caller asks for plaintext shares explicitly (dev
// clusters and rehearsals).
//
// Node shares and warm rejoin are not here yet: they live in the node
// package and meet this one at Host.Open and Host.RootRotated.
package seal

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
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

// BarrierAAD binds the wrapped barrier keyring to its purpose.
var BarrierAAD = []byte("keyd barrier keyring")

// Store is the replicated state the ceremonies read.
type Store interface {
	// InitRecord returns the root record or fsm.ErrNotInitialized.
	InitRecord() (*fsm.InitRecord, error)
	AppliedIndex() uint64
}

// Proposer proposes commands through Raft.
type Proposer interface {
	IsLeader() bool
	// NotLeader is the error to return off the leader.
	NotLeader() error
	// Apply proposes c on the leader and waits until it is applied here.
	Apply(ctx context.Context, c fsm.Command) (*fsm.Result, error)
}

// Host is the node the ceremonies run on: its key store, its peers and
// its node-share dealing.
type Host interface {
	Unsealed() bool
	// Open unseals the node with the combined root secret; it takes
	// ownership of secret.
	Open(secret *shamir.Secret, rec *fsm.InitRecord) error
	// RootRotated hands the new root secret (ownership included) to
	// node-share dealing, which re-deals at once.
	RootRotated(secret *shamir.Secret)
	// CheckRoot reports whether secret may open or re-root the state rec
	// belongs to (a restored snapshot's MAC must verify under it). It
	// does not take ownership of secret.
	CheckRoot(secret *shamir.Secret, rec *fsm.InitRecord) error
	// RelayShare sends a verified custodian share to every peer.
	RelayShare(share string)
	// Removed is nil while the node may unseal, and the error to refuse
	// custodian shares with once it knows it was removed from the cluster.
	Removed() error
}

// Config wires Custodians.
type Config struct {
	Store    Store
	Proposer Proposer
	Host     Host
	Log      *slog.Logger
}

// Custodians owns the custodian side of one node's seal.
type Custodians struct {
	store Store
	prop  Proposer
	host  Host
	log   *slog.Logger

	mu      sync.Mutex
	pending map[int]shamir.Share // verified unseal shares, zeroed on use
	fp      string               // commitments the pending shares match

	// initMu serializes inits, so the reply kept for retries is the one
	// that was applied; lastInit is guarded by mu.
	initMu   sync.Mutex
	lastInit *initReply

	rot rotation
}

// New returns Custodians for one node. It starts nothing.
func New(cfg Config) *Custodians {
	return &Custodians{store: cfg.Store, prop: cfg.Proposer, host: cfg.Host, log: cfg.Log, pending: map[int]shamir.Share{}}
}

// Close forgets every secret held in memory: pending shares, the
// rotation session and a recent init's reply.
func (c *Custodians) Close() {
	c.Seal()
	c.mu.Lock()
	c.dropInitReplyLocked()
	c.mu.Unlock()
}

// Seal drops pending shares and the rotation session (the node is
// sealing). A recent init's reply stays for its retry window: init
// leaves the cluster sealed.
func (c *Custodians) Seal() {
	c.rot.mu.Lock()
	c.rot.resetLocked()
	c.rot.dropDoneLocked()
	c.rot.mu.Unlock()
	c.DropPending()
}

// DropPending zeroes the pending unseal shares (the node unsealed by
// another path).
func (c *Custodians) DropPending() {
	c.mu.Lock()
	c.dropPendingLocked()
	c.mu.Unlock()
}

func (c *Custodians) dropPendingLocked() {
	for i, sh := range c.pending {
		sh.Destroy()
		delete(c.pending, i)
	}
	c.fp = ""
}

// Progress is the number of pending unseal shares and the fingerprint of
// the commitments they match.
func (c *Custodians) Progress() (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending), c.fp
}

// Commitments loads the root record and its commitments from store.
func Commitments(store Store) (*fsm.InitRecord, *shamir.Commitments, error) {
	rec, err := store.InitRecord()
	if errors.Is(err, fsm.ErrNotInitialized) {
		return nil, nil, api.ErrNotInitialized
	}
	if err != nil {
		return nil, nil, err
	}
	c, err := shamir.UnmarshalCommitments(rec.Commitments)
	if err != nil {
		return nil, nil, fmt.Errorf("seal: stored commitments: %w", err)
	}
	return rec, c, nil
}

// SubmitShare verifies one custodian share and, once the threshold of
// verified shares is held, unseals the host. A relayed share came from a
// peer that already verified it; it is verified again here and not
// relayed further. A share that fails verification is rejected with its
// index and changes nothing. ignored says why a valid share was not used.
// A node that knows it was removed from the cluster refuses every share.
func (c *Custodians) SubmitShare(ctx context.Context, text string, relayed bool) (ignored string, err error) {
	// A removed node never unseals again: it refuses the share before
	// reading it rather than collect shares it can never use.
	if err := c.host.Removed(); err != nil {
		return "", err
	}
	sh, err := shamir.DecodeShare(text)
	if err != nil {
		return "", &api.Error{Code: api.CodeInvalidShare, Message: "share is malformed (check for typos): " + err.Error()}
	}
	defer sh.Destroy()
	rec, commits, err := Commitments(c.store)
	if err != nil {
		return "", err
	}
	if err := commits.Verify(sh); err != nil {
		return "", &api.Error{Code: api.CodeInvalidShare, Message: fmt.Sprintf("share %d does not match this cluster's commitments %s: %s", sh.Index, commits.Fingerprint(), err)}
	}
	if c.host.Unsealed() {
		return "node is already unsealed", nil
	}
	fp := commits.Fingerprint()

	c.mu.Lock()
	if c.fp != fp {
		c.dropPendingLocked()
		c.fp = fp
	}
	if _, dup := c.pending[sh.Index]; dup {
		ignored = fmt.Sprintf("share %d was already submitted", sh.Index)
	} else {
		c.pending[sh.Index] = shamir.Share{Index: sh.Index, Value: append([]byte(nil), sh.Value...)}
	}
	// ready holds copies: a seal or another path's unseal may zero the
	// pending shares (dropPendingLocked) while Combine still reads them.
	var ready []shamir.Share
	if len(c.pending) >= rec.Threshold {
		for _, p := range c.pending {
			ready = append(ready, shamir.Share{Index: p.Index, Value: append([]byte(nil), p.Value...)})
		}
	}
	c.mu.Unlock()
	defer func() {
		for i := range ready {
			ready[i].Destroy()
		}
	}()

	if !relayed {
		// Relayed even when this node already held it: a peer that
		// missed the first relay (it was down) gets it now.
		c.host.RelayShare(text)
	}
	if ready == nil || ignored != "" {
		return ignored, nil
	}
	sort.Slice(ready, func(i, j int) bool { return ready[i].Index < ready[j].Index })
	secret, err := shamir.Combine(commits, ready)
	if err != nil {
		return "", &api.Error{Code: api.CodeInvalidShare, Message: err.Error()}
	}
	return "", c.host.Open(secret, rec)
}

// initReplyWindow is how long the leader keeps an init reply's
// plaintext secrets (plaintext shares, an admin token not encrypted to an
// admin key) in memory for a retry with the same request id.
const initReplyWindow = 2 * time.Minute

// minReplayRequestID is the shortest request id an init retry is
// answered for: the id is what proves the retry is the same caller.
const minReplayRequestID = 16

// initReply is a recent init's reply, kept only in the leader's memory.
type initReply struct {
	rid   string
	fp    string
	resp  api.InitResponse
	timer *time.Timer
}

func badRequest(format string, args ...any) error {
	return &api.Error{Code: api.CodeBadRequest, Message: fmt.Sprintf(format, args...)}
}

// recipients checks the custodian keys of an init or a rotation: one
// distinct age recipient per custodian, or none with plaintext shares
// asked for explicitly.
func recipients(custodians int, keys []string, plaintext bool) ([]custodian.Recipient, error) {
	switch {
	case len(keys) == 0 && !plaintext:
		return nil, badRequest("custodian_keys required: one age public key (age1...) per custodian, so each share is encrypted to its custodian; set plaintext_shares only for dev clusters and rehearsals")
	case len(keys) > 0 && plaintext:
		return nil, badRequest("custodian_keys and plaintext_shares exclude each other")
	case len(keys) == 0:
		return nil, nil
	case len(keys) != custodians:
		return nil, badRequest("custodian_keys lists %d keys for %d custodians: give one per custodian", len(keys), custodians)
	}
	rs, err := custodian.ParseRecipients(keys)
	if err != nil {
		return nil, badRequest("%s", err.Error())
	}
	return rs, nil
}

// encryptShares encodes each share and encrypts it to its custodian, in
// share order; with no recipients it returns the plaintext encodings.
func encryptShares(shares []shamir.Share, rs []custodian.Recipient) (plain, enc []string, err error) {
	for i, sh := range shares {
		text := shamir.EncodeShare(sh)
		if rs == nil {
			plain = append(plain, text)
			continue
		}
		b := []byte(text)
		m, err := custodian.Encrypt(rs[i], b)
		clear(b)
		if err != nil {
			return nil, nil, fmt.Errorf("seal: encrypt share %d: %w", sh.Index, err)
		}
		enc = append(enc, m)
	}
	return plain, enc, nil
}

// initParams hashes what an init was asked for, so a retry with the same
// request id but other parameters is told apart.
func initParams(req api.InitRequest, rs []custodian.Recipient, admin string) []byte {
	h := sha256.New()
	fmt.Fprintf(h, "keyd init v1\n%d\n%d\n%t\n%s\n", req.Custodians, req.Threshold, req.PlaintextShares, admin)
	for _, r := range rs {
		fmt.Fprintf(h, "%s\n", r.String())
	}
	return h.Sum(nil)
}

// Init initialises the cluster: it deals the root secret to custodians,
// creates and wraps the barrier keyring, and creates the admin token
// (newToken returns it and its hash). It runs on the leader. The cluster
// stays sealed: custodians unseal it.
//
// With custodian keys every share is encrypted to its custodian before it
// leaves this function, and the admin token to the admin key when one is
// given. A retry with the same request id and parameters gets the same
// reply: encrypted secrets are kept in the init record, plaintext ones only
// in this leader's memory for initReplyWindow.
func (c *Custodians) Init(ctx context.Context, rid string, req api.InitRequest, newToken func() (string, [32]byte, error)) (*api.InitResponse, error) {
	if req.Threshold < 1 || req.Custodians < req.Threshold || req.Custodians > shamir.MaxShares {
		return nil, badRequest("need 1 <= threshold <= custodians <= %d", shamir.MaxShares)
	}
	rs, keyErr := recipients(req.Custodians, req.CustodianKeys, req.PlaintextShares)
	var admin custodian.Recipient
	if keyErr == nil && req.AdminKey != "" {
		var err error
		if admin, err = custodian.ParseRecipient(req.AdminKey); err != nil {
			keyErr = badRequest("admin_key: %s", err.Error())
		}
	}
	params := initParams(req, rs, admin.String())

	c.initMu.Lock()
	defer c.initMu.Unlock()
	if rec, err := c.store.InitRecord(); err == nil {
		if keyErr != nil {
			return nil, api.ErrAlreadyInitialized
		}
		return c.replayInit(rec, rid, params)
	}
	if keyErr != nil {
		return nil, keyErr
	}
	if req.PlaintextShares {
		c.log.Warn("init hands out plaintext shares (plaintext_shares): the operator sees every share; use custodian_keys outside dev clusters and rehearsals")
	}
	secret, err := shamir.NewSecret(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("seal: root secret: %w", err)
	}
	defer secret.Destroy()
	shares, commits, err := shamir.Split(secret, req.Threshold, req.Custodians, rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("seal: split: %w", err)
	}
	defer func() {
		for _, sh := range shares {
			sh.Destroy()
		}
	}()
	sb := secret.Bytes()
	root, err := keyring.DeriveRootKey(sb)
	clear(sb)
	if err != nil {
		return nil, fmt.Errorf("seal: derive root key: %w", err)
	}
	defer root.Destroy()
	ring, err := keyring.NewKeyring(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("seal: barrier keyring: %w", err)
	}
	defer ring.Destroy()
	wrapped, err := ring.Seal(root, BarrierAAD)
	if err != nil {
		return nil, fmt.Errorf("seal: seal barrier keyring: %w", err)
	}
	cb, err := commits.MarshalBinary()
	if err != nil {
		return nil, err
	}
	token, hash, err := newToken()
	if err != nil {
		return nil, err
	}
	out := api.InitResponse{Fingerprint: commits.Fingerprint()}
	if out.Shares, out.EncryptedShares, err = encryptShares(shares, rs); err != nil {
		return nil, err
	}
	if req.AdminKey != "" {
		if out.EncryptedAdminToken, err = custodian.Encrypt(admin, []byte(token)); err != nil {
			return nil, fmt.Errorf("seal: encrypt admin token: %w", err)
		}
	} else {
		out.AdminToken = token
	}
	cmd := &fsm.Init{
		Meta:       fsm.Meta{At: time.Now().UTC()},
		Custodians: req.Custodians, Threshold: req.Threshold,
		Commitments: cb, WrappedBarrier: wrapped, AdminTokenHash: hash[:],
		EncryptedShares: out.EncryptedShares, EncryptedAdminToken: out.EncryptedAdminToken,
	}
	if len(rid) >= minReplayRequestID {
		// Only a digest of the request id is replicated: the id is the
		// retry's credential, and the state and the Raft log sit on every
		// node's disk.
		cmd.InitRequestID, cmd.Params = initRIDDigest(rid), params
		// Kept before the proposal: if the reply is lost because the
		// apply outlived this request, the retry still finds it.
		c.keepInitReply(&initReply{rid: rid, fp: out.Fingerprint, resp: out})
	}
	res, err := c.prop.Apply(ctx, cmd)
	if err != nil {
		if errors.Is(err, api.ErrAlreadyInitialized) || errors.Is(err, fsm.ErrAlreadyInitialized) {
			c.mu.Lock()
			c.dropInitReplyLocked()
			c.mu.Unlock()
			if rec, rerr := c.store.InitRecord(); rerr == nil {
				return c.replayInit(rec, rid, params)
			}
		}
		return nil, err
	}
	out.Index = res.Index
	c.log.Info("initialized", "custodians", req.Custodians, "threshold", req.Threshold, "commitments", commits.Fingerprint(), "encrypted_shares", rs != nil)
	return &out, nil
}

// replayInit answers an init on an initialized cluster: with the first
// init's reply when rid and the parameters match it, else
// already_initialized (another rid) or conflict (same rid, other
// parameters).
func (c *Custodians) replayInit(rec *fsm.InitRecord, rid string, params []byte) (*api.InitResponse, error) {
	if len(rid) < minReplayRequestID || subtle.ConstantTimeCompare([]byte(initRIDDigest(rid)), []byte(rec.InitRequestID)) != 1 {
		return nil, api.ErrAlreadyInitialized
	}
	if subtle.ConstantTimeCompare(params, rec.Params) != 1 {
		return nil, &errs.Conflict{Reason: "this request id initialized the cluster with other parameters"}
	}
	commits, err := shamir.UnmarshalCommitments(rec.Commitments)
	if err != nil {
		return nil, fmt.Errorf("seal: stored commitments: %w", err)
	}
	out := &api.InitResponse{
		EncryptedShares: rec.EncryptedShares, EncryptedAdminToken: rec.EncryptedAdminToken,
		Fingerprint: commits.Fingerprint(), Index: c.store.AppliedIndex(),
	}
	if len(out.EncryptedShares) > 0 && out.EncryptedAdminToken != "" {
		return out, nil
	}
	// Plaintext secrets: only from this leader's memory.
	c.mu.Lock()
	kept := c.lastInit
	c.mu.Unlock()
	if kept == nil || kept.fp != out.Fingerprint || subtle.ConstantTimeCompare([]byte(kept.rid), []byte(rid)) != 1 {
		return nil, &api.Error{Code: api.CodeAlreadyInitialized, Message: fmt.Sprintf("this request initialized the cluster, but its plaintext secrets were kept only %s on the leader that made them and are gone", initReplyWindow)}
	}
	if len(out.EncryptedShares) == 0 {
		out.Shares = kept.resp.Shares
	}
	if out.EncryptedAdminToken == "" {
		out.AdminToken = kept.resp.AdminToken
	}
	return out, nil
}

// initRIDDigest is what the init record keeps of the init's request id.
func initRIDDigest(rid string) string {
	h := sha256.Sum256([]byte("keyd init request id v1\x00" + rid))
	return hex.EncodeToString(h[:])
}

// keepInitReply holds r for initReplyWindow, replacing any earlier one.
func (c *Custodians) keepInitReply(r *initReply) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropInitReplyLocked()
	c.lastInit = r
	r.timer = time.AfterFunc(initReplyWindow, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.lastInit == r {
			c.dropInitReplyLocked()
		}
	})
}

func (c *Custodians) dropInitReplyLocked() {
	if r := c.lastInit; r != nil {
		r.timer.Stop()
		r.resp = api.InitResponse{}
		c.lastInit = nil
	}
}
