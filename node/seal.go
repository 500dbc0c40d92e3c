package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/seal"
	"github.com/keyd/keyd/seal/nodeshare"
	"github.com/keyd/keyd/shamir"
	"github.com/keyd/keyd/sharex"
)

type randReader = io.Reader

// Unseal methods, reported in SealStatus.UnsealedBy.
const (
	UnsealedByCustodians = "custodians"
)

// barrierAAD binds the wrapped barrier keyring to its purpose.
var barrierAAD = seal.BarrierAAD

// TokenPrefix starts every keyd token, so leaked tokens are easy to spot
// with secret scanners.
const TokenPrefix = "kd_"

// sealer is the node's seal state. The custodian ceremonies (init,
// unsealing from custodian shares, root rotation) live in package seal
// (cust); what remains here is what node-share dealing and warm rejoin
// (nodeshare.go) share with them.
type sealer struct {
	mu         sync.Mutex
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
	// unsealedAt is the applied index when this node last unsealed: a
	// cluster seal (fsm.SealCluster) applied after it seals the node.
	unsealedAt uint64
	// cust runs the custodian ceremonies; set by New.
	cust *seal.Custodians
	// sealed is cancelled when this node next seals (and then replaced):
	// a share relay started before a seal stops at it, so shares given
	// before the seal never unseal a peer after it (relayShare).
	sealed       context.Context
	sealedCancel context.CancelFunc

	// dealNow asks runNodeShares to evaluate dealing at once (an
	// unseal, a removal, a root rotation); buffered, never blocks.
	dealNow chan struct{}
	// dealing is the leader's node-share dealing state (dealing.go); it
	// has its own lock, not mu.
	dealing nodeshare.Backoff
	// dealMeInAt is when a voter's DealMeIn last made the leader deal
	// (Unix ns), to bound how often requests can (dealing.go).
	dealMeInAt atomic.Int64
	// dealMeInBy spaces each voter's requests that did not get it a
	// share (dealing.go).
	dealMeInBy voterBackoff
	// delivery is the delivery-key pinning state (delivery.go).
	delivery deliveryState
}

// resetLocked drops pending custodian shares (the node unsealed).
func (s *sealer) resetLocked() {
	if s.cust != nil {
		s.cust.DropPending()
	}
}

// sealHost is the node as package seal sees it.
type sealHost struct{ n *Node }

func (h sealHost) Unsealed() bool { return h.n.keys.unsealed() }

func (h sealHost) Open(secret *shamir.Secret, rec *fsm.InitRecord) error {
	return h.n.openWithSecret(secret, rec, UnsealedByCustodians)
}

// RootRotated keeps the new secret for node-share dealing and re-deals at
// once: the old dealing no longer commits to the root.
func (h sealHost) RootRotated(secret *shamir.Secret) {
	n := h.n
	n.sealer.mu.Lock()
	if n.sealer.secret != nil {
		n.sealer.secret.Destroy()
	}
	n.sealer.secret = secret
	n.sealer.redeal = true
	n.sealer.mu.Unlock()
	select {
	case n.sealer.dealNow <- struct{}{}:
	default:
	}
}

func (h sealHost) RelayShare(share string) { h.n.relayShare(share) }

func (h sealHost) CheckRoot(secret *shamir.Secret, rec *fsm.InitRecord) error {
	return h.n.checkRestoreMAC(secret, rec)
}

// Removed refuses custodian shares on a node that knows it was removed.
func (h sealHost) Removed() error {
	if h.n.removedSelf() {
		return errRemoved
	}
	return nil
}

// sealProposer is the node's Raft as package seal sees it.
type sealProposer struct{ n *Node }

func (p sealProposer) IsLeader() bool   { return p.n.IsLeader() }
func (p sealProposer) NotLeader() error { return p.n.notLeader() }
func (p sealProposer) Apply(ctx context.Context, c fsm.Command) (*fsm.Result, error) {
	return p.n.apply(ctx, c)
}

// newCustodians wires package seal to this node.
func (n *Node) newCustodians() *seal.Custodians {
	return seal.New(seal.Config{Store: n.fsm, Proposer: sealProposer{n}, Host: sealHost{n}, Log: n.log})
}

