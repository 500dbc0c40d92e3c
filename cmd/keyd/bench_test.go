package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/keyd/keyd/internal/testcluster"
)

// TestBench runs keyd bench briefly against a real cluster with only
// KEYD_ADDR, KEYD_TOKEN and KEYD_CACERT set: the default scenario creates
// its own scratch key and prints the table; every other scenario runs a
// fixed count and reports it as JSON without errors.
func TestBench(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	env := clusterEnv(t, c)

	out, stderr, err := runCmdErr(t, env, "", "bench", "-duration", "1500ms", "-c", "4")
	if err != nil {
		t.Fatalf("bench: %v; stderr %q", err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "OPS/S") || !strings.Contains(lines[0], "P99 MS") {
		t.Fatalf("bench table: got\n%s", out)
	}
	f := strings.Fields(lines[1])
	if len(f) != 9 || f[0] != "encrypt" || f[1] != "4" || f[2] == "0" || f[8] != "0" {
		t.Fatalf("bench row: got %q, want encrypt, 4 callers, some ops, 0 errors", lines[1])
	}
	if !strings.Contains(stderr, "ops/s") {
		t.Errorf("no progress line on stderr: %q", stderr)
	}

	for _, tc := range []struct {
		op   string
		args []string
	}{
		{"decrypt", nil},
		{"datakey", nil},
		{"batch", []string{"-batch", "8"}},
		{"create", nil},
		{"mixed", nil},
		{"many-keys", []string{"-keys", "5"}},
	} {
		args := append([]string{"bench", "-op", tc.op, "-n", "20", "-c", "3", "-size", "64", "-json"}, tc.args...)
		js, stderr, err := runCmdErr(t, env, "", args...)
		if err != nil {
			t.Fatalf("bench -op %s: %v; stderr %q", tc.op, err, stderr)
		}
		var r benchResult
		if err := json.Unmarshal([]byte(js), &r); err != nil {
			t.Fatalf("bench -op %s -json: %v in %q", tc.op, err, js)
		}
		if r.Op != tc.op || r.Ops != 20 || r.Errors != 0 || r.OpsPerSec <= 0 || r.P50ms <= 0 || r.MaxMs < r.P99ms || r.P99ms < r.P50ms {
			t.Fatalf("bench -op %s: got %+v", tc.op, r)
		}
	}

	// A failing scenario exits 1 and says why.
	_, _, err = runCmdErr(t, env, "", "bench", "-key", "no-such-key", "-n", "5", "-json")
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "not_found") {
		t.Fatalf("bench on a missing key: got %v, want a failure naming not_found", err)
	}
	// Bad flags are usage errors.
	for _, args := range [][]string{{"-op", "fly"}, {"-c", "0"}, {"-size", "-1"}, {"-op", "batch", "-batch", "0"}} {
		if _, _, err := runCmdErr(t, env, "", append([]string{"bench"}, args...)...); exitCode(err) != 2 {
			t.Errorf("bench %v: got %v, want a usage error", args, err)
		}
	}
}
