package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/node/errs"
	"github.com/keyd/keyd/shamir"
)

// Operator snapshots: save streams the replicated state (wrapped material
// only) from the leader after a barrier, with a digest and a MAC keyed
// from the root secret; restore verifies a file without secrets, seals
// the cluster, and installs the state on every replica through Raft's
// user-snapshot restore, which sends it to followers as a Raft snapshot.
// The MAC is checked with the root when custodians unseal the restored
// cluster; a mismatch keeps every node sealed.

// restoreTimeout bounds raft.Restore (copy, install, replication of the
// no-op after it).
const restoreTimeout = 5 * time.Minute

// snapState is this node's snapshot bookkeeping.
type snapState struct {
	restoring sync.Mutex
	mu        sync.Mutex
	// macFailure is why the restored state was refused at unseal.
	macFailure string
}

func (s *snapState) failure() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.macFailure
}

// Initialized reports whether the cluster holds a root record.
func (n *Node) Initialized() bool {
	_, err := n.fsm.InitRecord()
	return err == nil
}

// snapshotMACKey returns the snapshot MAC key of the root held in memory,
// or errs.ErrSealed.
func (n *Node) snapshotMACKey() ([]byte, error) {
	n.sealer.mu.Lock()
	defer n.sealer.mu.Unlock()
	if n.sealer.secret == nil || !n.keys.unsealed() {
		return nil, errs.ErrSealed
	}
	sb := n.sealer.secret.Bytes()
	defer clear(sb)
	return fsm.BackupMACKey(sb)
}

// SnapshotWriter prepares an operator snapshot on the leader: it proves
// leadership with a barrier (so every acknowledged write is in the
// state) and returns the function that streams the file. Errors that can
// be known in advance (not leader, sealed) are returned here, before any
// byte is written.
func (n *Node) SnapshotWriter(ctx context.Context) (func(io.Writer) error, error) {
	write, err := n.snapshotWriter(ctx)
	if err != nil {
		return nil, err
	}
	return func(w io.Writer) error {
		_, err := write(w)
		return err
	}, nil
}

func (n *Node) snapshotWriter(ctx context.Context) (func(io.Writer) (*fsm.Backup, error), error) {
	if _, err := n.fsm.InitRecord(); err != nil {
		return nil, api.ErrNotInitialized
	}
	key, err := n.snapshotMACKey()
	if err != nil {
		return nil, err
	}
	if err := n.verifyLeader(ctx); err != nil {
		clear(key)
		return nil, err
	}
	return func(w io.Writer) (*fsm.Backup, error) {
		defer clear(key)
		b, err := n.fsm.WriteBackup(w, fsm.BackupOptions{MACKey: key, Node: n.cfg.NodeID, Now: time.Now()})
		if err != nil {
			return nil, err
		}
		n.log.Info("snapshot written", "index", b.Header.Index, "keys", b.Header.Counts.Keys, "cluster", b.Header.Cluster)
		return b, nil
	}, nil
}

// SaveSnapshot writes an operator snapshot to w (see SnapshotWriter).
func (n *Node) SaveSnapshot(ctx context.Context, w io.Writer) error {
	write, err := n.SnapshotWriter(ctx)
	if err != nil {
		return err
	}
	return write(w)
}

