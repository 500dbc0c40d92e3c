package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/keyd/keyd/hsmbridge"
	"github.com/keyd/keyd/hsmbridge/pkcs11"
	"github.com/keyd/keyd/hsmbridge/soft"
	"github.com/keyd/keyd/node"
	"github.com/keyd/keyd/transport"
)

// Config file errors; the messages name the file and the field.
var (
	// errConfigParse is a file that is not valid YAML for fileConfig,
	// including an unknown field.
	errConfigParse = errors.New("config: parse")
	// errMissingField is a required field left empty.
	errMissingField = errors.New("config: missing required field")
	// errBadValue is a field whose value is not allowed.
	errBadValue = errors.New("config: bad value")
)

// maxConfigBytes bounds a config file; a real one is a few hundred bytes.
const maxConfigBytes = 1 << 20

// fileConfig is the YAML config file of `keyd server`. keyd.example.yaml
// documents every field. Secrets are never inline: the node's private key
// is a file reference.
type fileConfig struct {
	NodeID        string     `yaml:"node_id"`
	Region        string     `yaml:"region"`
	DataDir       string     `yaml:"data_dir"`
	APIAddr       string     `yaml:"api_addr"`
	APIAdvertise  string     `yaml:"api_advertise"`
	RaftAddr      string     `yaml:"raft_addr"`
	RaftAdvertise string     `yaml:"raft_advertise"`
	TLS           fileTLS    `yaml:"tls"`
	Peers         []filePeer `yaml:"peers"`
	Bootstrap     bool       `yaml:"bootstrap"`
	Timing        string     `yaml:"timing"`
	HSM           fileHSM    `yaml:"hsm"`

	GossipAddr            string         `yaml:"gossip_addr"`
	GossipAdvertise       string         `yaml:"gossip_advertise"`
	GossipKeyFile         string         `yaml:"gossip_key_file"`
	Join                  []string       `yaml:"retry_join"`
	MaxVoters             int            `yaml:"max_voters"`
	AuditPath             string         `yaml:"audit_path"`
	AuditFailOpen         bool           `yaml:"audit_fail_open"`
	AuditSyncInterval     *time.Duration `yaml:"audit_sync_interval"`
	AuditAnchorInterval   time.Duration  `yaml:"audit_anchor_interval"`
	AuditRotateSize       int64          `yaml:"audit_rotate_size"`
	AuditRotateAge        time.Duration  `yaml:"audit_rotate_age"`
	AuditRotateKeep       int            `yaml:"audit_rotate_keep"`
	DeadVoterTimeout      time.Duration  `yaml:"dead_voter_timeout"`
	DeadNodeRemoveTimeout time.Duration  `yaml:"dead_node_remove_timeout"`

	SchedulerInterval time.Duration `yaml:"scheduler_interval"`
	IndexWait         time.Duration `yaml:"index_wait"`
	ApplyTimeout      time.Duration `yaml:"apply_timeout"`
	SnapshotThreshold uint64        `yaml:"snapshot_threshold"`
	// RaftSnapshotCheck is how often Raft looks for snapshot_threshold new
	// entries (default 10s); see node.Config.RaftSnapshotCheck.
	RaftSnapshotCheck time.Duration `yaml:"raft_snapshot_check"`
	// StateFsync fsyncs the state database on every commit (default
	// false: it is rebuilt from Raft after a machine crash); see
	// node.Config.StateFsync.
	StateFsync bool `yaml:"state_fsync"`
	// KeyCacheSize bounds the unwrapped keys a node keeps in memory
	// (default 10000); keys stay wrapped in the state until used.
	KeyCacheSize int `yaml:"key_cache_size"`

	// Scheduled operator snapshots (disaster recovery).
	SnapshotInterval time.Duration `yaml:"snapshot_interval"`
	SnapshotDir      string        `yaml:"snapshot_dir"`
	SnapshotRetain   *int          `yaml:"snapshot_retain"`
	SnapshotMaxAge   time.Duration `yaml:"snapshot_max_age"`

	// Key usage tracking and per-tag rules (report.go).
	UsageFlushInterval time.Duration            `yaml:"usage_flush_interval"`
	TagRules           map[string]tagRuleConfig `yaml:"tag_rules"`

	LogLevel string `yaml:"log_level"`
	// LogFormat is json (default) or text; Raft's and memberlist's records
	// come out in the same format, through the same handler.
	LogFormat string `yaml:"log_format"`

	// UnauthenticatedMetrics serves GET /v1/sys/metrics without a token.
	UnauthenticatedMetrics bool `yaml:"unauthenticated_metrics"`
	// MetricsListen, when set, also serves the metrics over plain HTTP,
	// without a token, at GET /metrics on this address; a bare port
	// (":9102") listens on 127.0.0.1 only.
	MetricsListen string `yaml:"metrics_listen"`
}

type fileTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	CAFile   string `yaml:"ca_file"`
}

// fileHSM selects the device that wraps this node's share of the root.
type fileHSM struct {
	// Type is "pkcs11", "soft" or "none" (default).
	Type string `yaml:"type"`
	// Path is the soft HSM's key directory.
	Path string `yaml:"path"`
	// Module, TokenLabel and the PIN (from PINFile or the environment
	// variable PINEnv, never inline) select a PKCS#11 token.
	Module     string `yaml:"module"`
	TokenLabel string `yaml:"token_label"`
	PINFile    string `yaml:"pin_file"`
	PINEnv     string `yaml:"pin_env"`
	// KeyLabel names the wrapping key in the device (default keyd-node-share).
	KeyLabel string `yaml:"key_label"`
}

// hsmConfig turns the hsm section into an hsmbridge.Config. The PIN is
// read here, from a file or the environment, so it never sits in the
// config file or on a command line.
func (h fileHSM) hsmConfig(getenv func(string) string) (hsmbridge.Config, error) {
	switch h.Type {
	case "", "none":
		return nil, nil
	case "soft":
		if h.Path == "" {
			return nil, errors.New("config: hsm: soft needs path")
		}
		return soft.Config{Path: h.Path}, nil
	case "pkcs11":
		if h.Module == "" || h.TokenLabel == "" {
			return nil, errors.New("config: hsm: pkcs11 needs module and token_label")
		}
		var pin string
		switch {
		case h.PINFile != "" && h.PINEnv != "":
			return nil, errors.New("config: hsm: set pin_file or pin_env, not both")
		case h.PINFile != "":
			b, err := os.ReadFile(h.PINFile)
			if err != nil {
				return nil, fmt.Errorf("config: hsm: pin_file: %w", err)
			}
			pin = strings.TrimRight(string(b), "\r\n")
		case h.PINEnv != "":
			pin = getenv(h.PINEnv)
			if pin == "" {
				return nil, fmt.Errorf("config: hsm: environment variable %s is empty", h.PINEnv)
			}
		default:
			return nil, errors.New("config: hsm: pkcs11 needs pin_file or pin_env")
		}
		return pkcs11.Config{Module: h.Module, TokenLabel: h.TokenLabel, PIN: pin}, nil
	}
	return nil, fmt.Errorf("config: hsm: unknown type %q (pkcs11, soft or none)", h.Type)
}

type filePeer struct {
	ID       string `yaml:"id"`
	RaftAddr string `yaml:"raft_addr"`
	APIAddr  string `yaml:"api_addr"`
	Region   string `yaml:"region"`
}

// identityLoader loads the node's TLS identity; transport.LoadIdentity in
// production, an in-memory CA in tests.
type identityLoader func(nodeID, certFile, keyFile, caFile string) (transport.Identity, error)

// loadConfigFile reads and parses the YAML file at path.
func loadConfigFile(path string) (*fileConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	fc, err := parseConfig(io.LimitReader(f, maxConfigBytes))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return fc, nil
}

