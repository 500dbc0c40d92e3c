package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
)

// TestOperatorSnapshotCLI saves a dev cluster's state, inspects it,
// refuses damaged files offline, and restores it over a second dev
// cluster (which needs -force), unsealed with the first cluster's share.
func TestOperatorSnapshotCLI(t *testing.T) {
	t.Parallel()
	first := startDev(t, "-listen", "127.0.0.1:0", "-nodes", "1")
	if _, err := runCmd(t, first.env, "", "key", "create", "k1"); err != nil {
		t.Fatal(err)
	}
	ct, err := runCmd(t, first.env, "kept across clusters", "key", "encrypt", "k1")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"pw=one", "pw=two"} {
		if _, err := runCmd(t, first.env, "", "kv", "put", "app/db", v); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := runCmd(t, first.env, "", "kv", "destroy", "app/db", "-versions", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := runCmd(t, first.env, "card", "key", "tokenize", "k1"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "snap.keyd")
	out, err := runCmd(t, first.env, "", "operator", "snapshot", "save", file)
	if err != nil || !strings.Contains(out, "Saved snapshot") {
		t.Fatalf("save: %q %v", out, err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file mode: %v %v", fi.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.part-*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	out, err = runCmd(t, nil, "", "operator", "snapshot", "inspect", file)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"keys: 1\n", "versions: 1\n", "tokens: 1\n", "policies: 0\n", "kv secrets: 1 (versions holding a value: 1)\n", "vault tokens: 1\n", "index: ", "cluster commitments: ", "digest: ok"} {
		if !strings.Contains(out, want) {
			t.Fatalf("inspect output lacks %q:\n%s", want, out)
		}
	}
	data, _ := os.ReadFile(file)
	for name, bad := range map[string][]byte{
		"corrupt":   append(append([]byte{}, data[:100]...), append([]byte{data[100] ^ 1}, data[101:]...)...),
		"truncated": data[:len(data)-10],
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := runCmd(t, nil, "", "operator", "snapshot", "inspect", p); err == nil || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("inspect %s: %v", name, err)
		}
	}

	second := startDev(t, "-listen", "127.0.0.1:0", "-nodes", "1")
	if _, err := runCmd(t, second.env, "", "operator", "snapshot", "restore", file); !errors.Is(err, api.ErrAlreadyInitialized) || !strings.Contains(err.Error(), "-force") {
		t.Fatalf("restore without -force: %v", err)
	}
	if _, err := runCmd(t, second.env, "", "operator", "snapshot", "restore", filepath.Join(dir, "corrupt"), "-force"); err == nil {
		t.Fatal("corrupt snapshot restored")
	}
	// -force replaces a live cluster's state, never its root: another
	// cluster's snapshot (whose custodians one operator may hold) is refused
	// and goes into a fresh cluster instead.
	if _, err := runCmd(t, second.env, "", "operator", "snapshot", "restore", file, "-force"); !errors.Is(err, api.ErrForbidden) || !strings.Contains(err.Error(), "another root") {
		t.Fatalf("forced restore of another cluster's snapshot: %v", err)
	}
	if _, err := runCmd(t, second.env, "", "key", "list"); err != nil {
		t.Fatalf("second cluster after the refused restore: %v", err)
	}
	// The cluster's own snapshot restores over it with -force.
	out, err = runCmd(t, first.env, "", "operator", "snapshot", "restore", file, "-force")
	if err != nil || !strings.Contains(out, "sealed") {
		t.Fatalf("restore -force: %q %v", out, err)
	}
	env := first.env
	if _, err := runCmd(t, env, second.shares[0]+"\n", "operator", "unseal"); err == nil {
		t.Fatal("the second cluster's own share unsealed the restored state")
	}
	if _, err := runCmd(t, env, first.shares[0]+"\n", "operator", "unseal"); err != nil {
		t.Fatalf("unseal with the original share: %v", err)
	}
	got, err := runCmd(t, env, ct, "key", "decrypt", "k1")
	if err != nil || got != "kept across clusters" {
		t.Fatalf("decrypt after restore: %q %v", got, err)
	}
}

func TestSnapshotConfig(t *testing.T) {
	t.Parallel()
	fc, err := parseConfig(strings.NewReader(editConfig("", "snapshot_interval: 1h", "snapshot_dir: /var/lib/keyd/snapshots", "snapshot_retain: 5", "snapshot_max_age: 168h")))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := fc.nodeConfig(fakeLoader(t), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SnapshotInterval != time.Hour || cfg.SnapshotDir != "/var/lib/keyd/snapshots" || cfg.SnapshotRetain != 5 || cfg.SnapshotMaxAge != 168*time.Hour {
		t.Fatalf("got %s %q %d %s", cfg.SnapshotInterval, cfg.SnapshotDir, cfg.SnapshotRetain, cfg.SnapshotMaxAge)
	}
	fc, _ = parseConfig(strings.NewReader(editConfig("")))
	if cfg, err := fc.nodeConfig(fakeLoader(t), io.Discard); err != nil || cfg.SnapshotInterval != 0 || cfg.SnapshotRetain != 24 {
		t.Fatalf("defaults: %+v %v", cfg.SnapshotRetain, err)
	}
	for name, tc := range map[string]struct {
		extra []string
		want  string
	}{
		"interval without dir": {[]string{"snapshot_interval: 1h"}, "SnapshotDir"},
		"negative retain":      {[]string{"snapshot_retain: -1"}, "SnapshotRetain"},
		"negative max age":     {[]string{"snapshot_max_age: -1h"}, "SnapshotMaxAge"},
	} {
		fc, err := parseConfig(strings.NewReader(editConfig("", tc.extra...)))
		if err == nil {
			_, err = fc.nodeConfig(fakeLoader(t), io.Discard)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: err %v, want it to name %s", name, err, tc.want)
		}
	}
}
