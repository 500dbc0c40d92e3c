package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

// doRID is raw.do with a request id.
func (r *raw) doRID(i int, method, path, token, rid string, body any, out any) (int, api.Code) {
	r.t.Helper()
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "https://"+r.c.Slot(i).APIAddr+path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set(api.HeaderRequestID, rid)
	resp, err := r.hc.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		_ = json.Unmarshal(data, &e)
		return resp.StatusCode, e.Code
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			r.t.Fatalf("decode %s: %v", path, err)
		}
	}
	return resp.StatusCode, ""
}

// TestRequestIDScope: a request id deduplicates only the same caller's
// same request. Reused by the same caller for another key, operation or
// body it is a 409 conflict that changes nothing and proposes nothing;
// another caller's identical id is independent; a true retry gets the
// first answer.
func TestRequestIDScope(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	r := &raw{t: t, c: c, hc: hc}
	leader := c.WaitLeader(t)
	a := c.Token
	b, _ := r.token("admin")
	for _, n := range []string{"k1", "k2"} {
		if st, code := r.do(leader, "POST", api.PathKeys, a, api.CreateKeyRequest{Name: n}, nil); st != 200 {
			t.Fatalf("create %s: %d %s", n, st, code)
		}
	}
	state := func(name string) string {
		var info api.KeyInfo
		if st, code := r.do(leader, "GET", api.KeyPath(name), a, nil, &info); st != 200 {
			return string(code)
		}
		return info.State
	}

	var first api.KeyInfo
	if st, code := r.doRID(leader, "POST", api.KeyPath("k1", "disable"), a, "r1", nil, &first); st != 200 {
		t.Fatalf("disable k1: %d %s", st, code)
	}
	// Every node caught up with the leader (not only with the disable), so
	// entries committed before the reuses do not show up as their effect.
	c.WaitApplied(t, max(first.Index, c.Node(leader).AppliedIndex()))
	before := appliedIndexes(c)
	reuses := []struct {
		name, path string
		body       any
	}{
		{"another key", api.KeyPath("k2", "disable"), nil},
		{"another operation", api.KeyPath("k1", "enable"), nil},
		{"another operation and body", api.PathKeys, api.CreateKeyRequest{Name: "k9"}},
		{"a token create", api.PathTokens, api.CreateTokenRequest{Policies: []string{"admin"}}},
	}
	for _, u := range reuses {
		if st, code := r.doRID(leader, "POST", u.path, a, "r1", u.body, nil); st != http.StatusConflict || code != api.CodeConflict {
			t.Errorf("same caller reuses the id for %s: %d %s, want 409 conflict", u.name, st, code)
		}
	}
	after := appliedIndexes(c)
	for i := range before {
		if before[i] != after[i] {
			t.Errorf("node %d: a reused request id moved the applied index %d -> %d", i, before[i], after[i])
		}
	}
	if state("k1") != "disabled" || state("k2") != "enabled" || state("k9") != string(api.CodeNotFound) {
		t.Fatalf("a reused id changed state: k1 %s k2 %s k9 %s", state("k1"), state("k2"), state("k9"))
	}
	// A true retry gets the first answer.
	var again api.KeyInfo
	if st, code := r.doRID(leader, "POST", api.KeyPath("k1", "disable"), a, "r1", nil, &again); st != 200 || again.Index != first.Index {
		t.Fatalf("retry: %d %s index %d, want 200 index %d", st, code, again.Index, first.Index)
	}
	// Through a follower too.
	if st, code := r.doRID((leader+1)%3, "POST", api.KeyPath("k2", "disable"), a, "r1", nil, nil); st != http.StatusConflict {
		t.Fatalf("reuse through a follower: %d %s", st, code)
	}
	// Another caller's id is its own.
	if st, code := r.doRID(leader, "POST", api.KeyPath("k2", "disable"), b, "r1", nil, nil); st != 200 {
		t.Fatalf("another caller, same id: %d %s", st, code)
	}
	if state("k2") != "disabled" {
		t.Fatal("another caller's write with a used id did nothing")
	}
	// Creates: the id binds the name and the body.
	if st, code := r.doRID(leader, "POST", api.PathKeys, a, "r2", api.CreateKeyRequest{Name: "k3"}, nil); st != 200 {
		t.Fatalf("create k3: %d %s", st, code)
	}
	if st, code := r.doRID(leader, "POST", api.PathKeys, a, "r2", api.CreateKeyRequest{Name: "k4"}, nil); st != http.StatusConflict {
		t.Fatalf("create k4 with k3's id: %d %s", st, code)
	}
	if st, code := r.doRID(leader, "POST", api.PathKeys, a, "r2", api.CreateKeyRequest{Name: "k3", Type: "ed25519"}, nil); st != http.StatusConflict {
		t.Fatalf("create k3 with another body and the same id: %d %s", st, code)
	}
	if state("k4") != string(api.CodeNotFound) {
		t.Fatal("k4 was created")
	}
}
