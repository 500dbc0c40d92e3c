package client

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
)

// fakeReply is a write's recorded outcome, replayed for a repeated id.
type fakeReply struct {
	body  []byte // JSON, or a 3-digit status followed by an api.Error
	index uint64
}

// seenReq is one request as the fake node received it.
type seenReq struct {
	Method, Path string
	RequestID    string
	MinIndex     string
	Auth         string
	Body         []byte
}

// fakeNode is a small in-memory keyd node over TLS. It implements the
// routes the tests exercise with fake (non-)cryptography. Hook, when set,
// sees each request first and may answer it itself.
type fakeNode struct {
	srv *httptest.Server

	mu sync.Mutex
	// Hook intercepts a request; returning true means it was answered.
	hook func(n *fakeNode, w http.ResponseWriter, r *http.Request, body []byte) bool
	// statusLeader is reported as the leader by GET /v1/sys/status.
	statusLeader string
	peers        []api.Peer
	// cluster is served by GET /v1/sys/cluster; nil answers 404 like a
	// node that predates the route.
	cluster *api.ClusterInfo
	// indexInBody / indexInHeader choose where write replies carry the index.
	noIndexHeader, noIndexBody bool
	// dropAfterApply drops the connection of the next N writes after they
	// were applied, so only the reply is lost.
	dropAfterApply int

	seen    []seenReq
	admin   fakeAdmin // policies, tokens, identities: see admin_test.go
	index   uint64
	keys    map[string]*api.KeyInfo
	applied map[string]int // request id -> times applied
	replies map[string]fakeReply
	release chan struct{} // closed at cleanup; unblocks hanging handlers
}

func newFakeNode(t *testing.T) *fakeNode {
	t.Helper()
	n := &fakeNode{
		index:   40,
		keys:    make(map[string]*api.KeyInfo),
		applied: make(map[string]int),
		replies: make(map[string]fakeReply),
		release: make(chan struct{}),
	}
	n.srv = httptest.NewTLSServer(http.HandlerFunc(n.serve))
	t.Cleanup(func() {
		close(n.release)
		n.srv.Close()
	})
	return n
}

// addr is the node's base URL.
func (n *fakeNode) addr() string { return n.srv.URL }

// hostPort is the node's address without scheme.
func (n *fakeNode) hostPort() string { return strings.TrimPrefix(n.srv.URL, "https://") }

func (n *fakeNode) setHook(h func(n *fakeNode, w http.ResponseWriter, r *http.Request, body []byte) bool) {
	n.mu.Lock()
	n.hook = h
	n.mu.Unlock()
}

// requests returns the requests seen with method and path prefix.
func (n *fakeNode) requests(method, pathPrefix string) []seenReq {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []seenReq
	for _, s := range n.seen {
		if s.Method == method && strings.HasPrefix(s.Path, pathPrefix) {
			out = append(out, s)
		}
	}
	return out
}

