package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCompletionTree: the tree has every top-level command and the
// subcommands of each group, learned from the commands themselves.
func TestCompletionTree(t *testing.T) {
	t.Parallel()
	c, _, _ := testCLI(t.Context(), nil, nil)
	tree := c.commandTree()
	for name := range c.commands() {
		if !slices.Contains(tree.top, name) {
			t.Errorf("top level lacks %q", name)
		}
	}
	for group, want := range map[string][]string{
		"key":                  {"create", "encrypt", "verify-hmac", "cancel-deletion"},
		"operator":             {"init", "unseal", "rotate-root"},
		"operator rotate-root": {"start", "submit", "status"},
		"token":                {"create", "list", "revoke"},
	} {
		for _, w := range want {
			if !slices.Contains(tree.subs[group], w) {
				t.Errorf("%s: subcommands %v lack %q", group, tree.subs[group], w)
			}
		}
	}
	if _, ok := tree.subs["status"]; ok {
		t.Errorf("status has no subcommands, got %v", tree.subs["status"])
	}
}

// TestCompletionScripts generates every script; the bash one is run in a
// real bash and completes commands and subcommands.
func TestCompletionScripts(t *testing.T) {
	t.Parallel()
	for _, sh := range []string{"bash", "zsh", "fish"} {
		out, err := runCmd(t, nil, "", "completion", sh)
		if err != nil || !strings.Contains(out, "rotate-root") || !strings.Contains(out, "verify-hmac") {
			t.Fatalf("completion %s: %v\n%s", sh, err, out)
		}
	}
	if _, _, err := runCmdErr(t, nil, "", "completion", "tcsh"); exitCode(err) != 2 {
		t.Fatalf("completion tcsh: got %v, want a usage error", err)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	script, err := runCmd(t, nil, "", "completion", "bash")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "keyd.bash")
	if err := os.WriteFile(file, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) string {
		t.Helper()
		prog := `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _keyd; echo "${COMPREPLY[*]}"`
		out, err := exec.Command(bash, append([]string{"-c", prog, "x", file}, words...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v: %s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := complete("keyd", "sta"); got != "status" {
		t.Errorf("keyd sta<TAB>: %q", got)
	}
	if got := complete("keyd", "key", "enc"); got != "encrypt" {
		t.Errorf("keyd key enc<TAB>: %q", got)
	}
	if got := complete("keyd", "operator", "rotate-root", "su"); got != "submit" {
		t.Errorf("keyd operator rotate-root su<TAB>: %q", got)
	}
}

func TestVersionNamesCommit(t *testing.T) {
	out, err := runCmd(t, nil, "", "version")
	if err != nil || !strings.Contains(out, " commit ") {
		t.Fatalf("version: %q %v", out, err)
	}
	old := commit
	commit = "abc123def456"
	defer func() { commit = old }()
	if out, _ := runCmd(t, nil, "", "version"); !strings.Contains(out, "commit abc123def456 ") {
		t.Fatalf("version with -X main.commit: %q", out)
	}
}

// TestFormatFlag: every command with -json also takes -format json|table
// (TestStatusOneRowPerNode runs one end to end).
func TestFormatFlag(t *testing.T) {
	t.Parallel()
	c, _, _ := testCLI(t.Context(), nil, nil)
	fs := c.flags("x", "")
	asJSON := fs.Bool("json", false, "")
	if _, err := parseArgs(fs, []string{"-format", "json"}, 0); err != nil || !*asJSON {
		t.Fatalf("-format json: %v, json=%v", err, *asJSON)
	}
	if _, err := parseArgs(fs, []string{"-format", "table"}, 0); err != nil || *asJSON {
		t.Fatalf("-format table: %v, json=%v", err, *asJSON)
	}
	if _, err := parseArgs(fs, []string{"-format", "yaml"}, 0); exitCode(err) != 2 {
		t.Fatalf("-format yaml: got %v, want a usage error", err)
	}
	// A command without -json gets no -format.
	plain := c.flags("y", "")
	if _, err := parseArgs(plain, []string{"-format", "json"}, 0); exitCode(err) != 2 {
		t.Fatalf("-format on a command without -json: %v", err)
	}
}
