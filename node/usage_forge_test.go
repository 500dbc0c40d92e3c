package node_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

// TestMalformedUsageBatchNeverEntersTheLog: a member node (faulty or
// hostile) that submits a malformed usage batch is refused by the leader
// before the batch is proposed; it used to be committed and then refused
// by every replica's apply, a wasted log entry per call.
func TestMalformedUsageBatchNeverEntersTheLog(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 1})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	n := c.Node(c.WaitLeader(t))
	before := n.AppliedIndex()
	now := time.Now()
	for _, b := range []api.UsageBatch{
		{Node: n.ID(), Seq: 1, Keys: []api.KeyUseDelta{{Name: "k", Versions: []api.VersionUsage{{Version: 0, UseStat: api.UseStat{LastUsed: now, Count: 1}}}}}},
		{Node: n.ID(), Seq: 2, Keys: []api.KeyUseDelta{{Name: ""}}},
		{Node: n.ID(), Seq: 3, Principals: []api.IdentityUsage{{Identity: "bad id\n", UseStat: api.UseStat{LastUsed: now, Count: 1}}}},
	} {
		err := n.SubmitUsage(context.Background(), n.ID(), b)
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Code != api.CodeBadRequest {
			t.Errorf("batch %d: %v, want bad_request", b.Seq, err)
		}
	}
	if after := n.AppliedIndex(); after != before {
		t.Fatalf("malformed usage batches moved the applied index %d -> %d", before, after)
	}
}
