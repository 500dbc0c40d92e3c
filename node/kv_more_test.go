package node_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/audit"
	"github.com/keyd/keyd/internal/testcluster"
)

// TestKVRetriesForwardingAndAudit: a retried request id writes one
// version; a write sent to a follower is forwarded; bad input is a typed
// error that changes nothing; the audit log names path and version and
// holds no value.
func TestKVRetriesForwardingAndAudit(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), testcluster.Scaled(60*time.Second))
	defer cancel()
	admin := c.Client(t)
	const secret = "AUDIT-PLAINTEXT-5a8e"

	rctx := testclientRID(ctx, "kv-retry-1")
	w1, err := admin.KVPut(rctx, "svc/api", map[string]string{"token": secret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w2, err := admin.KVPut(rctx, "svc/api", map[string]string{"token": secret}, nil)
	if err != nil || w2.Index != w1.Index {
		t.Fatalf("retry: %+v %v, want index %d", w2, err, w1.Index)
	}
	if m, err := admin.KVMetadata(ctx, "svc/api"); err != nil || m.CurrentVersion != 1 {
		t.Fatalf("after a retried write: %+v %v", m, err)
	}

	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	t.Cleanup(hc.CloseIdleConnections)
	r := &raw{t: t, c: c, hc: hc}
	leader := c.WaitLeader(t)
	follower := (leader + 1) % c.Size()
	var out api.KVSecret
	if st, code := r.do(follower, "PUT", api.PathKV+"svc/api", c.Token, []byte(`{"data":{"token":"v2"},"cas":1}`), &out); st != 200 || out.Version != 2 {
		t.Fatalf("write through a follower: %d %s %+v", st, code, out)
	}
	c.WaitApplied(t, out.Index)
	for _, tc := range []struct {
		method, path, body string
		status             int
		code               api.Code
	}{
		{"PUT", api.PathKV + "svc/api", `{"data":{"a":"b"},"extra":1}`, 400, api.CodeBadRequest},
		{"PUT", api.PathKV + "svc/api", `{"data":{"":"b"}}`, 400, api.CodeBadRequest},
		{"PUT", api.PathKV + "svc/api", `{"data":{"a":1}}`, 400, api.CodeBadRequest},
		{"PUT", api.PathKV + "svc/api", `{"data":{"a":"b"},"cas":-1}`, 400, api.CodeBadRequest},
		// Go's ServeMux redirects "svc//api" and "svc/./api" to the
		// clean path (307) before any handler runs: nothing is written.
		{"PUT", api.PathKV + "svc//api", `{"data":{"a":"b"}}`, 307, ""},
		{"PUT", api.PathKV + "svc/../api", `{"data":{"a":"b"}}`, 307, ""},
		{"PUT", api.PathKV + "svc/a%20b", `{"data":{"a":"b"}}`, 400, api.CodeBadRequest},
		{"PUT", api.PathKV + "svc/api", `{"data":{"a":"` + strings.Repeat("x", 90<<10) + `"}}`, 413, api.CodeTooLarge},
		{"GET", api.PathKV + "svc/api?version=abc", "", 400, api.CodeBadRequest},
		{"DELETE", api.PathKV + "svc/api?versions=0", "", 400, api.CodeBadRequest},
		{"POST", api.PathKVDestroy + "svc/api", `{"versions":[]}`, 400, api.CodeBadRequest},
		{"POST", api.PathKVDestroy + "svc/api", `{"versions":[1,77]}`, 404, api.CodeResourceNotFound},
		{"PUT", api.PathKVMeta + "svc/api", `{"max_versions":1000}`, 400, api.CodeBadRequest},
		{"GET", api.PathKV + "svc/none", "", 404, api.CodeResourceNotFound},
		{"GET", api.PathKV + "svc/api", "", 401, api.CodeUnauthorized},
	} {
		tok := c.Token
		if tc.status == 401 {
			tok = "kd_not-a-token"
		}
		var body []byte
		if tc.body != "" {
			body = []byte(tc.body)
		}
		if st, code := r.do(follower, tc.method, tc.path, tok, body, nil); st != tc.status || code != tc.code {
			t.Errorf("%s %s %.40s: %d %s, want %d %s", tc.method, tc.path, tc.body, st, code, tc.status, tc.code)
		}
	}
	m, err := admin.KVMetadata(ctx, "svc/api")
	if err != nil || m.CurrentVersion != 2 || len(m.Versions) != 2 || m.Versions[0].Destroyed {
		t.Fatalf("bad input changed the secret: %+v %v", m, err)
	}
	if got, err := admin.KVGet(ctx, "svc/api", 1); err != nil || got.Data["token"] != secret {
		t.Fatalf("v1: %+v %v", got, err)
	}

	// The leader audited the writes; the reads were audited where served.
	found := map[string]bool{}
	for i := range c.Size() {
		for _, line := range auditLines(t, c.Slot(i).Dir) {
			if strings.Contains(string(line), secret) {
				t.Fatalf("node %d: audit line holds the value: %s", i, line)
			}
			var rec audit.Record
			if err := json.Unmarshal(line, &rec); err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(rec.Op, "kv.") && rec.Target == "kv:svc/api" && rec.Outcome == "ok" {
				found[rec.Op] = true
			}
		}
	}
	for _, op := range []string{"kv.write", "kv.read", "kv.metadata_read"} {
		if !found[op] {
			t.Errorf("no ok audit record %s for kv:svc/api (found %v)", op, found)
		}
	}
}

// TestKVRequestDigestBlinded: the request table (replicated, on disk)
// must not hold a plain SHA-256 over a KV write's body, which a
// dictionary could invert for a weak secret.
func TestKVRequestDigestBlinded(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 1})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	body := []byte(`{"data":{"password":"hunter2"}}`)
	req, err := http.NewRequest("PUT", "https://"+c.Slot(0).APIAddr+api.PathKV+"svc/weak", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set(api.HeaderRequestID, "digest-probe-1")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("write: %d", resp.StatusCode)
	}
	// The digest as httpapi computes it (requestDigest).
	h := sha256.New()
	for _, part := range [][]byte{[]byte("kv.write"), []byte("PUT"), []byte(api.PathKV + "svc/weak"), nil, body} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	plain := hex.EncodeToString(h.Sum(nil))
	var dump bytes.Buffer
	if err := c.Node(0).DumpState(&dump); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dump.String(), hex.EncodeToString([]byte("digest-probe-1"))) {
		t.Fatal("request id not in the request table: the check below would prove nothing")
	}
	if strings.Contains(dump.String(), plain) {
		t.Fatal("the request table holds the plain digest of a body with a secret")
	}
}

