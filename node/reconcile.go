package node

import (
	"context"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/membership"
	"github.com/keyd/keyd/node/errs"
)

// catchUpSlack is how far (in log entries) a non-voter may lag the leader
// and still count as caught up for promotion.
const catchUpSlack = 64

// runReconcile is the leader's membership loop: it adds gossip members to
// Raft as non-voters, promotes and demotes voters by the placement policy
// (placement.go), and removes long-dead nodes. One Raft configuration
// change per tick keeps each change small and ordered.
func (n *Node) runReconcile(ctx context.Context) {
	if n.member.gossip == nil {
		return
	}
	t := time.NewTicker(n.cfg.ReconcileInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n.IsLeader() {
			if err := n.reconcile(ctx); err != nil && ctx.Err() == nil {
				n.log.Warn("membership reconcile", "err", err)
			}
		}
	}
}

func (n *Node) reconcile(ctx context.Context) error {
	fut := n.raft.raft.GetConfiguration()
	if err := fut.Error(); err != nil {
		return err
	}
	servers := map[string]raft.Server{}
	for _, s := range fut.Configuration().Servers {
		servers[string(s.ID)] = s
	}
	members := map[string]membership.Member{}
	for _, m := range n.member.gossip.Members() {
		members[m.NodeID] = m
	}
	now := time.Now()
	timeout := 5 * time.Second
	leaderApplied := n.fsm.AppliedIndex()

	// 1. New gossip members enter Raft as non-voters.
	for id, m := range members {
		if _, in := servers[id]; in || m.State != membership.StateAlive || m.RaftAddr == "" || n.fsm.Removed(id) {
			continue
		}
		if err := n.raft.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(m.RaftAddr), 0, timeout).Error(); err != nil {
			return err
		}
		n.log.Info("added non-voter", "id", id, "region", m.Region)
		return nil
	}

	// 2. Long-dead nodes leave the configuration.
	for id := range servers {
		m, ok := members[id]
		if !ok || id == n.cfg.NodeID {
			continue
		}
		if (m.State == membership.StateDead || m.State == membership.StateLeft) && now.Sub(m.Since) > n.cfg.DeadNodeRemoveTimeout {
			if err := n.raft.raft.RemoveServer(raft.ServerID(id), 0, timeout).Error(); err != nil {
				return err
			}
			n.log.Info("removed dead node", "id", id, "dead_for", now.Sub(m.Since).Round(time.Second))
			return nil
		}
	}

	// 3. Voters by the placement policy.
	var cands []candidate
	for id, s := range servers {
		c := candidate{id: id, voter: s.Suffrage == raft.Voter, region: n.cfg.Region}
		m, known := members[id]
		if known && m.Region != "" {
			c.region = m.Region
		} else if p, ok := n.peers.get(id); ok && p.Region != "" {
			c.region = p.Region
		}
		switch {
		case id == n.cfg.NodeID:
			c.eligible = true
		case !known:
			// Not in gossip (yet): keep a voter as it is, never promote.
			c.eligible = c.voter
		case m.State == membership.StateAlive:
			c.eligible = c.voter || m.Applied+catchUpSlack >= leaderApplied
		default:
			c.eligible = c.voter && now.Sub(m.Since) < n.cfg.DeadVoterTimeout
		}
		cands = append(cands, c)
	}
	want := placeVoters(cands, n.cfg.NodeID, n.cfg.MaxVoters)
	for _, id := range want {
		if s := servers[id]; s.Suffrage != raft.Voter {
			if err := n.raft.raft.AddVoter(raft.ServerID(id), s.Address, 0, timeout).Error(); err != nil {
				return err
			}
			n.log.Info("promoted to voter", "id", id)
			return nil
		}
	}
	for id, s := range servers {
		if s.Suffrage == raft.Voter && !slices.Contains(want, id) && id != n.cfg.NodeID {
			if err := n.raft.raft.DemoteVoter(raft.ServerID(id), 0, timeout).Error(); err != nil {
				return err
			}
			n.log.Info("demoted to non-voter", "id", id)
			return nil
		}
	}
	return nil
}

// RemoveNode removes a node for good: it is tombstoned through Raft (so
// gossip cannot bring it back), demoted and removed from the
// configuration. Node shares are then re-dealt for the remaining voters.
func (n *Node) RemoveNode(ctx context.Context, rid, id string) error {
	if id == "" {
		return &api.Error{Code: api.CodeBadRequest, Message: "node_id is required"}
	}
	if !n.IsLeader() {
		return n.notLeader()
	}
	known := false
	if fut := n.raft.raft.GetConfiguration(); fut.Error() == nil {
		for _, s := range fut.Configuration().Servers {
			known = known || string(s.ID) == id
		}
	}
	if !known {
		return &errs.NotFound{What: "node"}
	}
	if _, err := n.apply(ctx, &fsm.RemoveNode{Meta: fsm.Meta{RequestID: rid, At: time.Now().UTC()}, NodeID: id}); err != nil {
		return err
	}
	return n.RemoveServer(ctx, id)
}
