package node_test

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/policy"
)

// TestListRevealsNothingOutsidePolicy: walking GET /v1/keys with an
// app1-* token shows only app1 names, in keys and in the next cursor, and
// every page but the last is full, so page sizes reveal no hidden count.
func TestListRevealsNothingOutsidePolicy(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	r := &raw{t: t, c: c, hc: hc}
	leader := c.WaitLeader(t)

	app1, _ := policy.AppPolicy("app1", "app1-*")
	doc, _ := app1.Marshal()
	if st, code := r.do(leader, "PUT", api.PathPolicies+"/app1", c.Token, doc, nil); st != 200 {
		t.Fatalf("policy: %d %s", st, code)
	}
	tok, _ := r.token("app1")
	names := []string{"a-secret", "app1-a", "app1-b", "app2-x", "app2-y", "app2-z", "app1-c", "b-hidden", "z-last"}
	var last api.KeyInfo
	for _, n := range names {
		if st, code := r.do(leader, "POST", api.PathKeys, c.Token, api.CreateKeyRequest{Name: n}, &last); st != 200 {
			t.Fatalf("create %s: %d %s", n, st, code)
		}
	}
	c.WaitApplied(t, last.Index)
	want := []string{"app1-a", "app1-b", "app1-c"}

	for _, limit := range []int{1, 2, 3, 5} {
		for slot := 0; slot < 3; slot++ {
			var seen []string
			after := ""
			for pages := 0; ; pages++ {
				if pages > 20 {
					t.Fatalf("limit %d: cursor does not end", limit)
				}
				q := url.Values{"limit": {strconv.Itoa(limit)}}
				if after != "" {
					q.Set("after", after)
				}
				var page api.KeyList
				if st, code := r.do(slot, "GET", api.PathKeys+"?"+q.Encode(), tok, nil, &page); st != 200 {
					t.Fatalf("list: %d %s", st, code)
				}
				for _, n := range append(slices.Clone(page.Keys), page.Next) {
					if n != "" && !strings.HasPrefix(n, "app1-") {
						t.Fatalf("limit %d: page %d reveals %q (keys %v, next %q)", limit, pages, n, page.Keys, page.Next)
					}
				}
				seen = append(seen, page.Keys...)
				if page.Next == "" {
					break
				}
				if len(page.Keys) != limit {
					t.Fatalf("limit %d: a page with a next cursor holds %d names", limit, len(page.Keys))
				}
				after = page.Next
			}
			if !slices.Equal(seen, want) {
				t.Fatalf("limit %d: walked %v, want %v", limit, seen, want)
			}
		}
	}
	// Starting after a hidden name the caller guessed reveals nothing new.
	var page api.KeyList
	r.do(0, "GET", api.PathKeys+"?limit=1&after=app2-x", tok, nil, &page)
	if len(page.Keys) != 0 || page.Next != "" {
		t.Fatalf("after a hidden name: %v next %q", page.Keys, page.Next)
	}
}
