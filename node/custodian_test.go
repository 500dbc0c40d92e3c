package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/custodian"
	"github.com/keyd/keyd/internal/testcluster"
)

// custodians are n age key pairs, one per custodian.
type custodians struct {
	ids  []*custodian.Identity
	keys []string
}

func newCustodians(t *testing.T, n int) custodians {
	t.Helper()
	var c custodians
	for i := 0; i < n; i++ {
		x, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		id, err := custodian.ParseIdentity([]byte(x.String() + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		c.ids = append(c.ids, id)
		c.keys = append(c.keys, x.Recipient().String())
	}
	return c
}

// open has custodian i decrypt message msg and checks that no other
// custodian can.
func (c custodians) open(t *testing.T, i int, msg string) string {
	t.Helper()
	for j, id := range c.ids {
		pt, err := id.Decrypt(msg)
		if j == i {
			if err != nil {
				t.Fatalf("custodian %d cannot open their own share: %v", i+1, err)
			}
			if !strings.HasPrefix(string(pt), "keyd-share-v1-") && !strings.HasPrefix(string(pt), "kd_") {
				t.Fatalf("custodian %d: decrypted secret has an unexpected form", i+1)
			}
			continue
		}
		if !errors.Is(err, custodian.ErrNotForYou) {
			t.Fatalf("custodian %d opened custodian %d's share: %v", j+1, i+1, err)
		}
	}
	pt, _ := c.ids[i].Decrypt(msg)
	return string(pt)
}

// rawCall sends one request to addr and returns the status and the raw
// reply bytes, so a test can scan exactly what the operator's machine saw.
func rawCall(t *testing.T, c *testcluster.Cluster, method, addr, path, rid string, in any) (int, []byte) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "https://"+addr+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if rid != "" {
		req.Header.Set(api.HeaderRequestID, rid)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	defer hc.CloseIdleConnections()
	var raw []byte
	if in != nil {
		raw, _ = json.Marshal(in)
	}
	var (
		resp *http.Response
		b    []byte
	)
	for {
		resp, err = hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		// An election on a busy machine: follow the new leader (or wait
		// for one), as a client would, with the same request id.
		var e api.Error
		if resp.StatusCode != http.StatusMisdirectedRequest || json.Unmarshal(b, &e) != nil || e.Code != api.CodeNotLeader || ctx.Err() != nil {
			break
		}
		if e.Leader != "" {
			addr = e.Leader
		} else {
			time.Sleep(50 * time.Millisecond)
		}
		if req, err = http.NewRequestWithContext(ctx, method, "https://"+addr+path, bytes.NewReader(raw)); err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if rid != "" {
			req.Header.Set(api.HeaderRequestID, rid)
		}
	}
	return resp.StatusCode, b
}

func decodeAs[T any](t *testing.T, status int, b []byte) *T {
	t.Helper()
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, b)
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("reply: %v", err)
	}
	return &v
}

func apiErr(t *testing.T, status int, b []byte) *api.Error {
	t.Helper()
	var e api.Error
	if status == http.StatusOK || json.Unmarshal(b, &e) != nil || e.Code == "" {
		t.Fatalf("want an error reply, got status %d", status)
	}
	return &e
}

func noPlainShare(t *testing.T, what string, b []byte) {
	t.Helper()
	if bytes.Contains(b, []byte("keyd-share-v1-")) {
		t.Fatalf("%s: the reply holds a share in the clear", what)
	}
}

func leaderAddr(t *testing.T, c *testcluster.Cluster) string {
	t.Helper()
	return c.Slot(c.WaitLeader(t)).APIAddr
}

