package node

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/membership"
	"github.com/keyd/keyd/shamir"
	"github.com/keyd/keyd/sharex"
)

// Node-share dealing: the unsealed leader deals the root secret k-of-m
// across the voters whose HSM works (k = the voters' Raft quorum), and
// says in status why node shares are off when it cannot.

// maybeDeal deals new node shares when there is no dealing yet, the voter
// set changed, the leader was just unsealed by custodians, or a voter
// without a share has a working HSM again. It deals only to voters whose
// HSM works, and not at all when fewer than a quorum of voters have one;
// a failed or impossible dealing is retried with exponential backoff and
// its reason shown once, in status (node_shares), not logged every tick.
func (n *Node) maybeDeal(ctx context.Context) error {
	// Work on a copy: a concurrent unseal or seal may destroy the
	// sealer's secret while this dealing runs.
	n.sealer.mu.Lock()
	var secret *shamir.Secret
	if n.sealer.secret != nil {
		sb := n.sealer.secret.Bytes()
		secret, _ = shamir.SecretFromBytes(sb)
		clear(sb)
	}
	force := n.sealer.redeal
	n.sealer.mu.Unlock()
	if secret == nil {
		return nil
	}
	defer secret.Destroy()
	all, err := n.voters()
	if err != nil {
		return err
	}
	var voters []string
	for _, v := range all {
		if !n.fsm.Removed(v) {
			voters = append(voters, v)
		}
	}
	rec, err := n.fsm.NodeShares()
	if err != nil {
		return err
	}
	var epoch uint64 = 1
	if rec != nil {
		epoch = rec.Epoch + 1
	}
	key := fmt.Sprintf("%s/%d/%v", strings.Join(voters, ","), epoch, force)
	if !n.sealer.dealing.Due(key) {
		return nil
	}
	if len(voters) < 2 {
		// One voter would hold a 1-of-1 share and could unseal itself
		// from its own HSM alone after a cold restart: no dealing.
		n.sealer.dealing.Off(n.log, "off: a single voter cannot hold node shares (custodian shares needed after a restart)", n.cfg.NodeShareInterval)
		return nil
	}
	k := len(voters)/2 + 1
	need := force || rec == nil || !slices.Equal(rec.Voters, voters)
	var capable []string
	if need {
		capable = n.hsmVoters(ctx, voters)
	} else {
		var missing []string
		now := time.Now()
		for _, v := range voters {
			// A voter that refused its last share is dealt again only
			// once its backoff has passed.
			if _, ok := rec.Holders[v]; !ok && !n.sealer.delivery.refusedBy.blocked(v, now) {
				missing = append(missing, v)
			}
		}
		if len(missing) == 0 {
			n.sealer.dealing.On(n.log)
			return nil
		}
		if len(n.hsmVoters(ctx, missing)) == 0 {
			// Voters without a share still have no working HSM: the
			// dealing stands; look again later.
			n.sealer.dealing.Off(n.log, fmt.Sprintf("on: %d of %d voters hold a node share (the others have no working HSM)", len(rec.Holders), len(voters)), n.cfg.NodeShareInterval)
			return nil
		}
		capable = n.hsmVoters(ctx, voters)
	}
	capable, keys := n.deliveryKeys(ctx, capable)
	if len(capable) < k {
		why := "off: no voter has a working HSM"
		if len(capable) > 0 {
			why = fmt.Sprintf("off: only %d of %d voters have a working HSM and a pinned delivery key (a quorum of %d is needed)", len(capable), len(voters), k)
		}
		n.sealer.dealing.Off(n.log, why, n.cfg.NodeShareInterval)
		return nil
	}
	if err := n.deal(ctx, secret, voters, capable, keys, epoch); err != nil {
		if ctx.Err() == nil {
			n.sealer.dealing.Failed(n.log, err, n.cfg.NodeShareInterval)
		}
		return nil
	}
	n.sealer.dealing.On(n.log)
	n.sealer.mu.Lock()
	n.sealer.redeal = false
	n.sealer.mu.Unlock()
	return nil
}