// RestoreSnapshot restores an operator snapshot read from r into the
// cluster, on the leader. On an initialised cluster it needs force. The
// whole file is verified (digest, structure, header against content)
// before anything changes; a refused file changes nothing. A forced
// restore seals every node first. The cluster is sealed afterwards.
func (n *Node) RestoreSnapshot(ctx context.Context, r io.Reader, force bool) (*api.SnapshotRestoreResponse, error) {
	if !n.IsLeader() {
		return nil, n.notLeader()
	}
	initialized := n.Initialized()
	if initialized && !force {
		return nil, &api.Error{Code: api.CodeAlreadyInitialized, Message: "the cluster is initialised: restoring over its state needs force (keyd operator snapshot restore -force)"}
	}
	if !n.snap.restoring.TryLock() {
		return nil, &errs.Conflict{Reason: "a restore is already running"}
	}
	defer n.snap.restoring.Unlock()
	// Work directories of a restore cut short by a crash (one restore
	// runs at a time, so none is in use).
	if old, err := filepath.Glob(filepath.Join(n.cfg.DataDir, "restore-*")); err == nil {
		for _, d := range old {
			_ = os.RemoveAll(d)
		}
	}
	dir, err := os.MkdirTemp(n.cfg.DataDir, "restore-")
	if err != nil {
		return nil, fmt.Errorf("node: restore: %w", err)
	}
	defer os.RemoveAll(dir)
	b, err := fsm.VerifyBackup(r, filepath.Join(dir, "state.db"))
	if err != nil {
		if errors.Is(err, fsm.ErrSnapshotCorrupt) {
			return nil, &api.Error{Code: api.CodeBadRequest, Message: "snapshot refused: " + err.Error()}
		}
		return nil, err
	}
	if initialized {
		// A forced restore replaces the state, never the root: a snapshot
		// of another cluster (one whose custodians the caller may hold
		// alone) would hand its holder the cluster. Such a file goes into
		// a fresh cluster instead.
		_, c, err := n.commitments()
		if err != nil {
			return nil, err
		}
		if cur := c.Fingerprint(); b.Header.Cluster != cur {
			return nil, &api.Error{Code: api.CodeForbidden, Message: fmt.Sprintf("snapshot belongs to another root (commitments %s, this cluster's are %s): a forced restore keeps the cluster's root; restore it into a fresh cluster", b.Header.Cluster, cur)}
		}
	}
	// Raft installs the restore at max(its last index, meta.Index)+1.
	// Asking for an index well above the last one makes that index known
	// in advance, so the state records it as applied: reads waiting for
	// any index acknowledged before the restore are served, and members
	// that report it have the restored state. Should writes still pass
	// the margin, Raft's index is higher, which is safe (applied only
	// ever lags).
	target := max(n.raft.raft.LastIndex(), b.Header.Index) + restoreIndexMargin
	// This cluster's delivery-key pins and removed nodes survive the
	// restore (fsm.Local): its machines stay what they are.
	local, err := n.fsm.Local()
	if err != nil {
		return nil, err
	}
	size, err := fsm.PrepareRestore(filepath.Join(dir, "state.db"), filepath.Join(dir, "snap"), b, time.Now(), target+1, local)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(dir, "snap"))
	if err != nil {
		return nil, fmt.Errorf("node: restore: %w", err)
	}
	defer f.Close()
	if !initialized && n.Initialized() {
		// An init committed while the file was checked.
		return nil, &api.Error{Code: api.CodeAlreadyInitialized, Message: "the cluster was initialised during the restore; nothing was restored"}
	}
	if initialized {
		// No node may serve the old keys beside the restored state.
		_ = n.Seal(ctx)
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: target, Size: size}
	if err := n.raft.raft.Restore(meta, f, restoreTimeout); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return nil, &api.Error{Code: api.CodeUnavailable, Message: "leadership changed during the restore; check the cluster's state and retry"}
		}
		return nil, fmt.Errorf("node: restore: %w", err)
	}
	n.snap.mu.Lock()
	n.snap.macFailure = ""
	n.snap.mu.Unlock()
	n.waitPeersApplied(ctx, target+1)
	n.log.Info("snapshot restored", "index", b.Header.Index, "keys", b.Header.Counts.Keys, "cluster", b.Header.Cluster, "forced", initialized)
	c := b.Header.Counts
	return &api.SnapshotRestoreResponse{
		Cluster: b.Header.Cluster, Index: b.Header.Index, RestoredAt: target + 1, Time: b.Header.Time, Sealed: true,
		Counts: api.SnapshotCounts{Keys: c.Keys, Versions: c.Versions, Policies: c.Policies, Tokens: c.Tokens, Identities: c.Identities},
	}, nil
}

// restorePeerWait bounds how long a restore waits for the other members
// to install the restored state, so custodians can unseal any node once
// the restore returns.
const restorePeerWait = 30 * time.Second

// restoreIndexMargin is added to the leader's last index to choose the
// restore's Raft index (see RestoreSnapshot).
const restoreIndexMargin = 1 << 16