// commitments loads the root record and its commitments from the FSM.
func (n *Node) commitments() (*fsm.InitRecord, *shamir.Commitments, error) {
	return seal.Commitments(n.fsm)
}

// SubmitShare verifies one custodian share and, once the threshold of
// verified shares is held, unseals this node (see seal.Custodians). The
// reply's ShareIgnored says why a valid share was not used.
func (n *Node) SubmitShare(ctx context.Context, text string, relayed bool) (api.SealStatus, error) {
	ignored, err := n.sealer.cust.SubmitShare(ctx, text, relayed)
	st := n.Status()
	st.ShareIgnored = ignored
	return st, err
}

// Init initialises the cluster on the leader (see seal.Custodians.Init).
func (n *Node) Init(ctx context.Context, rid string, req api.InitRequest) (*api.InitResponse, error) {
	return n.sealer.cust.Init(ctx, rid, req, newToken)
}

// SealLocal seals this node on an operator's request: it drops every
// unwrapped key, the barrier keyring and any pending shares, and stays
// sealed until custodians unseal it (no warm rejoin).
func (n *Node) SealLocal() { n.sealLocal(true) }

// endShareRelays ends every share relay under way (see untilNextSeal).
func (n *Node) endShareRelays() {
	n.sealer.mu.Lock()
	defer n.sealer.mu.Unlock()
	n.endShareRelaysLocked()
}

func (n *Node) endShareRelaysLocked() {
	if n.sealer.sealedCancel != nil {
		n.sealer.sealedCancel()
	}
	n.sealer.sealed, n.sealer.sealedCancel = context.WithCancel(context.Background())
}

// untilNextSeal returns a context cancelled when this node next seals;
// sealLocal cancels it before it returns.
func (n *Node) untilNextSeal() context.Context {
	n.sealer.mu.Lock()
	defer n.sealer.mu.Unlock()
	if n.sealer.sealed == nil {
		n.sealer.sealed, n.sealer.sealedCancel = context.WithCancel(context.Background())
	}
	return n.sealer.sealed
}

// untilEither returns a context that ends when a or b ends.
func untilEither(a, b context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(a)
	stop := context.AfterFunc(b, cancel)
	return ctx, func() { stop(); cancel() }
}

func (n *Node) sealLocal(byOperator bool) {
	n.keys.seal()
	n.sealer.cust.Seal()
	n.sealer.mu.Lock()
	n.endShareRelaysLocked()
	n.sealer.byOperator = byOperator
	n.sealer.unsealedBy = ""
	if n.sealer.secret != nil {
		n.sealer.secret.Destroy()
		n.sealer.secret = nil
	}
	n.sealer.mu.Unlock()
	n.log.Info("sealed")
}

// Seal seals this node and every peer it reaches, for an operator. The
// seal is recorded in the Raft log (fsm.SealCluster, through the leader)
// before it is relayed, and Seal returns once this node and the peers it
// reached have applied it (each waits a bounded time), so a custodian
// share given after Seal returns is relayed with an index after the seal
// and counts everywhere. Without a leader the reachable nodes still seal.
func (n *Node) Seal(ctx context.Context) error {
	n.SealLocal()
	idx, by := n.recordSeal(ctx)
	n.relaySeal(ctx, idx, by)
	n.waitSealApplied(ctx, idx)
	return nil
}