// TestInitEncryptsSharesToCustodians is hole 2: with five custodian keys
// the init reply holds no share and no admin token in the clear; each
// custodian opens only their own share and any three unseal the cluster.
func TestInitEncryptsSharesToCustodians(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	cust := newCustodians(t, 6) // the sixth is the admin
	addr := leaderAddr(t, c)
	req := api.InitRequest{Custodians: 5, Threshold: 3, CustodianKeys: cust.keys[:5], AdminKey: cust.keys[5]}
	status, raw := rawCall(t, c, "POST", addr, api.PathInit, "init-encrypted-0001", req)
	noPlainShare(t, "init", raw)
	if bytes.Contains(raw, []byte(`"kd_`)) {
		t.Fatal("init: the reply holds the admin token in the clear")
	}
	res := decodeAs[api.InitResponse](t, status, raw)
	if len(res.Shares) != 0 || res.AdminToken != "" || len(res.EncryptedShares) != 5 || res.EncryptedAdminToken == "" {
		t.Fatalf("init reply: %d plain, %d encrypted shares", len(res.Shares), len(res.EncryptedShares))
	}
	shares := make([]string, 5)
	for i, msg := range res.EncryptedShares {
		shares[i] = cust.open(t, i, msg)
	}
	c.Token = cust.open(t, 5, res.EncryptedAdminToken)
	c.WaitApplied(t, res.Index)
	c.Shares = []string{shares[1], shares[3], shares[4]}
	c.Unseal(t, 3)
	if _, err := c.Client(t).CreateKey(ctxT(t), api.CreateKeyRequest{Name: "k"}); err != nil {
		t.Fatalf("admin token from the encrypted reply: %v", err)
	}
}

// TestInitRefusesPlaintextByDefault is hole 2: without custodian keys an
// init must ask for plaintext shares explicitly, and bad key lists are
// refused without initializing anything.
func TestInitRefusesPlaintextByDefault(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 1})
	addr := leaderAddr(t, c)
	cust := newCustodians(t, 3)
	for _, tc := range []struct {
		name string
		req  api.InitRequest
	}{
		{"no keys", api.InitRequest{Custodians: 3, Threshold: 2}},
		{"too few keys", api.InitRequest{Custodians: 3, Threshold: 2, CustodianKeys: cust.keys[:2]}},
		{"same key twice", api.InitRequest{Custodians: 3, Threshold: 2, CustodianKeys: []string{cust.keys[0], cust.keys[1], cust.keys[0]}}},
		{"not a key", api.InitRequest{Custodians: 3, Threshold: 2, CustodianKeys: []string{cust.keys[0], cust.keys[1], "age1nope"}}},
		{"bad admin key", api.InitRequest{Custodians: 3, Threshold: 2, CustodianKeys: cust.keys, AdminKey: "x"}},
		{"keys and plaintext", api.InitRequest{Custodians: 3, Threshold: 2, CustodianKeys: cust.keys, PlaintextShares: true}},
	} {
		status, raw := rawCall(t, c, "POST", addr, api.PathInit, "", tc.req)
		if e := apiErr(t, status, raw); e.Code != api.CodeBadRequest {
			t.Fatalf("%s: got %s, want bad_request", tc.name, e.Code)
		}
		if c.Node(0).Status().Initialized {
			t.Fatalf("%s: the cluster was initialized", tc.name)
		}
	}
	status, raw := rawCall(t, c, "POST", addr, api.PathInit, "", api.InitRequest{Custodians: 3, Threshold: 2, PlaintextShares: true})
	if res := decodeAs[api.InitResponse](t, status, raw); len(res.Shares) != 3 || res.AdminToken == "" {
		t.Fatalf("plaintext init: %d shares", len(res.Shares))
	}
}

