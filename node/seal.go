package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/keyd/keyd/api"
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
	if n.keys.unsealed() {
		return n.Status(), nil
	}
	rec, commits, err := n.commitments()
	if err != nil {
		return n.Status(), err
	}
	if err := commits.Verify(sh); err != nil {
		return n.Status(), &api.Error{Code: api.CodeInvalidShare, Message: fmt.Sprintf("share %d does not match this cluster's commitments %s: %s", sh.Index, commits.Fingerprint(), shortErr(err))}
	}
	fp := commits.Fingerprint()

	n.sealer.mu.Lock()
	if n.sealer.fp != fp {
		n.sealer.resetLocked()
		n.sealer.fp = fp
	}
	if _, dup := n.sealer.pending[sh.Index]; !dup {
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
		n.relayShare(text)
	}
	if ready == nil {
		return n.Status(), nil
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

// Init initialises the cluster: it deals the root secret to custodians,
// creates and wraps the barrier keyring, and creates the admin token. It
// runs on the leader. The cluster stays sealed: custodians unseal it.
func (n *Node) Init(ctx context.Context, req api.InitRequest) (*api.InitResponse, error) {
	if req.Threshold < 1 || req.Custodians < req.Threshold || req.Custodians > shamir.MaxShares {
		return nil, &api.Error{Code: api.CodeBadRequest, Message: fmt.Sprintf("need 1 <= threshold <= custodians <= %d", shamir.MaxShares)}
	}
	if _, err := n.fsm.InitRecord(); err == nil {
		return nil, api.ErrAlreadyInitialized
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
	res, err := n.apply(ctx, &fsm.Init{
		Meta:       fsm.Meta{At: time.Now().UTC()},
		Custodians: req.Custodians, Threshold: req.Threshold,
		Commitments: cb, WrappedBarrier: wrapped, AdminTokenHash: hash[:],
	})
	if err != nil {
		return nil, err
	}
	out := &api.InitResponse{AdminToken: token, Fingerprint: commits.Fingerprint(), Index: res.Index}
	for _, sh := range shares {
		out.Shares = append(out.Shares, shamir.EncodeShare(sh))
	}
	n.log.Info("initialized", "custodians", req.Custodians, "threshold", req.Threshold, "commitments", commits.Fingerprint())
	return out, nil
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
