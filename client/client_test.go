package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/keyd/keyd/api"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		wantErr error
	}{
		{"ok host:port", Config{Addrs: []string{"127.0.0.1:8200"}}, nil},
		{"ok https", Config{Addrs: []string{"https://keyd.example:8200/"}, Token: "abc"}, nil},
		{"no addrs", Config{}, ErrInvalidConfig},
		{"http scheme", Config{Addrs: []string{"http://127.0.0.1:8200"}}, ErrInvalidAddr},
		{"no port", Config{Addrs: []string{"keyd.example"}}, ErrInvalidAddr},
		{"path", Config{Addrs: []string{"https://keyd.example:1/x"}}, ErrInvalidAddr},
		{"negative timeout", Config{Addrs: []string{"a:1"}, Timeout: -1}, ErrInvalidConfig},
		{"token with newline", Config{Addrs: []string{"a:1"}, Token: "abc\r\nX-Evil: 1"}, ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := New(t.Context(), tt.cfg)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("New: got %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if tt.cfg.Token != "" && strings.Contains(err.Error(), tt.cfg.Token) {
					t.Errorf("error %q leaks the token", err)
				}
				return
			}
			if err := c.Close(); err != nil {
				t.Errorf("Close: got %v, want nil", err)
			}
			if err := c.Close(); err != nil {
				t.Errorf("second Close: got %v, want nil", err)
			}
			if _, err := c.Status(t.Context()); !errors.Is(err, ErrClosed) {
				t.Errorf("Status after Close: got %v, want %v", err, ErrClosed)
			}
		})
	}
}

func TestNormalizeAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		wantErr  error
	}{
		{"127.0.0.1:8200", "https://127.0.0.1:8200", nil},
		{"https://Keyd.Example:443/", "https://keyd.example:443", nil},
		{"[::1]:8200", "https://[::1]:8200", nil},
		{" node1:1 ", "https://node1:1", nil},
		{"", "", ErrInvalidAddr},
		{"http://a:1", "", ErrInvalidAddr},
		{"https://a", "", ErrInvalidAddr},
		{"https://u:p@a:1", "", ErrInvalidAddr},
		{"https://a:1?x=1", "", ErrInvalidAddr},
		{"a:port", "", ErrInvalidAddr},
		{":1", "", ErrInvalidAddr},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := normalizeAddr(tt.in)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("normalizeAddr(%q): got %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func FuzzNormalizeAddr(f *testing.F) {
	for _, s := range []string{"127.0.0.1:8200", "https://a:1/", "http://a:1", "[::1]:1", "a", "https://a:1/%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := normalizeAddr(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidAddr) {
				t.Fatalf("normalizeAddr(%q): got %v, want ErrInvalidAddr", s, err)
			}
			return
		}
		// A normalized address is a fixed point.
		again, err := normalizeAddr(got)
		if err != nil || again != got {
			t.Fatalf("normalizeAddr(%q) = %q, renormalized to %q, %v", s, got, again, err)
		}
	})
}

func TestLeaderHintFollowed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		hint func(leader *fakeNode) string
	}{
		{"hint with scheme", func(l *fakeNode) string { return l.addr() }},
		{"hint host:port", func(l *fakeNode) string { return l.hostPort() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			follower, leader := newFakeNode(t), newFakeNode(t)
			// The follower believes it leads (stale status) but refuses writes.
			follower.statusLeader = follower.addr()
			follower.setHook(func(n *fakeNode, w http.ResponseWriter, r *http.Request, _ []byte) bool {
				if isWrite(r) {
					writeErr(w, api.CodeNotLeader, "not the leader", tt.hint(leader))
					return true
				}
				return false
			})
			c := newTestClient(t, Config{Addrs: []string{follower.addr()}, TLS: tlsConfigFor(follower, leader)})
			for _, name := range []string{"k1", "k2"} {
				k, err := c.CreateKey(t.Context(), api.CreateKeyRequest{Name: name})
				if err != nil {
					t.Fatalf("CreateKey(%s): %v", name, err)
				}
				if k.Name != name {
					t.Errorf("CreateKey: got name %q, want %q", k.Name, name)
				}
			}
			if got := len(follower.requests(http.MethodPost, api.PathKeys)); got != 1 {
				t.Errorf("writes at follower: got %d, want 1 (the second write goes straight to the leader)", got)
			}
			lw := leader.requests(http.MethodPost, api.PathKeys)
			if len(lw) != 2 {
				t.Fatalf("writes at leader: got %d, want 2", len(lw))
			}
			fw := follower.requests(http.MethodPost, api.PathKeys)
			if lw[0].RequestID != fw[0].RequestID {
				t.Errorf("request id at leader: got %q, want the follower's %q", lw[0].RequestID, fw[0].RequestID)
			}
			if lw[0].RequestID == lw[1].RequestID {
				t.Errorf("two writes share request id %q", lw[0].RequestID)
			}
		})
	}
}

