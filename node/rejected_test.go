package node_test

import (
	"net/http"
	"testing"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

// TestRejectedWritesStayOutOfTheLog: writes the leader's state already
// refuses are refused before they are proposed, so the Raft log (and the
// applied index) does not move: duplicate creates with fresh wrapped
// material, bad configurations, deletes of missing things.
func TestRejectedWritesStayOutOfTheLog(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	r := &raw{t: t, c: c, hc: hc}
	leader := c.WaitLeader(t)
	var k api.KeyInfo
	if st, code := r.do(leader, "POST", api.PathKeys, c.Token, api.CreateKeyRequest{Name: "k"}, &k); st != 200 {
		t.Fatalf("create: %d %s", st, code)
	}
	c.WaitApplied(t, k.Index)
	v9 := uint32(9)
	const missingID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		name, method, path string
		body               any
		want               api.Code
	}{
		{"duplicate create", "POST", api.PathKeys, api.CreateKeyRequest{Name: "k"}, api.CodeExists},
		{"min decryption version above latest", "POST", api.KeyPath("k", "config"), api.KeyConfigRequest{MinDecryptionVersion: &v9}, api.CodeBadRequest},
		{"cancel an unscheduled deletion", "POST", api.KeyPath("k", "cancel-deletion"), nil, api.CodeConflict},
		{"disable a missing key", "POST", api.KeyPath("nope", "disable"), nil, api.CodeNotFound},
		{"rotate a missing key", "POST", api.KeyPath("nope", "rotate"), nil, api.CodeNotFound},
		{"delete a missing identity", "DELETE", api.PathIdentities + "/" + missingID, nil, api.CodeResourceNotFound},
		{"delete a missing policy", "DELETE", api.PathPolicies + "/nope", nil, api.CodeResourceNotFound},
		{"revoke a missing token", "POST", api.PathTokenRevoke, api.RevokeTokenRequest{Accessor: "0123456789abcdef"}, api.CodeResourceNotFound},
		{"token with an unknown policy", "POST", api.PathTokens, api.CreateTokenRequest{Policies: []string{"nope"}}, api.CodeBadRequest},
	}
	for _, slot := range []int{leader, (leader + 1) % 3} {
		for _, tt := range tests {
			before := appliedIndexes(c)
			if _, code := r.do(slot, tt.method, tt.path, c.Token, tt.body, nil); code != tt.want {
				t.Errorf("slot %d, %s: got %q, want %q", slot, tt.name, code, tt.want)
			}
			after := appliedIndexes(c)
			for i := range before {
				if before[i] != after[i] {
					t.Errorf("slot %d, %s: node %d applied index moved %d -> %d", slot, tt.name, i, before[i], after[i])
				}
			}
		}
	}
}
