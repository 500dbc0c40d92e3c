package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/keyring"
)

// Deletion windows accepted by ScheduleDeletion.
const (
	MinDeletionWindow     = 24 * time.Hour
	MaxDeletionWindow     = 720 * time.Hour
	DefaultDeletionWindow = 168 * time.Hour
)

// maxRotateRetries bounds retries of a manual rotation that lost a race
// with another rotation of the same key.
const maxRotateRetries = 3

func badRequest(format string, args ...any) error {
	return &api.Error{Code: api.CodeBadRequest, Message: fmt.Sprintf(format, args...)}
}

func parsePeriod(s string, min time.Duration) (time.Duration, error) {
	if s == "" || s == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, badRequest("rotation_period %q is not a non-negative duration like 720h", s)
	}
	if d > 0 && d < min {
		return 0, badRequest("rotation_period must be at least %s", min)
	}
	return d, nil
}

// CreateKey creates a key with its first version. Material is generated
// here, on the leader, and only its wrapped form is replicated.
func (n *Node) CreateKey(ctx context.Context, rid string, req api.CreateKeyRequest) (*api.KeyInfo, error) {
	if !api.ValidKeyName(req.Name) {
		return nil, badRequest("key name must be 1-%d characters of [A-Za-z0-9._-], not starting with '.' or '-'", api.MaxKeyNameLen)
	}
	if req.Type == "" {
		req.Type = string(keyring.AES256GCM)
	}
	t, err := keyring.ParseKeyType(req.Type)
	if err != nil {
		return nil, badRequest("unknown key type %q (aes256-gcm, xchacha20-poly1305, hmac-sha256, ed25519, ecdsa-p256, aes256-siv, ff1-aes256)", req.Type)
	}
	period, err := parsePeriod(req.RotationPeriod, n.cfg.MinRotationPeriod)
	if err != nil {
		return nil, err
	}
	tags, retention, period, err := n.createTagsRetention(req, period)
	if err != nil {
		return nil, err
	}
	if err := n.notLeaderOrSealed(); err != nil {
		return nil, err
	}
	// A retried request id answers with the original write; the id
	// reused for another request is a conflict.
	m := n.scopedMeta(ctx, rid)
	if idx, ok, err := n.fsm.Request(m); err != nil {
		return nil, err
	} else if ok {
		return n.keyInfo(req.Name, idx)
	}
	// An existing name is refused before material is generated or
	// anything is proposed.
	if _, err := n.fsm.Key(req.Name); err == nil {
		return nil, fsm.ErrKeyExists
	} else if !errors.Is(err, fsm.ErrKeyNotFound) {
		return nil, err
	}
	first, err := n.keys.wrapNew(req.Name, t, 1, rand.Reader)
	if err != nil {
		return nil, err
	}
	res, err := n.propose(ctx, &fsm.CreateKey{
		Meta: m,
		Name: req.Name, Type: string(t), RotationPeriod: period, First: first,
		Tags: tags, Retention: retention,
	})
	if err != nil {
		return nil, err
	}
	if res.Key != nil && !res.Duplicate {
		return keyInfoOf(res.Key, res.Index), nil
	}
	return n.keyInfo(req.Name, res.Index)
}

// RotateKey adds a new version, which becomes the one used to encrypt.
func (n *Node) RotateKey(ctx context.Context, rid, name string) (*api.KeyInfo, error) {
	for attempt := 0; ; attempt++ {
		info, err := n.rotateOnce(ctx, rid, name, 0)
		if errors.Is(err, fsm.ErrConflict) && !errors.Is(err, fsm.ErrRequestReused) && attempt < maxRotateRetries {
			continue
		}
		return info, err
	}
}