// TestInitRetryGetsSameAnswer is hole 3: an init whose reply was lost is
// retried with the same request id and gets the same shares; another
// request id, or the same id with other parameters, does not.
func TestInitRetryGetsSameAnswer(t *testing.T) {
	for _, plaintext := range []bool{false, true} {
		name := "encrypted"
		if plaintext {
			name = "plaintext"
		}
		t.Run(name, func(t *testing.T) {
			var logs syncBuffer
			c := testcluster.New(t, testcluster.Options{Nodes: 3, Log: &logs})
			cust := newCustodians(t, 4)
			req := api.InitRequest{Custodians: 3, Threshold: 2, CustodianKeys: cust.keys[:3], AdminKey: cust.keys[3]}
			if plaintext {
				req = api.InitRequest{Custodians: 3, Threshold: 2, PlaintextShares: true}
			}
			const rid = "init-retry-0123456789abcdef"
			// The first reply is lost on the way back.
			status, first := rawCall(t, c, "POST", leaderAddr(t, c), api.PathInit, rid, req)
			if status != http.StatusOK {
				t.Fatalf("first init: %d %s", status, first)
			}
			// The retry, through any node, gets the same answer.
			for i := 0; i < c.Size(); i++ {
				status, again := rawCall(t, c, "POST", c.Slot(i).APIAddr, api.PathInit, rid, req)
				a := decodeAs[api.InitResponse](t, status, first)
				b := decodeAs[api.InitResponse](t, status, again)
				if a.Fingerprint != b.Fingerprint || strings.Join(a.Shares, ",") != strings.Join(b.Shares, ",") ||
					strings.Join(a.EncryptedShares, ",") != strings.Join(b.EncryptedShares, ",") ||
					a.AdminToken != b.AdminToken || a.EncryptedAdminToken != b.EncryptedAdminToken {
					t.Fatalf("retry through node %d: a different answer", i)
				}
				if b.Index < a.Index {
					t.Fatalf("retry index %d below the init's %d", b.Index, a.Index)
				}
			}
			// Another request id: already initialized, and no secret.
			status, raw := rawCall(t, c, "POST", leaderAddr(t, c), api.PathInit, "init-other-0123456789abcdef", req)
			if e := apiErr(t, status, raw); e.Code != api.CodeAlreadyInitialized {
				t.Fatalf("other request id: got %s", e.Code)
			}
			noPlainShare(t, "other request id", raw)
			// No request id at all.
			status, raw = rawCall(t, c, "POST", leaderAddr(t, c), api.PathInit, "", req)
			if e := apiErr(t, status, raw); e.Code != api.CodeAlreadyInitialized {
				t.Fatalf("no request id: got %s", e.Code)
			}
			// The same id with other parameters.
			other := req
			other.Threshold = 3
			status, raw = rawCall(t, c, "POST", leaderAddr(t, c), api.PathInit, rid, other)
			if e := apiErr(t, status, raw); e.Code != api.CodeConflict && e.Code != api.CodeAlreadyInitialized {
				t.Fatalf("same id, other parameters: got %s", e.Code)
			}
			noPlainShare(t, "same id, other parameters", raw)
			a := decodeAs[api.InitResponse](t, http.StatusOK, first)
			secrets := append(append([]string{a.AdminToken}, a.Shares...), a.EncryptedShares...)
			for _, sec := range secrets {
				if sec != "" && logs.contains(sec) {
					t.Fatal("a share or the admin token reached the log")
				}
			}
			if plaintext && !logs.contains("plaintext_shares") {
				t.Fatal("a plaintext init logged no warning")
			}
			// The request id is the credential of a retry: root on one
			// node's disk must not find it in the state, the Raft log or
			// the audit log and replay the init for its secrets.
			if logs.contains(rid) {
				t.Fatal("the init's request id reached the log")
			}
			for i := 0; i < c.Size(); i++ {
				if f := fileHolding(t, c.Slot(i).Dir, rid); f != "" {
					t.Fatalf("the init's request id is on disk in %s", f)
				}
			}
		})
	}
}

