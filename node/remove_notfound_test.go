package node_test

import (
	"errors"
	"testing"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

// TestRemoveUnknownNodeNotFound: removing a node that is not in the
// cluster answers the general not_found code, not key_not_found.
func TestRemoveUnknownNodeNotFound(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 3, 2)
	c.Unseal(t, 2)
	c.WaitLeader(t)
	err := c.Client(t).Remove(ctxT(t), "no-such-node")
	var ae *api.Error
	if !errors.As(err, &ae) {
		t.Fatalf("remove of an unknown node: %v, want an *api.Error", err)
	}
	if ae.Code != api.CodeResourceNotFound {
		t.Fatalf("remove of an unknown node: code %q, want %q", ae.Code, api.CodeResourceNotFound)
	}
}
