// Package metrics is one keyd node's Prometheus metrics: request counts
// and latencies per operation and status code, HSM call latency, audit
// write latency and failures, and, read at scrape time from the node,
// seal state, Raft state, key count, key cache and gossip members by
// state.
//
// Every node has its own registry (several nodes run in one test
// process), served by [Metrics.Handler] in the Prometheus text format.
// Labels carry operation names and status codes, never key names, tokens
// or material.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keyd/keyd/hsmbridge"
)

// Sample is the node state read at each scrape.
type Sample struct {
	Initialized bool
	Sealed      bool
	// RaftState is raft's state name: "Follower", "Candidate", "Leader"
	// or "Shutdown"; empty before Raft starts.
	RaftState    string
	Term         uint64
	LastIndex    uint64
	CommitIndex  uint64
	AppliedIndex uint64
	// LeaderKnown says whether this node knows a leader.
	LeaderKnown bool
	// LastContact is the time since this node last heard from the leader
	// (0 on the leader); negative when it never has.
	LastContact time.Duration
	// PeerLastContact is, on the leader, the time since it last reached
	// each other voter with a successful AppendEntries (heartbeat or
	// replication), by node id; nil on other nodes.
	PeerLastContact map[string]time.Duration
	// Keys is the number of keys in the replicated state; negative when
	// it could not be read.
	Keys int
	// StateBytes is the size of the state database (the FSM); negative
	// when it could not be read.
	StateBytes int64
	// KeyCache describes the cache of unwrapped keys.
	KeyCache KeyCache
	// Members counts gossip members by state ("alive", "suspect", "dead",
	// "left"); nil without gossip.
	Members map[string]int
}

// KeyCache is the state of a node's cache of unwrapped keys: entries and
// bound, and counters since the node started.
type KeyCache struct {
	Size, Capacity          int
	Hits, Misses, Evictions uint64
}

// raftStates are the values of keyd_raft_state's state label.
var raftStates = []string{"Follower", "Candidate", "Leader", "Shutdown"}

// memberStates are the values of keyd_gossip_members' state label; each
// is always exported, so a count that drops to zero reads 0.
var memberStates = []string{"alive", "suspect", "dead", "left"}

// Metrics is one node's registry and instruments. A nil *Metrics is
// valid: every method is then a no-op and Handler answers 404.
type Metrics struct {
	reg           *prometheus.Registry
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	hsm           *prometheus.HistogramVec
	auditDuration prometheus.Histogram
	auditFailures prometheus.Counter
	leaderProbes  *prometheus.CounterVec
	fastElections prometheus.Counter
}