// TestUnsealSaysWhenShareIgnored is hole 6 (server side): a duplicate share,
// or a share sent to an unsealed node, is reported as ignored and why.
func TestUnsealSaysWhenShareIgnored(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 1})
	c.Init(t, 3, 2)
	ctx := ctxT(t)
	cl := c.ClientFor(t, c.Slot(0).APIAddr)
	st, err := cl.UnsealAt(ctx, c.Slot(0).APIAddr, c.Shares[0])
	if err != nil || st.ShareIgnored != "" || st.Progress != 1 {
		t.Fatalf("first share: %v ignored=%q progress=%d", err, st.ShareIgnored, st.Progress)
	}
	st, err = cl.UnsealAt(ctx, c.Slot(0).APIAddr, c.Shares[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.ShareIgnored, "share 1 was already submitted") || st.Progress != 1 {
		t.Fatalf("duplicate share: ignored=%q progress=%d", st.ShareIgnored, st.Progress)
	}
	if st, err = cl.UnsealAt(ctx, c.Slot(0).APIAddr, c.Shares[1]); err != nil || st.Sealed || st.ShareIgnored != "" {
		t.Fatalf("second share: %v sealed=%v ignored=%q", err, st.Sealed, st.ShareIgnored)
	}
	st, err = cl.UnsealAt(ctx, c.Slot(0).APIAddr, c.Shares[2])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.ShareIgnored, "already unsealed") {
		t.Fatalf("share to an unsealed node: ignored=%q", st.ShareIgnored)
	}
	// A forged share is still refused on an unsealed node.
	if _, err := cl.UnsealAt(ctx, c.Slot(0).APIAddr, forgeShare(t, c.Shares[2])); !errors.Is(err, api.ErrInvalidShare) {
		t.Fatalf("forged share to an unsealed node: got %v", err)
	}
}

// rotationCluster is an unsealed 3-node cluster with five plaintext
// shares, threshold 3.
func rotationCluster(t *testing.T) *testcluster.Cluster {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 5, 3)
	c.Unseal(t, 3)
	return c
}

// TestRotateRootStartNeedsShare is hole 1: an anonymous start (no share,
// or a forged one) opens no session, so it neither chooses N and T nor
// blocks the custodians' own rotation.
func TestRotateRootStartNeedsShare(t *testing.T) {
	c := rotationCluster(t)
	addr := leaderAddr(t, c)
	for _, tc := range []struct {
		name  string
		share string
	}{{"no share", ""}, {"forged share", forgeShare(t, c.Shares[0])}, {"garbage", "keyd-share-v1-zzz"}} {
		status, raw := rawCall(t, c, "POST", addr, api.PathRotateRootStart, "", api.RotateRootStart{Custodians: 2, Threshold: 1, PlaintextShares: true, Share: tc.share})
		if status == http.StatusOK {
			t.Fatalf("%s: the attacker started a rotation", tc.name)
		}
		if e := apiErr(t, status, raw); e.Code != api.CodeInvalidShare && e.Code != api.CodeBadRequest {
			t.Fatalf("%s: got %s", tc.name, e.Code)
		}
	}
	status, raw := rawCall(t, c, "GET", addr, api.PathRotateRoot, "", nil)
	if st := decodeAs[api.RotateRootStatus](t, status, raw); st.Started {
		t.Fatal("a refused start left a session open")
	}
	// The custodians are not blocked.
	ctx := ctxT(t)
	st, err := c.Client(t).StartRootRotationWith(ctx, approveStart(t, c, api.RotateRootStart{Custodians: 5, Threshold: 3, PlaintextShares: true, Share: c.Shares[0]}))
	if err != nil || st.Nonce == "" || st.Progress != 1 {
		t.Fatalf("custodian start: %v", err)
	}
}

// TestRotateRootStatusHidesNonce is hole 1: the session's nonce is given
// to the custodian who started it, not to whoever reads the status.
func TestRotateRootStatusHidesNonce(t *testing.T) {
	c := rotationCluster(t)
	cust := newCustodians(t, 5)
	st, err := c.Client(t).StartRootRotationWith(ctxT(t), approveStart(t, c, api.RotateRootStart{Custodians: 5, Threshold: 3, CustodianKeys: cust.keys, Share: c.Shares[0]}))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < c.Size(); i++ {
		var status int
		var raw []byte
		// A follower forwards to the leader; retry through an election.
		c.Eventually(t, 20*time.Second, func() error {
			if status, raw = rawCall(t, c, "GET", c.Slot(i).APIAddr, api.PathRotateRoot, "", nil); status != http.StatusOK {
				return fmt.Errorf("status %d", status)
			}
			return nil
		})
		if bytes.Contains(raw, []byte(st.Nonce)) {
			t.Fatalf("node %d: the status shows the nonce", i)
		}
		got := decodeAs[api.RotateRootStatus](t, status, raw)
		if !got.Started || got.Progress != 1 || got.Required != 3 || strings.Join(got.CustodianKeys, ",") != strings.Join(cust.keys, ",") {
			t.Fatalf("node %d: status %+v", i, got)
		}
	}
}

