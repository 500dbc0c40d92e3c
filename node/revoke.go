package node

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/keyd/keyd/api"
)

// revokeWait bounds how long a revocation waits for every node to apply
// it; revokePoll is how often a lagging node is asked again.
const (
	revokeWait = 2 * time.Second
	revokePoll = 10 * time.Millisecond
)

// waitAppliedEverywhere waits, on the leader, until every other server
// of the Raft configuration reports index applied (GET /v1/sys/health
// over the node-to-node client), for at most revokeWait or ctx. It
// returns the ids of the servers that had not, sorted.
func (n *Node) waitAppliedEverywhere(ctx context.Context, index uint64) []string {
	if n.raft == nil {
		return nil
	}
	fut := n.raft.raft.GetConfiguration()
	if err := fut.Error(); err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, revokeWait)
	defer cancel()
	var (
		mu      sync.Mutex
		pending []string
		wg      sync.WaitGroup
	)
	for _, s := range fut.Configuration().Servers {
		id := string(s.ID)
		if id == n.cfg.NodeID {
			continue
		}
		wg.Go(func() {
			if !n.waitPeerApplied(ctx, id, index) {
				mu.Lock()
				pending = append(pending, id)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sort.Strings(pending)
	return pending
}

// waitPeerApplied polls peer id's health until it reports index applied
// or ctx ends.
func (n *Node) waitPeerApplied(ctx context.Context, id string, index uint64) bool {
	t := time.NewTicker(revokePoll)
	defer t.Stop()
	for {
		if addr := n.peers.apiAddr(id); addr != "" {
			if h, err := n.peerHealth(ctx, addr); err == nil && h.Applied >= index {
				return true
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

func (n *Node) peerHealth(ctx context.Context, addr string) (*api.Health, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+api.PathHealth, nil)
	if err != nil {
		return nil, err
	}
	resp, err := n.peers.do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var h api.Health
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&h); err != nil {
		return nil, err
	}
	return &h, nil
}

// leaderLease is how long a follower may go without hearing from the
// leader before it stops trusting its token table for anything but
// crypto calls: one heartbeat timeout (after which it would start an
// election) plus one election timeout.
func (n *Node) leaderLease() time.Duration {
	return n.cfg.Timing.Heartbeat + n.cfg.Timing.Election
}

// LeaderContactLost reports whether this node has not heard from a leader
// for longer than its lease (a leader has contact by definition; a leader
// without a quorum steps down after its own lease). Such a node may have
// missed revocations: it refuses token requests other than crypto calls.
func (n *Node) LeaderContactLost() bool {
	if n.raft == nil {
		return true
	}
	if n.IsLeader() {
		return false
	}
	lc := n.raft.raft.LastContact()
	return lc.IsZero() || time.Since(lc) > n.leaderLease()
}
