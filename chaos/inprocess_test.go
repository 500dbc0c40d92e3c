package chaos

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyd/keyd/chaos/drill"
	"github.com/keyd/keyd/client"
	"github.com/keyd/keyd/hsmbridge/hsmtest"
	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/node"
)

// inProcess is the drill target for an internal/testcluster cluster.
// Kill is a node Close (everything acknowledged is on disk); Freeze cuts
// all of the node's Raft traffic both ways (its API stays up, so a
// client can still reach it as a stale leader: stricter than SIGSTOP);
// Partition blocks Raft traffic between groups in both directions.
type inProcess struct {
	t       testing.TB
	c       *testcluster.Cluster
	mu      sync.Mutex
	nodes   []drill.NodeRef   // guarded by mu; the slots' immutable fields
	removed map[string]bool   // guarded by mu
	hsm     []*hsmtest.Faults // per slot, shared across restarts
	clocks  []*skewClock      // per slot
}

var (
	_ drill.Cluster     = (*inProcess)(nil)
	_ drill.HSMFaulter  = (*inProcess)(nil)
	_ drill.Scaler      = (*inProcess)(nil)
	_ drill.ClockJumper = (*inProcess)(nil)
)

var drillTiming = node.Timing{Heartbeat: time.Second, Election: time.Second, LeaderLease: 500 * time.Millisecond, Commit: 50 * time.Millisecond}

// maxSlots bounds the slots a drill cluster may grow to (fault switches
// are made up front).
const maxSlots = 8

// newInProcess starts, initialises and unseals a cluster for a drill:
// every node has a software HSM behind a fault switch, so it warm-rejoins
// after a restart and its HSM can be slowed or failed.
func newInProcess(t testing.TB, opts testcluster.Options) *inProcess {
	t.Helper()
	p := &inProcess{t: t, removed: map[string]bool{}}
	for i := 0; i < maxSlots; i++ {
		p.hsm = append(p.hsm, &hsmtest.Faults{})
		p.clocks = append(p.clocks, &skewClock{})
	}
	if opts.HSM == "" {
		opts.HSM = testcluster.HSMSoft
	}
	inner := opts.Configure
	opts.Configure = func(slot int, cfg *node.Config) {
		if cfg.HSM != nil && slot < maxSlots {
			cfg.HSM = hsmtest.FaultConfig{Inner: cfg.HSM, Faults: p.hsm[slot]}
		}
		if slot < maxSlots {
			cfg.Now = p.clocks[slot].Now
		}
		// Twice the LAN profile: elections still take about a second,
		// and a starved node on a busy 2-core machine does not call one
		// at every missed heartbeat.
		cfg.Timing = drillTiming
		if inner != nil {
			inner(slot, cfg)
		}
	}
	p.c = testcluster.New(t, opts)
	for i := 0; i < p.c.Size(); i++ {
		s := p.c.Slot(i)
		p.nodes = append(p.nodes, drill.NodeRef{ID: s.ID, Region: s.Region, APIAddr: s.APIAddr})
	}
	p.c.Init(t, 3, 2)
	p.c.Unseal(t, 2)
	return p
}

// slot returns the slot of node id. testcluster's slot list grows in
// AddNode on the test goroutine, so other goroutines go through p.nodes.
func (p *inProcess) slot(id string) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, n := range p.nodes {
		if n.ID == id {
			return i, nil
		}
	}
	return 0, fmt.Errorf("no node %q", id)
}

func (p *inProcess) Nodes() []drill.NodeRef {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []drill.NodeRef
	for _, n := range p.nodes {
		if !p.removed[n.ID] {
			out = append(out, n)
		}
	}
	return out
}

func (p *inProcess) Kill(_ context.Context, id string) error {
	i, err := p.slot(id)
	if err != nil {
		return err
	}
	p.c.Stop(p.t, i)
	return nil
}

func (p *inProcess) Restart(_ context.Context, id string) error {
	i, err := p.slot(id)
	if err != nil {
		return err
	}
	p.c.Restart(p.t, i)
	return nil
}

func (p *inProcess) Freeze(_ context.Context, id string) error {
	i, err := p.slot(id)
	if err != nil {
		return err
	}
	p.c.Isolate(p.t, i)
	return nil
}

func (p *inProcess) Thaw(ctx context.Context, _ string) error { return p.Heal(ctx) }

func (p *inProcess) Partition(_ context.Context, groups [][]string) error {
	group := map[string]int{}
	for g, ids := range groups {
		for _, id := range ids {
			group[id] = g
		}
	}
	for i := 0; i < p.c.Size(); i++ {
		a := p.c.Slot(i)
		for j := 0; j < p.c.Size(); j++ {
			b := p.c.Slot(j)
			ga, oka := group[a.ID]
			gb, okb := group[b.ID]
			if i != j && oka && okb && ga != gb && a.Faults != nil {
				a.Faults.Block(raft.ServerAddress(b.RaftAddr))
			}
		}
	}
	return nil
}

func (p *inProcess) Heal(context.Context) error {
	p.c.Heal(p.t)
	return nil
}

func (p *inProcess) SetHSMFault(_ context.Context, id string, delay time.Duration, fail bool) error {
	i, err := p.slot(id)
	if err != nil {
		return err
	}
	p.hsm[i].Set(delay, fail)
	return nil
}

func (p *inProcess) AddNode(_ context.Context, region string) (drill.NodeRef, error) {
	i := p.c.AddNode(p.t, region)
	s := p.c.Slot(i)
	ref := drill.NodeRef{ID: s.ID, Region: s.Region, APIAddr: s.APIAddr}
	p.mu.Lock()
	p.nodes = append(p.nodes, ref)
	p.mu.Unlock()
	return ref, nil
}

func (p *inProcess) RemoveNode(ctx context.Context, id string) error {
	i, err := p.slot(id)
	if err != nil {
		return err
	}
	cl := p.client()
	rctx, cancel := context.WithTimeout(ctx, testcluster.Scaled(20*time.Second))
	defer cancel()
	if err := cl.Remove(rctx, id); err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	p.mu.Lock()
	p.removed[id] = true
	p.mu.Unlock()
	p.c.Stop(p.t, i)
	return nil
}

func (p *inProcess) JumpClock(_ context.Context, id string, d time.Duration) error {
	i, err := p.slot(id)
	if err != nil {
		return err
	}
	p.clocks[i].set(d)
	return nil
}

func (p *inProcess) client() *client.Client { return p.c.Client(p.t) }

// skewClock is one node's wall clock: the real time plus a settable skew.
type skewClock struct {
	mu   sync.Mutex
	skew time.Duration
}

func (s *skewClock) set(d time.Duration) {
	s.mu.Lock()
	s.skew = d
	s.mu.Unlock()
}

// Now returns the skewed time.
func (s *skewClock) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Now().Add(s.skew)
}