// tlsConfigFor trusts the certificates of the given fake nodes.
func tlsConfigFor(nodes ...*fakeNode) *tls.Config {
	pool := x509.NewCertPool()
	for _, n := range nodes {
		pool.AddCert(n.srv.Certificate())
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// newTestClient builds a client for the given seeds trusting all nodes.
func newTestClient(t *testing.T, cfg Config, nodes ...*fakeNode) *Client {
	t.Helper()
	if cfg.TLS == nil {
		cfg.TLS = tlsConfigFor(nodes...)
	}
	if cfg.Addrs == nil {
		for _, n := range nodes {
			cfg.Addrs = append(cfg.Addrs, n.addr())
		}
	}
	if cfg.Token == "" {
		cfg.Token = "s3cret-token"
	}
	c, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code api.Code, msg, leader string) {
	writeJSON(w, api.StatusFor(code), &api.Error{Code: code, Message: msg, Leader: leader})
}

// dropConn makes the server close the connection without a reply.
func dropConn() { panic(http.ErrAbortHandler) }

func isWrite(r *http.Request) bool {
	if isAdminWrite(r) {
		return true
	}
	if r.Method != http.MethodPost {
		return false
	}
	switch r.URL.Path {
	case api.PathInit, api.PathSeal, api.PathKeys, api.PathRemove:
		return true
	case api.PathUnseal:
		return false
	}
	i := strings.LastIndexByte(r.URL.Path, '/')
	switch r.URL.Path[i+1:] {
	case "rotate", "enable", "disable", "config", "schedule-deletion", "cancel-deletion":
		return true
	}
	return false
}

func (n *fakeNode) serve(w http.ResponseWriter, r *http.Request) {
	var body bytes.Buffer
	body.ReadFrom(r.Body)
	n.mu.Lock()
	n.seen = append(n.seen, seenReq{
		Method:    r.Method,
		Path:      r.URL.RequestURI(),
		RequestID: r.Header.Get(api.HeaderRequestID),
		MinIndex:  r.Header.Get(api.HeaderMinIndex),
		Auth:      r.Header.Get(api.HeaderAuthorization),
		Body:      body.Bytes(),
	})
	hook := n.hook
	n.mu.Unlock()
	if hook != nil && hook(n, w, r, body.Bytes()) {
		return
	}
	if isWrite(r) {
		n.write(w, r, body.Bytes())
		return
	}
	n.read(w, r, body.Bytes())
}

// write applies a write once per request id and replays the first reply
// for a repeated id, like keyd's FSM dedup.
func (n *fakeNode) write(w http.ResponseWriter, r *http.Request, body []byte) {
	id := r.Header.Get(api.HeaderRequestID)
	n.mu.Lock()
	fr, dup := n.replies[id]
	if dup && r.URL.Path == api.PathTokens {
		fr.body = tokenReplayConflict // like keyd: a token is shown once
	}
	if !dup {
		n.index++
		fr = fakeReply{body: n.applyLocked(r, body, n.index), index: n.index}
		n.applied[id]++
		if id != "" {
			n.replies[id] = fr
		}
	}
	reply := fr.body
	drop := n.dropAfterApply > 0
	if drop {
		n.dropAfterApply--
	}
	noHeader := n.noIndexHeader
	n.mu.Unlock()
	if drop {
		dropConn()
	}
	if reply[0] != '{' { // an encoded error: status byte prefix
		status, _ := strconv.Atoi(string(reply[:3]))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(reply[3:])
		return
	}
	if !noHeader {
		w.Header().Set(api.HeaderIndex, strconv.FormatUint(fr.index, 10))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(reply)
}

func (n *fakeNode) applyLocked(r *http.Request, body []byte, idx uint64) []byte {
	fail := func(code api.Code, msg string) []byte {
		b, _ := json.Marshal(&api.Error{Code: code, Message: msg})
		return append([]byte(strconv.Itoa(api.StatusFor(code))), b...)
	}
	ok := func(v any) []byte {
		b, _ := json.Marshal(v)
		if n.noIndexBody { // strip the body index
			var m map[string]any
			json.Unmarshal(b, &m)
			delete(m, "index")
			b, _ = json.Marshal(m)
		}
		return b
	}
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	switch r.URL.Path {
	case api.PathInit:
		return ok(&api.InitResponse{Shares: []string{"s1", "s2", "s3"}, AdminToken: "adm", Index: idx})
	case api.PathSeal:
		return ok(&api.WriteResponse{Index: idx})
	case api.PathRemove:
		var req api.RemoveRequest
		if err := json.Unmarshal(body, &req); err != nil || req.NodeID == "" {
			return fail(api.CodeBadRequest, "bad remove request")
		}
		return ok(&api.WriteResponse{Index: idx})
	case api.PathKeys:
		var req api.CreateKeyRequest
		if err := json.Unmarshal(body, &req); err != nil || !api.ValidKeyName(req.Name) {
			return fail(api.CodeBadRequest, "bad create request")
		}
		if _, exists := n.keys[req.Name]; exists {
			return fail(api.CodeExists, "key exists")
		}
		typ := req.Type
		if typ == "" {
			typ = "aes256-gcm"
		}
		k := &api.KeyInfo{Name: req.Name, Type: typ, State: api.KeyEnabled, LatestVersion: 1, MinDecryptionVersion: 1,
			CreatedAt: now, RotatedAt: now, Versions: []api.KeyVersion{{Version: 1, CreatedAt: now}}}
		n.keys[req.Name] = k
		cp := *k
		cp.Index = idx
		return ok(&cp)
	}
	if b, handled := n.applyAdminLocked(r, body, idx, ok, fail); handled {
		return b
	}
	name, op := splitKeyPath(r.URL.Path)
	k, found := n.keys[name]
	if !found {
		return fail(api.CodeNotFound, "key not found")
	}
	switch op {
	case "rotate":
		k.LatestVersion++
		k.Versions = append(k.Versions, api.KeyVersion{Version: k.LatestVersion, CreatedAt: now})
	case "enable", "cancel-deletion":
		k.State = api.KeyEnabled
		k.DeletionAt = nil
	case "disable":
		k.State = api.KeyDisabled
	case "schedule-deletion":
		var req api.ScheduleDeletionRequest
		json.Unmarshal(body, &req)
		d, err := time.ParseDuration(req.PendingWindow)
		if req.PendingWindow == "" {
			d, err = 168*time.Hour, nil
		}
		if err != nil || d < 24*time.Hour || d > 720*time.Hour {
			return fail(api.CodeBadRequest, "bad pending window")
		}
		at := now.Add(d)
		k.State, k.DeletionAt = api.KeyPendingDeletion, &at
	case "config":
		var req api.KeyConfigRequest
		json.Unmarshal(body, &req)
		if req.MinDecryptionVersion != nil {
			k.MinDecryptionVersion = *req.MinDecryptionVersion
		}
		if req.RotationPeriod != nil {
			k.RotationPeriod = *req.RotationPeriod
		}
	}
	cp := *k
	cp.Index = idx
	return ok(&cp)
}

// splitKeyPath splits /v1/keys/{name}[/op...] into name and op.
func splitKeyPath(p string) (name, op string) {
	rest := strings.TrimPrefix(p, api.PathKeys+"/")
	name, op, _ = strings.Cut(rest, "/")
	return name, op
}

// fakeSeal is the fake "ciphertext": not encryption, just a reversible,
// recognisable encoding so round trips can be checked.
func fakeSeal(pt, ctx []byte) string {
	return "keyd:v1:" + base64.StdEncoding.EncodeToString(append(append([]byte{}, ctx...), append([]byte{0}, pt...)...))
}

func fakeOpen(ct string, ctx []byte) ([]byte, bool) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(ct, "keyd:v1:"))
	if err != nil || !strings.HasPrefix(ct, "keyd:v1:") || !bytes.HasPrefix(b, append(append([]byte{}, ctx...), 0)) {
		return nil, false
	}
	return b[len(ctx)+1:], true
}

func (n *fakeNode) read(w http.ResponseWriter, r *http.Request, body []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == api.PathHealth:
		writeJSON(w, 200, &api.Health{NodeID: n.hostPort(), Initialized: true, Applied: n.index})
		return
	case r.Method == http.MethodGet && r.URL.Path == api.PathStatus:
		writeJSON(w, 200, &api.SealStatus{NodeID: n.hostPort(), Initialized: true, Leader: n.statusLeader,
			RaftState: "Follower", Applied: n.index, Peers: n.peers})
		return
	case r.Method == http.MethodGet && r.URL.Path == api.PathCluster:
		switch {
		case r.Header.Get(api.HeaderAuthorization) == "":
			writeErr(w, api.CodeUnauthorized, "missing token", "")
		case n.cluster == nil:
			http.NotFound(w, r)
		default:
			writeJSON(w, 200, n.cluster)
		}
		return
	case r.Method == http.MethodPost && r.URL.Path == api.PathJoin:
		var req api.JoinRequest
		if json.Unmarshal(body, &req) != nil || len(req.Seeds) == 0 {
			writeErr(w, api.CodeBadRequest, "no seeds", "")
			return
		}
		writeJSON(w, 200, &api.JoinResponse{Contacted: len(req.Seeds)})
		return
	case r.Method == http.MethodPost && r.URL.Path == api.PathUnseal:
		var req api.UnsealRequest
		if json.Unmarshal(body, &req) != nil || req.Share == "" || req.Share == "bad-share" {
			writeErr(w, api.CodeInvalidShare, "share rejected", "")
			return
		}
		writeJSON(w, 200, &api.SealStatus{NodeID: n.hostPort(), Initialized: true, Progress: 1, Threshold: 2, Sealed: true})
		return
	case r.Method == http.MethodGet && r.URL.Path == api.PathKeys:
		names := make([]string, 0, len(n.keys))
		after := r.URL.Query().Get("after")
		for k := range n.keys {
			if k > after {
				names = append(names, k)
			}
		}
		sort.Strings(names)
		l := &api.KeyList{Index: n.index}
		if lim, _ := strconv.Atoi(r.URL.Query().Get("limit")); lim > 0 && len(names) > lim {
			names, l.Next = names[:lim], names[lim-1]
		}
		l.Keys = names
		writeJSON(w, 200, l)
		return
	}
	if n.readAdminLocked(w, r) {
		return
	}
	name, op := splitKeyPath(r.URL.Path)
	k, found := n.keys[name]
	if !found {
		writeErr(w, api.CodeNotFound, "key not found", "")
		return
	}
	if r.Method == http.MethodGet && op == "" {
		cp := *k
		cp.Index = n.index
		writeJSON(w, 200, &cp)
		return
	}
	if k.State != api.KeyEnabled {
		writeErr(w, api.CodeKeyDisabled, "key is disabled", "")
		return
	}
	switch op {
	case "encrypt":
		var req api.EncryptRequest
		json.Unmarshal(body, &req)
		writeJSON(w, 200, &api.EncryptResponse{Ciphertext: fakeSeal(req.Plaintext, req.Context), Version: 1})
	case "decrypt", "reencrypt":
		var req api.DecryptRequest
		json.Unmarshal(body, &req)
		pt, ok := fakeOpen(req.Ciphertext, req.Context)
		if !ok {
			writeErr(w, api.CodeDecrypt, "decryption failed", "")
			return
		}
		if op == "reencrypt" {
			writeJSON(w, 200, &api.EncryptResponse{Ciphertext: fakeSeal(pt, req.Context), Version: 1})
			return
		}
		writeJSON(w, 200, &api.DecryptResponse{Plaintext: pt, Version: 1})
	case "datakey":
		var req api.DataKeyRequest
		json.Unmarshal(body, &req)
		if req.Bytes == 0 {
			req.Bytes = 32
		}
		dk := make([]byte, req.Bytes)
		rand.Read(dk)
		resp := &api.DataKeyResponse{Ciphertext: fakeSeal(dk, req.Context), Version: 1}
		if !req.WithoutPlaintext {
			resp.Plaintext = dk
		}
		writeJSON(w, 200, resp)
	case "sign", "hmac":
		var req api.SignRequest
		json.Unmarshal(body, &req)
		writeJSON(w, 200, &api.SignResponse{Signature: fakeSeal(req.Message, []byte(op)), Version: 1})
	case "verify", "verify-hmac":
		var req api.VerifyRequest
		json.Unmarshal(body, &req)
		kind := strings.TrimPrefix(op, "verify-")
		if op == "verify" {
			kind = "sign"
		}
		msg, ok := fakeOpen(req.Signature, []byte(kind))
		writeJSON(w, 200, &api.VerifyResponse{Valid: ok && bytes.Equal(msg, req.Message)})
	case "batch/encrypt":
		var req api.BatchEncryptRequest
		json.Unmarshal(body, &req)
		var resp api.BatchEncryptResponse
		for _, it := range req.Items {
			resp.Results = append(resp.Results, api.BatchEncryptItem{Ciphertext: fakeSeal(it.Plaintext, it.Context), Version: 1})
		}
		writeJSON(w, 200, &resp)
	case "batch/decrypt":
		var req api.BatchDecryptRequest
		json.Unmarshal(body, &req)
		var resp api.BatchDecryptResponse
		for _, it := range req.Items {
			if pt, ok := fakeOpen(it.Ciphertext, it.Context); ok {
				resp.Results = append(resp.Results, api.BatchDecryptItem{Plaintext: pt, Version: 1})
			} else {
				resp.Results = append(resp.Results, api.BatchDecryptItem{Error: &api.BatchItemError{Code: api.CodeDecrypt, Message: "decryption failed"}})
			}
		}
		writeJSON(w, 200, &resp)
	default:
		writeErr(w, api.CodeBadRequest, "unsupported route in fake", "")
	}
}

