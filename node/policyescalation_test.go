package node_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

// TestPolicyOverwriteEscalation: writing, overwriting or deleting a
// policy, and binding policies to a token or identity, needs rights over
// every document involved (the old one and the new one), not only the new
// document.
func TestPolicyOverwriteEscalation(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	r := &raw{t: t, c: c, hc: hc}
	leader := c.WaitLeader(t)

	put := func(who, name, doc string) (int, api.Code) {
		return r.do(leader, "PUT", api.PathPolicies+"/"+name, who, []byte(doc), nil)
	}
	app := func(pat string) string {
		return `{"rules":[{"effect":"allow","capabilities":["encrypt","decrypt","read"],"keys":["` + pat + `"]}]}`
	}
	for name, doc := range map[string]string{
		"app2":     app("app2-*"),
		"security": `{"rules":[{"effect":"allow","capabilities":["decrypt","read"],"keys":["*"]},{"effect":"deny","capabilities":["decrypt"],"keys":["vault-*"]}]}`,
		"delegate": `{"rules":[{"effect":"allow","capabilities":["set-policy"],"keys":["app1-*"]}]}`,
		"minter":   `{"rules":[{"effect":"allow","capabilities":["token-admin"]},{"effect":"allow","capabilities":["set-policy"],"keys":["app1-*"]}]}`,
	} {
		if st, code := put(c.Token, name, doc); st != 200 {
			t.Fatalf("admin writes %s: %d %s", name, st, code)
		}
	}
	delegate, _ := r.token("delegate")
	minter, _ := r.token("minter")
	secTok, secAccessor := r.token("security")
	const secID = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
	if st, code := r.do(leader, "POST", api.PathIdentities, c.Token, api.CreateIdentityRequest{ID: secID, Policies: []string{"security"}}, nil); st != 200 {
		t.Fatalf("security identity: %d %s", st, code)
	}

	docOf := func(name string) string {
		var info api.PolicyInfo
		if st, code := r.do(leader, "GET", api.PathPolicies+"/"+name, c.Token, nil, &info); st != 200 {
			t.Fatalf("read %s: %d %s", name, st, code)
		}
		return string(info.Document)
	}
	app2Before, secBefore := docOf("app2"), docOf("security")

	// The delegate may write and rewrite its own patterns.
	if st, code := put(delegate, "app1", app("app1-*")); st != 200 {
		t.Fatalf("delegate writes app1: %d %s", st, code)
	}
	if st, code := put(delegate, "app1", app("app1-orders-*")); st != 200 {
		t.Fatalf("delegate rewrites app1: %d %s", st, code)
	}
	// It may not take over other policies by name, even with a document
	// it could write under a fresh name.
	for _, name := range []string{"app2", "security"} {
		if st, code := put(delegate, name, app("app1-*")); st != 403 || code != api.CodeForbidden {
			t.Errorf("delegate overwrites %s: %d %s, want 403 forbidden", name, st, code)
		}
	}
	// Deleting needs rights over the stored document.
	for _, name := range []string{"app2", "security"} {
		if st, code := r.do(leader, "DELETE", api.PathPolicies+"/"+name, minter, nil, nil); st != 403 || code != api.CodeForbidden {
			t.Errorf("minter deletes %s: %d %s, want 403 forbidden", name, st, code)
		}
	}
	if docOf("app2") != app2Before || docOf("security") != secBefore {
		t.Fatal("a refused write changed a stored policy")
	}

	// A token-admin binds only policies it has rights over.
	for _, pols := range [][]string{{"admin"}, {"app2"}, {"security"}, {"app1", "auditor"}} {
		if st, code := r.do(leader, "POST", api.PathTokens, minter, api.CreateTokenRequest{Policies: pols}, nil); st != 403 || code != api.CodeForbidden {
			t.Errorf("minter creates a token with %v: %d %s, want 403 forbidden", pols, st, code)
		}
		id := "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
		if st, code := r.do(leader, "POST", api.PathIdentities, minter, api.CreateIdentityRequest{ID: id, Policies: pols}, nil); st != 403 || code != api.CodeForbidden {
			t.Errorf("minter creates an identity with %v: %d %s, want 403 forbidden", pols, st, code)
		}
	}
	var tok api.TokenInfo
	if st, code := r.do(leader, "POST", api.PathTokens, minter, api.CreateTokenRequest{Policies: []string{"app1"}}, &tok); st != 200 {
		t.Fatalf("minter creates an app1 token: %d %s", st, code)
	}
	// Revoking a token or deleting an identity takes rights away: only a
	// caller holding them may.
	if st, code := r.do(leader, "POST", api.PathTokenRevoke, minter, api.RevokeTokenRequest{Accessor: secAccessor}, nil); st != 403 || code != api.CodeForbidden {
		t.Errorf("minter revokes the security team's token: %d %s, want 403 forbidden", st, code)
	}
	if st, code := r.do(leader, "DELETE", api.PathIdentities+"/"+secID, minter, nil, nil); st != 403 || code != api.CodeForbidden {
		t.Errorf("minter deletes the security team's identity: %d %s, want 403 forbidden", st, code)
	}
	// Re-creating the security team's identity under the same id would
	// replace its policies: that takes rights away as a delete does.
	if st, code := r.do(leader, "POST", api.PathIdentities, minter, api.CreateIdentityRequest{ID: secID, Policies: []string{"app1"}}, nil); st != 403 || code != api.CodeForbidden {
		t.Errorf("minter overwrites the security team's identity: %d %s, want 403 forbidden", st, code)
	}
	var ids api.IdentityList
	r.do(leader, "GET", api.PathIdentities, c.Token, nil, &ids)
	for _, id := range ids.Identities {
		if id.ID == secID && (len(id.Policies) != 1 || id.Policies[0] != "security") {
			t.Errorf("security identity now carries %v", id.Policies)
		}
	}
	if st, code := r.do(leader, "GET", api.PathWhoAmI, secTok, nil, nil); st != 200 {
		t.Fatalf("security token after the attempts: %d %s", st, code)
	}
	if st, code := r.do(leader, "POST", api.PathTokenRevoke, minter, api.RevokeTokenRequest{Accessor: tok.Accessor}, nil); st != 200 {
		t.Fatalf("minter revokes its own app1 token: %d %s", st, code)
	}
	if st, code := r.do(leader, "DELETE", api.PathPolicies+"/app1", minter, nil, nil); st != 200 {
		t.Fatalf("minter deletes app1: %d %s", st, code)
	}
	var list api.PolicyList
	r.do(leader, "GET", api.PathPolicies, c.Token, nil, &list)
	b, _ := json.Marshal(list.Policies)
	if string(b) != `["app2","delegate","minter","security"]` {
		t.Fatalf("policies after the attempts: %s", b)
	}
}
