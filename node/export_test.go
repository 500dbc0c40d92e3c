package node_test

import (
	"testing"

	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/shamir"
)

func currentNodeShareCommitments(t *testing.T, c *testcluster.Cluster, i int) *shamir.Commitments {
	t.Helper()
	b, err := c.Node(i).NodeShareCommitments()
	if err != nil || b == nil {
		t.Fatalf("node share commitments: %v", err)
	}
	cm, err := shamir.UnmarshalCommitments(b)
	if err != nil {
		t.Fatal(err)
	}
	return cm
}
