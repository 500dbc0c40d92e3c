package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fpe"
	"github.com/keyd/keyd/internal/testcluster"
)

// TestCLIPII runs the PII subcommands against a real node.
func TestCLIPII(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 1})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	env := clusterEnv(t, c)
	for _, k := range [][2]string{{"pseudo", "hmac-sha256"}, {"cards", "ff1-aes256"}, {"col", "aes256-siv"}} {
		if _, err := runCmd(t, env, "", "key", "create", k[0], "-type", k[1]); err != nil {
			t.Fatalf("create %s: %v", k[0], err)
		}
	}

	// pseudonym: VALUE as argument and on stdin give the same line.
	a, err := runCmd(t, env, "", "key", "pseudonym", "pseudo", "alice@example.com", "-context", "analytics")
	if err != nil || len(strings.TrimSpace(a)) != 43 {
		t.Fatalf("pseudonym: %q %v", a, err)
	}
	b, err := runCmd(t, env, "alice@example.com\n", "key", "pseudonym", "pseudo", "-context", "analytics", "-version", "1")
	if err != nil || a != b {
		t.Fatalf("pseudonym from stdin, pinned: %q vs %q (%v)", b, a, err)
	}
	if o, _ := runCmd(t, env, "", "key", "pseudonym", "pseudo", "alice@example.com", "-context", "other"); o == a {
		t.Fatal("context ignored")
	}

	// fpe encrypt then decrypt with the printed version.
	out, err := runCmd(t, env, "", "key", "fpe", "encrypt", "cards", "-format", "card", "4111 1111 1111 1111")
	if err != nil {
		t.Fatalf("fpe encrypt: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || lines[1] != "version: 1" || !fpe.LuhnValid(lines[0]) || !strings.HasSuffix(lines[0], "1111") || lines[0] == "4111 1111 1111 1111" {
		t.Fatalf("fpe encrypt output: %q", out)
	}
	dec, err := runCmd(t, env, lines[0]+"\n", "key", "fpe", "decrypt", "cards", "-format", "card", "-version", "1")
	if err != nil || strings.TrimSpace(dec) != "4111 1111 1111 1111" {
		t.Fatalf("fpe decrypt: %q %v", dec, err)
	}
	m, err := runCmd(t, env, "", "key", "fpe", "decrypt", "cards", "-format", "card", "-mask", "last4", lines[0])
	if err != nil || strings.TrimSpace(m) != "**** **** **** 1111" {
		t.Fatalf("fpe decrypt -mask: %q %v", m, err)
	}
	if _, err := runCmd(t, env, "", "key", "fpe", "encrypt", "cards", "4111 1111 1111 1111"); err == nil || !strings.Contains(err.Error(), "-format is required") {
		t.Fatalf("missing -format: %v", err)
	}
	if _, err := runCmd(t, env, "", "key", "fpe", "encrypt", "cards", "-format", "card", "4111 1111 1111 1112"); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("bad Luhn: %v", err)
	}

	// decrypt -mask on a deterministic key.
	ct, err := runCmd(t, env, "078-05-1120", "key", "encrypt", "col")
	if err != nil {
		t.Fatal(err)
	}
	ct2, _ := runCmd(t, env, "078-05-1120", "key", "encrypt", "col")
	if ct != ct2 {
		t.Fatal("aes256-siv not deterministic through the CLI")
	}
	mm, err := runCmd(t, env, ct, "key", "decrypt", "col", "-mask", "full")
	if err != nil || strings.TrimSpace(mm) != "***-**-****" {
		t.Fatalf("decrypt -mask: %q %v", mm, err)
	}
}
