package main

import (
	"strings"
	"testing"
	"time"

	"github.com/keyd/keyd/internal/testcluster"
)

func TestParseUnusedFor(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{"": 0, "720h": 720 * time.Hour, "30d": 30 * 24 * time.Hour, "90m": 90 * time.Minute} {
		if got, err := parseUnusedFor(in); err != nil || got != want {
			t.Errorf("%q: %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"0", "-1h", "0d", "d", "1.5d", "x", "3651d", "+3d", "07d", strings.Repeat("9", 40) + "d"} {
		if _, err := parseUnusedFor(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseUnusedFor(f *testing.F) {
	for _, s := range []string{"720h", "30d", "1h30m", "", "0d", "-5d", "99999d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseUnusedFor(s)
		if err == nil && s != "" && d <= 0 {
			t.Fatalf("%q gave %v", s, d)
		}
	})
}

// TestKeyReportCLI: tags and retention on create, key usage and the
// report, and credentials' last use in token list, end to end.
func TestKeyReportCLI(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, testcluster.Options{Nodes: 1})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	env := clusterEnv(t, c)
	out, err := runCmd(t, env, "", "key", "create", "person-7", "-tags", "pii,pseudo", "-retention", "8760h")
	if err != nil || !strings.Contains(out, "pii,pseudo") || !strings.Contains(out, "8760h") {
		t.Fatalf("create: %v\n%s", err, out)
	}
	if _, _, err := runCmdErr(t, env, "", "key", "create", "bad", "-tags", "PII"); exitCode(err) != 2 {
		t.Fatalf("bad tag: %v, want a usage error", err)
	}
	if _, err := runCmd(t, env, "", "key", "create", "orphan"); err != nil {
		t.Fatal(err)
	}
	if _, err := runCmd(t, env, "hello", "key", "encrypt", "person-7"); err != nil {
		t.Fatal(err)
	}
	if err := c.Node(0).FlushUsage(t.Context()); err != nil {
		t.Fatal(err)
	}
	out, err = runCmd(t, env, "", "key", "usage", "person-7")
	if err != nil || !strings.Contains(out, "Uses:") || !strings.Contains(out, "v1") || !strings.Contains(out, "1 uses") {
		t.Fatalf("usage: %v\n%s", err, out)
	}
	// Everything is younger than a minute: with -unused-for 1ns every
	// key but the used one is an orphan... and the used one is unused.
	out, err = runCmd(t, env, "", "key", "report", "-unused-for", "1ns")
	if err != nil || !strings.Contains(out, "Never used (orphans) (1)") || !strings.Contains(out, "orphan") || !strings.Contains(out, "Unused keys (1)") {
		t.Fatalf("report: %v\n%s", err, out)
	}
	out, err = runCmd(t, env, "", "key", "report", "-format", "json")
	if err != nil || !strings.Contains(out, `"never_used": []`) {
		t.Fatalf("report json (720h: nothing is old enough): %v\n%s", err, out)
	}
	out, err = runCmd(t, env, "", "token", "list")
	if err != nil || !strings.Contains(out, "LAST USED") {
		t.Fatalf("token list: %v\n%s", err, out)
	}
}
