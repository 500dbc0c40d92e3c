package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/custodian"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/keyring"
	"github.com/keyd/keyd/shamir"
)

type randReader = io.Reader

// Unseal methods, reported in SealStatus.UnsealedBy.
const (
	UnsealedByCustodians = "custodians"
)

// barrierAAD binds the wrapped barrier keyring to its purpose.
var barrierAAD = []byte("keyd barrier keyring")

// TokenPrefix starts every keyd token, so leaked tokens are easy to spot
// with secret scanners.
const TokenPrefix = "kd_"

// sealer collects verified custodian shares until the threshold is met.
// Shares live only in memory and are zeroed once combined or on seal.
type sealer struct {
	mu         sync.Mutex
	pending    map[int]dealtShare
	fp         string // fingerprint of the commitments pending shares match
	unsealedBy string
	reason     string // why a sealed node cannot rejoin on its own
	// secret is the root secret while unsealed, kept only in memory so
	// the leader can deal node shares; zeroed on seal.
	secret *shamir.Secret
	// redeal asks the leader to deal fresh node shares (after a
	// custodian unseal).
	redeal bool
	// byOperator is set when an operator sealed the node: it then waits
	// for custodians instead of rejoining from node shares.
	byOperator bool
	// lastInit is the reply of a recent init on this leader, for a retry
	// whose first reply was lost; initMu serializes inits.
	lastInit *initReply
	initMu   sync.Mutex
}

func (s *sealer) resetLocked() {
	for i, sh := range s.pending {
		sh.Destroy()
		delete(s.pending, i)
	}
	s.fp = ""
}

// commitments loads the root record and its commitments from the FSM.
func (n *Node) commitments() (*fsm.InitRecord, *shamir.Commitments, error) {
	rec, err := n.fsm.InitRecord()
	if errors.Is(err, fsm.ErrNotInitialized) {
		return nil, nil, api.ErrNotInitialized
	}
	if err != nil {
		return nil, nil, err
	}
	c, err := shamir.UnmarshalCommitments(rec.Commitments)
	if err != nil {
		return nil, nil, fmt.Errorf("node: stored commitments: %w", err)
	}
	return rec, c, nil
}

// SubmitShare verifies one custodian share and, once the threshold of
// verified shares is held, unseals this node. A relayed share came from a
// peer that already verified it; it is verified again here and not relayed
// further. A share that fails verification is rejected with its index and
// changes nothing.
func (n *Node) SubmitShare(ctx context.Context, text string, relayed bool) (api.SealStatus, error) {
	sh, err := shamir.DecodeShare(text)
	if err != nil {
		return n.Status(), &api.Error{Code: api.CodeInvalidShare, Message: "share is malformed (check for typos): " + shortErr(err)}
	}
	defer sh.Destroy()
	rec, commits, err := n.commitments()
	if err != nil {
		return n.Status(), err
	}
	if err := commits.Verify(sh); err != nil {
		return n.Status(), &api.Error{Code: api.CodeInvalidShare, Message: fmt.Sprintf("share %d does not match this cluster's commitments %s: %s", sh.Index, commits.Fingerprint(), shortErr(err))}
	}
	if n.keys.unsealed() {
		st := n.Status()
		st.ShareIgnored = "node is already unsealed"
		return st, nil
	}
	fp := commits.Fingerprint()

	n.sealer.mu.Lock()
	if n.sealer.fp != fp {
		n.sealer.resetLocked()
		n.sealer.fp = fp
	}
	ignored := ""
	if _, dup := n.sealer.pending[sh.Index]; dup {
		ignored = fmt.Sprintf("share %d was already submitted", sh.Index)
	} else {
		n.sealer.pending[sh.Index] = shamir.Share{Index: sh.Index, Value: append([]byte(nil), sh.Value...)}
	}
	var ready []shamir.Share
	if len(n.sealer.pending) >= rec.Threshold {
		for _, p := range n.sealer.pending {
			ready = append(ready, p)
		}
	}
	n.sealer.mu.Unlock()

	if !relayed {
		// Relayed even when this node already held it: a peer that
		// missed the first relay (it was down) gets it now.
		n.relayShare(text)
	}
	if ready == nil || ignored != "" {
		st := n.Status()
		st.ShareIgnored = ignored
		return st, nil
	}
	sort.Slice(ready, func(i, j int) bool { return ready[i].Index < ready[j].Index })
	if err := n.unsealWith(commits, rec, ready); err != nil {
		return n.Status(), err
	}
	return n.Status(), nil
}

