package node

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/shamir"
	"github.com/keyd/keyd/sharex"
)

// peerBook maps node ids to API addresses.
type peerBook struct {
	mu    sync.RWMutex
	byID  map[string]Peer
	local string
}

func newPeerBook(local string, peers []Peer) *peerBook {
	b := &peerBook{byID: map[string]Peer{}, local: local}
	for _, p := range peers {
		b.byID[p.ID] = p
	}
	return b
}

func (b *peerBook) apiAddr(id string) string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.byID[id].APIAddr
}

func (b *peerBook) set(p Peer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.byID[p.ID]
	if p.RaftAddr == "" {
		p.RaftAddr = old.RaftAddr
	}
	if p.Region == "" {
		p.Region = old.Region
	}
	b.byID[p.ID] = p
}

// remove drops a peer (a removed node).
func (b *peerBook) remove(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.byID, id)
}

func (b *peerBook) get(id string) (Peer, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	p, ok := b.byID[id]
	return p, ok
}

// all returns every known peer, this node included.
func (b *peerBook) all() []Peer {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]Peer, 0, len(b.byID))
	for _, p := range b.byID {
		out = append(out, p)
	}
	return out
}

// others returns every known peer except this node.
func (b *peerBook) others() []Peer {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var out []Peer
	for id, p := range b.byID {
		if id != b.local && p.APIAddr != "" {
			out = append(out, p)
		}
	}
	return out
}

// forwardWatch is how often a forwarded write checks that its target is
// still this node's leader.
const forwardWatch = 100 * time.Millisecond

// Forward sends a write that arrived on a follower to the leader, with the
// same method, path, headers and body, and copies the leader's reply. It
// returns an error (not written) when no leader can be reached, or when
// the leader it was sent to stops being this node's leader before it
// answered: a pooled connection to a leader that died stays silent, and
// the write must not wait on it past the election.
func (n *Node) Forward(w http.ResponseWriter, r *http.Request, body []byte) error {
	leaderID, addr := n.forwardTarget(r.Context())
	if addr == "" || addr == n.apiAdvertise() {
		return n.notLeader()
	}
	ctx, cancel := context.WithCancel(r.Context())
	watchDone := make(chan struct{})
	defer func() { cancel(); <-watchDone }()
	go func() {
		defer close(watchDone)
		t := time.NewTicker(forwardWatch)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if id, _ := n.Leader(); id != leaderID {
					cancel()
					return
				}
			}
		}
	}()
	req, err := http.NewRequestWithContext(ctx, r.Method, "https://"+addr+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("node: forward: %w", err)
	}
	for _, h := range []string{api.HeaderAuthorization, api.HeaderVaultToken, api.HeaderRequestID, api.HeaderMinIndex, "Content-Type"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	// A caller authenticated by client certificate: the leader sees this
	// node's certificate, so the caller's identity travels in a header the
	// leader trusts only from a cluster node. It is taken from the verified
	// TLS connection here, never copied from the caller's headers.
	if r.Header.Get(api.HeaderAuthorization) == "" && r.Header.Get(api.HeaderVaultToken) == "" && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		id := CertIdentity(r.TLS.PeerCertificates[0])
		req.Header.Set(HeaderCertIdentity, hex.EncodeToString(id[:]))
	}
	req.Header.Set(api.HeaderForwarded, n.cfg.NodeID)
	resp, err := n.peers.doPeer(leaderID, req)
	if err != nil {
		// The write may or may not have reached the leader: the client
		// retries with the same request id.
		return &api.Error{Code: api.CodeUnavailable, Message: "leader unreachable; retry with the same request id"}
	}
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", api.HeaderIndex} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, io.LimitReader(resp.Body, api.MaxBatchBodyBytes))
	return nil
}

// forwardTarget returns the leader to forward a write to. While the
// cluster elects (no leader known, or the known one's process is gone:
// fastelect.go) it waits for the new leader, at most one election
// timeout and never past ctx: answering "no leader" at once would make
// the client back off and find the new leader later than this node does.
func (n *Node) forwardTarget(ctx context.Context) (id, addr string) {
	deadline := time.Now().Add(n.cfg.Timing.Election)
	for {
		id, addr = n.Leader()
		if addr != "" && (n.raft == nil || !n.raft.watch.gone(id)) {
			return id, addr
		}
		if !time.Now().Before(deadline) || !sleepUntil(ctx, time.Now().Add(5*time.Millisecond)) {
			return "", ""
		}
	}
}

