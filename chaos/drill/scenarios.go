package drill

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"
)

// Timing of the scenarios. Hold is how long a fault stays; it should be
// longer than the cluster's election timeout.
type Timing struct {
	// Hold is how long a fault lasts (default 2s).
	Hold time.Duration
}

func (t Timing) hold() time.Duration {
	if t.Hold <= 0 {
		return 2 * time.Second
	}
	return t.Hold
}

// Scenarios returns the drills by name, each built from t. Scenarios that
// need an optional target capability (HSMFaulter, Scaler) fail when the
// target lacks it.
func Scenarios(t Timing) map[string]Scenario {
	return map[string]Scenario{
		"leader-kill":     LeaderKill(t),
		"leader-stop":     LeaderFreeze(t),
		"region-cut":      RegionCut(t),
		"region-loss":     RegionLoss(t),
		"rolling-restart": RollingRestart(),
		"cluster-restart": ClusterRestart(t),
		"hsm-slow-fail":   HSMSlowFail(t),
		"replace-region":  ReplaceRegion(),
	}
}

// LeaderKill kills the leader, waits for another one, holds, restarts it
// and waits for it to warm-rejoin.
func LeaderKill(t Timing) Scenario {
	return func(ctx context.Context, e *Env) error {
		old, err := e.Leader(ctx)
		if err != nil {
			return err
		}
		e.Note("kill leader %s", old)
		if err := e.Cluster.Kill(ctx, old); err != nil {
			return err
		}
		nl, err := e.Leader(ctx, old)
		if err != nil {
			return fmt.Errorf("no new leader after killing %s: %w", old, err)
		}
		e.Note("new leader %s", nl)
		e.Sleep(ctx, t.hold())
		e.Note("restart %s", old)
		if err := e.Cluster.Restart(ctx, old); err != nil {
			return err
		}
		if err := e.WaitUnsealed(ctx, old); err != nil {
			return fmt.Errorf("%s did not warm-rejoin: %w", old, err)
		}
		e.Note("%s unsealed (warm rejoin)", old)
		return e.WaitHealthy(ctx)
	}
}

// LeaderFreeze freezes the leader (SIGSTOP) for longer than the election
// timeout, waits until the others elect a new leader, and thaws it. The
// frozen node is a minority: it must apply nothing while frozen; the
// history's linearizability shows it served no stale read or write when
// it came back believing it led.
func LeaderFreeze(t Timing) Scenario {
	return func(ctx context.Context, e *Env) error {
		old, err := e.Leader(ctx)
		if err != nil {
			return err
		}
		e.Note("freeze leader %s", old)
		if err := e.Cluster.Freeze(ctx, old); err != nil {
			return err
		}
		nl, err := e.Leader(ctx, old)
		if err != nil {
			_ = e.Cluster.Thaw(ctx, old)
			return fmt.Errorf("no new leader while %s frozen: %w", old, err)
		}
		e.Note("new leader %s", nl)
		e.MinorityStart(ctx, []string{old})
		e.run.staleLeaderProbe(ctx, e, old)
		e.Sleep(ctx, t.hold())
		e.MinorityEnd(ctx)
		e.Note("thaw %s", old)
		if err := e.Cluster.Thaw(ctx, old); err != nil {
			return err
		}
		return e.WaitHealthy(ctx)
	}
}

// regions returns the target's regions, the smallest first (ties by name).
func regions(e *Env) []string {
	count := map[string]int{}
	for _, n := range e.Cluster.Nodes() {
		count[n.Region]++
	}
	var rs []string
	for r := range count {
		rs = append(rs, r)
	}
	sort.Slice(rs, func(i, j int) bool {
		if count[rs[i]] != count[rs[j]] {
			return count[rs[i]] < count[rs[j]]
		}
		return rs[i] < rs[j]
	})
	return rs
}

// victimRegion picks the region to cut: the one holding the leader when
// it leaves a majority behind, else the smallest.
func victimRegion(ctx context.Context, e *Env) (string, []string, []string, error) {
	rs := regions(e)
	if len(rs) < 2 {
		return "", nil, nil, errors.New("the target has one region")
	}
	leader, err := e.Leader(ctx)
	if err != nil {
		return "", nil, nil, err
	}
	pick := rs[0]
	all := e.Cluster.Nodes()
	for _, n := range all {
		if n.ID == leader && 2*countRegion(all, n.Region) < len(all) {
			pick = n.Region
		}
	}
	var in, out []string
	for _, n := range all {
		if n.Region == pick {
			in = append(in, n.ID)
		} else {
			out = append(out, n.ID)
		}
	}
	return pick, in, out, nil
}

func countRegion(ns []NodeRef, region string) int {
	c := 0
	for _, n := range ns {
		if n.Region == region {
			c++
		}
	}
	return c
}