// TestTokenizeDisabledKey: disabling a key stops both tokenize and
// detokenize at once; enabling it again brings its tokens back.
func TestTokenizeDisabledKey(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 1})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), testcluster.Scaled(30*time.Second))
	defer cancel()
	cl := c.Client(t)
	if _, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: "ssn"}); err != nil {
		t.Fatal(err)
	}
	tr, err := cl.Tokenize(ctx, "ssn", "078-05-1120", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.DisableKey(ctx, "ssn"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Detokenize(ctx, "ssn", tr.Token); !errors.Is(err, api.ErrKeyDisabled) {
		t.Fatalf("detokenize on a disabled key: %v", err)
	}
	if _, err := cl.Tokenize(ctx, "ssn", "x", ""); !errors.Is(err, api.ErrKeyDisabled) {
		t.Fatalf("tokenize on a disabled key: %v", err)
	}
	if _, err := cl.EnableKey(ctx, "ssn"); err != nil {
		t.Fatal(err)
	}
	if v, err := cl.Detokenize(ctx, "ssn", tr.Token); err != nil || v != "078-05-1120" {
		t.Fatalf("after enable: %q %v", v, err)
	}
	for _, bad := range []string{"", "kdt_", tr.Token + "A", "xyz" + tr.Token[3:], strings.ToUpper(tr.Token)} {
		if _, err := cl.Detokenize(ctx, "ssn", bad); !errors.Is(err, api.ErrResourceNotFound) {
			t.Errorf("detokenize %q: %v, want not found", bad, err)
		}
	}
	if _, err := cl.Tokenize(ctx, "ssn", strings.Repeat("x", api.MaxTokenizeValue+1), ""); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("oversized value: %v", err)
	}
	if _, err := cl.Tokenize(ctx, "ssn", "x", "-1h"); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("negative ttl: %v", err)
	}
	if _, err := cl.Tokenize(ctx, "nokey", "x", ""); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
}