// TestRotateRootRetryDoesNotLeakToOldCustodian is hole 1: after a
// rotation with plaintext shares, a custodian who knows the nonce and
// holds one old share cannot fetch the new shares; only the completing
// submitter's own retry gets them again.
func TestRotateRootRetryDoesNotLeakToOldCustodian(t *testing.T) {
	c := rotationCluster(t)
	ctx := ctxT(t)
	cl := c.Client(t)
	st, err := cl.StartRootRotationWith(ctx, approveStart(t, c, api.RotateRootStart{Custodians: 5, Threshold: 3, PlaintextShares: true, Share: c.Shares[0]}))
	if err != nil {
		t.Fatal(err)
	}
	var done *api.RotateRootStatus
	completer := -1
	for i := 1; i < 5 && completer < 0; i++ {
		if done, err = cl.SubmitRotationShare(ctx, api.RotateRootSubmit{Nonce: st.Nonce, Share: c.Shares[i], Approve: st.Digest}); err != nil {
			t.Fatal(err)
		}
		if done.Complete {
			completer = i
		}
	}
	if completer < 0 || len(done.Shares) != 5 {
		t.Fatal("the rotation did not complete")
	}
	// Every old custodian other than the completing one, including one
	// whose share the session never saw.
	for i, old := range c.Shares {
		if i == completer {
			continue
		}
		status, raw := rawCall(t, c, "POST", leaderAddr(t, c), api.PathRotateRootSubmit, "", api.RotateRootSubmit{Nonce: st.Nonce, Share: old, Approve: st.Digest})
		noPlainShare(t, "retry with another old share", raw)
		if status == http.StatusOK {
			if got := decodeAs[api.RotateRootStatus](t, status, raw); len(got.Shares) != 0 {
				t.Fatal("an old custodian fetched the new shares")
			}
		}
	}
	// The completing submitter's retry (its reply was lost) gets them.
	again, err := cl.SubmitRotationShare(ctx, api.RotateRootSubmit{Nonce: st.Nonce, Share: c.Shares[completer], Approve: st.Digest})
	if err != nil || strings.Join(again.Shares, ",") != strings.Join(done.Shares, ",") {
		t.Fatalf("completing submitter's retry: %v", err)
	}
}

// TestRotateRootRefusedWhileSealed is hole 1: a sealed cluster starts no
// rotation.
func TestRotateRootRefusedWhileSealed(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 1})
	c.Init(t, 3, 2)
	// No approval digest: a sealed node answers sealed before anything else
	// (and its rotation status is refused too, so none can be computed).
	_, err := c.Client(t).StartRootRotationWith(ctxT(t), api.RotateRootStart{Custodians: 3, Threshold: 2, PlaintextShares: true, Share: c.Shares[0]})
	if !errors.Is(err, api.ErrSealed) {
		t.Fatalf("start on a sealed cluster: got %v, want sealed", err)
	}
	status, raw := rawCall(t, c, "GET", c.Slot(0).APIAddr, api.PathRotateRoot, "", nil)
	if status == http.StatusOK {
		if st := decodeAs[api.RotateRootStatus](t, status, raw); st.Started {
			t.Fatal("a session opened on a sealed cluster")
		}
	}
}

