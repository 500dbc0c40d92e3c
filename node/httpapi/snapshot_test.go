package httpapi

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/keyd/keyd/api"
)

// fakeSnapshots records how restore was asked for.
type fakeSnapshots struct {
	initialized bool
	calls       []bool // force of each RestoreSnapshot call
	bodies      [][]byte
}

func (f *fakeSnapshots) Initialized() bool { return f.initialized }
func (f *fakeSnapshots) SnapshotWriter(context.Context) (func(io.Writer) error, error) {
	return func(w io.Writer) error { _, err := w.Write([]byte("file")); return err }, nil
}
func (f *fakeSnapshots) RestoreSnapshot(_ context.Context, r io.Reader, force bool) (*api.SnapshotRestoreResponse, error) {
	b, _ := io.ReadAll(r)
	f.calls = append(f.calls, force)
	f.bodies = append(f.bodies, b)
	return &api.SnapshotRestoreResponse{Sealed: true}, nil
}

type denyAuth struct{}

func (denyAuth) Authenticate(*http.Request) (Principal, error) { return nil, api.ErrUnauthorized }

// TestSnapshotRestoreAuth: an anonymous force on an uninitialised cluster
// is passed on without force (an init committing meanwhile is never
// overwritten); on an initialised cluster force needs a credential and
// without force nothing of the body is used.
func TestSnapshotRestoreAuth(t *testing.T) {
	t.Parallel()
	do := func(auth Authenticator, fs *fakeSnapshots, query string) int {
		s := New(Config{Cluster: leaderCluster{}, Auth: auth, Snapshots: fs,
			IsPeer: func(*http.Request) (string, bool) { return "", false }})
		req := httptest.NewRequest(http.MethodPost, api.PathSnapshotRestore+query, bytes.NewReader([]byte("FILE")))
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		return w.Code
	}
	fresh := &fakeSnapshots{}
	if code := do(denyAuth{}, fresh, "?force=true"); code != http.StatusOK || len(fresh.calls) != 1 || fresh.calls[0] {
		t.Fatalf("anonymous restore on a fresh cluster: code %d calls %v", code, fresh.calls)
	}
	live := &fakeSnapshots{initialized: true}
	if code := do(denyAuth{}, live, "?force=true"); code != http.StatusUnauthorized || len(live.calls) != 0 {
		t.Fatalf("anonymous forced restore on a live cluster: code %d calls %v", code, live.calls)
	}
	if do(denyAuth{}, live, ""); len(live.calls) != 1 || live.calls[0] || len(live.bodies[0]) != 0 {
		t.Fatalf("unforced restore on a live cluster: calls %v", live.calls)
	}
	if code := do(authAll{}, live, "?force=true"); code != http.StatusOK || !live.calls[1] || string(live.bodies[1]) != "FILE" {
		t.Fatalf("authorised forced restore: code %d calls %v", code, live.calls)
	}
	if code := do(authAll{}, live, "?force=maybe"); code != http.StatusBadRequest {
		t.Fatalf("bad force value: code %d", code)
	}
}

// countingReader counts what the server read of a request body.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestSnapshotRestoreRefusesBeforeReadingBody: an anonymous caller that
// sends a large "snapshot" to a live cluster is refused before the node
// reads it (the route used to buffer up to 512 MiB of it first), and so
// is an unforced restore.
func TestSnapshotRestoreRefusesBeforeReadingBody(t *testing.T) {
	t.Parallel()
	for _, query := range []string{"?force=true", ""} {
		live := &fakeSnapshots{initialized: true}
		s := New(Config{Cluster: leaderCluster{}, Auth: denyAuth{}, Snapshots: live,
			IsPeer: func(*http.Request) (string, bool) { return "", false }})
		body := &countingReader{r: io.LimitReader(zeros{}, 64<<20)}
		req := httptest.NewRequest(http.MethodPost, api.PathSnapshotRestore+query, body)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		// The fake answers an unforced restore with 200; the node refuses it
		// (already_initialized) without reading the body.
		if (query != "" && w.Code != http.StatusUnauthorized) || body.n > 1<<20 {
			t.Fatalf("restore%s on a live cluster by an anonymous caller: code %d, %d body bytes read", query, w.Code, body.n)
		}
	}
}
