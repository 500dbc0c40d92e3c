package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/keyd/keyd/api"
)

// TestKVCommands runs keyd kv and key tokenize/detokenize against a
// one-node dev cluster, as a pipeline would.
func TestKVCommands(t *testing.T) {
	t.Parallel()
	d := startDev(t, "-listen", "127.0.0.1:0", "-nodes", "1")
	env := d.env
	if out, err := runCmd(t, env, "", "kv", "put", "ci/deploy", "user=bot", "password=s3cr=et", "-cas", "0"); err != nil || !strings.Contains(out, "version 1") {
		t.Fatalf("put: %q %v", out, err)
	}
	if _, err := runCmd(t, env, "", "kv", "put", "ci/deploy", "password=x", "-cas", "0"); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("put -cas 0 over an existing secret: %v", err)
	}
	if _, err := runCmd(t, env, "", "kv", "put", "ci/deploy", "password=two"); err != nil {
		t.Fatal(err)
	}
	if out, err := runCmd(t, env, "", "kv", "get", "-field", "password", "-version", "1", "ci/deploy"); err != nil || out != "s3cr=et\n" {
		t.Fatalf("get -field -version: %q %v", out, err)
	}
	if out, err := runCmd(t, env, "", "kv", "get", "ci/deploy"); err != nil || !strings.Contains(out, "two") || !strings.Contains(out, "Version:  2") {
		t.Fatalf("get: %q %v", out, err)
	}
	if out, err := runCmd(t, env, "", "kv", "list", "ci/"); err != nil || out != "ci/deploy\n" {
		t.Fatalf("list: %q %v", out, err)
	}
	if _, err := runCmd(t, env, "", "kv", "delete", "ci/deploy"); err != nil {
		t.Fatal(err)
	}
	if _, err := runCmd(t, env, "", "kv", "get", "ci/deploy"); !errors.Is(err, api.ErrResourceNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	if _, err := runCmd(t, env, "", "kv", "undelete", "ci/deploy", "-versions", "2"); err != nil {
		t.Fatal(err)
	}
	if _, err := runCmd(t, env, "", "kv", "destroy", "ci/deploy", "-versions", "1"); err != nil {
		t.Fatal(err)
	}
	if out, err := runCmd(t, env, "", "kv", "metadata", "ci/deploy"); err != nil || !strings.Contains(out, "destroyed") || strings.Contains(out, "two") {
		t.Fatalf("metadata: %q %v", out, err)
	}
	if _, err := runCmd(t, env, "", "kv", "put", "ci/deploy", "nokeyvalue"); exitCode(err) != 2 {
		t.Fatalf("put without k=v: %v", err)
	}
	if _, err := runCmd(t, env, "", "key", "create", "cards"); err != nil {
		t.Fatal(err)
	}
	tok, err := runCmd(t, env, "4111111111111111\n", "key", "tokenize", "cards", "-ttl", "1h")
	if err != nil || !strings.HasPrefix(tok, "kdt_") {
		t.Fatalf("tokenize: %q %v", tok, err)
	}
	if out, err := runCmd(t, env, tok, "key", "detokenize", "cards"); err != nil || out != "4111111111111111\n" {
		t.Fatalf("detokenize: %q %v", out, err)
	}
}