// unsealWith combines verified custodian shares and unseals with the
// resulting secret.
func (n *Node) unsealWith(c *shamir.Commitments, rec *fsm.InitRecord, shares []shamir.Share) error {
	secret, err := shamir.Combine(c, shares)
	if err != nil {
		return &api.Error{Code: api.CodeInvalidShare, Message: shortErr(err)}
	}
	return n.openWithSecret(secret, rec, UnsealedByCustodians)
}

// SealLocal seals this node on an operator's request: it drops every
// unwrapped key, the barrier keyring and any pending shares, and stays
// sealed until custodians unseal it (no warm rejoin).
func (n *Node) SealLocal() { n.sealLocal(true) }

func (n *Node) sealLocal(byOperator bool) {
	n.keys.seal()
	n.endRotation()
	n.sealer.mu.Lock()
	n.sealer.byOperator = byOperator
	n.sealer.resetLocked()
	n.sealer.unsealedBy = ""
	if n.sealer.secret != nil {
		n.sealer.secret.Destroy()
		n.sealer.secret = nil
	}
	n.sealer.mu.Unlock()
	n.log.Info("sealed")
}

// Seal seals this node and asks every peer to seal. It returns once this
// node is sealed; peers that cannot be reached are reported in the log.
func (n *Node) Seal(ctx context.Context) error {
	n.SealLocal()
	n.relaySeal(ctx)
	return nil
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
	rid    string
	params []byte
	fp     string
	resp   api.InitResponse
	timer  *time.Timer
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
			return nil, nil, fmt.Errorf("node: encrypt share %d: %w", sh.Index, err)
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
// creates and wraps the barrier keyring, and creates the admin token. It
// runs on the leader. The cluster stays sealed: custodians unseal it.
//
// With custodian keys every share is encrypted to its custodian before it
// leaves this function, and the admin token to the admin key when one is
// given. A retry with the same request id and parameters gets the same
// reply: encrypted secrets are kept in the init record, plaintext ones only
// in this leader's memory for initReplyWindow.
func (n *Node) Init(ctx context.Context, rid string, req api.InitRequest) (*api.InitResponse, error) {
	if req.Threshold < 1 || req.Custodians < req.Threshold || req.Custodians > shamir.MaxShares {
		return nil, &api.Error{Code: api.CodeBadRequest, Message: fmt.Sprintf("need 1 <= threshold <= custodians <= %d", shamir.MaxShares)}
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

	// One init at a time, so the reply kept for retries is the one that
	// was applied.
	n.sealer.initMu.Lock()
	defer n.sealer.initMu.Unlock()
	if rec, err := n.fsm.InitRecord(); err == nil {
		if keyErr != nil {
			return nil, api.ErrAlreadyInitialized
		}
		return n.replayInit(rec, rid, params)
	}
	if keyErr != nil {
		return nil, keyErr
	}
	if req.PlaintextShares {
		n.log.Warn("init hands out plaintext shares (plaintext_shares): the operator sees every share; use custodian_keys outside dev clusters and rehearsals")
	}
	secret, err := shamir.NewSecret(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("node: root secret: %w", err)
	}
	defer secret.Destroy()
	shares, commits, err := shamir.Split(secret, req.Threshold, req.Custodians, rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("node: split: %w", err)
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
		return nil, fmt.Errorf("node: derive root key: %w", err)
	}
	defer root.Destroy()
	ring, err := keyring.NewKeyring(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("node: barrier keyring: %w", err)
	}
	defer ring.Destroy()
	wrapped, err := ring.Seal(root, barrierAAD)
	if err != nil {
		return nil, fmt.Errorf("node: seal barrier keyring: %w", err)
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
			return nil, fmt.Errorf("node: encrypt admin token: %w", err)
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
		cmd.InitRequestID, cmd.Params = rid, params
		// Kept before the proposal: if the reply is lost because the
		// apply outlived this request, the retry still finds it.
		n.keepInitReply(&initReply{rid: rid, params: params, fp: out.Fingerprint, resp: out})
	}
	res, err := n.apply(ctx, cmd)
	if err != nil {
		if errors.Is(err, api.ErrAlreadyInitialized) || errors.Is(err, fsm.ErrAlreadyInitialized) {
			n.dropInitReply()
			if rec, rerr := n.fsm.InitRecord(); rerr == nil {
				return n.replayInit(rec, rid, params)
			}
		}
		return nil, err
	}
	out.Index = res.Index
	n.log.Info("initialized", "custodians", req.Custodians, "threshold", req.Threshold, "commitments", commits.Fingerprint(), "encrypted_shares", rs != nil)
	return &out, nil
}

// replayInit answers an init on an initialized cluster: with the first
// init's reply when rid and the parameters match it, else
// already_initialized (another rid) or conflict (same rid, other
// parameters).
func (n *Node) replayInit(rec *fsm.InitRecord, rid string, params []byte) (*api.InitResponse, error) {
	if len(rid) < minReplayRequestID || subtle.ConstantTimeCompare([]byte(rid), []byte(rec.InitRequestID)) != 1 {
		return nil, api.ErrAlreadyInitialized
	}
	if subtle.ConstantTimeCompare(params, rec.Params) != 1 {
		return nil, &api.Error{Code: api.CodeConflict, Message: "this request id initialized the cluster with other parameters"}
	}
	c, err := shamir.UnmarshalCommitments(rec.Commitments)
	if err != nil {
		return nil, fmt.Errorf("node: stored commitments: %w", err)
	}
	out := &api.InitResponse{
		EncryptedShares: rec.EncryptedShares, EncryptedAdminToken: rec.EncryptedAdminToken,
		Fingerprint: c.Fingerprint(), Index: n.fsm.AppliedIndex(),
	}
	if len(out.EncryptedShares) > 0 && out.EncryptedAdminToken != "" {
		return out, nil
	}
	// Plaintext secrets: only from this leader's memory.
	n.sealer.mu.Lock()
	kept := n.sealer.lastInit
	n.sealer.mu.Unlock()
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

// keepInitReply holds r for initReplyWindow, replacing any earlier one.
func (n *Node) keepInitReply(r *initReply) {
	n.sealer.mu.Lock()
	defer n.sealer.mu.Unlock()
	n.dropInitReplyLocked()
	n.sealer.lastInit = r
	r.timer = time.AfterFunc(initReplyWindow, func() {
		n.sealer.mu.Lock()
		defer n.sealer.mu.Unlock()
		if n.sealer.lastInit == r {
			n.dropInitReplyLocked()
		}
	})
}

func (n *Node) dropInitReply() {
	n.sealer.mu.Lock()
	n.dropInitReplyLocked()
	n.sealer.mu.Unlock()
}

func (n *Node) dropInitReplyLocked() {
	if r := n.sealer.lastInit; r != nil {
		r.timer.Stop()
		r.resp = api.InitResponse{}
		n.sealer.lastInit = nil
	}
}

// newToken returns a random bearer token and its SHA-256 hash, which is
// all the cluster stores.
func newToken() (string, [32]byte, error) {
	var b [32]byte
	if _, err := io.ReadFull(rand.Reader, b[:]); err != nil {
		return "", [32]byte{}, fmt.Errorf("node: token: %w", err)
	}
	tok := TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return tok, sha256.Sum256([]byte(tok)), nil
}

// shortErr returns an error's message; every error that reaches it comes
// from code that never puts secret values in messages.
func shortErr(err error) string { return err.Error() }

// dealtShare is a verified custodian share held while unsealing.
type dealtShare = shamir.Share