// TestRotateRootCancel: a holder of a current share ends a session (one
// opened with recipients the others do not accept, say); a forged share
// cannot.
func TestRotateRootCancel(t *testing.T) {
	c := rotationCluster(t)
	ctx := ctxT(t)
	cl := c.Client(t)
	st, err := cl.StartRootRotationWith(ctx, approveStart(t, c, api.RotateRootStart{Custodians: 5, Threshold: 3, PlaintextShares: true, Share: c.Shares[0]}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CancelRootRotation(ctx, forgeShare(t, c.Shares[1])); !errors.Is(err, api.ErrInvalidShare) {
		t.Fatalf("cancel with a forged share: got %v", err)
	}
	if _, err := cl.CancelRootRotation(ctx, c.Shares[1]); err != nil {
		t.Fatal(err)
	}
	if got, err := cl.RotateRootStatus(ctx); err != nil || got.Started {
		t.Fatalf("after cancel: %v started=%v", err, got != nil && got.Started)
	}
	if _, err := cl.SubmitRotationShare(ctx, api.RotateRootSubmit{Nonce: st.Nonce, Share: c.Shares[1], Approve: st.Digest}); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("submit to a cancelled session: got %v", err)
	}
}

// TestRotateRootEncryptsShares is hole 2 for rotation: with five new
// custodian keys no reply holds a new share in the clear, any submitter
// may fetch the encrypted result again, each custodian opens only their
// own and any three unseal.
func TestRotateRootEncryptsShares(t *testing.T) {
	c := rotationCluster(t)
	cust := newCustodians(t, 5)
	addr := leaderAddr(t, c)
	status, raw := rawCall(t, c, "POST", addr, api.PathRotateRootStart, "", approveStart(t, c, api.RotateRootStart{Custodians: 5, Threshold: 3, CustodianKeys: cust.keys, Share: c.Shares[4]}))
	st := decodeAs[api.RotateRootStatus](t, status, raw)
	_, raw = rawCall(t, c, "POST", addr, api.PathRotateRootSubmit, "", api.RotateRootSubmit{Nonce: st.Nonce, Share: c.Shares[3], Approve: st.Digest})
	noPlainShare(t, "second submission", raw)
	status, raw = rawCall(t, c, "POST", addr, api.PathRotateRootSubmit, "", api.RotateRootSubmit{Nonce: st.Nonce, Share: c.Shares[0], Approve: st.Digest})
	noPlainShare(t, "completing submission", raw)
	done := decodeAs[api.RotateRootStatus](t, status, raw)
	if !done.Complete || len(done.EncryptedShares) != 5 || len(done.Shares) != 0 {
		t.Fatalf("rotation reply: complete=%v encrypted=%d plain=%d", done.Complete, len(done.EncryptedShares), len(done.Shares))
	}
	status, raw = rawCall(t, c, "POST", addr, api.PathRotateRootSubmit, "", api.RotateRootSubmit{Nonce: st.Nonce, Share: c.Shares[3], Approve: st.Digest})
	noPlainShare(t, "another submitter's retry", raw)
	if again := decodeAs[api.RotateRootStatus](t, status, raw); strings.Join(again.EncryptedShares, ",") != strings.Join(done.EncryptedShares, ",") {
		t.Fatal("another submitter's retry: a different answer")
	}
	shares := make([]string, 5)
	for i, msg := range done.EncryptedShares {
		shares[i] = cust.open(t, i, msg)
	}
	c.WaitApplied(t, done.Index)
	ctx := ctxT(t)
	if err := c.Client(t).Seal(ctx); err != nil {
		t.Fatal(err)
	}
	c.Eventually(t, 20*time.Second, func() error {
		for i := 0; i < c.Size(); i++ {
			if !c.Node(i).Sealed() {
				return errors.New("still unsealed")
			}
		}
		return nil
	})
	c.Shares = []string{shares[0], shares[2], shares[4]}
	c.Unseal(t, 3)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) contains(sub string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Contains(s.b.String(), sub)
}

// fileHolding returns the first file under dir whose bytes contain s, or "".
func fileHolding(t *testing.T, dir, s string) string {
	t.Helper()
	found := ""
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || found != "" {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(s)) {
			found = path
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