// parseConfig decodes one YAML document strictly: unknown fields and
// trailing documents are errors, so a typo cannot silently fall back to
// a default.
func parseConfig(r io.Reader) (*fileConfig, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("config: read: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var fc fileConfig
	if err := dec.Decode(&fc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty file", errConfigParse)
		}
		return nil, fmt.Errorf("%w: %v", errConfigParse, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: more than one YAML document", errConfigParse)
	}
	return &fc, nil
}

// check names every required field that is empty and every value keyd
// rejects before building a node.Config; node.Config.Validate checks the
// rest with its own field names.
func (fc *fileConfig) check() error {
	var errs []error
	missing := func(name, v string) {
		if strings.TrimSpace(v) == "" {
			errs = append(errs, fmt.Errorf("%w: %s", errMissingField, name))
		}
	}
	missing("node_id", fc.NodeID)
	missing("data_dir", fc.DataDir)
	missing("api_addr", fc.APIAddr)
	missing("raft_addr", fc.RaftAddr)
	missing("tls.cert_file", fc.TLS.CertFile)
	missing("tls.key_file", fc.TLS.KeyFile)
	missing("tls.ca_file", fc.TLS.CAFile)
	for i, p := range fc.Peers {
		missing(fmt.Sprintf("peers[%d].id", i), p.ID)
		missing(fmt.Sprintf("peers[%d].raft_addr", i), p.RaftAddr)
		missing(fmt.Sprintf("peers[%d].api_addr", i), p.APIAddr)
	}
	if fc.NodeID != "" {
		if err := transport.ValidateNodeID(fc.NodeID); err != nil {
			errs = append(errs, fmt.Errorf("%w: node_id: %w", errBadValue, err))
		}
	}
	if _, err := node.TimingProfile(fc.Timing); err != nil {
		errs = append(errs, fmt.Errorf("%w: timing %q: want lan or wan", errBadValue, fc.Timing))
	}
	if _, err := fc.logLevel(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, fc.checkUsage()...)
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"scheduler_interval", fc.SchedulerInterval}, {"index_wait", fc.IndexWait}, {"apply_timeout", fc.ApplyTimeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%w: %s must not be negative", errBadValue, d.name))
		}
	}
	return errors.Join(errs...)
}

// logLevel parses log_level (default info).
func (fc *fileConfig) logLevel() (slog.Level, error) {
	var l slog.Level
	if fc.LogLevel == "" {
		return slog.LevelInfo, nil
	}
	if err := l.UnmarshalText([]byte(fc.LogLevel)); err != nil {
		return 0, fmt.Errorf("%w: log_level %q: want debug, info, warn or error", errBadValue, fc.LogLevel)
	}
	return l, nil
}

