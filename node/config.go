package node

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyd/keyd/hsmbridge"
	"github.com/keyd/keyd/transport"
)

// Peer is a cluster member known from configuration.
type Peer struct {
	ID       string
	RaftAddr string
	APIAddr  string
	Region   string
}

// Timing is a named set of Raft timeouts.
type Timing struct {
	Heartbeat   time.Duration
	Election    time.Duration
	LeaderLease time.Duration
	Commit      time.Duration
}

// Timing profiles. LAN fails over in about a second on loopback when the
// leader goes silent (a machine lost, a partition), and in about a third
// of a second when its process dies (its port refuses: fastelect.go);
// WAN tolerates round trips of a few hundred milliseconds between
// regions. The leader lease is also the shortest heartbeat timeout the
// fast path can switch to, so it must stay below the heartbeat timeout.
var (
	TimingLAN = Timing{Heartbeat: 500 * time.Millisecond, Election: 500 * time.Millisecond, LeaderLease: 250 * time.Millisecond, Commit: 50 * time.Millisecond}
	TimingWAN = Timing{Heartbeat: 2 * time.Second, Election: 2 * time.Second, LeaderLease: time.Second, Commit: 100 * time.Millisecond}
)

// TimingProfile returns the named profile ("lan" or "wan").
func TimingProfile(name string) (Timing, error) {
	switch name {
	case "", "lan":
		return TimingLAN, nil
	case "wan":
		return TimingWAN, nil
	}
	return Timing{}, fmt.Errorf("node: unknown timing profile %q (want lan or wan)", name)
}

