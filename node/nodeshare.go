package node

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/keyring"
	"github.com/keyd/keyd/node/errs"
	"github.com/keyd/keyd/seal/nodeshare"
	"github.com/keyd/keyd/shamir"
	"github.com/keyd/keyd/sharex"
)

// Node shares: the root secret is also dealt k-of-m across the voters
// (k = Raft quorum). Each voter keeps its share only wrapped by its own
// HSM, in its data directory. A sealed node that restarts while the
// cluster is unsealed unwraps its share and gathers k-1 more from unsealed
// peers (sharex), so no custodian is needed; a cold cluster (every node
// sealed) has nobody to answer and waits for custodians.

// UnsealedByWarmRejoin marks a node unsealed from node shares.
const UnsealedByWarmRejoin = "warm-rejoin"

// ErrNoHSM reports a node without an HSM: it holds no node share.
var ErrNoHSM = nodeshare.ErrNoHSM

// vault is this node's store of HSM-wrapped node shares.
func (n *Node) vault() *nodeshare.Vault {
	return &nodeshare.Vault{
		Dir: filepath.Join(n.cfg.DataDir, "node-shares"), NodeID: n.cfg.NodeID,
		Label: n.cfg.HSMKeyLabel, HSM: n.hsm.dev,
	}
}

// pruneCommitted prunes old share files once per committed dealing,
// keeping the committed dealing's file (see nodeshare.Vault.Prune).
func (n *Node) pruneCommitted() {
	rec, err := n.fsm.NodeShares()
	if err != nil || rec == nil {
		return
	}
	c, err := shamir.UnmarshalCommitments(rec.Commitments)
	if err != nil {
		return
	}
	if fp := c.Fingerprint(); n.sealer.dealing.FirstPrune(fp) {
		n.vault().Prune(fp)
	}
}

// nodeShareCommitments loads the current dealing and checks it commits to
// the same root as the custodian dealing.
func (n *Node) nodeShareCommitments() (*fsm.NodeSharesRecord, *shamir.Commitments, error) {
	rec, err := n.fsm.NodeShares()
	if err != nil {
		return nil, nil, err
	}
	if rec == nil {
		return nil, nil, nil
	}
	c, err := shamir.UnmarshalCommitments(rec.Commitments)
	if err != nil {
		return nil, nil, fmt.Errorf("node: stored node-share commitments: %w", err)
	}
	_, root, err := n.commitments()
	if err != nil {
		return nil, nil, err
	}
	if !c.SameSecret(root) {
		return nil, nil, errors.New("node: node-share dealing does not commit to the cluster's root")
	}
	return rec, c, nil
}

// voters returns the current Raft voters, sorted.
func (n *Node) voters() ([]string, error) {
	fut := n.raft.raft.GetConfiguration()
	if err := fut.Error(); err != nil {
		return nil, err
	}
	var ids []string
	for _, s := range fut.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			ids = append(ids, string(s.ID))
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// runNodeShares owns the node-share work of this node: on the unsealed
// leader it (re-)deals when needed; on a sealed node it tries warm rejoin.
//
// A sealed node tries at once and then backs off (50ms, doubling) up to
// the interval, so a restarted node rejoins as soon as its peers answer
// instead of at the first tick, and a node that cannot rejoin costs its
// peers no more than a handful of extra share requests.
func (n *Node) runNodeShares(ctx context.Context) {
	t := time.NewTicker(n.cfg.NodeShareInterval)
	defer t.Stop()
	const firstRetry = 50 * time.Millisecond
	retry := time.NewTimer(0)
	defer retry.Stop()
	backoff := firstRetry
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.sealer.dealNow:
			// An unseal, a removal, a root rotation or a voter asking
			// to be dealt in: evaluate now. On a sealed node, a share
			// just delivered: rejoin now and back off afresh.
			n.sealer.dealing.Now()
			backoff = firstRetry
		case <-t.C:
		case <-retry.C:
		}
		n.sealer.dealing.Ticks.Add(1)
		n.checkMembership(ctx)
		n.pruneCommitted()
		if n.IsLeader() {
			n.pinMembers(ctx)
		}
		n.checkOwnPin(ctx)
		if n.keys.unsealed() {
			backoff = firstRetry
			if n.IsLeader() {
				if err := n.maybeDeal(ctx); err != nil && ctx.Err() == nil {
					n.log.Debug("node-share dealing not evaluated", "err", err)
				}
			}
			continue
		}
		if err := n.warmRejoin(ctx); err != nil {
			n.setSealReason(err.Error())
			if backoff < n.cfg.NodeShareInterval {
				retry.Reset(backoff)
				backoff *= 2
			}
		}
	}
}

