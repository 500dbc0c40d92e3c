package node_test

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/node"
)

// TestForcedRestoreOfForeignSnapshotRefused is the operator as attacker: a
// token with the snapshot capability builds a throwaway cluster whose root
// it holds alone, snapshots it and force-restores that file over
// production. The restore must be refused and change nothing: a forced
// restore may replace the state, never the root.
func TestForcedRestoreOfForeignSnapshotRefused(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	// Audit anchors would change the state dump during the test.
	prod := testcluster.New(t, testcluster.Options{Nodes: 3, Configure: func(_ int, cfg *node.Config) { cfg.AuditAnchorInterval = time.Hour }})
	prod.Init(t, 3, 2)
	prod.Unseal(t, 2)
	pcl := prod.Client(t)
	if _, err := pcl.CreateKey(ctx, api.CreateKeyRequest{Name: "payroll"}); err != nil {
		t.Fatal(err)
	}

	own := testcluster.New(t, testcluster.Options{Nodes: 1})
	own.Init(t, 1, 1)
	own.Unseal(t, 1)
	var file bytes.Buffer
	if err := own.Client(t).SnapshotSave(ctx, &file); err != nil {
		t.Fatal(err)
	}

	before := dumpAll(t, prod)
	_, err := pcl.SnapshotRestore(ctx, file.Bytes(), true)
	wantCode(t, "forced restore of another cluster's snapshot", err, api.CodeForbidden)
	if after := dumpAll(t, prod); !slices.Equal(before, after) {
		t.Fatal("a refused restore changed the state")
	}
	for i := 0; i < prod.Size(); i++ {
		if prod.Node(i).Sealed() {
			t.Fatalf("%s was sealed by a refused restore", prod.Node(i).ID())
		}
	}
	if _, err := pcl.ReadKey(ctx, "payroll", true); err != nil {
		t.Fatalf("production key gone: %v", err)
	}
}