func TestWriteRetryReusesRequestID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		id         string // WithRequestID; "" uses a random one
		dropBefore int    // connections dropped before the write is applied
		dropAfter  int    // connections dropped after it is applied (lost reply)
	}{
		{"dropped before apply", "", 2, 0},
		{"reply lost after apply", "", 0, 2},
		{"caller id", "0123456789abcdef0123456789abcdef", 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n := newFakeNode(t)
			n.dropAfterApply = tt.dropAfter
			var dropped atomic.Int32
			n.setHook(func(_ *fakeNode, _ http.ResponseWriter, r *http.Request, _ []byte) bool {
				if isWrite(r) && dropped.Add(1) <= int32(tt.dropBefore) {
					dropConn()
				}
				return false
			})
			c := newTestClient(t, Config{}, n)
			ctx := t.Context()
			if tt.id != "" {
				ctx = WithRequestID(ctx, tt.id)
			}
			k, err := c.CreateKey(ctx, api.CreateKeyRequest{Name: "k"})
			if err != nil {
				t.Fatalf("CreateKey: %v", err)
			}
			seen := n.requests(http.MethodPost, api.PathKeys)
			if want := tt.dropBefore + tt.dropAfter + 1; len(seen) != want {
				t.Fatalf("attempts: got %d, want %d", len(seen), want)
			}
			id := seen[0].RequestID
			if tt.id != "" && id != tt.id {
				t.Errorf("request id: got %q, want %q", id, tt.id)
			}
			if tt.id == "" && len(id) != 32 {
				t.Errorf("request id %q: got length %d, want 32 hex digits", id, len(id))
			}
			for i, s := range seen {
				if s.RequestID != id {
					t.Errorf("attempt %d: got request id %q, want %q", i, s.RequestID, id)
				}
			}
			n.mu.Lock()
			applied := n.applied[id]
			n.mu.Unlock()
			if applied != 1 {
				t.Errorf("applied: got %d, want 1", applied)
			}
			if k.Index == 0 || c.LastIndex() != k.Index {
				t.Errorf("LastIndex: got %d, want reply index %d", c.LastIndex(), k.Index)
			}
		})
	}
}

func TestSealedNodeSkippedForCrypto(t *testing.T) {
	t.Parallel()
	sealed, good := newFakeNode(t), newFakeNode(t)
	for _, n := range []*fakeNode{sealed, good} {
		n.keys["k"] = &api.KeyInfo{Name: "k", State: api.KeyEnabled}
	}
	sealed.setHook(func(_ *fakeNode, w http.ResponseWriter, r *http.Request, _ []byte) bool {
		if strings.HasPrefix(r.URL.Path, api.PathKeys) {
			writeErr(w, api.CodeSealed, "node is sealed", "")
			return true
		}
		return false
	})
	c := newTestClient(t, Config{}, sealed, good) // the sealed node is tried first
	for i := range 3 {
		r, err := c.Encrypt(t.Context(), "k", []byte("pt"), nil)
		if err != nil {
			t.Fatalf("Encrypt %d: %v", i, err)
		}
		pt, ok := fakeOpen(r.Ciphertext, nil)
		if !ok || string(pt) != "pt" {
			t.Fatalf("Encrypt %d: got ciphertext %q, want one of \"pt\"", i, r.Ciphertext)
		}
	}
	if got := len(sealed.requests(http.MethodPost, api.PathKeys)); got != 1 {
		t.Errorf("crypto calls at sealed node: got %d, want 1", got)
	}
	if got := len(good.requests(http.MethodPost, api.PathKeys)); got != 3 {
		t.Errorf("crypto calls at good node: got %d, want 3", got)
	}
}

func TestNoRetryOnClientErrors(t *testing.T) {
	t.Parallel()
	codes := []api.Code{api.CodeNotFound, api.CodeBadRequest, api.CodeDecrypt, api.CodeExists,
		api.CodeUnauthorized, api.CodeForbidden, api.CodeKeyDisabled, api.CodeInternal}
	for _, code := range codes {
		t.Run(string(code), func(t *testing.T) {
			t.Parallel()
			n := newFakeNode(t)
			n.setHook(func(_ *fakeNode, w http.ResponseWriter, r *http.Request, _ []byte) bool {
				if strings.HasPrefix(r.URL.Path, api.PathKeys) {
					writeErr(w, code, "nope", "")
					return true
				}
				return false
			})
			c := newTestClient(t, Config{MaxRetries: 5}, n)
			_, err := c.Decrypt(t.Context(), "k", "keyd:v1:AA==", nil)
			if !errors.Is(err, &api.Error{Code: code}) {
				t.Fatalf("Decrypt: got %v, want code %s", err, code)
			}
			if got := len(n.requests(http.MethodPost, api.PathKeys)); got != 1 {
				t.Errorf("attempts: got %d, want 1", got)
			}
		})
	}
}