// simNet is an in-memory cluster behind an http.RoundTripper, for tests in
// synctest bubbles (no sockets, fake clock). Each node is addressed by its
// host:port; the zero simNode is an alive, unsealed follower.
type simNet struct {
	mu    sync.Mutex
	nodes map[string]*simNode // by host:port
	// cluster, when set, is served by GET /v1/sys/cluster on every node.
	cluster *api.ClusterInfo
	// leader is the host:port that accepts writes; others answer
	// not_leader with it as the hint.
	leader string
	calls  []simCall
}

// simNode is one node's behaviour.
type simNode struct {
	down   bool // dial fails
	sealed bool // key routes answer sealed
	// noCluster makes GET /v1/sys/cluster answer this status (401, 403,
	// 404) instead of the topology.
	noCluster int
}

// simCall is one request as the sim network received it.
type simCall struct {
	Host, Method, Path, RequestID string
	Body                          []byte
}

func newSimNet(hosts ...string) *simNet {
	s := &simNet{nodes: make(map[string]*simNode)}
	for _, h := range hosts {
		s.nodes[h] = &simNode{}
	}
	return s
}

// client returns an http.Client over the sim network.
func (s *simNet) client() *http.Client { return &http.Client{Transport: s} }

// set changes node host under the lock.
func (s *simNet) set(host string, f func(*simNode)) {
	s.mu.Lock()
	f(s.nodes[host])
	s.mu.Unlock()
}

