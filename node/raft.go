package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/internal/logbridge"
	"github.com/keyd/keyd/node/errs"
	"github.com/keyd/keyd/transport"
)

// raftParts are the pieces of the Raft stack the node owns.
type raftParts struct {
	raft  *raft.Raft
	trans *raft.NetworkTransport
	// contacts is trans as Raft uses it: it records each peer's last
	// successful AppendEntries (metrics).
	contacts  *contactTransport
	logs      *closingStore
	advertise raft.ServerAddress
	// watch starts an election early when the leader's process is gone
	// (fastelect.go).
	watch *leaderWatch
}

func (n *Node) startRaft() (*raftParts, error) {
	cfg := n.cfg
	ln := cfg.RaftListener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.RaftAddr); err != nil {
			return nil, fmt.Errorf("node: raft listen %s: %w", cfg.RaftAddr, err)
		}
	}
	var adv net.Addr
	if cfg.RaftAdvertise != "" {
		a, err := net.ResolveTCPAddr("tcp", cfg.RaftAdvertise)
		if err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("node: RaftAdvertise: %w", err)
		}
		adv = a
	}
	layer, err := transport.NewLayer(ln, cfg.Identity, adv)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	watch := newLeaderWatch(cfg.NodeID, cfg.Timing, n.log, n.metrics)
	var stream raft.StreamLayer = &watchLayer{StreamLayer: layer, w: watch}
	if cfg.WrapStreamLayer != nil {
		stream = cfg.WrapStreamLayer(stream)
	}
	logger := logbridge.NewHCLog(n.log, "raft", raftLogRules)
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 4, Timeout: 10 * time.Second, Logger: logger,
	})

	raftDir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		_ = trans.Close()
		return nil, fmt.Errorf("node: %w", err)
	}
	logs, err := raftboltdb.New(RaftLogStoreOptions(filepath.Join(raftDir, "raft.db")))
	if err != nil {
		_ = trans.Close()
		return nil, fmt.Errorf("node: raft log store: %w", err)
	}
	store := &closingStore{s: logs}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, 2, logger)
	if err != nil {
		_ = logs.Close()
		_ = trans.Close()
		return nil, fmt.Errorf("node: snapshot store: %w", err)
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = cfg.Timing.Heartbeat
	rc.ElectionTimeout = cfg.Timing.Election
	rc.LeaderLeaseTimeout = cfg.Timing.LeaderLease
	rc.CommitTimeout = cfg.Timing.Commit
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	if cfg.RaftSnapshotCheck > 0 {
		rc.SnapshotInterval = cfg.RaftSnapshotCheck
	}
	rc.Logger = logger
	// The FSM is persistent and records its applied index, so it resumes
	// where it was; restoring the last snapshot on start would only throw
	// that work away. Unless it is behind that snapshot: set aside after
	// a machine crash (fsm/unsynced.go) or older than the snapshot for
	// any other reason. Raft replays only the entries after its last
	// snapshot, so such an FSM must start from the snapshot.
	behind, err := fsmBehindSnapshot(n.fsm.AppliedIndex(), snaps)
	if err != nil {
		_ = logs.Close()
		_ = trans.Close()
		return nil, err
	}
	rc.NoSnapshotRestoreOnStart = !behind
	if behind {
		n.log.Warn("state database is behind Raft's last snapshot: restoring the snapshot", "applied", n.fsm.AppliedIndex())
	}

	if cfg.Bootstrap {
		has, err := raft.HasExistingState(store, store, snaps)
		if err != nil {
			_ = logs.Close()
			_ = trans.Close()
			return nil, fmt.Errorf("node: raft state: %w", err)
		}
		if !has {
			var servers []raft.Server
			for _, p := range cfg.Peers {
				servers = append(servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr), Suffrage: raft.Voter})
			}
			if err := raft.BootstrapCluster(rc, store, store, snaps, trans, raft.Configuration{Servers: servers}); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
				_ = logs.Close()
				_ = trans.Close()
				return nil, fmt.Errorf("node: bootstrap: %w", err)
			}
		}
	}
	contacts := newContactTransport(trans)
	// The recent entries are kept in memory too: replication to each
	// follower reads them back, and otherwise decodes them from bbolt.
	cached, err := raft.NewLogCache(RaftLogCacheSize, store)
	if err != nil {
		_ = logs.Close()
		_ = trans.Close()
		return nil, fmt.Errorf("node: raft log cache: %w", err)
	}
	r, err := raft.NewRaft(rc, n.fsm, cached, store, snaps, contacts)
	if err != nil {
		_ = logs.Close()
		_ = trans.Close()
		return nil, fmt.Errorf("node: raft: %w", err)
	}
	if watch.enabled() {
		watch.start(r)
	}
	return &raftParts{raft: r, trans: trans, contacts: contacts, logs: store, advertise: trans.LocalAddr(), watch: watch}, nil
}