func (n *Node) setSealReason(s string) {
	n.sealer.mu.Lock()
	changed := n.sealer.reason != s
	n.sealer.reason = s
	n.sealer.mu.Unlock()
	if changed && s != "" {
		n.log.Info("sealed node cannot rejoin on its own", "reason", s)
	}
}

// ReceiveNodeShare stores a node share delivered by the leader. The share
// must come from the node this one sees as leader, open with this node's
// delivery key (unwrapped by its HSM), verify against the delivered
// commitments, and those must commit to the cluster's root.
func (n *Node) ReceiveNodeShare(ctx context.Context, from string, d api.NodeShareDelivery) error {
	if id, _ := n.Leader(); id == "" || id != from {
		return &api.Error{Code: api.CodeForbidden, Message: "node shares are accepted only from the leader"}
	}
	if n.removedSelf() {
		return errRemoved
	}
	if n.hsm.dev == nil {
		return &api.Error{Code: api.CodeUnavailable, Message: "this node has no HSM to hold a node share"}
	}
	c, err := shamir.UnmarshalCommitments(d.Commitments)
	if err != nil {
		return &api.Error{Code: api.CodeBadRequest, Message: "malformed commitments"}
	}
	_, root, err := n.commitments()
	if err != nil {
		return err
	}
	if !c.SameSecret(root) {
		return &api.Error{Code: api.CodeInvalidShare, Message: "dealing does not commit to this cluster's root"}
	}
	if len(d.Sealed) == 0 {
		return &api.Error{Code: api.CodeBadRequest, Message: "node share must be sealed to this node's delivery key"}
	}
	sh, err := n.vault().OpenDelivery(ctx, sharex.Delivery{Kind: sharex.NodeShare, Receiver: n.cfg.NodeID, Dealer: from, Epoch: d.Epoch, Fingerprint: c.Fingerprint()}, d.Ephemeral, d.Sealed)
	if err != nil {
		return openFailed("node share", err)
	}
	defer sh.Destroy()
	if err := c.Verify(sh); err != nil {
		return &api.Error{Code: api.CodeInvalidShare, Message: "node share does not match the dealing"}
	}
	if err := n.vault().Store(ctx, c.Fingerprint(), sh); err != nil {
		return err
	}
	if n.Sealed() {
		// A sealed voter was dealt in (DealMeIn): try to rejoin at once
		// instead of at the end of the loop's backoff.
		select {
		case n.sealer.dealNow <- struct{}{}:
		default:
		}
	}
	return nil
}

