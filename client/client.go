package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyd/keyd/api"
)

// Defaults applied by New to zero Config fields.
const (
	// DefaultTimeout bounds one attempt (one HTTP request to one node).
	DefaultTimeout = 10 * time.Second
	// DefaultMaxRetries bounds the retries of one call after its first attempt.
	DefaultMaxRetries = 5
	// DefaultRefreshInterval is how often the client refreshes the cluster
	// topology in the background.
	DefaultRefreshInterval = 15 * time.Second
	// DefaultConnectTimeout bounds opening a TCP connection to a node, and
	// the TLS handshake after it. A LAN peer completes both in a few
	// milliseconds, so a node that has not within a second is treated as
	// down (a killed host, a frozen process) and the next one tried.
	DefaultConnectTimeout = time.Second
)

const (
	backoffBase = 50 * time.Millisecond
	backoffCap  = time.Second
	// coolDown is how long a node that failed is skipped, unless every node
	// is cooling down. Short, because a sealed node or a restarted process
	// is usually back within seconds.
	coolDown = 2 * time.Second
	// maxNodes caps the addresses learned from replies, so a misbehaving
	// node cannot grow the client's table without bound.
	maxNodes = 64
	// refreshEvery rate-limits topology refreshes triggered by failures:
	// a burst of failing calls needs one refresh, not one each.
	refreshEvery = 250 * time.Millisecond
	// maxFailDelay caps the wait between background refreshes while no
	// node answers, so a client started before its cluster finds it soon.
	maxFailDelay = 5 * time.Second
)

// Config configures a Client. The zero value of each optional field picks
// the documented default. A Config is copied by New and not retained.
type Config struct {
	// Addrs are seed API addresses, "host:port" or "https://host:port", of
	// any subset of the nodes. The other nodes are learned from the
	// topology (GET /v1/sys/cluster, or /v1/sys/status when the token may
	// not read it).
	Addrs []string
	// Token is the bearer token sent as "Authorization: Bearer <Token>".
	// Empty sends no Authorization header (health, status, init, unseal);
	// the topology is then learned from /v1/sys/status only.
	Token string
	// TLS is the client TLS config; nil uses the system roots. It is cloned.
	// Ignored when HTTPClient is set.
	TLS *tls.Config
	// Region is the preferred region for crypto calls and reads: alive,
	// unsealed nodes that the topology places in Region are tried first,
	// then other alive unsealed nodes, then the rest. Empty means no
	// preference.
	Region string
	// Timeout bounds each attempt; 0 means DefaultTimeout. New also waits
	// at most this long for the first topology.
	Timeout time.Duration
	// MaxRetries bounds the attempts of one call after its first one; 0
	// means DefaultMaxRetries and a negative value disables retries. Every
	// attempt counts, including the immediate move to another node after a
	// node failed.
	MaxRetries int
	// RefreshInterval is how often a background goroutine refreshes the
	// topology; 0 means DefaultRefreshInterval. The goroutine also
	// refreshes at once (at most every 250ms) after a not_leader answer or
	// a connection failure. A negative value turns the goroutine off: the
	// topology is then learned once in New and again only when a write
	// finds no leader, or through Cluster and Status.
	RefreshInterval time.Duration
	// HTTPClient, when set, replaces the client's own HTTP client (tests,
	// custom proxies). Close then only closes its idle connections.
	HTTPClient *http.Client
	// ConnectTimeout bounds opening a TCP connection to a node, and the TLS
	// handshake; 0 means DefaultConnectTimeout. Ignored when HTTPClient is
	// set.
	ConnectTimeout time.Duration
	// OnRetry, when set, is called before each retry of a call with the
	// error that caused it and the wait before the next attempt (0 for an
	// immediate move to another node). It runs on the calling goroutine
	// and must not block. The CLI uses it to say that it is waiting for a
	// leader during an election.
	OnRetry func(err error, wait time.Duration)
}

// Client talks to a keyd cluster. It is safe for concurrent use by many
// goroutines; share one per process so connections are reused. A Client
// owns a background goroutine (see Config.RefreshInterval): call Close
// when done with it.
type Client struct {
	hc         *http.Client
	token      string
	auth       []string // the Authorization header value; nil without a token
	region     string
	timeout    time.Duration
	maxRetries int
	onRetry    func(error, time.Duration)

	lastIndex atomic.Uint64
	closed    atomic.Bool

	// Background refresh; kickC is nil when it is off.
	bgCtx     context.Context
	bgCancel  context.CancelFunc
	kickC     chan struct{}
	firstDone chan struct{} // closed after the first background refresh
	done      chan struct{} // closed when the goroutine has returned

	mu        sync.Mutex
	nodes     []*node // seeds first, then learned addresses
	byAddr    map[string]*node
	leader    string // base URL of the last known leader; "" when unknown
	preferred string // base URL of the last node that served a read or crypto call
	next      int    // round-robin cursor into nodes
	// refreshedAt is when the last topology refresh started.
	refreshedAt time.Time
	// topo is the last topology learned; topoFull says it came from
	// /v1/sys/cluster rather than being pieced together from a status.
	topo     []api.ClusterNode
	topoFull bool
	gen      uint64 // bumped by every full topology, see node.gen
}