// RegionCut partitions one region (the leader's, when a majority remains
// without it) from the others for Hold, then heals. The cut region is the
// minority and must apply nothing meanwhile.
func RegionCut(t Timing) Scenario {
	return func(ctx context.Context, e *Env) error {
		region, in, out, err := victimRegion(ctx, e)
		if err != nil {
			return err
		}
		e.Note("cut region %s %v from %v", region, in, out)
		if err := e.Cluster.Partition(ctx, [][]string{in, out}); err != nil {
			return err
		}
		if _, err := e.Leader(ctx, in...); err != nil {
			_ = e.Cluster.Heal(ctx)
			return fmt.Errorf("majority elected no leader: %w", err)
		}
		e.MinorityStart(ctx, in)
		e.Sleep(ctx, t.hold())
		e.MinorityEnd(ctx)
		e.Note("heal")
		if err := e.Cluster.Heal(ctx); err != nil {
			return err
		}
		return e.WaitHealthy(ctx)
	}
}

// RegionLoss kills every node of one region (power loss), keeps them
// down for Hold, and restarts them; they warm-rejoin.
func RegionLoss(t Timing) Scenario {
	return func(ctx context.Context, e *Env) error {
		region, in, _, err := victimRegion(ctx, e)
		if err != nil {
			return err
		}
		e.Note("lose region %s: kill %v", region, in)
		for _, id := range in {
			if err := e.Cluster.Kill(ctx, id); err != nil {
				return err
			}
		}
		if _, err := e.Leader(ctx, in...); err != nil {
			return fmt.Errorf("no leader without region %s: %w", region, err)
		}
		e.Sleep(ctx, t.hold())
		e.Note("region %s back", region)
		for _, id := range in {
			if err := e.Cluster.Restart(ctx, id); err != nil {
				return err
			}
		}
		return e.WaitHealthy(ctx)
	}
}

// RollingRestart restarts every node in turn, followers first and the
// leader last, waiting for each to warm-rejoin (no custodian).
func RollingRestart() Scenario {
	return func(ctx context.Context, e *Env) error {
		leader, err := e.Leader(ctx)
		if err != nil {
			return err
		}
		var order []string
		for _, n := range e.Cluster.Nodes() {
			if n.ID != leader {
				order = append(order, n.ID)
			}
		}
		order = append(order, leader)
		for _, id := range order {
			e.Note("restart %s", id)
			if err := e.Cluster.Kill(ctx, id); err != nil {
				return err
			}
			if err := e.Cluster.Restart(ctx, id); err != nil {
				return err
			}
			if err := e.WaitUnsealed(ctx, id); err != nil {
				return fmt.Errorf("%s did not warm-rejoin: %w", id, err)
			}
			st, err := e.Status(ctx, id)
			if err != nil {
				return err
			}
			if st.UnsealedBy != "warm-rejoin" {
				return fmt.Errorf("%s unsealed by %q, want warm-rejoin", id, st.UnsealedBy)
			}
			if err := e.WaitHealthy(ctx); err != nil {
				return err
			}
		}
		return nil
	}
}

// ClusterRestart kills every node and restarts them. The cluster must
// stay sealed (no write, no crypto) until the custodians' shares arrive;
// then every key is back.
func ClusterRestart(t Timing) Scenario {
	return func(ctx context.Context, e *Env) error {
		nodes := e.Cluster.Nodes()
		e.Note("kill all %d nodes", len(nodes))
		for _, n := range nodes {
			if err := e.Cluster.Kill(ctx, n.ID); err != nil {
				return err
			}
		}
		e.Note("restart all")
		for _, n := range nodes {
			if err := e.Cluster.Restart(ctx, n.ID); err != nil {
				return err
			}
		}
		// Every node answers sealed, and stays so for Hold.
		if err := e.poll(ctx, func() error {
			for _, n := range nodes {
				st, err := e.Status(ctx, n.ID)
				if err != nil {
					return err
				}
				if !st.Sealed {
					return fmt.Errorf("%s unsealed without custodians", n.ID)
				}
			}
			return nil
		}); err != nil {
			return err
		}
		deadline := time.Now().Add(t.hold())
		for time.Now().Before(deadline) {
			for _, n := range nodes {
				if st, err := e.Status(ctx, n.ID); err == nil && !st.Sealed {
					return fmt.Errorf("%s unsealed without custodians (by %q)", n.ID, st.UnsealedBy)
				}
			}
			e.Sleep(ctx, 100*time.Millisecond)
		}
		e.Note("sealed for %s; custodians unseal", t.hold())
		if err := e.Unseal(ctx); err != nil {
			return err
		}
		return e.WaitHealthy(ctx)
	}
}