// AnswerShareRequest gives a rejoining voter this node's share of the
// current dealing, sealed to the requester's ephemeral key. Only an
// unsealed node answers, only to the node named by the caller's
// certificate, only to a holder of the current dealing, and only when the
// request proves knowledge of the requester's own share at the index the
// dealing recorded for it (sharex.VerifyProof).
func (n *Node) AnswerShareRequest(ctx context.Context, from string, body []byte) (*sharex.Response, error) {
	req, err := sharex.DecodeRequest(body)
	if err != nil {
		return nil, &api.Error{Code: api.CodeBadRequest, Message: err.Error()}
	}
	if req.NodeID != from {
		return nil, &api.Error{Code: api.CodeForbidden, Message: "request names another node than the caller's certificate"}
	}
	if !n.isMember(from) {
		return nil, &api.Error{Code: api.CodeForbidden, Message: "requester is not a current member of the cluster"}
	}
	if !n.keys.unsealed() {
		return nil, errs.ErrSealed
	}
	rec, c, err := n.nodeShareCommitments()
	if err != nil {
		return nil, err
	}
	if rec == nil || c.Fingerprint() != req.Fingerprint {
		return nil, &errs.Conflict{Reason: "not the current node-share dealing"}
	}
	index, ok := rec.Holders[req.NodeID]
	if !ok {
		return nil, &api.Error{Code: api.CodeForbidden, Message: "requester holds no share of the current dealing"}
	}
	// The caller's certificate and key are files on its disk; only its
	// HSM can unwrap its share. Without a proof of that share, an
	// attacker with root on one node's disk could collect k shares.
	if err := sharex.VerifyProof(c, req, index); err != nil {
		n.log.Warn("share request refused: no valid proof of the requester's own share", "requester", from, "dealing", req.Fingerprint)
		return nil, &api.Error{Code: api.CodeForbidden, Message: "requester did not prove it holds its own share of the current dealing"}
	}
	sh, err := n.vault().Load(ctx, req.Fingerprint)
	if err != nil {
		return nil, &api.Error{Code: api.CodeUnavailable, Message: "this node cannot unwrap its own share"}
	}
	defer sh.Destroy()
	resp, err := sharex.Seal(req, n.cfg.NodeID, sh)
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// warmRejoin unseals a sealed node from its own HSM-held share and k-1
// shares from unsealed peers. It returns why it could not.
func (n *Node) warmRejoin(ctx context.Context) error {
	if _, err := n.fsm.InitRecord(); err != nil {
		return nil // not initialized: nothing to say
	}
	if why := n.removedReason(); why != "" {
		return errors.New(why)
	}
	n.sealer.mu.Lock()
	byOperator := n.sealer.byOperator
	n.sealer.mu.Unlock()
	if byOperator {
		return errors.New("sealed by an operator: custodian shares needed")
	}
	if n.hsm.dev == nil {
		if n.hsm.err != nil {
			return fmt.Errorf("HSM unavailable (%v): custodian shares needed", n.hsm.err)
		}
		return errors.New("no HSM configured: custodian shares needed")
	}
	rec, c, err := n.nodeShareCommitments()
	if err != nil {
		return err
	}
	if rec == nil {
		return errors.New("no node shares dealt yet: custodian shares needed")
	}
	if _, ok := rec.Holders[n.cfg.NodeID]; !ok {
		// Down while the leader dealt: ask it for a share now rather
		// than wait for its next node-share check.
		n.askToBeDealtIn(ctx)
		return errors.New("this node holds no share of the current dealing: custodian shares needed")
	}
	if rec.Threshold < 2 {
		// A node must never unseal from its own share alone.
		return errors.New("node-share threshold below 2: custodian shares needed")
	}
	fp := c.Fingerprint()
	own, err := n.vault().Load(ctx, fp)
	if err != nil {
		return err
	}
	if err := c.Verify(own); err != nil {
		own.Destroy()
		return fmt.Errorf("own node share does not match the current dealing: %v", err)
	}
	shares := []shamir.Share{own}
	defer func() {
		for _, sh := range shares {
			sh.Destroy()
		}
	}()
	req, priv, err := sharex.NewRequest(n.cfg.NodeID, fp)
	if err != nil {
		return err
	}
	// Peers answer only a requester that proves it holds its own share.
	if err := req.Prove(c, own); err != nil {
		return err
	}
	body, _ := json.Marshal(req)
	peers := make([]string, 0, len(rec.Holders))
	for id := range rec.Holders {
		if id != n.cfg.NodeID && n.isMember(id) {
			peers = append(peers, id)
		}
	}
	shuffle(peers)
	// Why each asked peer gave no share, for the seal reason: an operator
	// (and the scale benchmark) must be able to tell a peer that is down
	// from one that refuses.
	var refused []string
	for _, id := range peers {
		if len(shares) >= rec.Threshold {
			break
		}
		var resp sharex.Response
		if err := n.peers.postJSON(ctx, id, api.PathInternalShareRequest, body, &resp); err != nil {
			refused = append(refused, id+": "+err.Error())
			continue
		}
		if resp.Responder != id {
			refused = append(refused, id+": answered as "+strconv.Quote(resp.Responder))
			continue
		}
		sh, err := sharex.Open(priv, req, resp)
		if err != nil {
			n.log.Warn("peer share could not be opened", "peer", id)
			refused = append(refused, id+": share could not be opened")
			continue
		}
		if err := c.Verify(sh); err != nil || sh.Index != rec.Holders[id] {
			n.log.Warn("peer share rejected", "peer", id)
			refused = append(refused, id+": share rejected")
			sh.Destroy()
			continue
		}
		shares = append(shares, sh)
	}
	if len(shares) < rec.Threshold {
		return fmt.Errorf("only %d of %d node shares reachable (peers sealed or down): custodian shares needed; %s", len(shares), rec.Threshold, strings.Join(refused, "; "))
	}
	secret, err := shamir.Combine(c, shares)
	if err != nil {
		return fmt.Errorf("combine node shares: %v", err)
	}
	initRec, root, err := n.commitments()
	if err != nil {
		secret.Destroy()
		return err
	}
	if !root.Matches(secret) {
		secret.Destroy()
		return errors.New("node shares combine to a secret that is not the cluster's root")
	}
	if err := n.openWithSecret(secret, initRec, UnsealedByWarmRejoin); err != nil {
		return err
	}
	n.setSealReason("")
	return nil
}

// openWithSecret derives the root key from secret, opens the barrier
// keyring (customer keys stay wrapped until used) and keeps secret for future dealings. It takes
// ownership of secret.
func (n *Node) openWithSecret(secret *shamir.Secret, rec *fsm.InitRecord, by string) error {
	if n.removedSelf() {
		secret.Destroy()
		return errRemoved
	}
	if err := n.checkRestoreMAC(secret, rec); err != nil {
		secret.Destroy()
		return err
	}
	sb := secret.Bytes()
	root, err := keyring.DeriveRootKey(sb)
	clear(sb)
	if err != nil {
		secret.Destroy()
		return fmt.Errorf("node: derive root key: %w", err)
	}
	ring, err := keyring.OpenKeyring(root, rec.WrappedBarrier, barrierAAD)
	root.Destroy()
	if err != nil {
		secret.Destroy()
		return fmt.Errorf("node: open barrier keyring: %w", err)
	}
	n.keys.open(ring) // customer keys are unwrapped on first use
	n.sealer.mu.Lock()
	n.sealer.resetLocked()
	if n.sealer.secret != nil {
		n.sealer.secret.Destroy()
	}
	n.sealer.secret = secret
	n.sealer.unsealedBy = by
	n.sealer.unsealedAt = n.fsm.AppliedIndex()
	n.sealer.reason = ""
	n.sealer.byOperator = false
	if by == UnsealedByCustodians {
		n.sealer.redeal = true
	}
	n.sealer.mu.Unlock()
	n.log.Info("unsealed", "by", by)
	select {
	case n.sealer.dealNow <- struct{}{}:
	default:
	}
	return nil
}

func shuffle(s []string) {
	for i := len(s) - 1; i > 0; i-- {
		j, err := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		if err != nil {
			return
		}
		s[i], s[j.Int64()] = s[j.Int64()], s[i]
	}
}

// hsmHealthTTL bounds how often status requests reach the device: the
// status endpoint is unauthenticated and must not let callers drive HSM
// traffic.
const hsmHealthTTL = time.Second

// hsmStatus reports HSM health for the status endpoint, probing the
// device at most once per hsmHealthTTL.
func (n *Node) hsmStatus(ctx context.Context) string {
	if n.hsm.dev == nil {
		if n.hsm.err != nil {
			return "error: " + n.hsm.err.Error()
		}
		return "none"
	}
	n.hsm.health.mu.Lock()
	defer n.hsm.health.mu.Unlock()
	if time.Since(n.hsm.health.at) < hsmHealthTTL {
		return n.hsm.health.status
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	n.hsm.health.status = "ok"
	if err := n.hsm.dev.Health(ctx); err != nil {
		n.hsm.health.status = "error: " + err.Error()
	}
	n.hsm.health.at = time.Now()
	return n.hsm.health.status
}

// NodeShareCommitments returns the encoded commitments of the current
// node-share dealing (nil when none).
func (n *Node) NodeShareCommitments() ([]byte, error) {
	rec, err := n.fsm.NodeShares()
	if err != nil || rec == nil {
		return nil, err
	}
	return rec.Commitments, nil
}

// PinnedDeliveryKey returns node id's pinned delivery public key (nil:
// none pinned yet).
func (n *Node) PinnedDeliveryKey(id string) ([]byte, error) { return n.fsm.DeliveryKey(id) }
