package node

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/node/errs"
)

// maxKVPutRetries bounds how often a write without check-and-set is
// sealed again after another write took its version number.
const maxKVPutRetries = 3

// sealData seals plaintext under the active barrier key. The keyring is
// used only under mu, so seal cannot zero it under this call.
func (s *keystore) sealData(aad, plaintext []byte) (uint32, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ring := s.barrier.Load()
	if ring == nil {
		return 0, nil, errs.ErrSealed
	}
	return ring.SealData(aad, plaintext)
}

// blindDigest replaces a request digest (a SHA-256 over the request,
// whose body may hold a secret value) with a keyed MAC of it, so the
// Raft log and the request table do not hold a plain hash of a secret
// that a dictionary could invert. Every node derives the same key.
func (s *keystore) blindDigest(d []byte) ([]byte, error) {
	if d == nil {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ring := s.barrier.Load()
	if ring == nil {
		return nil, errs.ErrSealed
	}
	k, err := ring.DeriveKey("request digest")
	if err != nil {
		return nil, err
	}
	defer clear(k)
	m := hmac.New(sha256.New, k)
	m.Write(d)
	return m.Sum(nil), nil
}

// openData reverses sealData.
func (s *keystore) openData(aad []byte, barrierVersion uint32, blob []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ring := s.barrier.Load()
	if ring == nil {
		return nil, errs.ErrSealed
	}
	return ring.OpenData(aad, barrierVersion, blob)
}

func badPath() error {
	return badRequest("secret path must be 1-%d characters: segments of [A-Za-z0-9._-] separated by '/', none empty, '.' or '..'", fsm.MaxKVPathLen)
}

// encodeKVValue checks a secret's value and encodes it (JSON, fields in
// name order).
func encodeKVValue(data map[string]string) ([]byte, error) {
	if len(data) == 0 {
		return nil, badRequest("a secret needs at least one field in data")
	}
	if len(data) > api.MaxKVFields {
		return nil, badRequest("a secret holds at most %d fields", api.MaxKVFields)
	}
	for k := range data {
		if k == "" || len(k) > api.MaxKVFieldName {
			return nil, badRequest("field names must be 1-%d bytes", api.MaxKVFieldName)
		}
	}
	b, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("node: encode secret: %w", err)
	}
	if len(b) > api.MaxKVValueBytes {
		return nil, &api.Error{Code: api.CodeTooLarge, Message: fmt.Sprintf("secret value exceeds %d bytes", api.MaxKVValueBytes)}
	}
	return b, nil
}

// KVPut writes a new version of path. The leader seals the value under
// the barrier for the version number it will take, then proposes it: the
// Raft log and every replica's state see only ciphertext. Without CAS a
// write that lost its version number to a concurrent write is sealed
// again for the next one; with CAS it fails with a conflict.
func (n *Node) KVPut(ctx context.Context, rid, path string, req api.KVWriteRequest) (*api.KVSecret, error) {
	if !fsm.ValidKVPath(path) {
		return nil, badPath()
	}
	value, err := encodeKVValue(req.Data)
	if err != nil {
		return nil, err
	}
	defer clear(value)
	for attempt := 0; ; attempt++ {
		if err := n.notLeaderOrSealed(); err != nil {
			return nil, err
		}
		m := n.scopedMeta(ctx, rid)
		if m.Digest, err = n.keys.blindDigest(m.Digest); err != nil {
			return nil, err
		}
		if idx, ok, err := n.fsm.Request(m); err != nil {
			return nil, err
		} else if ok {
			return &api.KVSecret{Path: path, Index: idx}, nil
		}
		var current uint32
		if rec, err := n.fsm.KV(path); err == nil {
			current = rec.Current
		} else if !errors.Is(err, fsm.ErrKVNotFound) {
			return nil, err
		}
		version := current + 1
		bv, sealed, err := n.keys.sealData(fsm.KVAAD(path, version), value)
		if err != nil {
			return nil, err
		}
		// Not n.propose: it would scope the request again with the plain
		// digest. The leader and request checks above are its first two
		// steps; the state check and the apply follow.
		c := &fsm.KVPut{Meta: m, Path: path, Version: version, CAS: req.CAS, BarrierVersion: bv, Sealed: sealed}
		err = n.fsm.Check(c)
		var res *fsm.Result
		if err == nil {
			res, err = n.apply(ctx, c)
		}
		if errors.Is(err, fsm.ErrConflict) && req.CAS == nil && !errors.Is(err, fsm.ErrRequestReused) && attempt < maxKVPutRetries {
			continue
		}
		if err != nil {
			return nil, err
		}
		return &api.KVSecret{Path: path, Version: version, CreatedAt: m.At, Index: res.Index}, nil
	}
}

// KVGet reads version (0: the latest) of path from this node's applied
// state. A deleted or destroyed version is reported as such, without its
// value.
func (n *Node) KVGet(ctx context.Context, path string, version uint32) (*api.KVSecret, error) {
	if !fsm.ValidKVPath(path) {
		return nil, badPath()
	}
	idx := n.fsm.AppliedIndex()
	rec, err := n.fsm.KV(path)
	if err != nil {
		return nil, kvErr(err)
	}
	if version == 0 {
		version = rec.Current
	}
	v := rec.Version(version)
	switch {
	case v == nil:
		return nil, &api.Error{Code: api.CodeResourceNotFound, Message: fmt.Sprintf("secret has no version %d (never written or pruned)", version)}
	case v.Destroyed:
		return nil, &api.Error{Code: api.CodeResourceNotFound, Message: fmt.Sprintf("secret version %d is destroyed", version)}
	case !v.DeletedAt.IsZero():
		return nil, &api.Error{Code: api.CodeResourceNotFound, Message: fmt.Sprintf("secret version %d is deleted (undelete restores it)", version)}
	}
	pt, err := n.keys.openData(fsm.KVAAD(path, version), v.BarrierVersion, v.Sealed)
	if err != nil {
		if errors.Is(err, errs.ErrSealed) {
			return nil, err
		}
		n.log.Error("secret version does not open", "path", path, "version", version, "err", err)
		return nil, fmt.Errorf("node: open secret version: %w", err)
	}
	defer clear(pt)
	var data map[string]string
	if err := json.Unmarshal(pt, &data); err != nil {
		return nil, fmt.Errorf("node: decode secret version: %w", err)
	}
	return &api.KVSecret{Path: path, Version: version, Data: data, CreatedAt: v.CreatedAt, Index: idx}, nil
}