// Config is one node's configuration. Build it with DefaultConfig and
// check it with Validate; the file format lives in cmd/keyd.
type Config struct {
	// NodeID names the node in Raft and in its certificate's URI SAN.
	NodeID string
	// Region labels the node's failure domain.
	Region string
	// DataDir holds the Raft log, snapshots and the state database.
	DataDir string

	// APIAddr is where the HTTPS API listens; APIAdvertise is what peers
	// and clients use (default: the listener's address).
	APIAddr      string
	APIAdvertise string
	// RaftAddr is where the Raft transport listens (mutual TLS);
	// RaftAdvertise is what peers dial (default: the listener's address).
	RaftAddr      string
	RaftAdvertise string
	// APIListener and RaftListener, when set, are used instead of
	// listening on APIAddr and RaftAddr (tests bind port 0 first).
	APIListener  net.Listener
	RaftListener net.Listener

	// Identity is the node's certificate and the cluster CA. It secures
	// Raft, node-to-node calls, and (unless APITLS is set) the API.
	Identity transport.Identity
	// APITLS optionally replaces the API's TLS configuration, e.g. with a
	// certificate from a public CA. It must still accept (not require)
	// client certificates from the cluster CA for node-to-node calls.
	APITLS *tls.Config

	// HSM opens the device that wraps this node's share of the root
	// secret. With no HSM the node holds no node share: after a restart
	// it needs custodian shares even while the cluster is unsealed.
	HSM hsmbridge.Config
	// HSMKeyLabel names the wrapping key inside the HSM (created if
	// missing; non-extractable).
	HSMKeyLabel string
	// NodeShareInterval is how often the leader checks whether node
	// shares must be re-dealt and a sealed node tries to rejoin.
	NodeShareInterval time.Duration

	// GossipAddr is where memberlist listens (TCP and UDP); empty turns
	// gossip off (static membership from Peers only). GossipAdvertise is
	// what other nodes use. GossipKey (16, 24 or 32 bytes) encrypts and
	// authenticates gossip; it is required with gossip.
	GossipAddr      string
	GossipAdvertise string
	GossipKey       []byte
	// Join lists gossip addresses of existing members. A node with no
	// Raft state joins through them (retrying until one answers); the
	// leader then adds it as a non-voter and promotes it when the
	// placement policy wants another voter.
	Join []string
	// MaxVoters caps the voters (default 5); see placement.go.
	MaxVoters int
	// ReconcileInterval is how often the leader reconciles membership.
	ReconcileInterval time.Duration
	// DeadVoterTimeout is how long a voter may be dead in gossip before a
	// caught-up non-voter replaces it (default 30s).
	DeadVoterTimeout time.Duration
	// DeadNodeRemoveTimeout is how long a node may be dead before the
	// leader removes it from the Raft configuration (default 24h).
	DeadNodeRemoveTimeout time.Duration

	// AuditPath is the audit log file (default DataDir/audit.log).
	AuditPath string
	// AuditFailOpen keeps serving key operations when the audit log
	// cannot be written. Off by default: a KMS should refuse to serve
	// unaudited. Setting it is logged as a warning at every start.
	AuditFailOpen bool
	// AuditSyncInterval, when positive (default 10ms), answers a request
	// once its audit record is written to the log file (it survives a
	// process crash) and fsyncs the log at most this long after: group
	// commit on a timer. A power loss can drop the last interval of
	// records. Zero fsyncs every record before its reply, which on the
	// measured machine cost more than half the throughput (see
	// docs/BENCHMARKS.md).
	AuditSyncInterval time.Duration
	// AuditDisabled turns the audit log off. It exists to measure the
	// audit's cost (cmd/keyd-load) and is not settable from the config
	// file; a node started with it logs a warning.
	AuditDisabled bool
	// AuditAnchorInterval is how often the node commits its audit chain
	// head through Raft, when it moved (default 2s); see auditlog.go.
	AuditAnchorInterval time.Duration
	// AuditRotateSize and AuditRotateAge rotate the audit file by size
	// and by age (0: off); AuditRotateKeep is how many gzipped closed
	// files to keep (0: all).
	AuditRotateSize int64
	AuditRotateAge  time.Duration
	AuditRotateKeep int

	// Peers lists the cluster's members (including this node is fine).
	Peers []Peer
	// Bootstrap forms a new cluster from Peers when the node has no Raft
	// state yet. Every initial member may set it with the same Peers.
	Bootstrap bool

	// Timing holds the Raft timeouts; see TimingLAN and TimingWAN.
	Timing Timing
	// SchedulerInterval is how often the leader looks for keys due for
	// automatic rotation or deletion.
	SchedulerInterval time.Duration
	// MinRotationPeriod is the shortest automatic rotation period a key
	// may ask for (default 1m; tests lower it).
	MinRotationPeriod time.Duration
	// IndexWait bounds how long a request carrying a minimum index waits.
	IndexWait time.Duration
	// ApplyTimeout bounds a Raft write.
	ApplyTimeout time.Duration
	// SnapshotThreshold is the number of log entries between snapshots.
	SnapshotThreshold uint64
	// RaftSnapshotCheck is how often Raft checks whether SnapshotThreshold
	// entries have accumulated since its last snapshot (hashicorp/raft's
	// SnapshotInterval; randomized up to twice this). It bounds the log
	// tail a restarted node must scan before it starts (Raft reads every
	// entry after its last snapshot for configuration changes): at most
	// the threshold plus this interval's writes. Raft's own default, two
	// minutes, let a busy node accumulate 100k entries and take seconds to
	// start. Shorter means more frequent snapshots of the whole state.
	RaftSnapshotCheck time.Duration
	// StateFsync fsyncs the state database on every commit. Off (the
	// default), the state database commits without fsync: it is rebuilt
	// from Raft's fsynced log and snapshots, and a node that finds it ran
	// unsynced under a previous boot (a machine crash) sets it aside and
	// rebuilds it (fsm/unsynced.go). Where the kernel has no boot id
	// (non-Linux) every commit is fsynced anyway.
	StateFsync bool

	// SnapshotInterval, when positive, makes the leader write an operator
	// snapshot (the `keyd operator snapshot save` file) to SnapshotDir
	// every interval, so a DR plan has an RPO by configuration. Only the
	// unsealed leader writes. SnapshotRetain keeps the newest that many
	// (0: no count limit); SnapshotMaxAge removes older ones (0: no age
	// limit).
	SnapshotInterval time.Duration
	SnapshotDir      string
	SnapshotRetain   int
	SnapshotMaxAge   time.Duration

	// KeyCacheSize bounds the unwrapped customer keys the node keeps in
	// memory (default DefaultKeyCacheSize; 0 means the default). Keys stay
	// wrapped in the state database until used; see docs/SCALE.md.
	KeyCacheSize int

	// Logger receives structured logs; never key material.
	Logger *slog.Logger
	// RaftLogOutput is no longer used: Raft's records (and memberlist's)
	// go through Logger, levels mapped, with lib=raft. Kept so that
	// existing callers compile.
	RaftLogOutput io.Writer
	// UnauthenticatedMetrics serves GET /v1/sys/metrics without a token;
	// by default it needs the metrics capability.
	UnauthenticatedMetrics bool
	// MetricsAddr, when set, also serves the metrics of GET
	// /v1/sys/metrics on a separate plain-HTTP listener, without a token,
	// at GET /metrics (and GET /v1/sys/metrics): for a Prometheus on the
	// same host or network segment. A bare port ("9102", ":9102") listens
	// on 127.0.0.1 only. Nothing else is served there.
	MetricsAddr string
	// MetricsListener, when set, is used instead of MetricsAddr (tests).
	MetricsListener net.Listener
	// Usage configures key usage tracking and per-tag defaults
	// (usage.go, tags.go); the zero value takes the defaults.
	Usage UsageConfig
	// WrapStreamLayer, when set, wraps the Raft stream layer (tests
	// inject faults with transport.FaultLayer).
	WrapStreamLayer func(raft.StreamLayer) raft.StreamLayer
	// Now, when set, replaces the wall clock (time.Now) for token expiry,
	// deletion and rotation windows and write timestamps; drills jump it.
	// A jump of more than a minute while the node runs is ignored (see
	// clock.go).
	Now func() time.Time
}

