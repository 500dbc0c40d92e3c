package compose

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/keyd/keyd/chaos/drill"
)

// composeOrder is the order make chaos runs the drills in: the ones that
// keep the membership first, the churn drill (which removes nodes) last.
var composeOrder = []string{
	"leader-kill", "leader-stop", "region-cut", "region-loss",
	"rolling-restart", "hsm-slow-fail", "cluster-restart", "replace-region", "clock-jump",
}

// notRunnable are drills the compose target cannot run, and why (they
// appear in the summary as not run, never as passed).
var notRunnable = map[string]string{
	"clock-jump": "a container shares the host kernel's CLOCK_REALTIME: moving one node's wall clock " +
		"needs CAP_SYS_TIME and moves the clock of the whole host (and every other container); time " +
		"namespaces offset only the monotonic and boot clocks; libfaketime cannot reach Go, which reads " +
		"the clock through the vDSO, not libc. The in-process drill covers it.",
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// TestComposeDrills runs every drill of chaos/drill against the compose
// cluster (five nodes, three regions, a SoftHSM2 token each), one after
// the other on one cluster, and writes each drill's table and JSON report.
// It needs docker and root on the docker host, so it runs only with
// KEYD_COMPOSE=1: make chaos (scripts/chaos.sh) sets it and cleans up
// even when the test binary is killed.
//
// Environment: KEYD_DRILLS (comma-separated names, default all),
// KEYD_CHAOS_OUT (report directory, default bin/chaos), KEYD_CHAOS_HOLD
// (fault hold, default 5s), KEYD_CHAOS_LOSS_HOLD (how long a region stays
// lost, default 60s), KEYD_CHAOS_OPS (workload operations per drill,
// default 6000), KEYD_CHAOS_PACE (each worker's pause, default 40ms),
// KEYD_CHAOS_LOAD (workload time bound per drill, default 3m),
// KEYD_CHAOS_KEEP=1 (leave the cluster running).
func TestComposeDrills(t *testing.T) {
	if os.Getenv("KEYD_COMPOSE") == "" {
		t.Skip("runs against docker compose: make chaos (KEYD_COMPOSE=1)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), envDuration("KEYD_CHAOS_TIMEOUT", 40*time.Minute))
	defer cancel()

	names := composeOrder
	if v := os.Getenv("KEYD_DRILLS"); v != "" {
		names = strings.Split(v, ",")
	}
	hold := envDuration("KEYD_CHAOS_HOLD", 5*time.Second)
	scenarios := drill.Scenarios(drill.Timing{Hold: hold})
	scenarios["region-loss"] = drill.RegionLoss(drill.Timing{Hold: envDuration("KEYD_CHAOS_LOSS_HOLD", 60*time.Second)})
	for _, n := range names {
		if _, ok := scenarios[n]; !ok {
			if _, ok := notRunnable[n]; !ok {
				t.Fatalf("unknown drill %q (have %v)", n, composeOrder)
			}
		}
	}

	opt := Options{Logf: t.Logf}
	if err := opt.defaults(); err != nil {
		t.Fatal(err)
	}
	out := os.Getenv("KEYD_CHAOS_OUT")
	if out == "" {
		out = filepath.Join(opt.Root, "bin", "chaos")
	}
	start := time.Now()
	tg, err := Up(ctx, opt)
	if tg != nil && os.Getenv("KEYD_CHAOS_KEEP") == "" {
		t.Cleanup(func() {
			dctx, dcancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer dcancel()
			if err := tg.Down(dctx); err != nil {
				t.Errorf("cluster-down: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	upTime := time.Since(start)
	t.Logf("cluster up in %s", upTime.Round(time.Millisecond))

	// Every node holds a node share wrapped by its own SoftHSM2 token.
	for _, n := range tg.Nodes() {
		st, err := tg.status(ctx, n.ID)
		if err != nil {
			t.Fatalf("%s: %v", n.ID, err)
		}
		if st.HSM != "ok" || st.NodeShare == "" {
			t.Fatalf("%s: hsm %q, node share %q: want a working PKCS#11 token holding a share", n.ID, st.HSM, st.NodeShare)
		}
	}

	type row struct {
		Drill     string `json:"drill"`
		Passed    bool   `json:"passed"`
		NotRun    string `json:"not_run,omitempty"`
		Error     string `json:"error,omitempty"`
		Ops       int    `json:"ops"`
		Failed    int    `json:"failed"`
		Unknown   int    `json:"unknown"`
		WriteGap  int64  `json:"longest_write_gap_ms"`
		CryptoGap int64  `json:"longest_crypto_gap_ms"`
		Porcupine string `json:"porcupine"`
		Seconds   int64  `json:"seconds"`
	}
	var rows []row
	for _, name := range names {
		if why, ok := notRunnable[name]; ok {
			rows = append(rows, row{Drill: name, NotRun: why})
			continue
		}
		if ctx.Err() != nil {
			rows = append(rows, row{Drill: name, Error: "out of time before it started"})
			continue
		}
		t0 := time.Now()
		cfg := drill.Config{
			Name: name, Target: "compose", Token: tg.Token(), TLS: tg.TLS(), Shares: tg.Shares(),
			// The pace spreads the operation budget over the whole drill
			// (a budget spent before the fault heals would show as a long
			// gap): 3 workers at 40 ms make at most ~75 ops/s.
			Workers: envInt("KEYD_CHAOS_WORKERS", 3), MaxOps: envInt("KEYD_CHAOS_OPS", 6000),
			MaxLoad: envDuration("KEYD_CHAOS_LOAD", 3*time.Minute), Pace: envDuration("KEYD_CHAOS_PACE", 40*time.Millisecond),
			SettleTimeout:  90 * time.Second,
			SampleInterval: 200 * time.Millisecond,
			ReportPath:     filepath.Join(out, "compose-"+name+".json"),
			Logf:           t.Logf,
		}
		rep, err := drill.Run(ctx, tg, cfg, scenarios[name])
		r := row{Drill: name, Seconds: int64(time.Since(t0).Seconds())}
		switch {
		case err != nil && rep == nil:
			r.Error = err.Error()
			t.Errorf("drill %s could not run: %v", name, err)
		default:
			if err != nil {
				t.Errorf("drill %s: %v", name, err)
			}
			table := rep.String()
			fmt.Print(table)
			if werr := os.WriteFile(filepath.Join(out, "compose-"+name+".txt"), []byte(table), 0o644); werr != nil {
				t.Errorf("write table: %v", werr)
			}
			r.Passed, r.Ops, r.Failed, r.Unknown = rep.Passed, rep.Ops, rep.Failed, rep.Unknown
			r.WriteGap, r.CryptoGap, r.Porcupine = rep.LongestWriteGapMS, rep.LongestCryptoGapMS, rep.Porcupine
			if !rep.Passed {
				t.Errorf("drill %s failed:\n%s", name, table)
			}
		}
		rows = append(rows, r)
		// The next drill starts from a healthy cluster whatever this one
		// left behind.
		if err := tg.Repair(ctx); err != nil {
			t.Logf("repair after %s: %v", name, err)
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "compose drills: %d nodes, cluster up in %s, total %s\n", 5, upTime.Round(time.Second), time.Since(start).Round(time.Second))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DRILL\tVERDICT\tOPS\tFAILED\tUNKNOWN\tWRITE GAP\tCRYPTO GAP\tPORCUPINE\tTIME")
	for _, r := range rows {
		verdict := "PASS"
		switch {
		case r.NotRun != "":
			verdict = "not run"
		case r.Error != "":
			verdict = "ERROR"
		case !r.Passed:
			verdict = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%dms\t%dms\t%s\t%ds\n", r.Drill, verdict, r.Ops, r.Failed, r.Unknown, r.WriteGap, r.CryptoGap, r.Porcupine, r.Seconds)
	}
	_ = tw.Flush()
	for _, r := range rows {
		if r.NotRun != "" {
			fmt.Fprintf(&b, "%s not run: %s\n", r.Drill, r.NotRun)
		}
	}
	fmt.Print(b.String())
	if err := os.MkdirAll(out, 0o755); err == nil {
		_ = os.WriteFile(filepath.Join(out, "compose-summary.txt"), []byte(b.String()), 0o644)
		if js, err := json.MarshalIndent(rows, "", "  "); err == nil {
			_ = os.WriteFile(filepath.Join(out, "compose-summary.json"), append(js, '\n'), 0o644)
		}
	}
}
