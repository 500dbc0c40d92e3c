package drill

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/keyd/keyd/api"
)

// leaderSamples maps each Raft term to the nodes seen leading it.
type leaderSamples struct {
	mu      sync.Mutex
	byTerm  map[uint64]map[string]bool
	samples int
}

func newLeaderSamples() *leaderSamples {
	return &leaderSamples{byTerm: make(map[uint64]map[string]bool)}
}

func (l *leaderSamples) add(st *api.SealStatus) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.samples++
	if st.RaftState != "Leader" || st.Term == 0 {
		return
	}
	m := l.byTerm[st.Term]
	if m == nil {
		m = make(map[string]bool)
		l.byTerm[st.Term] = m
	}
	m[st.NodeID] = true
}

// verdict returns whether every term had at most one leader, and a detail.
func (l *leaderSamples) verdict() (bool, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var bad []string
	for term, ids := range l.byTerm {
		if len(ids) > 1 {
			var names []string
			for id := range ids {
				names = append(names, id)
			}
			sort.Strings(names)
			bad = append(bad, fmt.Sprintf("term %d: %s", term, strings.Join(names, ",")))
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return false, "two leaders in one term: " + strings.Join(bad, "; ")
	}
	return true, fmt.Sprintf("%d status samples, %d terms with a leader seen", l.samples, len(l.byTerm))
}

// sample polls every node's status until ctx ends.
func (r *runner) sample(ctx context.Context) {
	t := time.NewTicker(r.cfg.SampleInterval)
	defer t.Stop()
	for {
		for _, n := range r.cl.Nodes() {
			if st, err := r.status(ctx, n.APIAddr); err == nil {
				r.samples.add(st)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *runner) status(ctx context.Context, addr string) (*api.SealStatus, error) {
	sctx, cancel := context.WithTimeout(ctx, r.cfg.ProbeTimeout)
	defer cancel()
	st, err := r.probe.StatusOf(sctx, addr)
	if err == nil {
		r.samples.add(st)
	}
	return st, err
}

// Status returns node id's status, in one attempt.
func (e *Env) Status(ctx context.Context, id string) (*api.SealStatus, error) {
	n, ok := e.node(id)
	if !ok {
		return nil, fmt.Errorf("drill: no node %q", id)
	}
	return e.run.status(ctx, n.APIAddr)
}

func (e *Env) node(id string) (NodeRef, bool) {
	for _, n := range e.Cluster.Nodes() {
		if n.ID == id {
			return n, true
		}
	}
	return NodeRef{}, false
}

// Leader returns the id of the leader, waiting up to Config.SettleTimeout:
// a node that says it is leader (the highest term when several do) and
// that a majority of all the target's nodes, itself included, name
// leader. Nodes in skip are not asked and may not be the answer.
func (e *Env) Leader(ctx context.Context, skip ...string) (string, error) {
	var leader string
	err := e.poll(ctx, func() error {
		var err error
		leader, err = e.leaderOnce(ctx, skip)
		return err
	})
	return leader, err
}

func (e *Env) leaderOnce(ctx context.Context, skip []string) (string, error) {
	all := e.Cluster.Nodes()
	named := map[string]int{}
	var claim string
	var claimTerm uint64
	for _, n := range all {
		if contains(skip, n.ID) {
			continue
		}
		st, err := e.run.status(ctx, n.APIAddr)
		if err != nil {
			continue
		}
		if st.LeaderID != "" {
			named[st.LeaderID]++
		}
		if st.RaftState == "Leader" && st.Term >= claimTerm {
			claim, claimTerm = n.ID, st.Term
		}
	}
	if claim == "" {
		return "", errors.New("no node says it is leader")
	}
	if 2*named[claim] <= len(all) {
		return "", fmt.Errorf("%s says it leads but only %d of %d nodes name it", claim, named[claim], len(all))
	}
	return claim, nil
}

// WaitHealthy waits until every node of the target answers and is
// unsealed, and a leader is named by a majority (see Leader).
func (e *Env) WaitHealthy(ctx context.Context) error {
	return e.poll(ctx, func() error {
		for _, n := range e.Cluster.Nodes() {
			st, err := e.run.status(ctx, n.APIAddr)
			if err != nil {
				return fmt.Errorf("%s: %w", n.ID, err)
			}
			if st.Sealed {
				return fmt.Errorf("%s sealed: %s", n.ID, st.SealReason)
			}
		}
		_, err := e.leaderOnce(ctx, nil)
		return err
	})
}

// WaitUnsealed waits until node id answers and is unsealed.
func (e *Env) WaitUnsealed(ctx context.Context, id string) error {
	return e.poll(ctx, func() error {
		st, err := e.Status(ctx, id)
		if err != nil {
			return err
		}
		if st.Sealed {
			return fmt.Errorf("%s sealed: %s", id, st.SealReason)
		}
		return nil
	})
}

// Unseal submits the custodian shares to every node that answers sealed.
func (e *Env) Unseal(ctx context.Context) error {
	if len(e.Config.Shares) == 0 {
		return errors.New("drill: no custodian shares configured")
	}
	for _, n := range e.Cluster.Nodes() {
		st, err := e.run.status(ctx, n.APIAddr)
		if err != nil || !st.Sealed {
			continue
		}
		for _, sh := range e.Config.Shares {
			uctx, cancel := context.WithTimeout(ctx, e.Config.CallTimeout)
			res, err := e.run.probe.UnsealAt(uctx, n.APIAddr, sh)
			cancel()
			if err != nil {
				return fmt.Errorf("drill: unseal %s: %w", n.ID, err)
			}
			if !res.Sealed {
				break
			}
		}
	}
	return nil
}

// poll calls fn until it returns nil, ctx ends or SettleTimeout passes.
func (e *Env) poll(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(e.Config.SettleTimeout)
	delay := 20 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("not reached within %s: %w", e.Config.SettleTimeout, err)
		}
		e.Sleep(ctx, delay)
		if delay < 200*time.Millisecond {
			delay *= 2
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// minorityWindow tracks the applied index of a cut-off minority.
type minorityWindow struct {
	ids     []string
	applied map[string]uint64
}

func (r *runner) minorityStart(ctx context.Context, ids []string) {
	e := &Env{Cluster: r.cl, Config: r.cfg, run: r}
	e.Sleep(ctx, r.cfg.ApplyGrace)
	w := &minorityWindow{ids: ids, applied: make(map[string]uint64)}
	for _, id := range ids {
		if st, err := statusRetry(ctx, e, id); err == nil {
			w.applied[id] = st.Applied
		}
	}
	r.mu.Lock()
	r.minority = w
	r.mu.Unlock()
	r.note("minority %v: applied index recorded after %s", ids, r.cfg.ApplyGrace)
}

func (r *runner) minorityEnd(ctx context.Context) {
	r.mu.Lock()
	w := r.minority
	r.minority = nil
	r.mu.Unlock()
	if w == nil {
		return
	}
	e := &Env{Cluster: r.cl, Config: r.cfg, run: r}
	var bad, seen []string
	for _, id := range w.ids {
		before, ok := w.applied[id]
		if !ok {
			continue
		}
		st, err := statusRetry(ctx, e, id)
		if err != nil {
			continue
		}
		seen = append(seen, fmt.Sprintf("%s@%d", id, st.Applied))
		if st.Applied != before {
			bad = append(bad, fmt.Sprintf("%s applied %d..%d while cut off", id, before, st.Applied))
		}
	}
	switch {
	case len(bad) > 0:
		r.addCheck("minority-no-write", false, strings.Join(bad, "; "))
	case len(seen) == 0:
		// A frozen node (SIGSTOP) cannot answer: the check is not
		// observable, which the report says rather than passing it.
		r.addSkipped("minority-no-write", "no minority node answered its status (frozen?): not observable")
	default:
		r.addCheck("minority-no-write", true, "applied index unchanged while cut off: "+strings.Join(seen, " "))
	}
}

// statusRetry asks node id for its status a few times (a loaded node may
// miss one probe timeout).
func statusRetry(ctx context.Context, e *Env, id string) (*api.SealStatus, error) {
	var st *api.SealStatus
	var err error
	for i := 0; i < 5; i++ {
		if st, err = e.Status(ctx, id); err == nil {
			return st, nil
		}
		e.Sleep(ctx, 100*time.Millisecond)
	}
	return nil, err
}