func TestErrorDecoding(t *testing.T) {
	t.Parallel()
	sentinels := []*api.Error{api.ErrBadRequest, api.ErrTooLarge, api.ErrUnauthorized, api.ErrForbidden,
		api.ErrNotFound, api.ErrExists, api.ErrKeyDisabled, api.ErrKeyPendingDeletion, api.ErrUnsupported,
		api.ErrDecrypt, api.ErrVersionDisabled, api.ErrConflict, api.ErrSealed, api.ErrNotInitialized,
		api.ErrAlreadyInitialized, api.ErrInvalidShare, api.ErrNotLeader, api.ErrIndexTimeout,
		api.ErrUnavailable, api.ErrInternal}
	n := newFakeNode(t)
	n.setHook(func(_ *fakeNode, w http.ResponseWriter, r *http.Request, _ []byte) bool {
		name, _ := splitKeyPath(r.URL.Path)
		code := api.Code(strings.ReplaceAll(name, ".", "_"))
		writeJSON(w, api.StatusFor(code), &api.Error{Code: code, Message: "msg " + name, RequestID: "rid"})
		return true
	})
	c := newTestClient(t, Config{MaxRetries: -1}, n)
	for _, s := range sentinels {
		t.Run(string(s.Code), func(t *testing.T) {
			t.Parallel()
			name := strings.ReplaceAll(string(s.Code), "_", ".")
			_, err := c.ReadKey(t.Context(), name, false)
			if !errors.Is(err, s) {
				t.Fatalf("ReadKey: got %v, want errors.Is %v", err, s)
			}
			var ae *api.Error
			if !errors.As(err, &ae) {
				t.Fatalf("ReadKey: got %T, want *api.Error", err)
			}
			if ae.Status != api.StatusFor(s.Code) || ae.Message != "msg "+name || ae.RequestID != "rid" {
				t.Errorf("got status %d message %q request id %q; want %d, %q, %q",
					ae.Status, ae.Message, ae.RequestID, api.StatusFor(s.Code), "msg "+name, "rid")
			}
		})
	}
}

func TestConnError(t *testing.T) {
	t.Parallel()
	const token = "tok-must-not-leak"
	plaintext := []byte("plaintext-must-not-leak")

	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		n := newFakeNode(t)
		cfg := Config{Token: token, TLS: tlsConfigFor(n), MaxRetries: 1, Addrs: []string{n.addr()}}
		addr := n.addr()
		n.srv.Close() // nothing listens there any more
		c := newTestClient(t, cfg)
		_, err := c.Encrypt(t.Context(), "k", plaintext, nil)
		var ce *ConnError
		if !errors.As(err, &ce) {
			t.Fatalf("Encrypt: got %T %v, want *ConnError", err, err)
		}
		var ne net.Error = ce
		if ne.Timeout() {
			t.Errorf("Timeout: got true, want false")
		}
		if !ce.Temporary() {
			t.Errorf("Temporary: got false, want true")
		}
		if ce.Addr != addr {
			t.Errorf("Addr: got %q, want %q", ce.Addr, addr)
		}
		if s := err.Error(); strings.Contains(s, token) || strings.Contains(s, string(plaintext)) {
			t.Errorf("error %q leaks a secret", s)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		n := newFakeNode(t)
		n.setHook(func(n *fakeNode, _ http.ResponseWriter, r *http.Request, _ []byte) bool {
			select {
			case <-r.Context().Done():
			case <-n.release:
			}
			return true
		})
		c := newTestClient(t, Config{Token: token, Timeout: 50 * time.Millisecond, MaxRetries: -1}, n)
		_, err := c.Encrypt(t.Context(), "k", plaintext, nil)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Encrypt: got %v, want a timeout net.Error", err)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Encrypt: got %v, want errors.Is context.DeadlineExceeded", err)
		}
		if s := err.Error(); strings.Contains(s, token) || strings.Contains(s, string(plaintext)) {
			t.Errorf("error %q leaks a secret", s)
		}
	})
}