// DefaultConfig returns a configuration with every tunable set; callers
// fill in identity, addresses and data directory.
func DefaultConfig() Config {
	return Config{
		Region:                "default",
		APIAddr:               "127.0.0.1:8200",
		RaftAddr:              "127.0.0.1:8201",
		Timing:                TimingLAN,
		SchedulerInterval:     time.Minute,
		MinRotationPeriod:     time.Minute,
		HSMKeyLabel:           "keyd-node-share",
		MaxVoters:             5,
		AuditSyncInterval:     10 * time.Millisecond,
		ReconcileInterval:     time.Second,
		DeadVoterTimeout:      30 * time.Second,
		DeadNodeRemoveTimeout: 24 * time.Hour,
		NodeShareInterval:     time.Second,
		IndexWait:             5 * time.Second,
		ApplyTimeout:          10 * time.Second,
		SnapshotThreshold:     8192,
		RaftSnapshotCheck:     10 * time.Second,
		SnapshotRetain:        24,
		KeyCacheSize:          DefaultKeyCacheSize,
		Logger:                slog.Default(),
	}
}

// Validate names every field that is missing or wrong.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("node: config: "+format, args...)) }
	if err := transport.ValidateNodeID(c.NodeID); err != nil {
		bad("NodeID: %v", err)
	}
	if c.DataDir == "" {
		bad("DataDir is required")
	}
	if c.APIListener == nil && c.APIAddr == "" {
		bad("APIAddr is required")
	}
	if c.RaftListener == nil && c.RaftAddr == "" {
		bad("RaftAddr is required")
	}
	if len(c.Identity.Cert.Certificate) == 0 || c.Identity.CAs == nil {
		bad("Identity needs a certificate and the cluster CA")
	}
	if c.Timing.Heartbeat <= 0 || c.Timing.Election <= 0 || c.Timing.LeaderLease <= 0 || c.Timing.LeaderLease > c.Timing.Heartbeat {
		bad("Timing: timeouts must be positive with LeaderLease <= Heartbeat")
	}
	if c.SchedulerInterval <= 0 || c.IndexWait <= 0 || c.ApplyTimeout <= 0 || c.MinRotationPeriod <= 0 {
		bad("SchedulerInterval, MinRotationPeriod, IndexWait and ApplyTimeout must be positive")
	}
	seen := map[string]bool{}
	for i, p := range c.Peers {
		if p.ID == "" || p.RaftAddr == "" || p.APIAddr == "" {
			bad("Peers[%d]: ID, RaftAddr and APIAddr are required", i)
		}
		if seen[p.ID] {
			bad("Peers[%d]: duplicate ID %q", i, p.ID)
		}
		seen[p.ID] = true
	}
	if c.Bootstrap && len(c.Peers) == 0 {
		bad("Bootstrap needs Peers (include this node)")
	}
	if len(c.Join) > 0 && c.GossipAddr == "" {
		bad("Join needs GossipAddr")
	}
	if c.HSM != nil && c.HSMKeyLabel == "" {
		bad("HSMKeyLabel is required with an HSM")
	}
	if c.GossipAddr != "" {
		if l := len(c.GossipKey); l != 16 && l != 24 && l != 32 {
			bad("GossipKey must be 16, 24 or 32 bytes with gossip on")
		}
	}
	if c.MaxVoters < 1 || c.ReconcileInterval <= 0 || c.DeadVoterTimeout <= 0 || c.DeadNodeRemoveTimeout <= 0 {
		bad("MaxVoters, ReconcileInterval, DeadVoterTimeout and DeadNodeRemoveTimeout must be positive")
	}
	if c.NodeShareInterval <= 0 {
		bad("NodeShareInterval must be positive")
	}
	if c.SnapshotInterval < 0 || c.SnapshotRetain < 0 || c.SnapshotMaxAge < 0 {
		bad("SnapshotInterval, SnapshotRetain and SnapshotMaxAge must not be negative")
	}
	if c.SnapshotInterval > 0 && c.SnapshotDir == "" {
		bad("SnapshotInterval needs SnapshotDir")
	}
	if c.KeyCacheSize < 0 {
		bad("KeyCacheSize must not be negative")
	}
	if c.Logger == nil {
		bad("Logger is required")
	}
	return errors.Join(errs...)
}
