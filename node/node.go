// Package node wires one keyd server: Raft over mutual TLS, the FSM, the
// seal state, the in-memory keystore and the HTTP API. Behaviour lives in
// the packages it wires (fsm, keyring, shamir, transport, node/httpapi);
// this package holds the glue and the node's lifecycle.
package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/hsmbridge"
	"github.com/keyd/keyd/metrics"
	"github.com/keyd/keyd/node/httpapi"
	"github.com/keyd/keyd/transport"
)

// Node is one keyd server. New opens its state without starting
// goroutines; Start runs it; Close stops it and is idempotent.
type Node struct {
	cfg Config
	log *slog.Logger

	fsm     *fsm.FSM
	raft    *raftParts
	keys    *keystore     // customer keys and the barrier while unsealed
	sealer  sealer        // root secret, custodian ceremonies, node-share dealing (seal.go)
	auth    authenticator // the token table and identity checks
	peers   *peerClient   // the peer book and the one mTLS client for node-to-node calls
	hsm     hsmHolder     // this node's HSM, why it is missing, its health
	member  memberWatch   // this node's own membership and gossip (membership.go)
	metrics *metrics.Metrics
	clock   *clock // time for expiry, windows and write stamps (clock.go)
	snap    snapState
	audit   *auditSink // nil until Start opens the audit log
	server  apiServer  // the API listener and HTTP server, set by Start
	life    lifecycle  // goroutines, and Close's once/result/done

	usage *usageTracker // uses not yet flushed (usage.go)

	// shareRelayHook, set only by tests, runs before each share relay.
	shareRelayHook atomic.Pointer[func(peer string) func()]
}

// hsmHolder is this node's HSM. dev and err are set once by Start
// (openHSM) before any goroutine reads them.
type hsmHolder struct {
	dev hsmbridge.HSM // nil without an HSM or when it failed to open
	err error         // why the HSM could not be opened
	// health caches the last device probe for status requests.
	health struct {
		mu     sync.Mutex
		at     time.Time
		status string
	}
}

// apiServer is the node's API server; both fields are set by Start.
type apiServer struct {
	ln  net.Listener
	srv *http.Server
}

// lifecycle owns the node's goroutines (group, set by Start and stopped
// by Close) and makes Close idempotent: once runs it, err is its result
// and done is closed after it.
type lifecycle struct {
	group *group
	once  sync.Once
	err   error
	done  chan struct{}
}