func TestMinIndexAfterWrite(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                     string
		noIndexHeader, noIndexBd bool
	}{
		{"header and body", false, false},
		{"header only", false, true},
		{"body only", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n := newFakeNode(t)
			n.noIndexHeader, n.noIndexBody = tt.noIndexHeader, tt.noIndexBd
			n.keys["old"] = &api.KeyInfo{Name: "old", State: api.KeyEnabled}
			c := newTestClient(t, Config{}, n)
			if _, err := c.Encrypt(t.Context(), "old", []byte("x"), nil); err != nil {
				t.Fatalf("Encrypt: %v", err)
			}
			if got := n.requests(http.MethodPost, api.KeyPath("old"))[0].MinIndex; got != "" {
				t.Errorf("min index before any write: got %q, want none", got)
			}
			if _, err := c.CreateKey(t.Context(), api.CreateKeyRequest{Name: "k"}); err != nil {
				t.Fatalf("CreateKey: %v", err)
			}
			if got := c.LastIndex(); got != 41 {
				t.Fatalf("LastIndex: got %d, want 41", got)
			}
			if _, err := c.Encrypt(t.Context(), "k", []byte("x"), nil); err != nil {
				t.Fatalf("Encrypt: %v", err)
			}
			if _, err := c.ReadKey(t.Context(), "k", true); err != nil {
				t.Fatalf("ReadKey: %v", err)
			}
			for _, s := range append(n.requests(http.MethodPost, api.KeyPath("k")), n.requests(http.MethodGet, api.KeyPath("k"))...) {
				if s.MinIndex != "41" {
					t.Errorf("%s %s: got min index %q, want 41", s.Method, s.Path, s.MinIndex)
				}
			}
			if got := n.requests(http.MethodGet, api.KeyPath("k"))[0].Path; got != "/v1/keys/k?consistent=true" {
				t.Errorf("consistent read path: got %q, want ?consistent=true", got)
			}
			if got := n.requests(http.MethodPost, api.PathKeys)[0].MinIndex; got != "" {
				t.Errorf("write: got min index %q, want none", got)
			}
		})
	}
}

// fakeRT is an in-memory RoundTripper for synctest bubbles, where the
// network must not be used.
type fakeRT struct {
	calls atomic.Int32
	reply func(r *http.Request) *http.Response
}

func (f *fakeRT) RoundTrip(r *http.Request) (*http.Response, error) {
	f.calls.Add(1)
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	return f.reply(r), nil
}

func jsonResponse(status int, v any) *http.Response {
	b, _ := json.Marshal(v)
	return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(bytes.NewReader(b))}
}

func TestBackoffRespectsDeadline(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rt := &fakeRT{reply: func(*http.Request) *http.Response {
			return jsonResponse(503, &api.Error{Code: api.CodeSealed, Message: "sealed"})
		}}
		c, err := New(t.Context(), Config{Addrs: []string{"a:1", "b:1"}, MaxRetries: 1000, HTTPClient: &http.Client{Transport: rt}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		const budget = 3 * time.Second
		ctx, cancel := context.WithTimeout(t.Context(), budget)
		defer cancel()
		start := time.Now()
		_, err = c.Encrypt(ctx, "k", []byte("x"), nil)
		elapsed := time.Since(start) // fake clock: exact
		if elapsed > budget {
			t.Errorf("Encrypt returned after %v, want at most the %v deadline", elapsed, budget)
		}
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, api.ErrSealed) {
			t.Errorf("Encrypt: got %v, want DeadlineExceeded and ErrSealed", err)
		}
		if n := rt.calls.Load(); n < 2 || n >= 1000 {
			t.Errorf("attempts: got %d, want a few", n)
		}
	})
}

func TestBackoffCanceledDuringSleep(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		rt := &fakeRT{reply: func(r *http.Request) *http.Response {
			if r.URL.Path == api.PathStatus {
				return jsonResponse(200, &api.SealStatus{})
			}
			cancel() // the caller gives up while the client backs off
			return jsonResponse(503, &api.Error{Code: api.CodeUnavailable, Message: "no leader"})
		}}
		c, err := New(t.Context(), Config{Addrs: []string{"a:1"}, MaxRetries: 3, HTTPClient: &http.Client{Transport: rt}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.RotateKey(ctx, "k")
		if !errors.Is(err, context.Canceled) || !errors.Is(err, api.ErrUnavailable) {
			t.Errorf("RotateKey: got %v, want Canceled and ErrUnavailable", err)
		}
	})
}

func TestBackoffBounds(t *testing.T) {
	t.Parallel()
	for retry := range 40 {
		ceil := min(backoffCap, backoffBase<<min(retry, 20))
		for range 50 {
			if d := backoff(retry); d < 0 || d >= ceil {
				t.Fatalf("backoff(%d): got %v, want in [0, %v)", retry, d, ceil)
			}
		}
	}
}

