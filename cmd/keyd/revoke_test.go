package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

// TestTokenRevokeNamesNodesThatHaveNotApplied: an operator revoking a
// leaked token while one node is down must be told that node has not
// applied the revocation yet, instead of reading a plain "Revoked".
func TestTokenRevokeNamesNodesThatHaveNotApplied(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	env := clusterEnv(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), testcluster.Scaled(20*time.Second))
	defer cancel()
	tok, err := c.Client(t).CreateToken(ctx, api.CreateTokenRequest{Name: "leaked", Policies: []string{"auditor"}})
	if err != nil {
		t.Fatal(err)
	}
	c.WaitApplied(t, tok.Index)
	leader := c.WaitLeader(t)
	down := (leader + 1) % 3
	c.Stop(t, down)

	out, stderr, err := runCmdErr(t, env, "", "token", "revoke", tok.Accessor)
	if err != nil {
		t.Fatalf("revoke: %v\n%s", err, stderr)
	}
	if !strings.Contains(out, "Revoked token "+tok.Accessor) {
		t.Fatalf("stdout %q", out)
	}
	if !strings.Contains(stderr, "not yet applied on") || !strings.Contains(stderr, c.Slot(down).ID) {
		t.Fatalf("stderr %q does not name the stopped node %s", stderr, c.Slot(down).ID)
	}
}