// New returns a node's metrics; sample is called at every scrape, from
// the scraping goroutine, and must be safe for that.
func New(sample func() Sample) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyd_http_requests_total",
		Help: "API requests by operation and HTTP status code.",
	}, []string{"op", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "keyd_http_request_duration_seconds",
		Help:    "API request latency by operation and HTTP status code.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"op", "code"})
	m.hsm = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "keyd_hsm_call_duration_seconds",
		Help:    "HSM call latency by call (wrap, unwrap, ensure_key, health) and outcome (ok, error).",
		Buckets: []float64{.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
	}, []string{"call", "outcome"})
	m.auditDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "keyd_audit_write_duration_seconds",
		Help:    "Time to make one audit record durable.",
		Buckets: []float64{.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	})
	m.auditFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "keyd_audit_write_failures_total",
		Help: "Audit records that could not be written (the request was refused).",
	})
	m.leaderProbes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyd_raft_leader_probes_total",
		Help: "Dials of the leader's Raft port after its connection to this follower ended, by result: refused (its process is gone), open (it is alive), error (no answer: normal timeouts apply).",
	}, []string{"result"})
	for _, r := range []string{"refused", "open", "error"} {
		m.leaderProbes.WithLabelValues(r) // exported from the start, at 0
	}
	m.fastElections = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "keyd_raft_fast_elections_total",
		Help: "Elections this follower started early because the leader's process was gone (connection ended, dial refused).",
	})
	m.reg.MustRegister(m.requests, m.duration, m.hsm, m.auditDuration, m.auditFailures, m.leaderProbes, m.fastElections,
		&stateCollector{sample: sample},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Registry returns the node's registry, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// ObserveRequest records one API request. op is the route's operation
// name (never a key name).
func (m *Metrics) ObserveRequest(op string, code int, d time.Duration) {
	if m == nil {
		return
	}
	c := strconv.Itoa(code)
	m.requests.WithLabelValues(op, c).Inc()
	m.duration.WithLabelValues(op, c).Observe(d.Seconds())
}

// ObserveHSM records one HSM call.
func (m *Metrics) ObserveHSM(call string, err error, d time.Duration) {
	if m == nil {
		return
	}
	m.hsm.WithLabelValues(call, outcome(err)).Observe(d.Seconds())
}

// ObserveAudit records one audit write and whether it failed.
func (m *Metrics) ObserveAudit(err error, d time.Duration) {
	if m == nil {
		return
	}
	m.auditDuration.Observe(d.Seconds())
	if err != nil {
		m.auditFailures.Inc()
	}
}

// ObserveLeaderProbe records one dial of the leader's Raft port and its
// result ("refused", "open" or "error").
func (m *Metrics) ObserveLeaderProbe(result string) {
	if m == nil {
		return
	}
	m.leaderProbes.WithLabelValues(result).Inc()
}

// ObserveFastElection records an election started early on evidence that
// the leader's process is gone.
func (m *Metrics) ObserveFastElection() {
	if m == nil {
		return
	}
	m.fastElections.Inc()
}

func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	return "error"
}

// stateCollector turns a Sample into gauges at scrape time.
type stateCollector struct {
	sample func() Sample
}