// nodeConfig turns the file into a validated node.Config. Zero optional
// fields keep node.DefaultConfig's values. Logs, Raft's and memberlist's
// included, go to logOut as JSON, or text with log_format: text.
func (fc *fileConfig) nodeConfig(load identityLoader, logOut io.Writer) (node.Config, error) {
	if err := fc.check(); err != nil {
		return node.Config{}, err
	}
	level, _ := fc.logLevel()
	timing, _ := node.TimingProfile(fc.Timing)
	id, err := load(fc.NodeID, fc.TLS.CertFile, fc.TLS.KeyFile, fc.TLS.CAFile)
	if err != nil {
		return node.Config{}, fmt.Errorf("config: tls: %w", err)
	}
	cfg := node.DefaultConfig()
	cfg.NodeID = fc.NodeID
	if fc.Region != "" {
		cfg.Region = fc.Region
	}
	cfg.DataDir = fc.DataDir
	cfg.APIAddr, cfg.APIAdvertise = fc.APIAddr, fc.APIAdvertise
	cfg.RaftAddr, cfg.RaftAdvertise = fc.RaftAddr, fc.RaftAdvertise
	cfg.Identity = id
	for _, p := range fc.Peers {
		cfg.Peers = append(cfg.Peers, node.Peer{ID: p.ID, RaftAddr: p.RaftAddr, APIAddr: p.APIAddr, Region: p.Region})
	}
	cfg.Bootstrap = fc.Bootstrap
	if cfg.HSM, err = fc.HSM.hsmConfig(os.Getenv); err != nil {
		return node.Config{}, err
	}
	if fc.HSM.KeyLabel != "" {
		cfg.HSMKeyLabel = fc.HSM.KeyLabel
	}
	cfg.GossipAddr, cfg.GossipAdvertise, cfg.Join = fc.GossipAddr, fc.GossipAdvertise, fc.Join
	if fc.GossipKeyFile != "" {
		if cfg.GossipKey, err = readGossipKey(fc.GossipKeyFile); err != nil {
			return node.Config{}, err
		}
	}
	cfg.AuditPath, cfg.AuditFailOpen = fc.AuditPath, fc.AuditFailOpen
	if fc.AuditSyncInterval != nil {
		if *fc.AuditSyncInterval < 0 {
			return node.Config{}, fmt.Errorf("%w: audit_sync_interval must not be negative", errBadValue)
		}
		cfg.AuditSyncInterval = *fc.AuditSyncInterval
	}
	if fc.AuditAnchorInterval < 0 || fc.AuditRotateSize < 0 || fc.AuditRotateAge < 0 || fc.AuditRotateKeep < 0 {
		return node.Config{}, fmt.Errorf("%w: audit_anchor_interval and audit_rotate_* must not be negative", errBadValue)
	}
	cfg.AuditAnchorInterval = fc.AuditAnchorInterval
	cfg.AuditRotateSize, cfg.AuditRotateAge, cfg.AuditRotateKeep = fc.AuditRotateSize, fc.AuditRotateAge, fc.AuditRotateKeep
	if fc.MaxVoters != 0 {
		cfg.MaxVoters = fc.MaxVoters
	}
	if fc.DeadVoterTimeout != 0 {
		cfg.DeadVoterTimeout = fc.DeadVoterTimeout
	}
	if fc.DeadNodeRemoveTimeout != 0 {
		cfg.DeadNodeRemoveTimeout = fc.DeadNodeRemoveTimeout
	}
	cfg.Timing = timing
	if fc.SchedulerInterval > 0 {
		cfg.SchedulerInterval = fc.SchedulerInterval
	}
	fc.applyUsage(&cfg)
	if fc.IndexWait > 0 {
		cfg.IndexWait = fc.IndexWait
	}
	if fc.ApplyTimeout > 0 {
		cfg.ApplyTimeout = fc.ApplyTimeout
	}
	if fc.SnapshotThreshold > 0 {
		cfg.SnapshotThreshold = fc.SnapshotThreshold
	}
	if fc.RaftSnapshotCheck < 0 {
		return node.Config{}, fmt.Errorf("%w: raft_snapshot_check must not be negative", errBadValue)
	}
	if fc.RaftSnapshotCheck > 0 {
		cfg.RaftSnapshotCheck = fc.RaftSnapshotCheck
	}
	cfg.StateFsync = fc.StateFsync
	if fc.KeyCacheSize < 0 {
		return node.Config{}, fmt.Errorf("%w: key_cache_size must not be negative", errBadValue)
	}
	if fc.KeyCacheSize > 0 {
		cfg.KeyCacheSize = fc.KeyCacheSize
	}
	cfg.SnapshotInterval, cfg.SnapshotDir, cfg.SnapshotMaxAge = fc.SnapshotInterval, fc.SnapshotDir, fc.SnapshotMaxAge
	if fc.SnapshotRetain != nil {
		cfg.SnapshotRetain = *fc.SnapshotRetain
	}
	cfg.UnauthenticatedMetrics = fc.UnauthenticatedMetrics
	cfg.MetricsAddr = fc.MetricsListen
	switch fc.LogFormat {
	case "", "json":
		cfg.Logger = slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: level}))
	case "text":
		cfg.Logger = slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level}))
	default:
		return node.Config{}, fmt.Errorf("%w: log_format %q: want json or text", errBadValue, fc.LogFormat)
	}
	if err := cfg.Validate(); err != nil {
		return node.Config{}, err
	}
	return cfg, nil
}

// readGossipKey reads the cluster's gossip key: a file holding 32 bytes
// as hex (64 characters), as `keyd certs -gossip-key` writes it.
func readGossipKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: gossip_key_file: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || (len(key) != 16 && len(key) != 24 && len(key) != 32) {
		return nil, errors.New("config: gossip_key_file must hold 16, 24 or 32 bytes as hex")
	}
	return key, nil
}