// RaftLogCacheSize is how many recent Raft log entries a node keeps in
// memory in front of its log store: a few rounds of pipelined replication
// at a few dozen callers, and at most 16 MiB (64 × fsm.MaxCommandSize).
const RaftLogCacheSize = 64

// RaftLogStoreOptions are the options of a node's Raft log and stable
// store (raft-boltdb, every append fsynced). The free page list is not
// written with each commit: bbolt rebuilds it from the tree when it opens
// the file.
func RaftLogStoreOptions(path string) raftboltdb.Options {
	return raftboltdb.Options{
		Path: path,
		BoltOptions: &bolt.Options{
			Timeout:        5 * time.Second,
			NoFreelistSync: true,
			FreelistType:   bolt.FreelistMapType,
		},
	}
}

func (p *raftParts) close() error {
	if p == nil {
		return nil
	}
	p.watch.stop()
	err := p.raft.Shutdown().Error()
	return errors.Join(err, p.trans.Close(), p.logs.Close())
}

// peerClosed matches a Raft record whose error is a clean end of the
// connection by the peer (EOF), nothing else.
func peerClosed(attr func(string) (string, bool)) bool {
	err, _ := attr("error")
	return err == "EOF"
}

// raftLogRules demote the Raft records every normal start and stop
// produces; anything else keeps its level.
var raftLogRules = []logbridge.Rule{
	{
		Source: "raft", From: slog.LevelWarn, Prefix: "heartbeat timeout reached, starting election", To: slog.LevelInfo,
		When: func(attr func(string) (string, bool)) bool {
			id, ok := attr("last-leader-id")
			return ok && id == ""
		},
		Why: "no leader was known yet: the first election of a starting node, not a lost leader",
	},
	{
		Source: "raft", From: slog.LevelWarn, Prefix: "rejecting pre-vote request since we have a leader", To: slog.LevelInfo,
		Why: "a starting peer campaigned while this node already follows a live leader; pre-vote refused the " +
			"needless election as designed, and a peer that really lost its leader logs that itself",
	},
	{
		Source: "raft", From: slog.LevelWarn, Prefix: "rejecting vote request since we have a leader", To: slog.LevelInfo,
		Why: "as above, for a peer that campaigned without pre-vote",
	},
	{
		Source: "raft", From: slog.LevelWarn, Prefix: "rejecting vote request since our last term is greater", To: slog.LevelInfo,
		Why: "a peer with an older log campaigned (typically one that started a moment later); Raft refused it " +
			"as designed, and the candidate logs its own election",
	},
	{
		Source: "raft", From: slog.LevelError, Prefix: "failed to heartbeat to", To: slog.LevelInfo,
		When: peerClosed,
		Why: "the peer closed the connection: it is stopping or restarting (a whole cluster stopping at once " +
			"logs this on every node); if it stays away, the redial fails and that is logged at ERROR",
	},
	{
		Source: "raft", From: slog.LevelError, Prefix: "failed to appendEntries to", To: slog.LevelInfo,
		When: peerClosed,
		Why:  "as above",
	},
	{
		Source: "raft", From: slog.LevelError, Prefix: "failed to decode incoming command", To: slog.LevelDebug,
		When: func(attr func(string) (string, bool)) bool {
			err, _ := attr("error")
			return err == "transport shutdown" || strings.HasSuffix(err, "use of closed network connection")
		},
		Why: "this node's own transport closed the connection: a clean shutdown (a peer that dies gives EOF, which raft does not log)",
	},
	{
		Source: "raft", From: slog.LevelError, Prefix: "failed to flush response", To: slog.LevelDebug,
		When: func(attr func(string) (string, bool)) bool {
			err, _ := attr("error")
			return strings.HasSuffix(err, "use of closed network connection")
		},
		Why: "as above, with the reply to a request that arrived as the transport closed",
	},
}

