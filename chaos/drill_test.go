package chaos

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/keyd/keyd/chaos/drill"
	"github.com/keyd/keyd/internal/testcluster"
)

// longDrills turns on the long variants (KEYD_CHAOS_LONG=1): more load,
// faults held for minutes.
func longDrills() bool { return os.Getenv("KEYD_CHAOS_LONG") != "" }

// requested reports whether KEYD_DRILL (a regular expression, as make
// drill DRILL=... passes it) names the drill.
func requested(name string) bool {
	re, err := regexp.Compile("^(" + os.Getenv("KEYD_DRILL") + ")$")
	return os.Getenv("KEYD_DRILL") != "" && err == nil && re.MatchString(name)
}

// drillCase is one in-process drill.
type drillCase struct {
	name string
	opts testcluster.Options
	// hold is the fault's duration (long variant: longHold).
	hold, longHold time.Duration
	// slow drills run only in the long set (KEYD_CHAOS_LONG=1) or when
	// named in KEYD_DRILL (make drill DRILL=name), to keep the default
	// go test ./chaos within a few minutes.
	slow bool
	// settle overrides the drill's settle timeout (before scaling).
	settle time.Duration
	// scenario builds the scenario from the timing.
	scenario func(drill.Timing) drill.Scenario
}

// fiveNodes is 2+2+1 nodes across three regions, for the region drills.
func fiveNodes() testcluster.Options {
	return testcluster.Options{Nodes: 5, Regions: []string{"a", "b", "c"}}
}

// threeNodes is one node in each of three regions.
func threeNodes() testcluster.Options {
	return testcluster.Options{Nodes: 3, Regions: []string{"a", "b", "c"}}
}

func drillCases() []drillCase {
	return []drillCase{
		{name: "leader-kill", opts: threeNodes(), hold: time.Second, longHold: 30 * time.Second, scenario: drill.LeaderKill},
		{name: "leader-stop", opts: threeNodes(), hold: 2 * time.Second, longHold: 30 * time.Second, scenario: drill.LeaderFreeze},
		{name: "region-cut", opts: fiveNodes(), hold: 2 * time.Second, longHold: time.Minute, scenario: drill.RegionCut},
		{name: "region-loss", opts: fiveNodes(), hold: 4 * time.Second, longHold: 3 * time.Minute, scenario: drill.RegionLoss},
		{name: "rolling-restart", opts: threeNodes(), scenario: func(drill.Timing) drill.Scenario { return drill.RollingRestart() }},
		{name: "cluster-restart", opts: threeNodes(), hold: time.Second, longHold: 30 * time.Second, scenario: drill.ClusterRestart},
		{name: "hsm-slow-fail", opts: threeNodes(), hold: 2 * time.Second, longHold: 30 * time.Second, scenario: drill.HSMSlowFail},
		{name: "replace-region", opts: testcluster.Options{Nodes: 3, Regions: []string{"a", "b", "c"}, Gossip: true, DeadVoterTimeout: 10 * time.Second}, settle: time.Minute, slow: true, scenario: func(drill.Timing) drill.Scenario { return drill.ReplaceRegion() }},
		{name: "clock-jump", opts: threeNodes(), scenario: func(drill.Timing) drill.Scenario { return drill.ClockJump() }},
	}
}

// TestDrill runs every drill in process, each under a bounded workload,
// and fails on any failed check. One drill: go test ./chaos -run
// 'TestDrill/leader-stop' -v. KEYD_DRILL_REPORT_DIR=dir writes each
// report to dir/<drill>.json.
func TestDrill(t *testing.T) {
	for _, dc := range drillCases() {
		t.Run(dc.name, func(t *testing.T) {
			if dc.slow && !longDrills() && !requested(dc.name) {
				t.Skipf("slow drill (membership changes take a minute on a busy machine): KEYD_CHAOS_LONG=1 or make drill DRILL=%s", dc.name)
			}
			runDrill(t, dc)
		})
	}
}

func runDrill(t *testing.T, dc drillCase) {
	p := newInProcess(t, dc.opts)
	timing := drill.Timing{Hold: dc.hold}
	cfg := drill.Config{
		Name:           dc.name,
		Target:         "in-process",
		Token:          p.c.Token,
		TLS:            p.c.TLS(),
		Shares:         p.c.Shares[:2],
		Workers:        2,
		MaxOps:         1500,
		MaxLoad:        testcluster.Scaled(40 * time.Second),
		Pace:           10 * time.Millisecond,
		SettleTimeout:  testcluster.Scaled(max(dc.settle, 20*time.Second)),
		CallTimeout:    testcluster.Scaled(5 * time.Second),
		SampleInterval: 200 * time.Millisecond,
		Logf:           t.Logf,
	}
	if longDrills() {
		timing.Hold = dc.longHold
		cfg.Workers, cfg.MaxOps, cfg.MaxLoad = 4, 100000, dc.longHold+5*time.Minute
	}
	if dir := os.Getenv("KEYD_DRILL_REPORT_DIR"); dir != "" {
		cfg.ReportPath = filepath.Join(dir, dc.name+".json")
	}
	ctx, cancel := context.WithTimeout(context.Background(), testcluster.Scaled(3*time.Minute)+timing.Hold)
	defer cancel()
	rep, err := drill.Run(ctx, p, cfg, dc.scenario(timing))
	if err != nil {
		t.Fatalf("drill did not run: %v", err)
	}
	t.Logf("report:\n%s", rep)
	if !rep.Passed {
		t.Fatalf("drill %s failed", dc.name)
	}
}
