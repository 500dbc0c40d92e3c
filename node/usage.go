package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/audit"
	"github.com/keyd/keyd/fsm"
)

// Usage tracking. Every crypto call and every authenticated request is
// noted in memory on the node that served it (RecordUse, called by the
// HTTP layer after the request); every FlushInterval the node sends what
// it gathered, aggregated (latest time and count per key version, per
// key and identity, per identity), to the leader, which commits it as
// one fsm.RecordUsage. So the Raft cost is one write per node per
// interval, whatever the request rate. A clean Close flushes too; a
// crash loses at most one interval of uses (usage is advisory: it only
// feeds reports).
const (
	defaultUsageFlush = time.Minute
	// usageChunkBytes bounds one flushed batch (estimated), well under
	// fsm.MaxCommandSize; more is sent as several writes.
	usageChunkBytes = 160 << 10
	// maxTrackedKeys bounds the memory of unflushed uses; past it the
	// flush is started early.
	maxTrackedKeys = 50000
)

type keyAgg struct {
	versions map[uint32]*fsm.UseStat
	ids      map[string]*fsm.UseStat
}

// usageTracker is one node's unflushed uses.
type usageTracker struct {
	now   func() time.Time
	early chan struct{} // a flush is due before the interval (too many keys)

	mu         sync.Mutex
	keys       map[string]*keyAgg
	principals map[string]*fsm.UseStat

	// flushes counts RecordUsage commands this node committed as leader
	// (tests check that writes are aggregated).
	flushes atomic.Uint64
}

func newUsageTracker(now func() time.Time) *usageTracker {
	return &usageTracker{now: now, early: make(chan struct{}, 1), keys: map[string]*keyAgg{}, principals: map[string]*fsm.UseStat{}}
}

func bump(m map[string]*fsm.UseStat, k string, at time.Time, n uint64) {
	s := m[k]
	if s == nil {
		s = &fsm.UseStat{}
		m[k] = s
	}
	if at.After(s.Last) {
		s.Last = at
	}
	s.Count += n
}

// record notes one request: by identity (always, when authenticated)
// and, for a crypto call, on key and the versions it used (none: the
// key alone, recorded as its identities' use).
func (u *usageTracker) record(identity, key string, versions []uint32) {
	at := u.now()
	u.mu.Lock()
	defer u.mu.Unlock()
	if identity != "" {
		bump(u.principals, identity, at, 1)
	}
	if key == "" {
		return
	}
	a := u.keys[key]
	if a == nil {
		a = &keyAgg{versions: map[uint32]*fsm.UseStat{}, ids: map[string]*fsm.UseStat{}}
		u.keys[key] = a
		if len(u.keys) == maxTrackedKeys {
			select {
			case u.early <- struct{}{}:
			default:
			}
		}
	}
	for _, v := range versions {
		if v == 0 {
			continue
		}
		s := a.versions[v]
		if s == nil {
			s = &fsm.UseStat{}
			a.versions[v] = s
		}
		if at.After(s.Last) {
			s.Last = at
		}
		s.Count++
	}
	if identity != "" && len(a.ids) < fsm.MaxIdentitiesPerKey {
		bump(a.ids, identity, at, 1)
	} else if identity != "" {
		if s := a.ids[identity]; s != nil {
			bump(a.ids, identity, at, 1)
		}
	}
}