// rotateOnce rotates name from its current latest version (or from
// `from`, when non-zero, failing with fsm.ErrConflict if it moved on).
func (n *Node) rotateOnce(ctx context.Context, rid, name string, from uint32) (*api.KeyInfo, error) {
	if err := n.notLeaderOrSealed(); err != nil {
		return nil, err
	}
	// A retried request id answers with the original write; the id
	// reused for another request is a conflict.
	m := n.scopedMeta(ctx, rid)
	if idx, ok, err := n.fsm.Request(m); err != nil {
		return nil, err
	} else if ok {
		return n.rotationReply(name, idx)
	}
	rec, err := n.fsm.Key(name)
	if err != nil {
		return nil, err
	}
	if from == 0 {
		from = rec.Latest()
	}
	t, err := keyring.ParseKeyType(rec.Type)
	if err != nil {
		return nil, err
	}
	nv, err := n.keys.wrapNew(name, t, from+1, rand.Reader)
	if err != nil {
		return nil, err
	}
	res, err := n.propose(ctx, &fsm.RotateKey{
		Meta: m,
		Name: name, FromVersion: from, New: nv,
	})
	if err != nil {
		return nil, err
	}
	if res.Key != nil && !res.Duplicate {
		// The version this rotation made, even when another rotation
		// of the key was applied right after it.
		return keyInfoOf(res.Key, res.Index), nil
	}
	return n.rotationReply(name, res.Index)
}

// rotationReply answers a retried rotation (its request id was applied at
// index): the key as it is now, but with latest_version the version that
// rotation made, read back from the Raft log, so a retry after a lost
// reply does not claim a later rotation's version. Once the entry is
// compacted away the key's current latest version is all there is.
func (n *Node) rotationReply(name string, index uint64) (*api.KeyInfo, error) {
	info, err := n.keyInfo(name, index)
	if err != nil {
		return nil, err
	}
	var l raft.Log
	if n.raft == nil || n.raft.logs.GetLog(index, &l) != nil || l.Type != raft.LogCommand {
		return info, nil
	}
	if c, err := fsm.Decode(l.Data); err == nil {
		if r, ok := c.(*fsm.RotateKey); ok && r.Name == name && r.FromVersion+1 <= info.LatestVersion {
			info.LatestVersion = r.FromVersion + 1
		}
	}
	return info, nil
}

// SetKeyEnabled enables or disables a key. A disabled key refuses every
// crypto call until enabled again.
func (n *Node) SetKeyEnabled(ctx context.Context, rid, name string, enabled bool) (*api.KeyInfo, error) {
	return n.simpleWrite(ctx, name, &fsm.SetKeyState{Meta: n.meta(rid), Name: name, Enabled: enabled})
}

// ConfigureKey changes the minimum decryption version or the rotation
// period.
func (n *Node) ConfigureKey(ctx context.Context, rid, name string, req api.KeyConfigRequest) (*api.KeyInfo, error) {
	c := &fsm.ConfigureKey{Meta: n.meta(rid), Name: name, MinDecryptionVersion: req.MinDecryptionVersion}
	if req.RotationPeriod != nil {
		p, err := parsePeriod(*req.RotationPeriod, n.cfg.MinRotationPeriod)
		if err != nil {
			return nil, err
		}
		c.RotationPeriod = &p
	}
	if err := n.configTagsRetention(name, req, c); err != nil {
		return nil, err
	}
	if c.MinDecryptionVersion == nil && c.RotationPeriod == nil && c.Tags == nil && c.Retention == nil {
		return nil, badRequest("nothing to change: set min_decryption_version, rotation_period, tags or retention")
	}
	return n.simpleWrite(ctx, name, c)
}

// ScheduleDeletion disables a key and deletes it once window has passed.
func (n *Node) ScheduleDeletion(ctx context.Context, rid, name string, window time.Duration) (*api.KeyInfo, error) {
	if window == 0 {
		window = DefaultDeletionWindow
	}
	if window < MinDeletionWindow || window > MaxDeletionWindow {
		return nil, badRequest("pending_window must be between %s and %s", MinDeletionWindow, MaxDeletionWindow)
	}
	if rec, err := n.fsm.Key(name); err == nil {
		if err := n.tagDeletionWindow(rec.Tags, window); err != nil {
			return nil, err
		}
	}
	m := n.meta(rid)
	return n.simpleWrite(ctx, name, &fsm.ScheduleDeletion{Meta: m, Name: name, DeleteAt: m.At.Add(window)})
}