// hsmVoters returns the voters among ids whose HSM works: this node's own
// device, a peer's gossip metadata, or else the peer's status.
func (n *Node) hsmVoters(ctx context.Context, ids []string) []string {
	var gossiped map[string]bool
	if n.member.gossip != nil {
		gossiped = map[string]bool{}
		for _, m := range n.member.gossip.Members() {
			if m.State == membership.StateAlive {
				gossiped[m.NodeID] = m.HSMOK
			}
		}
	}
	var out []string
	for _, id := range ids {
		ok := false
		switch {
		case id == n.cfg.NodeID:
			ok = n.hsm.dev != nil && n.hsmStatus(ctx) == "ok"
		default:
			if g, known := gossiped[id]; known {
				ok = g
			} else if addr := n.peers.apiAddr(id); addr != "" {
				st, err := n.peerStatus(ctx, addr)
				ok = err == nil && st.HSM == "ok"
			}
		}
		if ok {
			out = append(out, id)
		}
	}
	return out
}

// nodeSharesStatus says whether node shares are on for SealStatus.
func (n *Node) nodeSharesStatus() string {
	if n.IsLeader() {
		if s := n.sealer.dealing.Status(); s != "" {
			return s
		}
	}
	if n.hsm.dev == nil {
		if n.hsm.err != nil {
			return "off: this node's HSM is unavailable"
		}
		return "off: this node has no HSM"
	}
	if p := n.deliveryProblem(); p != "" {
		return p
	}
	rec, err := n.fsm.NodeShares()
	if err != nil || rec == nil {
		return "off: no node shares dealt yet"
	}
	if _, ok := rec.Holders[n.cfg.NodeID]; !ok {
		return "off: this node holds no share of the current dealing"
	}
	return "on"
}

// deal splits the root secret k-of-m over the receivers (the voters with a
// working HSM and a pinned delivery key; k is the voters' Raft quorum),
// delivers each share sealed to the receiver's delivery key (keys; the
// receiver wraps it with its HSM before it is stored) and records the
// dealing through Raft once at least k voters hold their share. Shares of
// earlier dealings stop verifying against the new commitments.
func (n *Node) deal(ctx context.Context, secret *shamir.Secret, voters, receivers []string, keys map[string][]byte, epoch uint64) error {
	n.sealer.dealing.Attempts.Add(1)
	k := len(voters)/2 + 1
	shares, commits, err := shamir.Split(secret, k, len(receivers), rand.Reader)
	if err != nil {
		return err
	}
	defer func() {
		for _, sh := range shares {
			sh.Destroy()
		}
	}()
	cb, err := commits.MarshalBinary()
	if err != nil {
		return err
	}
	fp := commits.Fingerprint()
	holders := map[string]int{}
	for i, id := range receivers {
		sh := shares[i]
		if id == n.cfg.NodeID {
			if err := n.vault().Store(ctx, fp, sh); err != nil {
				n.log.Warn("cannot store own node share", "err", err)
				continue
			}
			holders[id] = sh.Index
			continue
		}
		eph, sealed, err := sharex.SealDelivery(keys[id], sharex.Delivery{Kind: sharex.NodeShare, Receiver: id, Dealer: n.cfg.NodeID, Epoch: epoch, Fingerprint: fp}, sh)
		if err != nil {
			n.log.Warn("cannot seal a node share to the voter's delivery key", "peer", id, "err", err)
			continue
		}
		body, _ := json.Marshal(api.NodeShareDelivery{Epoch: epoch, Commitments: cb, Ephemeral: eph, Sealed: sealed})
		if err := n.peers.postJSON(ctx, id, api.PathInternalNodeShare, body, nil); err != nil {
			var ae *api.Error
			if errors.As(err, &ae) && api.StatusFor(ae.Code) < 500 {
				// It refused the share (cannot open it): back off.
				n.sealer.delivery.refusedBy.allow(id, time.Now(), 32*n.cfg.NodeShareInterval)
			}
			n.log.Info("node share not delivered", "peer", id, "err", err)
			continue
		}
		n.sealer.delivery.refusedBy.forget(id)
		holders[id] = sh.Index
	}
	if len(holders) < k {
		return fmt.Errorf("node: only %d of %d voters stored their share (need %d)", len(holders), len(voters), k)
	}
	_, err = n.apply(ctx, &fsm.PutNodeShares{
		Meta: fsm.Meta{At: time.Now().UTC()}, Epoch: epoch, Threshold: k,
		Commitments: cb, Holders: holders, Voters: voters,
	})
	if err != nil {
		return err
	}
	for id := range holders {
		n.sealer.dealMeInBy.forget(id)
	}
	n.log.Info("node shares dealt", "epoch", epoch, "threshold", k, "voters", len(voters), "holders", len(holders), "dealing", fp)
	n.pruneCommitted()
	return nil
}

