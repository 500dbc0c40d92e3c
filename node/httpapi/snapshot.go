package httpapi

import (
	"bytes"
	"context"
	"io"
	"strconv"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/policy"
)

// Snapshots is the operator snapshot side of a node (disaster recovery).
type Snapshots interface {
	// Initialized reports whether the cluster holds a root record.
	Initialized() bool
	// SnapshotWriter checks what can fail before the reply starts (leader,
	// sealed) and returns the function that streams the file.
	SnapshotWriter(ctx context.Context) (func(io.Writer) error, error)
	RestoreSnapshot(ctx context.Context, r io.Reader, force bool) (*api.SnapshotRestoreResponse, error)
}

// snapshotSave streams an operator snapshot from the leader. It is never
// forwarded: a follower answers not_leader with the leader's address.
func (s *Server) snapshotSave(c *call) (any, error) {
	if s.cfg.Snapshots == nil {
		return nil, &api.Error{Code: api.CodeUnavailable, Message: "snapshots are not served by this node"}
	}
	write, err := s.cfg.Snapshots.SnapshotWriter(c.r.Context())
	if err != nil {
		return nil, err
	}
	return stream{contentType: api.ContentTypeSnapshot, write: write}, nil
}

// snapshotRestore is open on an uninitialised cluster (as init is); on an
// initialised one it needs the snapshot capability and force=true. The
// body (up to api.MaxSnapshotBytes) is streamed to the node, which checks
// it into a work file: nothing of it is read before those checks pass,
// so an anonymous caller cannot make a live node take in half a
// gigabyte.
func (s *Server) snapshotRestore(c *call) (any, error) {
	if s.cfg.Snapshots == nil {
		return nil, &api.Error{Code: api.CodeUnavailable, Message: "snapshots are not served by this node"}
	}
	force := false
	if v := c.r.URL.Query().Get("force"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, &api.Error{Code: api.CodeBadRequest, Message: "force must be true or false"}
		}
		force = b
	}
	body := &limitedBody{r: c.bodyReader}
	if !s.cfg.Snapshots.Initialized() {
		// Open, as init is. force is dropped: an init that commits
		// meanwhile is never overwritten by an unauthenticated caller.
		return body.result(s.cfg.Snapshots.RestoreSnapshot(c.r.Context(), body, false))
	}
	if !force {
		// Whether the cluster is initialised is public (health).
		return s.cfg.Snapshots.RestoreSnapshot(c.r.Context(), bytes.NewReader(nil), false)
	}
	p, err := s.cfg.Auth.Authenticate(c.r)
	if err != nil {
		return nil, err
	}
	c.p = p
	if err := c.authorize(policy.Snapshot, ""); err != nil {
		return nil, err
	}
	return body.result(s.cfg.Snapshots.RestoreSnapshot(c.r.Context(), body, true))
}

// limitedBody remembers a failed read of a streamed body, so that a body
// over the limit or cut short is reported as such rather than as a
// corrupt snapshot.
type limitedBody struct {
	r   io.Reader
	err error
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

func (b *limitedBody) result(resp *api.SnapshotRestoreResponse, err error) (any, error) {
	if err != nil && b.err != nil {
		return nil, bodyReadError(b.err, api.MaxSnapshotBytes)
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}
