package node_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

// TestRemovedNodeRefusesCustodianShares: a node that knows it was removed
// refuses a custodian's unseal share up front, with a clear error, and
// collects nothing (no progress), whether the share comes from a
// custodian or as a relay.
func TestRemovedNodeRefusesCustodianShares(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 3, 2)
	c.Unseal(t, 2)
	leader := c.WaitLeader(t)
	victim := (leader + 1) % 3
	ctx := ctxT(t)
	if err := c.Node(leader).RemoveNode(ctx, "", c.Slot(victim).ID); err != nil {
		t.Fatal(err)
	}
	c.Eventually(t, 30*time.Second, func() error {
		if st := c.Node(victim).Status(); !st.Sealed || !strings.Contains(st.SealReason, "removed") {
			return fmt.Errorf("sealed=%v reason %q", st.Sealed, st.SealReason)
		}
		return nil
	})
	for _, relayed := range []bool{false, true} {
		st, err := c.Node(victim).SubmitShare(ctx, c.Shares[0], relayed)
		if !errors.Is(err, api.ErrForbidden) || !strings.Contains(err.Error(), "removed") {
			t.Fatalf("share to the removed node (relayed %v): got %v, want forbidden: removed", relayed, err)
		}
		if strings.Contains(err.Error(), c.Shares[0]) {
			t.Fatal("the error echoes the share")
		}
		if st.Progress != 0 {
			t.Fatalf("the removed node collected a share: progress %d", st.Progress)
		}
	}
	if st := c.Node(victim).Status(); !st.Sealed || st.Progress != 0 {
		t.Fatalf("removed node: sealed=%v progress=%d", st.Sealed, st.Progress)
	}
}