// CancelDeletion cancels a scheduled deletion; the key stays disabled.
func (n *Node) CancelDeletion(ctx context.Context, rid, name string) (*api.KeyInfo, error) {
	return n.simpleWrite(ctx, name, &fsm.CancelDeletion{Meta: n.meta(rid), Name: name})
}

func (n *Node) meta(rid string) fsm.Meta { return fsm.Meta{RequestID: rid, At: n.clock.now().UTC()} }

func (n *Node) simpleWrite(ctx context.Context, name string, c fsm.Command) (*api.KeyInfo, error) {
	if !api.ValidKeyName(name) {
		return nil, fsm.ErrKeyNotFound
	}
	res, err := n.propose(ctx, c)
	if err != nil {
		return nil, err
	}
	return n.keyInfo(name, res.Index)
}

// ReadKey returns a key's metadata. With consistent set the read is
// linearizable: it is served by the leader after a Raft barrier.
func (n *Node) ReadKey(ctx context.Context, name string, consistent bool) (*api.KeyInfo, error) {
	if consistent {
		if err := n.verifyLeader(ctx); err != nil {
			return nil, err
		}
	}
	return n.keyInfo(name, n.fsm.AppliedIndex())
}

// ListKeys returns a page of the key names visible accepts: up to limit
// of them, with Next set (to the last name of the page) only when another
// visible name follows. Hidden names are skipped before the page is cut,
// so neither the names, the cursor nor the page size say anything about
// them. A nil visible refuses every name.
func (n *Node) ListKeys(ctx context.Context, after string, limit int, visible func(name string) bool) (*api.KeyList, error) {
	if limit <= 0 || limit > api.MaxListLimit {
		limit = api.MaxListLimit
	}
	if visible == nil {
		visible = func(string) bool { return false }
	}
	idx := n.fsm.AppliedIndex()
	names, more, err := n.fsm.ListKeysFunc(after, limit, visible)
	if err != nil {
		return nil, err
	}
	out := &api.KeyList{Keys: names, Index: idx}
	if out.Keys == nil {
		out.Keys = []string{}
	}
	if more && len(names) > 0 {
		out.Next = names[len(names)-1]
	}
	return out, nil
}

func (n *Node) keyInfo(name string, index uint64) (*api.KeyInfo, error) {
	rec, err := n.fsm.Key(name)
	if err != nil {
		return nil, err
	}
	return keyInfoOf(rec, index), nil
}

// keyInfoOf describes rec; index is the log index of the write answered.
func keyInfoOf(rec *fsm.KeyRecord, index uint64) *api.KeyInfo {
	info := &api.KeyInfo{
		Name: rec.Name, Type: rec.Type, State: rec.State,
		LatestVersion: rec.Latest(), MinDecryptionVersion: rec.MinDecryptionVersion,
		CreatedAt: rec.CreatedAt, RotatedAt: rec.RotatedAt, Index: index,
	}
	if rec.RotationPeriod > 0 {
		info.RotationPeriod = rec.RotationPeriod.String()
	}
	if !rec.DeletionAt.IsZero() {
		d := rec.DeletionAt
		info.DeletionAt = &d
	}
	info.Tags = rec.Tags
	if rec.Retention > 0 {
		info.Retention = rec.Retention.String()
	}
	for _, v := range rec.Versions {
		info.Versions = append(info.Versions, api.KeyVersion{Version: v.Version, CreatedAt: v.CreatedAt, PublicKey: v.PublicKey})
	}
	return info
}