func TestRetriesExhausted(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var keyCalls atomic.Int32
		rt := &fakeRT{reply: func(r *http.Request) *http.Response {
			if strings.HasPrefix(r.URL.Path, api.PathKeys) {
				keyCalls.Add(1)
			}
			return jsonResponse(503, &api.Error{Code: api.CodeUnavailable, Message: "no leader"})
		}}
		c, err := New(t.Context(), Config{Addrs: []string{"a:1"}, MaxRetries: 3, HTTPClient: &http.Client{Transport: rt}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.Decrypt(t.Context(), "k", "keyd:v1:AA==", nil)
		if !errors.Is(err, api.ErrUnavailable) {
			t.Errorf("Decrypt: got %v, want ErrUnavailable", err)
		}
		if got := keyCalls.Load(); got != 4 {
			t.Errorf("attempts: got %d, want 4 (1 + MaxRetries)", got)
		}
	})
}

func TestStatusLearnsPeers(t *testing.T) {
	t.Parallel()
	seed, other := newFakeNode(t), newFakeNode(t)
	other.keys["k"] = &api.KeyInfo{Name: "k", State: api.KeyEnabled}
	seed.peers = []api.Peer{{ID: "a", APIAddr: seed.hostPort()}, {ID: "b", APIAddr: other.hostPort()}, {ID: "c", APIAddr: "not an address"}}
	seed.statusLeader = other.hostPort()
	c := newTestClient(t, Config{Addrs: []string{seed.addr()}, TLS: tlsConfigFor(seed, other)})
	st, err := c.Status(t.Context())
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if len(st.Peers) != 3 {
		t.Errorf("peers: got %d, want 3", len(st.Peers))
	}
	seed.srv.Close()
	if _, err := c.Encrypt(t.Context(), "k", []byte("x"), nil); err != nil {
		t.Fatalf("Encrypt after the seed died: %v", err)
	}
	if _, err := c.RotateKey(t.Context(), "k"); err != nil {
		t.Fatalf("RotateKey at learned leader: %v", err)
	}
}

func TestUnsealFailover(t *testing.T) {
	t.Parallel()
	t.Run("dial failure moves on", func(t *testing.T) {
		t.Parallel()
		dead, live := newFakeNode(t), newFakeNode(t)
		dead.srv.Close()
		c := newTestClient(t, Config{}, dead, live)
		st, err := c.Unseal(t.Context(), "share-1")
		if err != nil {
			t.Fatalf("Unseal: %v", err)
		}
		if st.Progress != 1 {
			t.Errorf("progress: got %d, want 1", st.Progress)
		}
	})
	t.Run("dropped after send does not resubmit", func(t *testing.T) {
		t.Parallel()
		a, b := newFakeNode(t), newFakeNode(t)
		a.setHook(func(_ *fakeNode, _ http.ResponseWriter, r *http.Request, _ []byte) bool {
			if r.URL.Path == api.PathUnseal {
				dropConn()
			}
			return false
		})
		c := newTestClient(t, Config{}, a, b)
		_, err := c.Unseal(t.Context(), "share-1")
		var ce *ConnError
		if !errors.As(err, &ce) {
			t.Fatalf("Unseal: got %v, want *ConnError", err)
		}
		if strings.Contains(err.Error(), "share-1") {
			t.Errorf("error %q leaks the share", err)
		}
		if got := len(b.requests(http.MethodPost, api.PathUnseal)); got != 0 {
			t.Errorf("unseal requests at the second node: got %d, want 0", got)
		}
	})
	t.Run("invalid share", func(t *testing.T) {
		t.Parallel()
		n := newFakeNode(t)
		c := newTestClient(t, Config{}, n)
		_, err := c.UnsealAt(t.Context(), n.hostPort(), "bad-share")
		if !errors.Is(err, api.ErrInvalidShare) {
			t.Fatalf("UnsealAt: got %v, want ErrInvalidShare", err)
		}
	})
}