// New validates cfg and opens the node's state database. It starts no
// goroutines and listens on nothing until Start.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("node: data dir: %w", err)
	}
	n := &Node{
		cfg:  cfg,
		log:  cfg.Logger.With("node", cfg.NodeID),
		life: lifecycle{done: make(chan struct{})},
	}
	n.clock = newClock(cfg.Now, func(skew time.Duration) {
		n.log.Warn("wall clock jumped; following the steady clock until it agrees again", "skew", skew.Round(time.Second).String())
	})
	n.auth.now = n.clock.now
	n.peers = newPeerClient(cfg.NodeID, cfg.Peers, cfg.Identity, n.log)
	n.sealer.dealNow = make(chan struct{}, 1)
	n.keys = newKeystore(n.log, nil, cfg.KeyCacheSize)
	n.metrics = metrics.New(n.metricsSample)
	f, err := fsm.OpenWithOptions(filepath.Join(cfg.DataDir, "state.db"), n.onApply,
		fsm.Options{SkipFsync: !cfg.StateFsync, BootID: fsm.BootID()})
	if err != nil {
		return nil, err
	}
	if f.Rebuilt() {
		n.log.Warn("state database set aside after a machine crash (it ran without fsync); rebuilding it from Raft's last snapshot and log",
			"discarded", fsm.DiscardedPath(filepath.Join(cfg.DataDir, "state.db")))
	}
	n.fsm = f
	n.keys.src = f
	n.sealer.cust = n.newCustodians()
	n.auth.tags = &tagTable{}
	n.usage = newUsageTracker(n.now)
	if err := n.auth.tags.rebuild(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	if err := n.auth.reload(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return n, nil
}

// onApply keeps the in-memory views in step with the FSM.
func (n *Node) onApply(ev fsm.Event) {
	if ev.Tokens || ev.Init || ev.Restored {
		if err := n.auth.reload(n.fsm); err != nil {
			n.log.Error("reload tokens", "err", err)
		}
	}
	if err := n.auth.tags.onEvent(ev, n.fsm); err != nil {
		n.log.Error("reload key tags", "err", err)
	}
	n.keys.onEvent(ev)
	if ev.Root {
		n.onRootRotated()
	}
	if ev.Sealed || ev.Restored {
		// Off the FSM's goroutine: sealing takes the custodian
		// ceremonies' locks, which a root rotation holds while it waits
		// for its own entry to be applied.
		if g := n.life.group; g != nil {
			g.Go(func(context.Context) { n.onClusterSeal() })
		} else {
			n.onClusterSeal()
		}
	}
}

// Start starts Raft, the API server and the leader's scheduler. It
// returns once the node is listening; the node runs until Close or until
// ctx ends.
func (n *Node) Start(ctx context.Context) error {
	n.life.group = newGroup(context.WithoutCancel(ctx))
	ln := n.cfg.APIListener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", n.cfg.APIAddr); err != nil {
			return fmt.Errorf("node: api listen %s: %w", n.cfg.APIAddr, err)
		}
	}
	n.server.ln = ln
	if err := n.openAudit(); err != nil {
		_ = ln.Close()
		return err
	}
	n.openHSM(ctx)
	n.peers.set(Peer{ID: n.cfg.NodeID, APIAddr: n.apiAdvertise(), Region: n.cfg.Region})
	rp, err := n.startRaft()
	if err != nil {
		_ = ln.Close()
		return err
	}
	n.raft = rp
	n.peers.set(Peer{ID: n.cfg.NodeID, APIAddr: n.apiAdvertise(), RaftAddr: string(rp.advertise), Region: n.cfg.Region})

	tlsCfg := n.cfg.APITLS
	if tlsCfg == nil {
		tlsCfg = transport.APIServerConfig(n.cfg.Identity)
	}
	// Client certificates are requested but not chain-verified by TLS:
	// application identities are public-key hashes (any certificate,
	// possession proven by the handshake); node identities are verified
	// against the cluster CA in isPeer.
	tlsCfg = tlsCfg.Clone()
	tlsCfg.ClientAuth = tls.RequestClientCert
	n.auth.isPeer = n.isPeer
	var auditor httpapi.Auditor
	if n.audit != nil {
		auditor = timedAuditor{Auditor: n.audit, m: n.metrics}
	}
	handler := httpapi.New(httpapi.Config{
		Audit: auditor,
		Sys:   n, Keys: n, Crypto: n, Cluster: n, NodeShares: n, Membership: n, Rotation: n, KV: n, Vault: n, Auth: &n.auth,
		IsPeer: n.isPeer, NodeCertID: n.nodeCertID, Admin: n, Snapshots: n,
		Logger:     n.log,
		AuditTrail: n,
		Usage:      n,
		Metrics:    n.metrics, UnauthenticatedMetrics: n.cfg.UnauthenticatedMetrics,
		LeaderContactLost: n.LeaderContactLost,
	})
	n.server.srv = &http.Server{
		Handler:           handler,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	tlsLn := newTLSListener(ln, tlsCfg)
	n.life.group.Go(func(context.Context) {
		if err := n.server.srv.Serve(tlsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("api server stopped", "err", err)
		}
	})
	if err := n.startMetricsListener(); err != nil {
		_ = n.Close()
		return err
	}
	if err := n.startGossip(); err != nil {
		_ = n.Close()
		return fmt.Errorf("node: gossip: %w", err)
	}
	n.life.group.Go(n.runScheduler)
	n.life.group.Go(n.runNodeShares)
	n.life.group.Go(n.runReconcile)
	n.life.group.Go(n.runAudit)
	n.life.group.Go(n.runSnapshots)
	n.life.group.Go(n.runUsage)
	n.life.group.Go(func(gctx context.Context) {
		select {
		case <-ctx.Done():
			go func() { _ = n.Close() }()
		case <-gctx.Done():
		}
	})
	n.log.Info("started", "api", n.apiAdvertise(), "raft", rp.advertise, "region", n.cfg.Region)
	return nil
}

// openHSM opens the configured HSM and ensures its wrapping key. A failure
// leaves the node running without node shares: it stays sealed until
// custodians act, and says why.
func (n *Node) openHSM(ctx context.Context) {
	if n.cfg.HSM == nil {
		return
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	h, err := n.cfg.HSM.Open(octx)
	if err == nil {
		if err = h.EnsureKey(octx, n.cfg.HSMKeyLabel); err != nil {
			_ = h.Close()
		}
	}
	if err != nil {
		n.hsm.err = err
		n.log.Error("HSM unavailable: node shares disabled on this node", "err", err)
		return
	}
	n.hsm.dev = n.metrics.WrapHSM(h)
}

// Close stops the node in order: API, Raft, FSM, then zeroes key
// material. It returns the joined errors of every step and the same
// result on every call.
func (n *Node) Close() error {
	n.life.once.Do(func() {
		var errs []error
		if n.server.srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := n.server.srv.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("node: http shutdown: %w", err))
				_ = n.server.srv.Close()
			}
			cancel()
		} else if n.server.ln != nil {
			_ = n.server.ln.Close()
		}
		if n.life.group != nil {
			n.life.group.Close()
		}
		// Gossip stops without a graceful leave: peers see the node as
		// dead, which is what a crash or a restart looks like too.
		if n.member.gossip != nil {
			if err := n.member.gossip.Close(); err != nil {
				errs = append(errs, fmt.Errorf("node: gossip: %w", err))
			}
		}
		n.flushUsageOnClose() // while Raft still runs
		n.closeAudit()        // final checkpoint and anchor, while Raft still runs
		if err := n.raft.close(); err != nil {
			errs = append(errs, fmt.Errorf("node: raft shutdown: %w", err))
		}
		if n.audit != nil {
			if err := n.audit.l.Close(); err != nil {
				errs = append(errs, fmt.Errorf("node: audit log: %w", err))
			}
		}
		if err := n.fsm.Close(); err != nil {
			errs = append(errs, err)
		}
		n.sealLocal(false)
		n.sealer.cust.Close()
		if n.hsm.dev != nil {
			if err := n.hsm.dev.Close(); err != nil {
				errs = append(errs, fmt.Errorf("node: hsm close: %w", err))
			}
		}
		n.peers.closeIdle()
		n.life.err = errors.Join(errs...)
		close(n.life.done)
	})
	return n.life.err
}

