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
	// refreshEvery rate-limits topology refreshes triggered by writes.
	refreshEvery = 250 * time.Millisecond
)

// Config configures a Client. The zero value of each optional field picks
// the documented default. A Config is copied by New and not retained.
type Config struct {
	// Addrs are seed API addresses, "host:port" or "https://host:port", of
	// any subset of the nodes. More nodes are learned from GET /v1/sys/status.
	Addrs []string
	// Token is the bearer token sent as "Authorization: Bearer <Token>".
	// Empty sends no Authorization header (health, status, init, unseal).
	Token string
	// TLS is the client TLS config; nil uses the system roots. It is cloned.
	// Ignored when HTTPClient is set.
	TLS *tls.Config
	// Region is the preferred region for crypto calls. Nodes do not report
	// their region yet, so today it only takes effect once topology does;
	// see pickAny.
	Region string
	// Timeout bounds each attempt; 0 means DefaultTimeout.
	Timeout time.Duration
	// MaxRetries bounds retries after the first attempt; 0 means
	// DefaultMaxRetries and a negative value disables retries.
	MaxRetries int
	// HTTPClient, when set, replaces the client's own HTTP client (tests,
	// custom proxies). Close then only closes its idle connections.
	HTTPClient *http.Client
}

// Client talks to a keyd cluster. It is safe for concurrent use by many
// goroutines; share one per process so connections are reused.
type Client struct {
	hc         *http.Client
	token      string
	region     string
	timeout    time.Duration
	maxRetries int

	lastIndex atomic.Uint64
	closed    atomic.Bool

	mu        sync.Mutex
	nodes     []*node // seeds first, then learned addresses
	byAddr    map[string]*node
	leader    string // base URL of the last known leader; "" when unknown
	preferred string // base URL of the last node that served a read or crypto call
	next      int    // round-robin cursor into nodes
	// refreshedAt is when the last topology refresh started.
	refreshedAt time.Time
}

// node is one known API endpoint and its health, guarded by Client.mu.
type node struct {
	addr      string // base URL, "https://host:port"
	region    string // "" until topology reports regions
	downUntil time.Time
}

// New builds a Client from cfg. It validates cfg and does not contact the
// cluster, so it succeeds while every node is down. ctx is reserved for
// future eager discovery. Errors wrap ErrInvalidConfig or ErrInvalidAddr.
func New(ctx context.Context, cfg Config) (*Client, error) {
	_ = ctx
	if len(cfg.Addrs) == 0 {
		return nil, fmt.Errorf("%w: no addresses", ErrInvalidConfig)
	}
	if cfg.Timeout < 0 {
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
		byAddr:     make(map[string]*node),
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
		c.hc = newHTTPClient(cfg.TLS)
	}
	return c, nil
}

func newHTTPClient(tc *tls.Config) *http.Client {
	if tc != nil {
		tc = tc.Clone()
	}
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig:       tc,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport: tr,
		// keyd answers not_leader with a hint instead of redirecting; a
		// redirect is shown to the caller rather than followed with the token.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Close closes idle connections and makes later calls fail with ErrClosed.
// Calls in flight finish normally. Close is idempotent and always returns nil.
func (c *Client) Close() error {
	if c.closed.CompareAndSwap(false, true) {
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

// addNodeLocked records addr (already normalized) and returns its node.
func (c *Client) addNodeLocked(addr string) *node {
	if n, ok := c.byAddr[addr]; ok {
		return n
	}
	if len(c.nodes) >= maxNodes {
		return nil
	}
	n := &node{addr: addr}
	c.nodes = append(c.nodes, n)
	c.byAddr[addr] = n
	return n
}

// learn records the topology a node reported: the leader and its peers.
func (c *Client) learn(st *api.SealStatus) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range st.Peers {
		if u, err := normalizeAddr(p.APIAddr); err == nil {
			c.addNodeLocked(u)
		}
	}
	if u, err := normalizeAddr(st.Leader); err == nil && c.addNodeLocked(u) != nil {
		c.leader = u
	}
}

// setLeader records a not_leader hint; it reports whether the hint was
// usable.
func (c *Client) setLeader(hint string) (string, bool) {
	u, err := normalizeAddr(hint)
	if err != nil {
		return "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.addNodeLocked(u)
	if n == nil {
		return "", false
	}
	c.leader = u
	// A leader hint is fresher news than an earlier failure.
	n.downUntil = time.Time{}
	return u, true
}

// forgetLeader drops addr as the known leader, so the next write refreshes.
func (c *Client) forgetLeader(addr string) {
	c.mu.Lock()
	if c.leader == addr {
		c.leader = ""
	}
	c.mu.Unlock()
}

func (c *Client) leaderKnown() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader != ""
}

// markDown puts addr on cool-down and stops preferring it.
func (c *Client) markDown(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.byAddr[addr]; n != nil {
		n.downUntil = time.Now().Add(coolDown)
	}
	if c.preferred == addr {
		c.preferred = ""
	}
}

// markUp records a success at addr; prefer makes it the first choice for
// later reads and crypto calls.
func (c *Client) markUp(addr string, prefer bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.byAddr[addr]; n != nil {
		n.downUntil = time.Time{}
	}
	if prefer {
		c.preferred = addr
	}
}

// pickWrite returns the known leader when it is healthy, else any node:
// every node forwards writes to the leader.
func (c *Client) pickWrite() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.byAddr[c.leader]; n != nil && time.Now().After(n.downUntil) {
		return n.addr
	}
	return c.rotateLocked(time.Now(), nil)
}

// pickAny returns the node for a read or crypto call: the last node that
// answered, else the next healthy node in rotation, else (all cooling down)
// the node whose cool-down ends first.
func (c *Client) pickAny(exclude string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if n := c.byAddr[c.preferred]; n != nil && n.addr != exclude && now.After(n.downUntil) {
		return n.addr
	}
	return c.rotateLocked(now, func(n *node) bool { return n.addr != exclude })
}

func (c *Client) rotateLocked(now time.Time, ok func(*node) bool) string {
	healthy := func(n *node) bool { return now.After(n.downUntil) && (ok == nil || ok(n)) }
	// Region hook: once nodes report regions, healthy nodes in the
	// configured region are tried before the others.
	if c.region != "" {
		if a := c.scanLocked(func(n *node) bool { return n.region == c.region && healthy(n) }); a != "" {
			return a
		}
	}
	if a := c.scanLocked(healthy); a != "" {
		return a
	}
	var best *node
	for _, n := range c.nodes {
		if (ok == nil || ok(n)) && (best == nil || n.downUntil.Before(best.downUntil)) {
			best = n
		}
	}
	if best == nil { // only the excluded node is known
		best = c.nodes[c.next%len(c.nodes)]
	}
	return best.addr
}

// scanLocked returns the first node from the cursor on that satisfies f and
// advances the cursor past it.
func (c *Client) scanLocked(f func(*node) bool) string {
	for i := range len(c.nodes) {
		j := (c.next + i) % len(c.nodes)
		if n := c.nodes[j]; f(n) {
			c.next = j + 1
			return n.addr
		}
	}
	return ""
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