// drain takes everything gathered, as batches of bounded size.
func (u *usageTracker) drain(node string) []api.UsageBatch {
	u.mu.Lock()
	keys, principals := u.keys, u.principals
	u.keys, u.principals = map[string]*keyAgg{}, map[string]*fsm.UseStat{}
	u.mu.Unlock()
	if len(keys) == 0 && len(principals) == 0 {
		return nil
	}
	var out []api.UsageBatch
	cur := api.UsageBatch{Node: node}
	size := 0
	next := func(add int) {
		if size+add > usageChunkBytes || len(cur.Keys) >= fsm.MaxUsageKeys || len(cur.Principals) >= fsm.MaxUsagePrincipals {
			out = append(out, cur)
			cur, size = api.UsageBatch{Node: node}, 0
		}
		size += add
	}
	for name, a := range keys {
		d := api.KeyUseDelta{Name: name}
		est := len(name) + 32
		for v, s := range a.versions {
			d.Versions = append(d.Versions, api.VersionUsage{Version: v, UseStat: api.UseStat{LastUsed: s.Last, Count: s.Count}})
			est += 80
		}
		for id, s := range a.ids {
			d.Identities = append(d.Identities, api.IdentityUsage{Identity: id, UseStat: api.UseStat{LastUsed: s.Last, Count: s.Count}})
			est += len(id) + 80
		}
		next(est)
		cur.Keys = append(cur.Keys, d)
	}
	for id, s := range principals {
		next(len(id) + 80)
		cur.Principals = append(cur.Principals, api.IdentityUsage{Identity: id, UseStat: api.UseStat{LastUsed: s.Last, Count: s.Count}})
	}
	if len(cur.Keys) > 0 || len(cur.Principals) > 0 {
		out = append(out, cur)
	}
	for i := range out {
		out[i].Seq = randSeq()
	}
	return out
}

// restore merges a batch that could not be flushed back, so the next
// flush carries it.
func (u *usageTracker) restore(b api.UsageBatch) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, k := range b.Keys {
		a := u.keys[k.Name]
		if a == nil {
			a = &keyAgg{versions: map[uint32]*fsm.UseStat{}, ids: map[string]*fsm.UseStat{}}
			u.keys[k.Name] = a
		}
		for _, v := range k.Versions {
			s := a.versions[v.Version]
			if s == nil {
				s = &fsm.UseStat{}
				a.versions[v.Version] = s
			}
			if v.LastUsed.After(s.Last) {
				s.Last = v.LastUsed
			}
			s.Count += v.Count
		}
		for _, p := range k.Identities {
			bump(a.ids, p.Identity, p.LastUsed, p.Count)
		}
	}
	for _, p := range b.Principals {
		bump(u.principals, p.Identity, p.LastUsed, p.Count)
	}
}

func randSeq() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}

// RecordUse is the HTTP layer's hook (httpapi.UsageRecorder).
func (n *Node) RecordUse(identity, key string, versions []uint32) {
	n.usage.record(identity, key, versions)
}

func (n *Node) usageInterval() time.Duration {
	if d := n.cfg.Usage.FlushInterval; d > 0 {
		return d
	}
	return defaultUsageFlush
}

// runUsage flushes every interval (and early when too much is held).
func (n *Node) runUsage(ctx context.Context) {
	t := time.NewTicker(n.usageInterval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.usage.early:
		}
		if err := n.FlushUsage(ctx); err != nil {
			n.log.Warn("usage flush failed; kept for the next one", "err", err)
		}
	}
}