var (
	descInitialized  = prometheus.NewDesc("keyd_initialized", "1 once the cluster is initialized.", nil, nil)
	descSealed       = prometheus.NewDesc("keyd_sealed", "1 while this node is sealed.", nil, nil)
	descRaftState    = prometheus.NewDesc("keyd_raft_state", "1 for this node's current Raft state.", []string{"state"}, nil)
	descRaftLeader   = prometheus.NewDesc("keyd_raft_leader", "1 while this node is the Raft leader.", nil, nil)
	descLeaderKnown  = prometheus.NewDesc("keyd_raft_leader_known", "1 while this node knows a leader.", nil, nil)
	descTerm         = prometheus.NewDesc("keyd_raft_term", "Current Raft term.", nil, nil)
	descLastIndex    = prometheus.NewDesc("keyd_raft_last_index", "Last Raft log index stored here.", nil, nil)
	descCommitIndex  = prometheus.NewDesc("keyd_raft_commit_index", "Raft commit index known here.", nil, nil)
	descAppliedIndex = prometheus.NewDesc("keyd_raft_applied_index", "Raft index applied to the state machine here.", nil, nil)
	descLastContact  = prometheus.NewDesc("keyd_raft_last_contact_seconds", "Seconds since this node last heard from the leader (0 on the leader; absent if never).", nil, nil)
	descPeerContact  = prometheus.NewDesc("keyd_raft_peer_last_contact_seconds", "On the leader: seconds since it last reached each peer with a successful AppendEntries (absent elsewhere, and for a peer never reached).", []string{"peer"}, nil)
	descKeys         = prometheus.NewDesc("keyd_keys", "Keys in the replicated state.", nil, nil)
	descStateBytes   = prometheus.NewDesc("keyd_state_bytes", "Size in bytes of the replicated state database (the FSM) on this node.", nil, nil)
	descMembers      = prometheus.NewDesc("keyd_gossip_members", "Gossip members by state, as this node sees them.", []string{"state"}, nil)

	descCacheSize      = prometheus.NewDesc("keyd_key_cache_size", "Unwrapped keys held in this node's key cache.", nil, nil)
	descCacheCapacity  = prometheus.NewDesc("keyd_key_cache_capacity", "Bound of this node's key cache (key_cache_size).", nil, nil)
	descCacheHits      = prometheus.NewDesc("keyd_key_cache_hits_total", "Crypto calls served from the key cache.", nil, nil)
	descCacheMisses    = prometheus.NewDesc("keyd_key_cache_misses_total", "Key loads from the state database (one unwrap each, shared by concurrent callers).", nil, nil)
	descCacheEvictions = prometheus.NewDesc("keyd_key_cache_evictions_total", "Keys evicted from the key cache to stay within its bound.", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInitialized, descSealed, descRaftState, descRaftLeader, descLeaderKnown,
		descTerm, descLastIndex, descCommitIndex, descAppliedIndex, descLastContact, descPeerContact, descKeys, descStateBytes, descMembers,
		descCacheSize, descCacheCapacity, descCacheHits, descCacheMisses, descCacheEvictions} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.sample()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descInitialized, b2f(s.Initialized))
	gauge(descSealed, b2f(s.Sealed))
	for _, st := range raftStates {
		gauge(descRaftState, b2f(s.RaftState == st), st)
	}
	gauge(descRaftLeader, b2f(s.RaftState == "Leader"))
	gauge(descLeaderKnown, b2f(s.LeaderKnown))
	gauge(descTerm, float64(s.Term))
	gauge(descLastIndex, float64(s.LastIndex))
	gauge(descCommitIndex, float64(s.CommitIndex))
	gauge(descAppliedIndex, float64(s.AppliedIndex))
	if s.LastContact >= 0 {
		gauge(descLastContact, s.LastContact.Seconds())
	}
	for peer, d := range s.PeerLastContact {
		gauge(descPeerContact, d.Seconds(), peer)
	}
	if s.Keys >= 0 {
		gauge(descKeys, float64(s.Keys))
	}
	if s.StateBytes >= 0 {
		gauge(descStateBytes, float64(s.StateBytes))
	}
	gauge(descCacheSize, float64(s.KeyCache.Size))
	gauge(descCacheCapacity, float64(s.KeyCache.Capacity))
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(descCacheHits, s.KeyCache.Hits)
	counter(descCacheMisses, s.KeyCache.Misses)
	counter(descCacheEvictions, s.KeyCache.Evictions)
	if s.Members != nil {
		for _, st := range memberStates {
			gauge(descMembers, float64(s.Members[st]), st)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// WrapHSM returns h with every call timed into keyd_hsm_call_duration_seconds.
// It returns h itself when m or h is nil.
func (m *Metrics) WrapHSM(h hsmbridge.HSM) hsmbridge.HSM {
	if m == nil || h == nil {
		return h
	}
	return &timedHSM{h: h, m: m}
}

type timedHSM struct {
	h hsmbridge.HSM
	m *Metrics
}

func (t *timedHSM) EnsureKey(ctx context.Context, label string) error {
	start := time.Now()
	err := t.h.EnsureKey(ctx, label)
	t.m.ObserveHSM("ensure_key", err, time.Since(start))
	return err
}

func (t *timedHSM) Wrap(ctx context.Context, label string, plaintext, aad []byte) ([]byte, error) {
	start := time.Now()
	out, err := t.h.Wrap(ctx, label, plaintext, aad)
	t.m.ObserveHSM("wrap", err, time.Since(start))
	return out, err
}

func (t *timedHSM) Unwrap(ctx context.Context, label string, wrapped, aad []byte) ([]byte, error) {
	start := time.Now()
	out, err := t.h.Unwrap(ctx, label, wrapped, aad)
	t.m.ObserveHSM("unwrap", err, time.Since(start))
	return out, err
}

func (t *timedHSM) Health(ctx context.Context) error {
	start := time.Now()
	err := t.h.Health(ctx)
	if !errors.Is(err, hsmbridge.ErrClosed) {
		t.m.ObserveHSM("health", err, time.Since(start))
	}
	return err
}

func (t *timedHSM) Close() error { return t.h.Close() }
