package node_test

import (
	"net/http"
	"slices"
	"testing"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

// TestPolicyReadRevealsNoOtherApp is the app token as attacker: reading
// another application's policy would name that application's keys. An app
// token reads its own policies and the built-ins; another stored policy
// is not_found, exactly like a missing one, and the list omits it.
func TestPolicyReadRevealsNoOtherApp(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 1})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	r := &raw{t: t, c: c, hc: hc}
	for _, name := range []string{"app1", "app2"} {
		doc := `{"rules":[{"effect":"allow","capabilities":["encrypt","decrypt"],"keys":["` + name + `-payroll-*"]}]}`
		if st, code := r.do(0, "PUT", api.PathPolicies+"/"+name, c.Token, []byte(doc), nil); st != 200 {
			t.Fatalf("write %s: %d %s", name, st, code)
		}
	}
	app1, _ := r.token("app1")

	if st, code := r.do(0, "GET", api.PathPolicies+"/app1", app1, nil, nil); st != 200 {
		t.Fatalf("app1 reads its own policy: %d %s", st, code)
	}
	if st, code := r.do(0, "GET", api.PathPolicies+"/admin", app1, nil, nil); st != 200 {
		t.Fatalf("app1 reads a built-in: %d %s", st, code)
	}
	stOther, codeOther := r.do(0, "GET", api.PathPolicies+"/app2", app1, nil, nil)
	stMissing, codeMissing := r.do(0, "GET", api.PathPolicies+"/nope", app1, nil, nil)
	if stOther != 404 || codeOther != api.CodeResourceNotFound || stOther != stMissing || codeOther != codeMissing {
		t.Fatalf("app1 reads app2: %d %s (a missing policy: %d %s), want the same not_found", stOther, codeOther, stMissing, codeMissing)
	}
	var list api.PolicyList
	if st, code := r.do(0, "GET", api.PathPolicies, app1, nil, &list); st != 200 {
		t.Fatalf("list: %d %s", st, code)
	}
	if !slices.Equal(list.Policies, []string{"app1"}) {
		t.Fatalf("app1 lists %v, want only [app1]", list.Policies)
	}
	// The admin still sees everything.
	if st, code := r.do(0, "GET", api.PathPolicies, c.Token, nil, &list); st != 200 || !slices.Equal(list.Policies, []string{"app1", "app2"}) {
		t.Fatalf("admin lists %v (%d %s)", list.Policies, st, code)
	}
}