// FlushUsage sends the uses gathered so far to the leader (or commits
// them, on the leader). What fails is kept for the next flush.
func (n *Node) FlushUsage(ctx context.Context) error {
	if n.Sealed() {
		return nil // kept: a sealed node can neither propose nor forward
	}
	var firstErr error
	for _, b := range n.usage.drain(n.cfg.NodeID) {
		if err := n.sendUsage(ctx, b); err != nil {
			n.usage.restore(b)
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	return firstErr
}

func (n *Node) sendUsage(ctx context.Context, b api.UsageBatch) error {
	if n.IsLeader() {
		return n.SubmitUsage(ctx, n.cfg.NodeID, b)
	}
	id, _ := n.Leader()
	if id == "" {
		return n.notLeader()
	}
	body, err := json.Marshal(&b)
	if err != nil {
		return err
	}
	return n.peers.postJSON(ctx, id, api.PathInternalUsage, body, nil)
}

// SubmitUsage commits node from's usage batch as one fsm.RecordUsage. The
// HTTP layer has checked that the caller is a cluster node; a node may
// only submit its own uses.
func (n *Node) SubmitUsage(ctx context.Context, from string, b api.UsageBatch) error {
	if b.Node != from {
		return &api.Error{Code: api.CodeForbidden, Message: "a node may only submit its own usage"}
	}
	if err := n.notLeaderOrSealed(); err != nil {
		return err
	}
	c := &fsm.RecordUsage{
		// The batch id makes a retried submission apply once.
		Meta: fsm.Meta{RequestID: fmt.Sprintf("usage/%s/%016x", from, b.Seq), At: n.now()},
		Node: from,
	}
	for _, k := range b.Keys {
		ku := fsm.KeyUse{Name: k.Name}
		for _, v := range k.Versions {
			ku.Versions = append(ku.Versions, fsm.VersionUse{Version: v.Version, UseStat: fsm.UseStat{Last: v.LastUsed.UTC(), Count: v.Count}})
		}
		for _, p := range k.Identities {
			ku.Identities = append(ku.Identities, fsm.PrincipalUse{ID: p.Identity, UseStat: fsm.UseStat{Last: p.LastUsed.UTC(), Count: p.Count}})
		}
		c.Keys = append(c.Keys, ku)
	}
	for _, p := range b.Principals {
		c.Principals = append(c.Principals, fsm.PrincipalUse{ID: p.Identity, UseStat: fsm.UseStat{Last: p.LastUsed.UTC(), Count: p.Count}})
	}
	// Checked before it enters the log: a malformed batch (from a faulty
	// or hostile member) is refused here, not committed and then refused
	// by every replica.
	if err := n.fsm.Check(c); err != nil {
		return &api.Error{Code: api.CodeBadRequest, Message: "usage batch refused: " + err.Error()}
	}
	if _, err := n.apply(ctx, c); err != nil {
		return err
	}
	n.usage.flushes.Add(1)
	return nil
}

// flushUsageOnClose is the last flush, on a clean shutdown, bounded so a
// node without a leader still stops promptly.
func (n *Node) flushUsageOnClose() {
	if n.raft == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := n.FlushUsage(ctx); err != nil {
		var ae *api.Error
		if errors.As(err, &ae) && (ae.Code == api.CodeNotLeader || ae.Code == api.CodeUnavailable) {
			// The cluster is stopping too (the leader went first, or an
			// election is under way): expected on a whole-cluster stop.
			n.log.Info("final usage flush found no leader; these uses are lost", "err", err)
			return
		}
		n.log.Warn("final usage flush failed; these uses are lost", "err", err)
	}
}

// retentionPass schedules the deletion of keys whose retention has
// passed at now, with the usual deletion window (longer when a tag asks
// for it). Only the leader runs it (from the scheduler). The request id
// names the key and its creation, so a pass repeated by a new leader
// schedules once; each scheduling is audited as done by the system.
func (n *Node) retentionPass(ctx context.Context, now time.Time, cur *fsm.DueCursor) {
	recs, next, err := n.fsm.DueKeysFrom(now, *cur, fsm.MaxDuePerPass)
	*cur = next
	if err != nil {
		n.log.Warn("retention pass could not read the keys due", "err", err)
		return
	}
	var due []*fsm.KeyRecord
	for _, rec := range recs {
		if rec.RetentionDue(now) {
			due = append(due, rec)
		}
	}
	for _, rec := range due {
		if ctx.Err() != nil {
			return
		}
		window := n.minDeletionWindow(rec.Tags)
		rid := fmt.Sprintf("retention/%s/%d", rec.Name, rec.CreatedAt.UnixNano())
		res, err := n.apply(ctx, &fsm.ScheduleDeletion{Meta: fsm.Meta{RequestID: rid, At: now}, Name: rec.Name, DeleteAt: now.Add(window)})
		if err == nil && res.Duplicate {
			continue // scheduled by an earlier pass (and since cancelled)
		}
		outcome := "ok"
		if err != nil {
			outcome = string(api.CodeInternal)
			n.log.Warn("retention: scheduling deletion failed", "key", rec.Name, "err", err)
		} else {
			n.log.Info("retention passed: key deletion scheduled", "key", rec.Name, "retention", rec.Retention, "delete_at", now.Add(window))
		}
		if n.audit != nil {
			if aerr := n.audit.Log(ctx, audit.Record{Op: "key.retention_deletion", Key: rec.Name, Identity: "system:retention", Outcome: outcome, Version: rec.Latest()}); aerr != nil {
				n.log.Error("retention: audit write failed", "key", rec.Name, "err", aerr)
			}
		}
	}
}