// IsLeader reports whether this node is the Raft leader.
func (n *Node) IsLeader() bool { return n.raft.raft.State() == raft.Leader }

// Leader returns the leader's id and API address ("" when unknown).
func (n *Node) Leader() (id, apiAddr string) {
	_, lid := n.raft.raft.LeaderWithID()
	id = string(lid)
	if id == "" {
		return "", ""
	}
	return id, n.peers.apiAddr(id)
}

// apply proposes a command on the leader and waits for it to be applied
// here. It is the only code that touches raft.ApplyFuture. A timeout or
// lost leadership means the outcome is unknown: the caller may retry with
// the same request id, which the FSM deduplicates.
func (n *Node) apply(ctx context.Context, c fsm.Command) (*fsm.Result, error) {
	if !n.IsLeader() {
		return nil, n.notLeader()
	}
	b, err := fsm.Encode(c)
	if err != nil {
		return nil, &api.Error{Code: api.CodeBadRequest, Message: err.Error()}
	}
	timeout, err := n.raftTimeout(ctx)
	if err != nil {
		return nil, err
	}
	f := n.raft.raft.Apply(b, timeout)
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader):
			return nil, n.notLeader()
		case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrRaftShutdown):
			return nil, &api.Error{Code: api.CodeUnavailable, Message: "write outcome unknown (leadership changed); retry with the same request id"}
		}
		return nil, fmt.Errorf("node: raft apply: %w", err)
	}
	res, ok := f.Response().(*fsm.Result)
	if !ok {
		return nil, fmt.Errorf("node: unexpected apply response %T", f.Response())
	}
	if res.Err != nil {
		return res, res.Err
	}
	return res, nil
}

// raftTimeout bounds a Raft operation by ApplyTimeout and ctx's deadline.
// Raft reads a timeout of zero as "wait forever", so an expired ctx is
// an error here, never a zero timeout.
func (n *Node) raftTimeout(ctx context.Context) (time.Duration, error) {
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if timeout <= 0 {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		return 0, context.DeadlineExceeded
	}
	return timeout, nil
}

// notLeader is the typed not-leader error, naming the leader when known;
// httpapi's errorFor turns it into not_leader with the leader's address.
func (n *Node) notLeader() error {
	id, addr := n.Leader()
	return &errs.NotLeader{ID: id, Leader: addr}
}

// verifyLeader makes a linearizable read possible: it commits a barrier
// through the log, which proves leadership and that every earlier entry is
// applied here.
func (n *Node) verifyLeader(ctx context.Context) error {
	if !n.IsLeader() {
		return n.notLeader()
	}
	timeout, err := n.raftTimeout(ctx)
	if err != nil {
		return err
	}
	if err := n.raft.raft.Barrier(timeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return n.notLeader()
		}
		return &api.Error{Code: api.CodeUnavailable, Message: "could not confirm leadership"}
	}
	return nil
}

// WaitApplied waits, at most IndexWait, until index is applied here.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	if n.fsm.AppliedIndex() >= index {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.IndexWait)
	defer cancel()
	if err := n.fsm.WaitApplied(ctx, index); err != nil {
		return &api.Error{Code: api.CodeIndexTimeout, Message: fmt.Sprintf("index %d not applied within %s", index, n.cfg.IndexWait), Index: n.fsm.AppliedIndex()}
	}
	return nil
}

// AppliedIndex returns the last index applied here.
func (n *Node) AppliedIndex() uint64 { return n.fsm.AppliedIndex() }

// fsmBehindSnapshot reports whether the FSM's applied index is below the
// newest snapshot's index.
func fsmBehindSnapshot(applied uint64, snaps raft.SnapshotStore) (bool, error) {
	metas, err := snaps.List()
	if err != nil {
		return false, fmt.Errorf("node: snapshot store: %w", err)
	}
	return len(metas) > 0 && metas[0].Index > applied, nil
}