func TestOperations(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)
	c := newTestClient(t, Config{}, n)
	ctx := t.Context()
	if h, err := c.Health(ctx, n.addr()); err != nil || !h.Initialized {
		t.Fatalf("Health: got %+v, %v", h, err)
	}
	if st, err := c.StatusOf(ctx, n.hostPort()); err != nil || st.NodeID != n.hostPort() {
		t.Fatalf("StatusOf: got %+v, %v", st, err)
	}
	if r, err := c.Init(ctx, 3, 2); err != nil || len(r.Shares) != 3 {
		t.Fatalf("Init: got %+v, %v", r, err)
	}
	if _, err := c.CreateKey(ctx, api.CreateKeyRequest{Name: "k"}); err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	if _, err := c.CreateKey(ctx, api.CreateKeyRequest{Name: "k"}); !errors.Is(err, api.ErrExists) {
		t.Fatalf("CreateKey twice: got %v, want ErrExists", err)
	}
	if k, err := c.RotateKey(ctx, "k"); err != nil || k.LatestVersion != 2 {
		t.Fatalf("RotateKey: got %+v, %v", k, err)
	}
	mdv, period := uint32(2), "720h"
	if k, err := c.ConfigureKey(ctx, "k", api.KeyConfigRequest{MinDecryptionVersion: &mdv, RotationPeriod: &period}); err != nil ||
		k.MinDecryptionVersion != 2 || k.RotationPeriod != "720h" {
		t.Fatalf("ConfigureKey: got %+v, %v", k, err)
	}
	if k, err := c.DisableKey(ctx, "k"); err != nil || k.State != api.KeyDisabled {
		t.Fatalf("DisableKey: got %+v, %v", k, err)
	}
	if _, err := c.Encrypt(ctx, "k", []byte("x"), nil); !errors.Is(err, api.ErrKeyDisabled) {
		t.Fatalf("Encrypt with disabled key: got %v, want ErrKeyDisabled", err)
	}
	if k, err := c.EnableKey(ctx, "k"); err != nil || k.State != api.KeyEnabled {
		t.Fatalf("EnableKey: got %+v, %v", k, err)
	}
	if k, err := c.ScheduleDeletion(ctx, "k", 48*time.Hour); err != nil || k.State != api.KeyPendingDeletion {
		t.Fatalf("ScheduleDeletion: got %+v, %v", k, err)
	}
	if _, err := c.ScheduleDeletion(ctx, "k", time.Hour); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("ScheduleDeletion 1h: got %v, want ErrBadRequest", err)
	}
	if k, err := c.CancelDeletion(ctx, "k"); err != nil || k.State != api.KeyEnabled {
		t.Fatalf("CancelDeletion: got %+v, %v", k, err)
	}
	for _, name := range []string{"a", "b", "c"} {
		if _, err := c.CreateKey(ctx, api.CreateKeyRequest{Name: name}); err != nil {
			t.Fatalf("CreateKey(%s): %v", name, err)
		}
	}
	l, err := c.ListKeys(ctx, "", 2)
	if err != nil || strings.Join(l.Keys, ",") != "a,b" || l.Next != "b" {
		t.Fatalf("ListKeys: got %+v, %v; want a,b next b", l, err)
	}
	if l, err = c.ListKeys(ctx, l.Next, 0); err != nil || strings.Join(l.Keys, ",") != "c,k" {
		t.Fatalf("ListKeys page 2: got %+v, %v; want c,k", l, err)
	}

	aad := []byte("tenant=1")
	enc, err := c.Encrypt(ctx, "k", []byte("hello"), aad)
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	if dec, err := c.Decrypt(ctx, "k", enc.Ciphertext, aad); err != nil || string(dec.Plaintext) != "hello" {
		t.Fatalf("Decrypt: got %+v, %v", dec, err)
	}
	if _, err := c.Decrypt(ctx, "k", enc.Ciphertext, []byte("other")); !errors.Is(err, api.ErrDecrypt) {
		t.Fatalf("Decrypt with wrong context: got %v, want ErrDecrypt", err)
	}
	if re, err := c.Reencrypt(ctx, "k", enc.Ciphertext, aad); err != nil || re.Ciphertext == "" {
		t.Fatalf("Reencrypt: got %+v, %v", re, err)
	}
	dk, err := c.GenerateDataKey(ctx, "k", api.DataKeyRequest{Bytes: 16})
	if err != nil || len(dk.Plaintext) != 16 {
		t.Fatalf("GenerateDataKey: got %+v, %v", dk, err)
	}
	sig, err := c.Sign(ctx, "k", []byte("m"))
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if ok, err := c.Verify(ctx, "k", []byte("m"), sig.Signature); err != nil || !ok {
		t.Fatalf("Verify: got %v, %v; want true", ok, err)
	}
	if ok, err := c.Verify(ctx, "k", []byte("other"), sig.Signature); err != nil || ok {
		t.Fatalf("Verify other message: got %v, %v; want false", ok, err)
	}
	mac, err := c.HMAC(ctx, "k", []byte("m"))
	if err != nil {
		t.Fatalf("HMAC: %v", err)
	}
	if ok, err := c.VerifyHMAC(ctx, "k", []byte("m"), mac.Signature); err != nil || !ok {
		t.Fatalf("VerifyHMAC: got %v, %v; want true", ok, err)
	}
	items, err := c.BatchEncrypt(ctx, "k", []api.EncryptRequest{{Plaintext: []byte("a")}, {Plaintext: []byte("b"), Context: aad}})
	if err != nil || len(items) != 2 {
		t.Fatalf("BatchEncrypt: got %+v, %v", items, err)
	}
	dec, err := c.BatchDecrypt(ctx, "k", []api.DecryptRequest{{Ciphertext: items[0].Ciphertext}, {Ciphertext: items[1].Ciphertext}})
	if err != nil || string(dec[0].Plaintext) != "a" || dec[1].Error == nil || dec[1].Error.Code != api.CodeDecrypt {
		t.Fatalf("BatchDecrypt: got %+v, %v; want a, then a decrypt error", dec, err)
	}
	if err := c.Seal(ctx); err != nil {
		t.Fatalf("Seal: %v", err)
	}
	for _, s := range n.requests(http.MethodPost, "/v1/keys") {
		if s.Auth != "Bearer s3cret-token" {
			t.Fatalf("%s: got Authorization %q, want the bearer token", s.Path, s.Auth)
		}
	}
}