// waitPeersApplied waits, at most restorePeerWait, until every other
// member of the Raft configuration reports index applied (the restored
// state installed). A member that does not answer is skipped at the
// deadline: it catches up later.
func (n *Node) waitPeersApplied(ctx context.Context, index uint64) {
	fut := n.raft.raft.GetConfiguration()
	if fut.Error() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, restorePeerWait)
	defer cancel()
	for _, s := range fut.Configuration().Servers {
		id := string(s.ID)
		if id == n.cfg.NodeID {
			continue
		}
		for ctx.Err() == nil {
			if n.peerApplied(ctx, id) >= index {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// peerApplied returns the applied index a member reports (0 when it
// does not answer).
func (n *Node) peerApplied(ctx context.Context, id string) uint64 {
	addr := n.peers.apiAddr(id)
	if addr == "" {
		return 0
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+api.PathHealth, nil)
	if err != nil {
		return 0
	}
	resp, err := n.peers.do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var h api.Health
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&h); err != nil || !h.Initialized {
		return 0
	}
	return h.Applied
}

// checkRestoreMAC runs before a node opens the barrier with secret, and
// before a root rotation re-roots the state: when the state was restored
// from an operator snapshot of the dealing rec holds, the snapshot's MAC
// must verify with this root. Otherwise the state is foreign or altered
// and the node refuses to serve it. A root rotated since the restore
// (which passed this check) ends it.
func (n *Node) checkRestoreMAC(secret *shamir.Secret, rec *fsm.InitRecord) error {
	m, err := n.fsm.RestoreMarker()
	if err != nil {
		return fmt.Errorf("node: restore marker: %w", err)
	}
	if m == nil {
		return nil
	}
	c, err := shamir.UnmarshalCommitments(rec.Commitments)
	if err != nil {
		return fmt.Errorf("node: stored commitments: %w", err)
	}
	if c.Fingerprint() != m.Cluster {
		return nil
	}
	sb := secret.Bytes()
	key, err := fsm.BackupMACKey(sb)
	clear(sb)
	if err != nil {
		return err
	}
	ok := m.Verify(key)
	clear(key)
	if ok {
		n.snap.mu.Lock()
		n.snap.macFailure = ""
		n.snap.mu.Unlock()
		return nil
	}
	msg := "the restored snapshot's MAC does not verify with this cluster's root (a foreign or altered snapshot): the node stays sealed and will not serve it"
	n.snap.mu.Lock()
	n.snap.macFailure = msg
	n.snap.mu.Unlock()
	n.log.Error("restored snapshot refused at unseal", "cluster", m.Cluster, "snapshot_index", m.Index)
	return &api.Error{Code: api.CodeForbidden, Message: msg}
}

// Scheduled snapshots are named keyd-snapshot-<UTC time>-<index>.snap, so
// names sort by time; a file is written as a hidden temporary and renamed
// once complete and synced.
const (
	scheduledPrefix = "keyd-snapshot-"
	scheduledSuffix = ".snap"
	scheduledTemp   = ".keyd-snapshot-tmp-"
)

// runSnapshots writes scheduled snapshots while this node is the
// unsealed leader. It owns no state beyond the files it writes.
func (n *Node) runSnapshots(ctx context.Context) {
	if n.cfg.SnapshotInterval <= 0 {
		return
	}
	t := time.NewTicker(n.cfg.SnapshotInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !n.IsLeader() || !n.keys.unsealed() || !n.Initialized() {
			continue
		}
		path, err := n.writeScheduledSnapshot(ctx)
		if err != nil {
			if ctx.Err() == nil {
				n.log.Warn("scheduled snapshot failed", "err", err)
			}
			continue
		}
		n.log.Info("scheduled snapshot written", "file", filepath.Base(path))
		n.pruneScheduledSnapshots(time.Now())
	}
}

// writeScheduledSnapshot writes one snapshot atomically (temporary file,
// fsync, rename, directory fsync), mode 0600, and returns its path.
func (n *Node) writeScheduledSnapshot(ctx context.Context) (string, error) {
	dir := n.cfg.SnapshotDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	write, err := n.snapshotWriter(ctx)
	if err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, scheduledTemp+"*")
	if err != nil {
		return "", err
	}
	ok := false
	defer func() {
		if !ok {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return "", err
	}
	b, err := write(tmp)
	if err != nil {
		return "", err
	}
	if err := tmp.Sync(); err != nil {
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	name := fmt.Sprintf("%s%s-%d%s", scheduledPrefix, b.Header.Time.UTC().Format("20060102T150405.000Z"), b.Header.Index, scheduledSuffix)
	path := filepath.Join(dir, name)
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return path, nil
}

// pruneScheduledSnapshots removes scheduled snapshots beyond the count
// and age limits (the newest is always kept) and leftover temporaries.
func (n *Node) pruneScheduledSnapshots(now time.Time) {
	entries, err := os.ReadDir(n.cfg.SnapshotDir)
	if err != nil {
		return
	}
	type snap struct {
		name string
		mod  time.Time
	}
	var snaps []snap
	for _, e := range entries {
		name := e.Name()
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		switch {
		case strings.HasPrefix(name, scheduledTemp):
			// A temporary of a write that did not finish (crash).
			if now.Sub(fi.ModTime()) > n.cfg.SnapshotInterval+time.Minute {
				_ = os.Remove(filepath.Join(n.cfg.SnapshotDir, name))
			}
		case strings.HasPrefix(name, scheduledPrefix) && strings.HasSuffix(name, scheduledSuffix):
			snaps = append(snaps, snap{name, fi.ModTime()})
		}
	}
	// Names embed the UTC time: newest last.
	slices.SortFunc(snaps, func(a, b snap) int { return strings.Compare(a.name, b.name) })
	for i, s := range snaps {
		newest := i == len(snaps)-1
		tooMany := n.cfg.SnapshotRetain > 0 && len(snaps)-i > n.cfg.SnapshotRetain
		tooOld := n.cfg.SnapshotMaxAge > 0 && now.Sub(s.mod) > n.cfg.SnapshotMaxAge
		if !newest && (tooMany || tooOld) {
			if err := os.Remove(filepath.Join(n.cfg.SnapshotDir, s.name)); err == nil {
				n.log.Info("scheduled snapshot removed", "file", s.name)
			}
		}
	}
}
