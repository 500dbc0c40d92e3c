package node_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/keyd/keyd/hsmbridge/soft"
	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/shamir"
	"github.com/keyd/keyd/sharex"
)

// postShareRequest sends req as the holder of cl's certificate and
// returns the status and, on 200, the decoded response.
func postShareRequest(t *testing.T, cl *http.Client, addr string, req sharex.Request) (int, *sharex.Response) {
	t.Helper()
	b, _ := json.Marshal(req)
	resp, err := cl.Post("https://"+addr+"/v1/internal/share-request", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, sharex.MaxMessageSize))
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	r, err := sharex.DecodeResponse(body)
	if err != nil {
		t.Fatalf("200 with an undecodable body: %v", err)
	}
	return resp.StatusCode, &r
}

// TestShareRequestThiefWithTLSIdentity plays an attacker with root on one
// node's disk but not its HSM: it holds the node's TLS certificate and key
// (plain files) but cannot unwrap the node's share. Impersonating the node,
// it asks every other holder for its share; with k=2 of 3, two answers
// would rebuild the root. Every peer must refuse.
func TestShareRequestThiefWithTLSIdentity(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, HSM: testcluster.HSMSoft})
	c.Init(t, 3, 2)
	c.Unseal(t, 2)
	fp := waitDealt(t, c)
	victimID := c.Slot(0).ID
	thief := asNode(t, c, victimID)

	req, _, err := sharex.NewRequest(victimID, fp)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{1, 2} {
		if code, resp := postShareRequest(t, thief, c.Slot(i).APIAddr, req); code != http.StatusForbidden || resp != nil {
			t.Fatalf("proof-less share request impersonating %s to %s: status %d, want 403", victimID, c.Slot(i).ID, code)
		}
	}

	// The thief can read the victim's HSM-wrapped share file but not
	// unwrap it; made-up proofs at every index fail too.
	commits := currentNodeShareCommitments(t, c, 1)
	for idx := 1; idx <= commits.Shares(); idx++ {
		forged := req
		forged.Index = idx
		forged.Proof = make([]byte, shamir.ProofSize)
		if _, err := rand.Read(forged.Proof); err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{1, 2} {
			if code, _ := postShareRequest(t, thief, c.Slot(i).APIAddr, forged); code != http.StatusForbidden {
				t.Fatalf("forged proof (index %d) to %s: status %d, want 403", idx, c.Slot(i).ID, code)
			}
		}
	}

	// Control: with the victim's real share (unwrapped by its own HSM, as
	// the genuine node does) the same identity is answered, so the
	// refusals above are due to the missing proof alone.
	own := unwrapNodeShare(t, c, 0, fp)
	defer own.Destroy()
	genuine, priv, err := sharex.NewRequest(victimID, fp)
	if err != nil {
		t.Fatal(err)
	}
	if err := genuine.Prove(commits, own); err != nil {
		t.Fatal(err)
	}
	code, resp := postShareRequest(t, thief, c.Slot(1).APIAddr, genuine)
	if code != http.StatusOK {
		t.Fatalf("genuine proved request: status %d, want 200", code)
	}
	sh, err := sharex.Open(priv, genuine, *resp)
	if err != nil {
		t.Fatal(err)
	}
	sh.Destroy()

	// A captured genuine proof replayed with the thief's own ephemeral
	// key (the only key whose answers it could open) is refused.
	replay, _, err := sharex.NewRequest(victimID, fp)
	if err != nil {
		t.Fatal(err)
	}
	replay.Index, replay.Proof = genuine.Index, genuine.Proof
	for _, i := range []int{1, 2} {
		if code, _ := postShareRequest(t, thief, c.Slot(i).APIAddr, replay); code != http.StatusForbidden {
			t.Fatalf("replayed proof to %s: status %d, want 403", c.Slot(i).ID, code)
		}
	}
}

// unwrapNodeShare unwraps node i's share of dealing fp with node i's own
// (soft) HSM, as the node itself does.
func unwrapNodeShare(t *testing.T, c *testcluster.Cluster, i int, fp string) shamir.Share {
	t.Helper()
	ctx := ctxT(t)
	h, err := soft.Open(ctx, soft.Config{Path: filepath.Join(c.Slot(i).Dir, "hsm")})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	wrapped, err := os.ReadFile(filepath.Join(c.Slot(i).Dir, "node-shares", fp+".share"))
	if err != nil {
		t.Fatal(err)
	}
	pt, err := h.Unwrap(ctx, "keyd-node-share", wrapped, []byte("keyd node share v1\x00"+c.Slot(i).ID+"\x00"+fp))
	if err != nil {
		t.Fatal(err)
	}
	defer clear(pt)
	sh, err := shamir.UnmarshalShare(pt)
	if err != nil {
		t.Fatal(err)
	}
	return sh
}