func TestInvalidKeyName(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)
	c := newTestClient(t, Config{}, n)
	for _, name := range []string{"", "a/b", "../sys/seal", "a?b", ".hidden", strings.Repeat("x", api.MaxKeyNameLen+1)} {
		if _, err := c.Encrypt(t.Context(), name, []byte("x"), nil); !errors.Is(err, api.ErrBadRequest) {
			t.Errorf("Encrypt(%q): got %v, want ErrBadRequest", name, err)
		}
		if _, err := c.CreateKey(t.Context(), api.CreateKeyRequest{Name: name}); !errors.Is(err, api.ErrBadRequest) {
			t.Errorf("CreateKey(%q): got %v, want ErrBadRequest", name, err)
		}
	}
	if got := len(n.requests(http.MethodPost, "/")); got != 0 {
		t.Errorf("requests sent: got %d, want 0", got)
	}
}

func TestBadResponses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		reply   func(w http.ResponseWriter)
		wantErr error
	}{
		{"html 200", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html>"))
		}, ErrBadResponse},
		{"broken json", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"results":`))
		}, ErrBadResponse},
		{"short batch", func(w http.ResponseWriter) { writeJSON(w, 200, &api.BatchEncryptResponse{}) }, ErrBadResponse},
		{"teapot", func(w http.ResponseWriter) { w.WriteHeader(http.StatusTeapot) }, ErrBadResponse},
		{"gateway 502", func(w http.ResponseWriter) { w.WriteHeader(http.StatusBadGateway) }, api.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n := newFakeNode(t)
			n.setHook(func(_ *fakeNode, w http.ResponseWriter, _ *http.Request, _ []byte) bool { tt.reply(w); return true })
			c := newTestClient(t, Config{MaxRetries: -1}, n)
			_, err := c.BatchEncrypt(t.Context(), "k", []api.EncryptRequest{{Plaintext: []byte("x")}})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("BatchEncrypt: got %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestDecodeReply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		status  int
		ct      string
		body    string
		wantErr error
	}{
		{"ok", 200, "application/json; charset=utf-8", `{"valid":true}`, nil},
		{"no content", 204, "", "", nil},
		{"wrong type", 200, "text/plain", `{"valid":true}`, ErrBadResponse},
		{"bad json", 200, "application/json", `{`, ErrBadResponse},
		{"api error", 404, "application/json", `{"code":"key_not_found","message":"x"}`, api.ErrNotFound},
		{"error without code", 404, "application/json", `{"message":"x"}`, ErrBadResponse},
		{"421 bare", 421, "", "", api.ErrNotLeader},
		{"503 html", 503, "text/html", "<h1>down</h1>", api.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out api.VerifyResponse
			err := decodeReply(tt.status, tt.ct, []byte(tt.body), &out)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("decodeReply: got %v, want %v", err, tt.wantErr)
			}
			if tt.name == "ok" && !out.Valid {
				t.Errorf("Valid: got false, want true")
			}
		})
	}
}

func FuzzDecodeReply(f *testing.F) {
	f.Add(200, "application/json", []byte(`{"plaintext":"aGk=","version":1}`))
	f.Add(421, "application/json", []byte(`{"code":"not_leader","message":"m","leader":"a:1"}`))
	f.Add(503, "text/html", []byte(`<html>`))
	f.Add(500, "application/json", []byte(`{"code":""}`))
	f.Fuzz(func(t *testing.T, status int, ct string, body []byte) {
		var out api.DecryptResponse
		err := decodeReply(status, ct, body, &out)
		if err == nil {
			return
		}
		var ae *api.Error
		if errors.As(err, &ae) {
			if ae.Status != status || ae.Code == "" {
				t.Fatalf("api error: got status %d code %q, want status %d and a code", ae.Status, ae.Code, status)
			}
			return
		}
		if !errors.Is(err, ErrBadResponse) {
			t.Fatalf("got %v, want ErrBadResponse or *api.Error", err)
		}
		if len(body) > 8 && strings.Contains(err.Error(), string(body)) {
			t.Fatalf("error %q echoes the body", err)
		}
	})
}

func TestPickSkipsCoolingNodes(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rt := &fakeRT{reply: func(*http.Request) *http.Response {
			return jsonResponse(404, &api.Error{Code: api.CodeNotFound, Message: "no route"})
		}}
		c, err := New(t.Context(), Config{Addrs: []string{"a:1", "b:1", "c:1"}, RefreshInterval: -1, HTTPClient: &http.Client{Transport: rt}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		a, b, cc := "https://a:1", "https://b:1", "https://c:1"
		c.markDown(a)
		for i := range 6 {
			if got := c.pickAny(""); got == a {
				t.Fatalf("pick %d: got cooling node %s", i, got)
			}
		}
		c.markUp(b, true)
		if got := c.pickAny(""); got != b {
			t.Errorf("pick with preferred node: got %s, want %s", got, b)
		}
		if got := c.pickAny(b); got != cc {
			t.Errorf("pick excluding preferred: got %s, want %s", got, cc)
		}
		time.Sleep(time.Second)
		c.markDown(b)
		c.markDown(cc)
		// All cooling down: the node whose cool-down ends first is used.
		if got := c.pickAny(""); got != a {
			t.Errorf("pick with all nodes down: got %s, want %s", got, a)
		}
		time.Sleep(coolDown)
		c.markDown(b)
		if got := c.pickWrite(nil); got == b {
			t.Errorf("pickWrite: got cooling node %s", got)
		}
	})
}

func TestWithRequestIDDedupsAcrossCalls(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)
	c := newTestClient(t, Config{}, n)
	ctx := WithRequestID(t.Context(), "feedfacefeedfacefeedfacefeedface")
	first, err := c.CreateKey(ctx, api.CreateKeyRequest{Name: "k"})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	again, err := c.CreateKey(ctx, api.CreateKeyRequest{Name: "k"})
	if err != nil {
		t.Fatalf("CreateKey with the same request id: got %v, want the first reply again", err)
	}
	if again.Index != first.Index {
		t.Errorf("replayed index: got %d, want %d", again.Index, first.Index)
	}
	if _, err := c.CreateKey(t.Context(), api.CreateKeyRequest{Name: "k"}); !errors.Is(err, api.ErrExists) {
		t.Errorf("CreateKey with a fresh id: got %v, want ErrExists", err)
	}
}

// TestWriteMovesOnFromCutOffNode: a node cut off from the leader refuses
// writes with unavailable ("lost contact with the leader ... use another
// node") while the client may still believe it leads (a stale status).
// The write must go to another node at once instead of backing off on the
// same node until the caller's deadline.
func TestWriteMovesOnFromCutOffNode(t *testing.T) {
	t.Parallel()
	cutOff, healthy := newFakeNode(t), newFakeNode(t)
	cutOff.statusLeader = cutOff.addr()
	healthy.statusLeader = cutOff.addr()
	cutOff.setHook(func(n *fakeNode, w http.ResponseWriter, r *http.Request, _ []byte) bool {
		if isWrite(r) {
			writeErr(w, api.CodeUnavailable, "this node has lost contact with the leader and may have missed token revocations; only crypto calls are served here, use another node", "")
			return true
		}
		return false
	})
	c := newTestClient(t, Config{Addrs: []string{cutOff.addr(), healthy.addr()}, MaxRetries: 3}, cutOff, healthy)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, name := range []string{"k1", "k2", "k3"} {
		if _, err := c.CreateKey(ctx, api.CreateKeyRequest{Name: name}); err != nil {
			t.Fatalf("CreateKey(%s): %v", name, err)
		}
	}
	if got := len(healthy.requests(http.MethodPost, api.PathKeys)); got != 3 {
		t.Fatalf("writes at the healthy node: %d, want 3", got)
	}
}

// TestDeadlineDuringAttemptKeepsNodeAnswer: when the caller's deadline
// cuts an attempt short, the error still carries what the node said
// before (sealed here), not only the cut connection: the CLI reports
// "gave up after -timeout; last error: sealed".
func TestDeadlineDuringAttemptKeepsNodeAnswer(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)
	var calls atomic.Int64
	n.setHook(func(n *fakeNode, w http.ResponseWriter, r *http.Request, _ []byte) bool {
		if !strings.HasSuffix(r.URL.Path, "/decrypt") {
			return false
		}
		if calls.Add(1) == 1 {
			writeErr(w, api.CodeSealed, "node is sealed", "")
			return true
		}
		select { // a slow node: the deadline ends the attempt
		case <-r.Context().Done():
		case <-n.release:
		}
		return true
	})
	c := newTestClient(t, Config{MaxRetries: 5}, n)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err := c.Decrypt(ctx, "k", "keyd:v1:AAAA", nil)
	if !errors.Is(err, api.ErrSealed) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the deadline and the node's sealed answer", err)
	}
}