// HSMSlowFail degrades one follower's HSM: slow first (restart: it
// rejoins, slowly), then failing (restart: it stays sealed and says why,
// while the others serve), then healed (restart: it rejoins). A node
// opens its HSM once, at start, so the last step needs the restart.
func HSMSlowFail(t Timing) Scenario {
	return func(ctx context.Context, e *Env) error {
		hf, ok := e.Cluster.(HSMFaulter)
		if !ok {
			return errors.New("the target cannot inject HSM faults")
		}
		leader, err := e.Leader(ctx)
		if err != nil {
			return err
		}
		var victim string
		for _, n := range e.Cluster.Nodes() {
			if n.ID != leader {
				victim = n.ID
				break
			}
		}
		e.Note("slow HSM (300ms a call) on %s; restart it", victim)
		if err := hf.SetHSMFault(ctx, victim, 300*time.Millisecond, false); err != nil {
			return err
		}
		if err := e.Cluster.Kill(ctx, victim); err != nil {
			return err
		}
		if err := e.Cluster.Restart(ctx, victim); err != nil {
			return err
		}
		if err := e.WaitUnsealed(ctx, victim); err != nil {
			return fmt.Errorf("%s did not rejoin with a slow HSM: %w", victim, err)
		}
		e.Note("%s rejoined with the slow HSM; now failing; restart it", victim)
		if err := hf.SetHSMFault(ctx, victim, 0, true); err != nil {
			return err
		}
		if err := e.Cluster.Kill(ctx, victim); err != nil {
			return err
		}
		if err := e.Cluster.Restart(ctx, victim); err != nil {
			return err
		}
		deadline := time.Now().Add(t.hold())
		var last string
		for time.Now().Before(deadline) {
			st, err := e.Status(ctx, victim)
			if err == nil {
				if !st.Sealed {
					return fmt.Errorf("%s unsealed with a failing HSM", victim)
				}
				last = st.HSM
			}
			e.Sleep(ctx, 100*time.Millisecond)
		}
		if last == "" || last == "ok" {
			return fmt.Errorf("%s reports HSM %q while it fails", victim, last)
		}
		e.Note("%s stayed sealed, HSM %q; heal the HSM and restart it", victim, last)
		if err := hf.SetHSMFault(ctx, victim, 0, false); err != nil {
			return err
		}
		// A node opens its HSM once, at start: after the device is back
		// the operator restarts it (it does not reopen the HSM itself).
		if err := e.Cluster.Kill(ctx, victim); err != nil {
			return err
		}
		if err := e.Cluster.Restart(ctx, victim); err != nil {
			return err
		}
		if err := e.WaitUnsealed(ctx, victim); err != nil {
			return fmt.Errorf("%s did not rejoin after its HSM healed: %w", victim, err)
		}
		return e.WaitHealthy(ctx)
	}
}

// defaultMaxVoters is keyd's default max_voters: beyond it an added node
// stays a non-voter.
const defaultMaxVoters = 5

// ReplaceRegion moves the smallest region to a new one while the load
// runs: it adds nodes in the new region (as many as the old region has,
// and at least two, so the voter count can stay odd), waits until they are
// promoted and unsealed by warm rejoin, then removes the old region's
// nodes one by one. A cluster already at max_voters is moved node by
// node instead (add one, remove one), since an added node beyond the cap
// stays a sealed standby.
func ReplaceRegion() Scenario {
	return func(ctx context.Context, e *Env) error {
		sc, ok := e.Cluster.(Scaler)
		if !ok {
			return errors.New("the target cannot add or remove nodes")
		}
		rs := regions(e)
		old := rs[0]
		var olds []string
		for _, n := range e.Cluster.Nodes() {
			if n.Region == old {
				olds = append(olds, n.ID)
			}
		}
		newRegion := "new-" + old
		removeOld := func(id string) error {
			// The leader cannot remove itself: an operator stops it first
			// and removes it once another node leads.
			if leader, err := e.Leader(ctx); err == nil && leader == id {
				e.Note("stop leader %s before its removal", id)
				if err := e.Cluster.Kill(ctx, id); err != nil {
					return err
				}
				if _, err := e.Leader(ctx, id); err != nil {
					return err
				}
			}
			e.Note("remove %s", id)
			if err := sc.RemoveNode(ctx, id); err != nil {
				return err
			}
			return e.WaitHealthy(ctx)
		}
		add := func() (string, error) {
			n, err := sc.AddNode(ctx, newRegion)
			if err != nil {
				return "", err
			}
			e.Note("added %s in %s", n.ID, newRegion)
			return n.ID, nil
		}
		if len(e.Cluster.Nodes())+len(olds) > defaultMaxVoters {
			// At the voter cap a new node stays a sealed standby (a
			// non-voter holds no node share) until a voter leaves: add
			// one, remove one, and wait for the new one to be promoted,
			// dealt its share and unsealed.
			for _, id := range olds {
				nid, err := add()
				if err != nil {
					return err
				}
				if err := removeOld(id); err != nil {
					return err
				}
				if err := e.WaitUnsealed(ctx, nid); err != nil {
					return fmt.Errorf("new node %s: %w", nid, err)
				}
				e.Note("new node %s unsealed", nid)
			}
			return nil
		}
		// Below the cap: the new region comes up first (at least two
		// nodes, so the voter count stays odd), then the old one goes.
		var added []string
		for i := 0; i < max(len(olds), 2); i++ {
			id, err := add()
			if err != nil {
				return err
			}
			added = append(added, id)
		}
		for _, id := range added {
			if err := e.WaitUnsealed(ctx, id); err != nil {
				return fmt.Errorf("new node %s: %w", id, err)
			}
		}
		e.Note("new nodes %v unsealed", added)
		if err := e.WaitHealthy(ctx); err != nil {
			return err
		}
		for _, id := range olds {
			if err := removeOld(id); err != nil {
				return err
			}
		}
		return nil
	}
}
