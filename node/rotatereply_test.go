package node_test

import (
	"testing"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

// A rotation's reply names the version it made: also when it is retried
// with its request id (its reply was lost) after another rotation of the
// key. The in-process region-cut drill caught two acknowledged rotations
// both replying version 3.
func TestRotationReplyNamesItsVersion(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 1})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	ctx := ctxT(t)
	if _, err := c.Client(t).CreateKey(ctx, api.CreateKeyRequest{Name: "k"}); err != nil {
		t.Fatal(err)
	}
	n := c.Node(c.WaitLeader(t))
	first, err := n.RotateKey(ctx, "rotate-a", "k")
	if err != nil || first.LatestVersion != 2 {
		t.Fatalf("first rotation: %+v, %v", first, err)
	}
	second, err := n.RotateKey(ctx, "rotate-b", "k")
	if err != nil || second.LatestVersion != 3 {
		t.Fatalf("second rotation: %+v, %v", second, err)
	}
	retried, err := n.RotateKey(ctx, "rotate-a", "k")
	if err != nil {
		t.Fatal(err)
	}
	if retried.LatestVersion != 2 {
		t.Fatalf("the first rotation, retried, replied version %d (it made version 2)", retried.LatestVersion)
	}
	if info, err := c.Client(t).ReadKey(ctx, "k", false); err != nil || info.LatestVersion != 3 {
		t.Fatalf("key after the retry: %+v, %v (a retry must not rotate)", info, err)
	}
}
