package node

import (
	"context"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyd/keyd/audit"
	"github.com/keyd/keyd/metrics"
	"github.com/keyd/keyd/node/httpapi"
)

// Metrics returns the node's metrics (its own registry).
func (n *Node) Metrics() *metrics.Metrics { return n.metrics }

// metricsSample is read at every scrape: cheap reads of state the node
// already keeps, and one count of the keys bucket.
func (n *Node) metricsSample() metrics.Sample {
	s := metrics.Sample{Sealed: n.Sealed(), AppliedIndex: n.fsm.AppliedIndex(), LastContact: -1, Keys: -1, StateBytes: -1}
	if _, err := n.fsm.InitRecord(); err == nil {
		s.Initialized = true
	}
	if k, err := n.fsm.KeyCount(); err == nil {
		s.Keys = k
	}
	if b, err := n.fsm.Size(); err == nil {
		s.StateBytes = b
	}
	s.KeyCache = metrics.KeyCache(n.keys.cache.stats())
	if rp := n.raft; rp != nil {
		r := rp.raft
		st := r.State()
		s.RaftState = st.String()
		s.Term, s.LastIndex, s.CommitIndex = r.CurrentTerm(), r.LastIndex(), r.CommitIndex()
		_, lid := r.LeaderWithID()
		s.LeaderKnown = lid != ""
		if rp.contacts != nil {
			s.PeerLastContact = rp.contacts.peerLastContact(r, raft.ServerID(n.cfg.NodeID))
		}
		if st == raft.Leader {
			s.LastContact = 0
		} else if t := r.LastContact(); !t.IsZero() {
			s.LastContact = time.Since(t)
		}
	}
	if g := n.member.gossip; g != nil {
		s.Members = map[string]int{}
		for _, m := range g.Members() {
			s.Members[string(m.State)]++
		}
	}
	return s
}

// timedAuditor times every audit write and counts the failures.
type timedAuditor struct {
	httpapi.Auditor
	m *metrics.Metrics
}

func (a timedAuditor) Log(ctx context.Context, r audit.Record) error {
	start := time.Now()
	err := a.Auditor.Log(ctx, r)
	if err != nil && ctx.Err() != nil {
		// The caller went away while the record was being written: the
		// sink did not fail.
		return err
	}
	a.m.ObserveAudit(err, time.Since(start))
	return err
}