// dealMeInGap bounds how often voters' requests make the leader deal at
// once: every dealing costs each voter's HSM a wrap and one Raft write.
const dealMeInGap = 250 * time.Millisecond

// DealMeIn makes the leader evaluate node-share dealing now for voter
// from, which holds no share of the current dealing: it was down while
// the leader dealt (typically the re-dealing after a custodian unseal).
// Without the request that voter waits for the leader's next node-share
// check. The dealing is the usual one (maybeDeal): it deals only to voters
// whose HSM works, so a voter cannot obtain more than any voter holds.
// Requests closer together than dealMeInGap are accepted and dropped; the
// voter asks again on its next rejoin attempt. A voter whose requests keep
// leaving it without a share is backed off (voterBackoff).
func (n *Node) DealMeIn(from string) error {
	if !n.IsLeader() {
		return n.notLeader()
	}
	if n.Sealed() {
		return api.ErrSealed
	}
	voters, err := n.voters()
	if err != nil {
		return err
	}
	if !slices.Contains(voters, from) || n.fsm.Removed(from) {
		return &api.Error{Code: api.CodeForbidden, Message: "only a current voter is dealt node shares"}
	}
	if rec, err := n.fsm.NodeShares(); err != nil {
		return err
	} else if rec != nil {
		if _, ok := rec.Holders[from]; ok {
			n.sealer.dealMeInBy.forget(from)
			return nil // it holds a share already
		}
	}
	if !n.sealer.dealMeInBy.allow(from, time.Now(), n.cfg.NodeShareInterval) {
		return nil
	}
	now := time.Now().UnixNano()
	last := n.sealer.dealMeInAt.Load()
	if now-last < int64(dealMeInGap) || !n.sealer.dealMeInAt.CompareAndSwap(last, now) {
		return nil
	}
	n.log.Info("voter without a node share asked to be dealt in", "peer", from)
	select {
	case n.sealer.dealNow <- struct{}{}:
	default:
	}
	return nil
}

// voterBackoff spaces the leader's attempts for one node: dealMeInGap,
// then twice as long each time, up to a limit. It backs off a voter's
// DealMeIn requests that made the leader deal and still left it without a
// share (without it, one voter that refuses or cannot store what it is
// dealt makes the leader re-deal, a split, an HSM wrap on every voter and
// a Raft write, every dealMeInGap for as long as it asks), and in
// delivery.go the pinning of a member that does not answer and the
// re-dealing to a voter that refused its share.
type voterBackoff struct {
	mu    sync.Mutex
	voter map[string]voterBackoffState
}

type voterBackoffState struct {
	asked int
	next  time.Time
}

// allow reports whether voter's request may make the leader deal now,
// and if so pushes its next one back.
func (b *voterBackoff) allow(voter string, now time.Time, limit time.Duration) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.voter[voter]
	if now.Before(st.next) {
		return false
	}
	if b.voter == nil {
		b.voter = map[string]voterBackoffState{}
	}
	st.next = now.Add(min(dealMeInGap<<min(st.asked, 16), limit))
	st.asked++
	b.voter[voter] = st
	return true
}

// blocked reports whether voter is backed off at now (without counting an
// attempt).
func (b *voterBackoff) blocked(voter string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	st, ok := b.voter[voter]
	return ok && now.Before(st.next)
}

// forget drops voter's backoff: it holds a share of the current dealing.
func (b *voterBackoff) forget(voter string) {
	b.mu.Lock()
	delete(b.voter, voter)
	b.mu.Unlock()
}

// askToBeDealtIn sends DealMeIn to the leader this node knows, if any (a
// sealed voter that holds no share of the current dealing).
func (n *Node) askToBeDealtIn(ctx context.Context) {
	id, _ := n.Leader()
	if id == "" || id == n.cfg.NodeID {
		return
	}
	if voters, err := n.voters(); err != nil || !slices.Contains(voters, n.cfg.NodeID) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := n.peers.postJSON(ctx, id, api.PathInternalDealMeIn, []byte("{}"), nil); err != nil {
		n.log.Debug("asking the leader for a node share failed", "leader", id, "err", err)
	}
}
