// Package chaos holds fault drills for keyd. Each drill runs real nodes
// (in process, on 127.0.0.1, through internal/testcluster), injects faults
// with the transport's fault layer and node stops, and checks the
// invariants users rely on:
//
//   - every acknowledged ciphertext still decrypts after every fault;
//   - writes acknowledged before a fault are present after it;
//   - a minority side never accepts a write, and crypto calls keep working
//     on every unsealed node, leader or not.
//
// TestDrill runs the drill library (chaos/drill) against in-process
// clusters: one subtest per fault (leader-kill, leader-stop, region-cut,
// region-loss, rolling-restart, cluster-restart, hsm-slow-fail,
// replace-region, clock-jump), each with a recorded history checked for
// lost, duplicated and non-linearizable operations (porcupine) and a
// report (docs/DRILLS.md).
//
// Every loop is bounded in count and time. Run the drills with
//
//	go test -race ./chaos/
//	make drill DRILL=leader-stop   # one drill, JSON report in drill-reports/
//
// Longer runs: KEYD_CHAOS_ROUNDS=N (default 3) for the failover loops,
// KEYD_CHAOS_LONG=1 for the long drill variants, KEYD_DRILL_REPORT_DIR
// for the reports.
package chaos