// recordSeal records an operator's seal in the Raft log and returns its
// index: on the leader directly, else through the leader's relayed-seal
// route, which also seals the leader (by names it then). It returns 0 when
// that fails (no leader, no quorum).
func (n *Node) recordSeal(ctx context.Context) (idx uint64, by string) {
	if n.raft == nil {
		return 0, ""
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if n.IsLeader() {
		res, err := n.apply(ctx, &fsm.SealCluster{Meta: fsm.Meta{At: n.now()}})
		if err != nil {
			n.log.Warn("operator seal not recorded in the Raft log (the nodes the relayed seal reaches are sealed)", "err", err)
			return 0, ""
		}
		return res.Index, ""
	}
	id, _ := n.Leader()
	if id == "" {
		n.log.Warn("operator seal not recorded in the Raft log: no leader (the nodes the relayed seal reaches are sealed)")
		return 0, ""
	}
	body, _ := json.Marshal(api.SealRelay{})
	var out api.WriteResponse
	if err := n.peers.postJSON(ctx, id, api.PathInternalSeal, body, &out); err != nil {
		n.log.Warn("operator seal not recorded in the Raft log (the nodes the relayed seal reaches are sealed)", "leader", id, "err", err)
		return 0, ""
	}
	return out.Index, id
}

// waitSealApplied waits, at most two seconds, until this node has applied
// the seal at idx.
func (n *Node) waitSealApplied(ctx context.Context, idx uint64) {
	if idx == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_ = n.fsm.WaitApplied(ctx, idx)
}

// SealRelayed seals this node for an operator's seal relayed by a peer.
// sealIndex is the seal's log index, which this node waits to apply; 0
// asks this node, if it leads, to record the seal and return its index.
func (n *Node) SealRelayed(ctx context.Context, sealIndex uint64) uint64 {
	n.SealLocal()
	if sealIndex == 0 && n.raft != nil && n.IsLeader() {
		sealIndex, _ = n.recordSeal(ctx)
	}
	n.waitSealApplied(ctx, sealIndex)
	return sealIndex
}

// onClusterSeal runs when this node applied an operator's seal (or a
// snapshot holding one). An unsealed node that unsealed before the seal
// seals. A sealed node drops the custodian shares it holds and ends its
// share relays: they were given before this node knew of the seal, and
// its peers refuse them anyway (SubmitRelayedShare); it stays able to
// rejoin from node shares (a node catching up after downtime applies old
// seals).
func (n *Node) onClusterSeal() {
	last := n.fsm.LastSealIndex()
	n.sealer.mu.Lock()
	after := last > n.sealer.unsealedAt
	n.sealer.mu.Unlock()
	if !after {
		return
	}
	if n.keys.unsealed() {
		n.log.Info("sealing: the cluster was sealed by an operator", "seal_index", last)
		n.SealLocal()
		return
	}
	n.sealer.cust.DropPending()
	n.endShareRelays()
}

// SubmitRelayedShare counts a custodian share relayed by a peer, unless an
// operator sealed the cluster after the share was given (givenAt: the
// relaying node's applied index then): such a share must not unseal
// anything after the seal, whatever order the seal and the relay arrive.
//
// A relay from a peer that found this node's delivery key pinned is
// sealed to it and opens only with this node's HSM.
func (n *Node) SubmitRelayedShare(ctx context.Context, from string, req api.UnsealRequest) (api.SealStatus, error) {
	givenAt := req.GivenAt
	if last := n.fsm.LastSealIndex(); last > givenAt {
		return api.SealStatus{}, &api.Error{Code: api.CodeConflict, Message: "share was given before the cluster's last seal: submit it again"}
	}
	text := req.Share
	if len(req.Sealed) > 0 {
		if req.Share != "" {
			return api.SealStatus{}, &api.Error{Code: api.CodeBadRequest, Message: "a relayed share is either sealed or not"}
		}
		_, root, err := n.commitments()
		if err != nil {
			return api.SealStatus{}, err
		}
		sh, err := n.vault().OpenDelivery(ctx, sharex.Delivery{Kind: sharex.CustodianRelay, Receiver: n.cfg.NodeID, Dealer: from, Epoch: givenAt, Fingerprint: root.Fingerprint()}, req.Ephemeral, req.Sealed)
		if err != nil {
			return api.SealStatus{}, openFailed("relayed share", err)
		}
		text = shamir.EncodeShare(sh)
		sh.Destroy()
	}
	st, err := n.SubmitShare(ctx, text, true)
	// The seal may have been applied while the share was counted.
	if n.fsm.LastSealIndex() > givenAt && !n.Sealed() {
		n.log.Info("sealing: a share given before the cluster's last seal took part in an unseal")
		n.SealLocal()
		st = n.Status()
	}
	return st, err
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
