package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/membership"
)

// RemoveServer removes a node from the Raft configuration. It runs on the
// leader. The leader then re-deals node shares for the remaining voters,
// so the removed node's share stops verifying against the new dealing.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	if !n.IsLeader() {
		return n.notLeader()
	}
	if id == n.cfg.NodeID {
		return &api.Error{Code: api.CodeBadRequest, Message: "the leader cannot remove itself; transfer leadership first"}
	}
	timeout, err := n.raftTimeout(ctx)
	if err != nil {
		return err
	}
	if err := n.raft.raft.RemoveServer(raft.ServerID(id), 0, timeout).Error(); err != nil {
		return fmt.Errorf("node: remove %s: %w", id, err)
	}
	n.log.Info("server removed", "id", id)
	select {
	case n.sealer.dealNow <- struct{}{}:
	default:
	}
	return nil
}

// A removed node must stop serving at once: it is dropped from every peer
// list, refused on every internal route, seals itself (zeroing its keys)
// and refuses to unseal again. It learns of its removal from the
// tombstone in its FSM, from a Raft configuration that no longer lists it,
// or, when it no longer receives the log at all, from peers whose
// configuration no longer lists it.

// Removal-watch timing: a node without a leader for leaderlessProbeAfter
// asks its peers' status, at most once per probeEvery.
const (
	leaderlessProbeAfter = 3 * time.Second
	probeEvery           = 3 * time.Second
)

// memberWatch is this node's view of its own membership.
type memberWatch struct {
	// gossip is the gossip member list (nil without gossip_addr); set by
	// Start before any goroutine reads it.
	gossip *membership.Gossip

	removed atomic.Bool // sticky until the node follows a leader again (never after a tombstone)

	mu           sync.Mutex // guards the fields below; held only by runNodeShares
	wasMember    bool       // this node has seen itself in the Raft configuration
	tombstoned   bool
	leaderless   time.Time // when this node last had no leader (zero: it has one)
	lastProbe    time.Time
	removedCause string
}

// raftServers returns the latest Raft configuration this node knows.
func (n *Node) raftServers() (map[string]raft.Server, bool) {
	if n.raft == nil {
		return nil, false
	}
	fut := n.raft.raft.GetConfiguration()
	if fut.Error() != nil {
		return nil, false
	}
	out := map[string]raft.Server{}
	for _, s := range fut.Configuration().Servers {
		out[string(s.ID)] = s
	}
	return out, true
}

// isMember reports whether id is a current member: in this node's Raft
// configuration and not tombstoned. Internal routes, share relays,
// node-share deliveries and share requests accept only members.
func (n *Node) isMember(id string) bool {
	servers, ok := n.raftServers()
	if !ok {
		return false
	}
	if _, in := servers[id]; !in {
		return false
	}
	return !n.fsm.Removed(id)
}

// memberPeers returns the peers of the peer book that are current members,
// this node excluded.
func (n *Node) memberPeers() []Peer {
	servers, ok := n.raftServers()
	if !ok {
		return nil
	}
	var out []Peer
	for _, p := range n.peers.others() {
		if _, in := servers[p.ID]; in && !n.fsm.Removed(p.ID) {
			out = append(out, p)
		}
	}
	return out
}

// removedSelf reports whether this node knows it was removed.
func (n *Node) removedSelf() bool {
	return n.member.removed.Load() || n.fsm.Removed(n.cfg.NodeID)
}

// removedReason says why a removed node stays sealed ("" when it was not
// removed).
func (n *Node) removedReason() string {
	if !n.removedSelf() {
		return ""
	}
	n.member.mu.Lock()
	cause := n.member.removedCause
	n.member.mu.Unlock()
	if cause == "" {
		cause = "removed from the cluster"
	}
	return cause + ": custodian shares are refused too"
}

// errRemoved is why a removed node stays sealed.
var errRemoved = &api.Error{Code: api.CodeForbidden, Message: "this node was removed from the cluster: it stays sealed"}

// checkMembership runs on every node-share tick: it drops tombstoned
// peers from the peer book and seals this node when it finds it was
// removed.
func (n *Node) checkMembership(ctx context.Context) {
	for _, p := range n.peers.all() {
		if p.ID != n.cfg.NodeID && n.fsm.Removed(p.ID) {
			n.peers.remove(p.ID)
			n.peers.forget(p.ID)
		}
	}
	w := &n.member
	w.mu.Lock()
	defer w.mu.Unlock()
	cause := ""
	servers, ok := n.raftServers()
	_, in := servers[n.cfg.NodeID]
	leaderID, _ := n.Leader()
	switch {
	case w.tombstoned || n.fsm.Removed(n.cfg.NodeID):
		w.tombstoned = true
		cause = "removed from the cluster by an operator"
	case !ok:
		return
	case in:
		w.wasMember = true
		if leaderID != "" {
			// Following a leader whose configuration lists this node:
			// a node once removed (e.g. as long dead) was added back.
			w.removed.Store(false)
			w.leaderless = time.Time{}
			return
		}
		if w.removed.Load() {
			return
		}
		if w.leaderless.IsZero() {
			w.leaderless = time.Now()
		}
		if time.Since(w.leaderless) < leaderlessProbeAfter || time.Since(w.lastProbe) < probeEvery {
			return
		}
		w.lastProbe = time.Now()
		if by := n.probeRemoved(ctx); by != "" {
			cause = "removed from the cluster (" + by + " no longer lists this node)"
		}
	case w.wasMember && len(servers) > 0:
		cause = "removed from the cluster's Raft configuration"
	}
	if cause == "" {
		return
	}
	first := !w.removed.Swap(true) || w.removedCause != cause
	w.removedCause = cause
	if !first {
		return
	}
	n.log.Warn("this node was removed from the cluster: sealing", "cause", cause)
	n.sealLocal(false)
	n.setSealReason(cause + ": custodian shares are refused too")
	if w.tombstoned {
		// Its node shares are useless after the re-dealing; drop them.
		_ = n.vault().RemoveAll()
	}
}

// probeRemoved asks the peers' status (the unauthenticated status route,
// over the peer client): a peer that follows a leader, is at least as far
// along, and whose configuration omits this node, proves the removal. It
// returns that peer's id or "".
func (n *Node) probeRemoved(ctx context.Context) string {
	applied := n.fsm.AppliedIndex()
	for _, p := range n.peers.others() {
		st, err := n.peerStatus(ctx, p.APIAddr)
		if err != nil || st.LeaderID == "" || st.LeaderID == n.cfg.NodeID || st.Applied < applied {
			continue
		}
		// A peer that no longer counts this node as a member answers the
		// public status and says so; older peers answer the full view.
		if st.CallerRemoved {
			return p.ID
		}
		if len(st.Peers) == 0 {
			continue
		}
		listed := false
		for _, s := range st.Peers {
			listed = listed || s.ID == n.cfg.NodeID
		}
		if !listed {
			return p.ID
		}
	}
	return ""
}

func (n *Node) peerStatus(ctx context.Context, addr string) (*api.SealStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+api.PathStatus, nil)
	if err != nil {
		return nil, err
	}
	resp, err := n.peers.do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("node: status %d", resp.StatusCode)
	}
	var st api.SealStatus
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return nil, err
	}
	return &st, nil
}