// setCluster replaces the topology served by every node.
func (s *simNet) setCluster(ci *api.ClusterInfo) {
	s.mu.Lock()
	s.cluster = ci
	s.mu.Unlock()
}

// hits counts the requests host received whose path starts with prefix.
func (s *simNet) hits(host, prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		if c.Host == host && strings.HasPrefix(c.Path, prefix) {
			n++
		}
	}
	return n
}

// callsTo returns the requests whose path starts with prefix, in order.
func (s *simNet) callsTo(prefix string) []simCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []simCall
	for _, c := range s.calls {
		if strings.HasPrefix(c.Path, prefix) {
			out = append(out, c)
		}
	}
	return out
}

func (s *simNet) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	var body []byte
	if r.Body != nil {
		var b bytes.Buffer
		b.ReadFrom(r.Body)
		r.Body.Close()
		body = b.Bytes()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.nodes[r.URL.Host]
	if !ok || n.down {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	s.calls = append(s.calls, simCall{Host: r.URL.Host, Method: r.Method, Path: r.URL.Path,
		RequestID: r.Header.Get(api.HeaderRequestID), Body: body})
	fail := func(code api.Code, leader string) (*http.Response, error) {
		return jsonResponse(api.StatusFor(code), &api.Error{Code: code, Message: string(code), Leader: leader}), nil
	}
	switch {
	case r.URL.Path == api.PathCluster:
		switch {
		case r.Header.Get(api.HeaderAuthorization) == "":
			return fail(api.CodeUnauthorized, "")
		case n.noCluster == http.StatusUnauthorized:
			return fail(api.CodeUnauthorized, "")
		case n.noCluster == http.StatusForbidden:
			return fail(api.CodeForbidden, "")
		case n.noCluster == http.StatusServiceUnavailable:
			return fail(api.CodeSealed, "")
		case n.noCluster != 0 || s.cluster == nil:
			return &http.Response{StatusCode: http.StatusNotFound, Header: http.Header{"Content-Type": {"text/plain"}},
				Body: io.NopCloser(strings.NewReader("404 page not found"))}, nil
		}
		ci := *s.cluster
		ci.Nodes = append([]api.ClusterNode(nil), s.cluster.Nodes...)
		return jsonResponse(200, &ci), nil
	case r.URL.Path == api.PathStatus:
		st := &api.SealStatus{NodeID: r.URL.Host, Initialized: true, Sealed: n.sealed, Leader: s.leader}
		for h := range s.nodes {
			st.Peers = append(st.Peers, api.Peer{ID: h, APIAddr: h, Voter: true, Leader: h == s.leader})
		}
		sort.Slice(st.Peers, func(i, j int) bool { return st.Peers[i].ID < st.Peers[j].ID })
		return jsonResponse(200, st), nil
	case r.URL.Path == api.PathRemove || r.URL.Path == api.PathKeys || strings.HasSuffix(r.URL.Path, "/rotate"):
		if r.URL.Host != s.leader {
			return fail(api.CodeNotLeader, s.leader)
		}
		if r.URL.Path == api.PathRemove {
			// An empty 200: the reply body of remove is left open.
			return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(""))}, nil
		}
		return jsonResponse(200, &api.KeyInfo{Name: "k", State: api.KeyEnabled, LatestVersion: 1, Index: 100}), nil
	case strings.HasPrefix(r.URL.Path, api.PathKeys+"/"):
		if n.sealed {
			return fail(api.CodeSealed, "")
		}
		return jsonResponse(200, &api.EncryptResponse{Ciphertext: "keyd:v1:" + r.URL.Host, Version: 1}), nil
	}
	return fail(api.CodeBadRequest, "")
}