// relayShare sends a custodian share this node verified to every peer, so
// the whole cluster unseals from shares submitted to any one node. Shares
// travel only over mutual TLS between nodes and stay in memory; the root
// never leaves a node. A relay ends when this node seals: a share given
// before an operator's seal must not unseal a peer after it, however late
// a retry would have reached that peer.
func (n *Node) relayShare(share string) {
	givenAt := n.fsm.AppliedIndex()
	sealed := n.untilNextSeal()
	// Decoded once for all pinned peers (the share was verified when it
	// was submitted); a failure here only stops the sealed relays.
	var rs relaySource
	rs.share, rs.givenAt = share, givenAt
	rs.sh, rs.err = shamir.DecodeShare(share)
	defer rs.sh.Destroy()
	if rs.err == nil {
		var root *shamir.Commitments
		if _, root, rs.err = n.commitments(); rs.err == nil {
			rs.fingerprint = root.Fingerprint()
		}
	}
	for _, p := range n.relayTargets() {
		body, err := n.relayBody(p.ID, &rs)
		if err != nil {
			n.log.Warn("custodian share not relayed", "peer", p.ID, "err", err)
			continue
		}
		n.life.group.Go(func(ctx context.Context) {
			if h := n.shareRelayHook.Load(); h != nil {
				defer (*h)(p.ID)()
			}
			ctx, cancel := untilEither(ctx, sealed)
			defer cancel()
			n.peers.postRetry(ctx, p, api.PathInternalUnsealShare, body)
		})
	}
}

// relayBody is the relay of a custodian share to peer. A peer whose
// delivery key is pinned (it has an HSM; pinned when it joined) gets the
// share sealed to that key: its certificate and key are files on its
// disk, and whoever holds them could otherwise answer at its address
// while it is down and collect every relayed share of a cold unseal. A
// peer without a pinned key (no HSM) gets it under mutual TLS only: such
// a node is as trustworthy as its disk (README, "Delivery keys").
func (n *Node) relayBody(peer string, rs *relaySource) ([]byte, error) {
	pub, err := n.fsm.DeliveryKey(peer)
	if err != nil {
		return nil, err
	}
	if pub == nil {
		return json.Marshal(api.UnsealRequest{Share: rs.share, GivenAt: rs.givenAt})
	}
	if rs.err != nil {
		return nil, rs.err
	}
	eph, sealed, err := sharex.SealDelivery(pub, sharex.Delivery{Kind: sharex.CustodianRelay, Receiver: peer, Dealer: n.cfg.NodeID, Epoch: rs.givenAt, Fingerprint: rs.fingerprint}, rs.sh)
	if err != nil {
		return nil, err
	}
	return json.Marshal(api.UnsealRequest{GivenAt: rs.givenAt, Ephemeral: eph, Sealed: sealed})
}

// relaySource is one custodian share being relayed: its text (for peers
// without a delivery key) and, decoded once, the share and the root
// commitments' fingerprint it is sealed with (err: why they are missing).
type relaySource struct {
	share       string
	givenAt     uint64
	sh          shamir.Share
	fingerprint string
	err         error
}

// relaySeal asks every peer but skip (already sealed) to seal (sealIndex:
// the seal's log index, 0 if unknown), waiting at most a few seconds.
func (n *Node) relaySeal(ctx context.Context, sealIndex uint64, skip string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body, _ := json.Marshal(api.SealRelay{SealIndex: sealIndex})
	var wg sync.WaitGroup
	for _, p := range n.relayTargets() {
		if p.ID == skip {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.peers.postRetry(ctx, p, api.PathInternalSeal, body)
		}()
	}
	wg.Wait()
}

// relayTargets returns the peers this node relays shares and seals to:
// current members only, so a removed node never receives a share.
func (n *Node) relayTargets() []Peer { return n.memberPeers() }
