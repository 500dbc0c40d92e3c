package node

import (
	"context"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/membership"
)

// Version is reported in gossip.
const Version = "0.1.0"

// startGossip starts memberlist when configured. Failure to start gossip
// is an error: a node configured for it would otherwise be unreachable to
// the leader's membership logic.
func (n *Node) startGossip() error {
	if n.cfg.GossipAddr == "" {
		return nil
	}
	profile := membership.ProfileLAN
	if n.cfg.Timing == TimingWAN {
		profile = membership.ProfileWAN
	}
	g, err := membership.New(membership.Config{
		NodeID:        n.cfg.NodeID,
		BindAddr:      n.cfg.GossipAddr,
		AdvertiseAddr: n.cfg.GossipAdvertise,
		SecretKey:     n.cfg.GossipKey,
		Profile:       profile,
		Meta:          n.localMeta,
		OnChange:      n.onMember,
		Logger:        n.log.With("component", "gossip"),
	})
	if err != nil {
		return err
	}
	n.member.gossip = g
	n.life.group.Go(n.runGossip)
	return nil
}

// localMeta is what this node publishes.
func (n *Node) localMeta() membership.Meta {
	m := membership.Meta{
		NodeID: n.cfg.NodeID, Region: n.cfg.Region, APIAddr: n.apiAdvertise(),
		Sealed: n.Sealed(), Applied: n.fsm.AppliedIndex(), Version: Version,
	}
	if n.raft != nil {
		m.RaftAddr = string(n.raft.advertise)
		m.Voter = n.isVoter(n.cfg.NodeID)
	}
	m.HSMOK = n.hsm.dev != nil
	return m
}

func (n *Node) isVoter(id string) bool {
	fut := n.raft.raft.GetConfiguration()
	if fut.Error() != nil {
		return false
	}
	for _, s := range fut.Configuration().Servers {
		if string(s.ID) == id {
			return s.Suffrage == raft.Voter
		}
	}
	return false
}

// onMember keeps the peer book in step with gossip. It runs on the
// membership package's delivery goroutine and must not block.
func (n *Node) onMember(m membership.Member) {
	if m.NodeID == "" || m.NodeID == n.cfg.NodeID || n.fsm.Removed(m.NodeID) {
		return
	}
	if m.APIAddr != "" {
		n.peers.set(Peer{ID: m.NodeID, APIAddr: m.APIAddr, RaftAddr: m.RaftAddr, Region: m.Region})
	}
}

// runGossip joins through the configured seeds (retrying until one
// answers) and re-publishes this node's meta when it changes.
func (n *Node) runGossip(ctx context.Context) {
	joined := len(n.cfg.Join) == 0
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	last := n.localMeta()
	for {
		if !joined {
			if c, err := n.member.gossip.Join(n.cfg.Join); err == nil && c > 0 {
				joined = true
				n.log.Info("joined gossip", "contacted", c)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if m := n.localMeta(); m != last {
			if err := n.member.gossip.UpdateMeta(time.Second); err == nil {
				last = m
			}
		}
	}
}

// JoinSeeds joins gossip through seeds now (POST /v1/sys/join).
func (n *Node) JoinSeeds(ctx context.Context, seeds []string) (*api.JoinResponse, error) {
	if n.member.gossip == nil {
		return nil, &api.Error{Code: api.CodeBadRequest, Message: "gossip is not configured on this node (gossip_addr)"}
	}
	if len(seeds) == 0 || len(seeds) > 16 {
		return nil, &api.Error{Code: api.CodeBadRequest, Message: "give 1 to 16 seed addresses"}
	}
	c, err := n.member.gossip.Join(seeds)
	if err != nil {
		return nil, &api.Error{Code: api.CodeUnavailable, Message: "no seed answered (check the address and the gossip key)"}
	}
	return &api.JoinResponse{Contacted: c}, nil
}

// Fresh reports whether this node has never been part of an initialized
// cluster: it is not initialized and knows no other Raft server.
func (n *Node) Fresh() bool {
	if _, err := n.fsm.InitRecord(); err == nil {
		return false
	}
	fut := n.raft.raft.GetConfiguration()
	return fut.Error() == nil && len(fut.Configuration().Servers) <= 1
}

// ClusterInfo merges the Raft configuration with the gossip view.
func (n *Node) ClusterInfo() *api.ClusterInfo {
	info := &api.ClusterInfo{Node: n.cfg.NodeID, Index: n.fsm.AppliedIndex()}
	info.LeaderID, info.Leader = n.Leader()
	nodes := map[string]*api.ClusterNode{}
	get := func(id string) *api.ClusterNode {
		if cn, ok := nodes[id]; ok {
			return cn
		}
		cn := &api.ClusterNode{ID: id, State: api.NodeUnknown}
		nodes[id] = cn
		return cn
	}
	if fut := n.raft.raft.GetConfiguration(); fut.Error() == nil {
		for _, s := range fut.Configuration().Servers {
			cn := get(string(s.ID))
			cn.RaftAddr = string(s.Address)
			cn.Voter = s.Suffrage == raft.Voter
			cn.NonVoter = s.Suffrage == raft.Nonvoter
			cn.Leader = string(s.ID) == info.LeaderID
		}
	}
	for _, p := range n.peers.all() {
		if p.ID != n.cfg.NodeID && n.fsm.Removed(p.ID) {
			continue
		}
		cn := get(p.ID)
		cn.APIAddr, cn.Region = p.APIAddr, p.Region
		if cn.RaftAddr == "" {
			cn.RaftAddr = p.RaftAddr
		}
	}
	if n.member.gossip != nil {
		now := time.Now()
		for _, m := range n.member.gossip.Members() {
			if m.NodeID != n.cfg.NodeID && n.fsm.Removed(m.NodeID) {
				continue // a removed node is no longer part of the view
			}
			cn := get(m.NodeID)
			cn.GossipAddr = m.GossipAddr
			cn.State = string(m.State)
			cn.Sealed, cn.Applied, cn.HSMOK = m.Sealed, m.Applied, m.HSMOK
			if m.Region != "" {
				cn.Region = m.Region
			}
			if m.APIAddr != "" {
				cn.APIAddr = m.APIAddr
			}
			cn.LastContactMS = now.Sub(m.Since).Milliseconds()
		}
	}
	self := get(n.cfg.NodeID)
	self.State = api.NodeAlive
	self.Sealed, self.Applied, self.HSMOK = n.Sealed(), n.fsm.AppliedIndex(), n.hsm.dev != nil
	self.Region, self.APIAddr = n.cfg.Region, n.apiAdvertise()
	if n.member.gossip != nil {
		self.GossipAddr = n.member.gossip.LocalAddr()
	}
	if lc, err := time.ParseDuration(n.raft.raft.Stats()["last_contact"]); err == nil && !n.IsLeader() {
		self.LastContactMS = lc.Milliseconds()
	} else {
		self.LastContactMS = 0
	}
	for _, cn := range nodes {
		info.Nodes = append(info.Nodes, *cn)
	}
	sort.Slice(info.Nodes, func(i, j int) bool { return info.Nodes[i].ID < info.Nodes[j].ID })
	return info
}

// GossipAddr returns the gossip address others use (empty without gossip).
func (n *Node) GossipAddr() string {
	if n.member.gossip == nil {
		return ""
	}
	return n.member.gossip.LocalAddr()
}