// New builds a Client from cfg. It then learns the topology from any seed
// that answers, waiting at most until ctx ends or Config.Timeout passes;
// when no node answers it still succeeds, and the topology is learned
// later, in the background or on the first write. Errors wrap
// ErrInvalidConfig or ErrInvalidAddr.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if len(cfg.Addrs) == 0 {
		return nil, fmt.Errorf("%w: no addresses", ErrInvalidConfig)
	}
	if cfg.Timeout < 0 || cfg.ConnectTimeout < 0 {
		return nil, fmt.Errorf("%w: negative timeout", ErrInvalidConfig)
	}
	for i := 0; i < len(cfg.Token); i++ {
		// Checked here so the header never fails later; the token itself is
		// never echoed.
		if b := cfg.Token[i]; b < 0x21 || b > 0x7e {
			return nil, fmt.Errorf("%w: token contains invalid characters", ErrInvalidConfig)
		}
	}
	c := &Client{
		token:      cfg.Token,
		region:     cfg.Region,
		timeout:    cfg.Timeout,
		maxRetries: cfg.MaxRetries,
		onRetry:    cfg.OnRetry,
		byAddr:     make(map[string]*node),
	}
	if c.token != "" {
		c.auth = []string{"Bearer " + c.token}
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	switch {
	case c.maxRetries == 0:
		c.maxRetries = DefaultMaxRetries
	case c.maxRetries < 0:
		c.maxRetries = 0
	}
	for _, a := range cfg.Addrs {
		u, err := normalizeAddr(a)
		if err != nil {
			return nil, fmt.Errorf("%w: seed address %d: %w", ErrInvalidConfig, len(c.nodes), err)
		}
		c.addNodeLocked(u)
	}
	c.hc = cfg.HTTPClient
	if c.hc == nil {
		c.hc = newHTTPClient(cfg.TLS, cfg.ConnectTimeout)
	}

	interval := cfg.RefreshInterval
	if interval == 0 {
		interval = DefaultRefreshInterval
	}
	if interval < 0 {
		// No goroutine: learn the topology now, bounded like one attempt.
		if ctx.Err() == nil {
			dctx, cancel := context.WithTimeout(ctx, c.timeout)
			c.discover(dctx)
			cancel()
		}
		return c, nil
	}
	c.bgCtx, c.bgCancel = context.WithCancel(context.Background())
	c.kickC = make(chan struct{}, 1)
	c.firstDone = make(chan struct{})
	c.done = make(chan struct{})
	go c.loop(interval)
	if ctx.Err() == nil {
		t := time.NewTimer(c.timeout)
		select {
		case <-c.firstDone:
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	return c, nil
}

func newHTTPClient(tc *tls.Config, connect time.Duration) *http.Client {
	if tc != nil {
		tc = tc.Clone()
	}
	return &http.Client{
		Transport: newTransportTimeout(tc, connect),
		// keyd answers not_leader with a hint instead of redirecting; a
		// redirect is shown to the caller rather than followed with the token.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// newTransport is the client's HTTP transport; the benchmark uses it for
// the raw HTTP baseline too, so both sides pay the same connection costs.
func newTransport(tc *tls.Config) *http.Transport { return newTransportTimeout(tc, 0) }

// newTransportTimeout is newTransport with a connect timeout (0: the
// default). A dead node must cost a call one short connect timeout, not
// the operating system's: on a LAN a dial that has not completed within a
// second will not.
func newTransportTimeout(tc *tls.Config, connect time.Duration) *http.Transport {
	if connect <= 0 {
		connect = DefaultConnectTimeout
	}
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   connect,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig:       tc,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   connect,
		ExpectContinueTimeout: time.Second,
	}
}

// Close stops the background refresh, waits for it to return, closes idle
// connections and makes later calls fail with ErrClosed. Calls in flight
// finish normally. Close is idempotent and always returns nil.
func (c *Client) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		if c.bgCancel != nil {
			c.bgCancel()
			<-c.done
		}
		c.hc.CloseIdleConnections()
	}
	return nil
}

// LastIndex returns the highest Raft index seen in any write reply. Crypto
// calls and reads send it as api.HeaderMinIndex so they observe the
// client's own writes.
func (c *Client) LastIndex() uint64 { return c.lastIndex.Load() }

// observeIndex raises lastIndex to i.
func (c *Client) observeIndex(i uint64) {
	for {
		cur := c.lastIndex.Load()
		if i <= cur || c.lastIndex.CompareAndSwap(cur, i) {
			return
		}
	}
}

// normalizeAddr turns "host:port" or "https://host:port[/]" into the base
// URL "https://host:port". Plain HTTP is refused: every call may carry a
// token or key material.
func normalizeAddr(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalidAddr)
	}
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%w: not a URL", ErrInvalidAddr)
	}
	if u.Scheme != "https" {
		return "", fmt.Errorf("%w: scheme must be https", ErrInvalidAddr)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || (u.Path != "" && u.Path != "/") {
		return "", fmt.Errorf("%w: want host:port", ErrInvalidAddr)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" || port == "" {
		return "", fmt.Errorf("%w: want host:port", ErrInvalidAddr)
	}
	for _, r := range port {
		if r < '0' || r > '9' {
			return "", fmt.Errorf("%w: bad port", ErrInvalidAddr)
		}
	}
	return "https://" + net.JoinHostPort(strings.ToLower(host), port), nil
}

// checkOpen is called at the top of every call.
func (c *Client) checkOpen() error {
	if c.closed.Load() {
		return ErrClosed
	}
	return nil
}

type requestIDKey struct{}

// WithRequestID returns a context that makes writes issued with it use id as
// their idempotency key (api.HeaderRequestID) instead of a fresh random one.
// Every retry of such a write already reuses its id; this lets a caller (or
// a test) reuse one across separate calls to prove the server deduplicates.
// An empty id restores the default.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

func requestIDFrom(ctx context.Context) string {
	if id, _ := ctx.Value(requestIDKey{}).(string); id != "" {
		return id
	}
	return newRequestID()
}