// Done is closed when the node has closed.
func (n *Node) Done() <-chan struct{} { return n.life.done }

// ID returns the node id.
func (n *Node) ID() string { return n.cfg.NodeID }

// APIAddr returns the address clients use for this node's API.
func (n *Node) APIAddr() string { return n.apiAdvertise() }

// RaftAddr returns the address peers use for this node's Raft transport.
func (n *Node) RaftAddr() string {
	if n.raft == nil {
		return ""
	}
	return string(n.raft.advertise)
}

// Sealed reports whether the node is sealed.
func (n *Node) Sealed() bool { return !n.keys.unsealed() }

func (n *Node) apiAdvertise() string {
	if n.cfg.APIAdvertise != "" {
		return n.cfg.APIAdvertise
	}
	if n.server.ln != nil {
		return n.server.ln.Addr().String()
	}
	return n.cfg.APIAddr
}

// Health is the cheap, unauthenticated view of the node.
func (n *Node) Health() api.Health {
	_, err := n.fsm.InitRecord()
	return api.Health{
		NodeID: n.cfg.NodeID, Initialized: err == nil, Sealed: n.Sealed(),
		Leader: n.IsLeader(), Applied: n.fsm.AppliedIndex(),
	}
}

// Status reports seal state, unseal progress, the leader and the peers.
func (n *Node) Status() api.SealStatus {
	st := api.SealStatus{NodeID: n.cfg.NodeID, Sealed: n.Sealed(), Applied: n.fsm.AppliedIndex(), Version: Version}
	if rec, err := n.fsm.InitRecord(); err == nil {
		st.Initialized = true
		st.Threshold = rec.Threshold
		st.Custodians = rec.Custodians
	}
	n.sealer.mu.Lock()
	st.Progress, st.Fingerprint = n.sealer.cust.Progress()
	if !st.Sealed {
		st.UnsealedBy = n.sealer.unsealedBy
	} else {
		st.SealReason = n.sealer.reason
	}
	n.sealer.mu.Unlock()
	if f := n.snap.failure(); f != "" && st.Sealed {
		st.SealReason = f
	}
	st.HSM = n.hsmStatus(context.Background())
	st.NodeShares = n.nodeSharesStatus()
	if rec, c, err := n.nodeShareCommitments(); err == nil && rec != nil {
		if _, ok := rec.Holders[n.cfg.NodeID]; ok {
			st.NodeShare = c.Fingerprint()
		}
	}
	if n.raft == nil {
		return st
	}
	// The term is read around the state, so a pair is reported only when
	// the term did not change in between (0 otherwise: unknown).
	t1 := n.raft.raft.CurrentTerm()
	st.RaftState = n.raft.raft.State().String()
	if t2 := n.raft.raft.CurrentTerm(); t1 == t2 {
		st.Term = t1
	}
	st.LeaderID, st.Leader = n.Leader()
	if fut := n.raft.raft.GetConfiguration(); fut.Error() == nil {
		for _, s := range fut.Configuration().Servers {
			st.Peers = append(st.Peers, api.Peer{
				ID: string(s.ID), RaftAddr: string(s.Address), APIAddr: n.peers.apiAddr(string(s.ID)),
				Voter: s.Suffrage == raft.Voter, Leader: string(s.ID) == st.LeaderID,
			})
		}
	}
	return st
}

// DumpState writes the replicated state deterministically; tests compare
// replicas with it.
func (n *Node) DumpState(w io.Writer) error { return n.fsm.Dump(w) }

// isPeer verifies that a request comes from a cluster node: its client
// certificate chains to the cluster CA and names a node.
func (n *Node) isPeer(r *http.Request) (string, bool) {
	id, ok := n.nodeCertID(r)
	// A removed node keeps its certificate: only current members are
	// peers.
	if !ok || !n.isMember(id) {
		return "", false
	}
	return id, true
}

// nodeCertID returns the node id of a request's client certificate when it
// chains to the cluster CA, member or not.
func (n *Node) nodeCertID(r *http.Request) (string, bool) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return "", false
	}
	leaf := r.TLS.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range r.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: n.cfg.Identity.CAs, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return "", false
	}
	for _, u := range leaf.URIs {
		if id, ok := transport.NodeIDFromURI(u); ok {
			return id, true
		}
	}
	return "", false
}