// KVMetadata returns a secret's versions and settings, never a value.
func (n *Node) KVMetadata(ctx context.Context, path string) (*api.KVMetadata, error) {
	if !fsm.ValidKVPath(path) {
		return nil, badPath()
	}
	idx := n.fsm.AppliedIndex()
	rec, err := n.fsm.KV(path)
	if err != nil {
		return nil, kvErr(err)
	}
	out := &api.KVMetadata{
		Path: rec.Path, CurrentVersion: rec.Current, MaxVersions: rec.Keep(), CASRequired: rec.CASRequired,
		CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt, Versions: []api.KVVersionInfo{}, Index: idx,
	}
	for _, v := range rec.Versions {
		vi := api.KVVersionInfo{Version: v.Version, CreatedAt: v.CreatedAt, Destroyed: v.Destroyed}
		if !v.DeletedAt.IsZero() {
			t := v.DeletedAt
			vi.DeletedAt = &t
		}
		out.Versions = append(out.Versions, vi)
	}
	return out, nil
}

func kvErr(err error) error {
	if errors.Is(err, fsm.ErrKVNotFound) {
		return &errs.NotFound{What: "secret"}
	}
	return err
}

// kvWrite proposes a KV change other than a write of a value.
func (n *Node) kvWrite(ctx context.Context, path string, c fsm.Command) (*api.WriteResponse, error) {
	if !fsm.ValidKVPath(path) {
		return nil, badPath()
	}
	res, err := n.propose(ctx, c)
	if err != nil {
		return nil, kvErr(err)
	}
	return &api.WriteResponse{Index: res.Index}, nil
}

// KVDelete soft-deletes versions of path (none named: the current one).
func (n *Node) KVDelete(ctx context.Context, rid, path string, versions []uint32) (*api.WriteResponse, error) {
	return n.kvWrite(ctx, path, &fsm.KVDelete{KVVersions: fsm.KVVersions{Meta: n.meta(rid), Path: path, Versions: versions}})
}

// KVUndelete restores soft-deleted versions of path.
func (n *Node) KVUndelete(ctx context.Context, rid, path string, versions []uint32) (*api.WriteResponse, error) {
	if len(versions) == 0 {
		return nil, badRequest("name the versions to undelete")
	}
	return n.kvWrite(ctx, path, &fsm.KVUndelete{KVVersions: fsm.KVVersions{Meta: n.meta(rid), Path: path, Versions: versions}})
}

// KVDestroy removes versions' values from the replicated state for good.
func (n *Node) KVDestroy(ctx context.Context, rid, path string, versions []uint32) (*api.WriteResponse, error) {
	if len(versions) == 0 {
		return nil, badRequest("name the versions to destroy")
	}
	return n.kvWrite(ctx, path, &fsm.KVDestroy{KVVersions: fsm.KVVersions{Meta: n.meta(rid), Path: path, Versions: versions}})
}

// KVConfigure changes a secret's max_versions or cas_required.
func (n *Node) KVConfigure(ctx context.Context, rid, path string, req api.KVMetadataRequest) (*api.WriteResponse, error) {
	if req.MaxVersions == nil && req.CASRequired == nil {
		return nil, badRequest("nothing to change: set max_versions or cas_required")
	}
	if req.MaxVersions != nil && (*req.MaxVersions < 0 || *req.MaxVersions > fsm.MaxKVMaxVersions) {
		return nil, badRequest("max_versions must be 0 (default %d) to %d", fsm.DefaultKVMaxVersions, fsm.MaxKVMaxVersions)
	}
	return n.kvWrite(ctx, path, &fsm.KVConfig{Meta: n.meta(rid), Path: path, MaxVersions: req.MaxVersions, CASRequired: req.CASRequired})
}

// KVDeleteAll removes path with every version and its settings.
func (n *Node) KVDeleteAll(ctx context.Context, rid, path string) (*api.WriteResponse, error) {
	return n.kvWrite(ctx, path, &fsm.KVDeleteAll{Meta: n.meta(rid), Path: path})
}

// KVList pages through the paths starting with prefix that visible
// accepts; hidden paths shape neither the page nor its cursor.
func (n *Node) KVList(ctx context.Context, prefix, after string, limit int, visible func(path string) bool) (*api.KVList, error) {
	if limit <= 0 || limit > api.MaxListLimit {
		limit = api.MaxListLimit
	}
	if visible == nil {
		visible = func(string) bool { return false }
	}
	idx := n.fsm.AppliedIndex()
	paths, more, err := n.fsm.ListKV(prefix, after, limit, visible)
	if err != nil {
		return nil, err
	}
	out := &api.KVList{Paths: paths, Index: idx}
	if out.Paths == nil {
		out.Paths = []string{}
	}
	if more && len(paths) > 0 {
		out.Next = paths[len(paths)-1]
	}
	return out, nil
}
