package node_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

// approveStart returns req approved by its sender: the digest of its own
// parameters over the current root, as a custodian's CLI computes it.
func approveStart(t *testing.T, c *testcluster.Cluster, req api.RotateRootStart) api.RotateRootStart {
	t.Helper()
	st, err := c.Client(t).RotateRootStatus(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	req.Approve = api.RotationDigest(st.PrevFingerprint, req.Custodians, req.Threshold, req.CustodianKeys, req.PlaintextShares)
	return req
}

// TestRotateRootOneCustodianCannotTakeQuorum is the attacker on a real
// cluster: custodian 1 starts a rotation whose three new keys are all
// their own. Custodian 2 approves the dealing they were told of (three
// honest keys): refused with conflict, not counted; without an approval:
// refused, not counted. Custodians who approve the session's own digest
// are counted, and the status shows the digest and never the nonce.
func TestRotateRootOneCustodianCannotTakeQuorum(t *testing.T) {
	c := rotationCluster(t)
	ctx := ctxT(t)
	cl := c.Client(t)
	attacker, honest := newCustodians(t, 3), newCustodians(t, 3)
	st, err := cl.StartRootRotationWith(ctx, approveStart(t, c, api.RotateRootStart{Custodians: 3, Threshold: 2, CustodianKeys: attacker.keys, Share: c.Shares[0]}))
	if err != nil {
		t.Fatal(err)
	}
	told := api.RotationDigest(st.PrevFingerprint, 3, 2, honest.keys, false)
	_, err = cl.SubmitRotationShare(ctx, api.RotateRootSubmit{Nonce: st.Nonce, Share: c.Shares[1], Approve: told})
	if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "not counted") {
		t.Fatalf("share approving the honest list: got %v, want conflict", err)
	}
	addr := leaderAddr(t, c)
	status, _ := rawCall(t, c, "POST", addr, api.PathRotateRootSubmit, "", api.RotateRootSubmit{Nonce: st.Nonce, Share: c.Shares[2]})
	if status == http.StatusOK {
		t.Fatal("a share without an approval was accepted")
	}
	status, raw := rawCall(t, c, "GET", addr, api.PathRotateRoot, "", nil)
	got := decodeAs[api.RotateRootStatus](t, status, raw)
	if got.Progress != 1 {
		t.Fatalf("refused shares were counted: progress %d", got.Progress)
	}
	if got.PrevFingerprint == "" {
		t.Fatal("the rotation status names no current commitments fingerprint")
	}
	if want := api.RotationDigest(got.PrevFingerprint, 3, 2, attacker.keys, false); got.Digest != want || strings.Contains(string(raw), st.Nonce) {
		t.Fatalf("status digest %q, want %q (nonce shown: %v)", got.Digest, want, strings.Contains(string(raw), st.Nonce))
	}
	// Approving the session's exact dealing counts (the rotation the
	// custodians would then have chosen knowingly).
	if res, err := cl.SubmitRotationShare(ctx, api.RotateRootSubmit{Nonce: st.Nonce, Share: c.Shares[1], Approve: got.Digest}); err != nil || res.Progress != 2 {
		t.Fatalf("approved share: %v", err)
	}
}
