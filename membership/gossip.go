package membership

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/keyd/keyd/internal/logbridge"
)

var (
	// ErrInvalidConfig is returned by [New] for a Config it cannot use.
	ErrInvalidConfig = errors.New("membership: invalid config")
	// ErrClosed is returned by methods called after [Gossip.Close].
	ErrClosed = errors.New("membership: closed")
	// ErrJoin is returned by [Gossip.Join] when no seed could be contacted
	// (unreachable, or a different cluster key).
	ErrJoin = errors.New("membership: join failed")
	// ErrLeft is returned by [Gossip.Join] and [Gossip.UpdateMeta] after
	// [Gossip.Leave]: memberlist cannot rejoin with the same instance, so a
	// node that wants back in closes this Gossip and creates a new one.
	ErrLeft = errors.New("membership: left the cluster")
	// ErrTimeout is returned by [Gossip.UpdateMeta] and [Gossip.Leave] when
	// the broadcast did not reach any peer within the timeout. The change is
	// still queued and spreads later if the node stays up.
	ErrTimeout = errors.New("membership: broadcast timed out")
)

// State is a member's liveness as this node sees it.
type State string

const (
	// StateAlive: the member answers probes.
	StateAlive State = "alive"
	// StateSuspect is reserved for a member under suspicion. memberlist
	// v0.7.0 reports no suspicion event and its Members() hands out node
	// pointers that cannot be read race-free, so this package never reports
	// it: a suspected member stays StateAlive until declared dead.
	StateSuspect State = "suspect"
	// StateDead: the member stopped answering and the cluster declared it
	// failed.
	StateDead State = "dead"
	// StateLeft: the member announced its departure with [Gossip.Leave].
	StateLeft State = "left"
)

// forgetAfter is how long a dead or departed member stays in
// [Gossip.Members] after its last state change. memberlist itself forgets
// it after GossipToTheDeadTime (5–60 s); callers deciding whether to remove a
// dead voter need a longer memory.
const forgetAfter = 24 * time.Hour

// Member is one node as seen through gossip.
type Member struct {
	Meta
	GossipAddr string    // host:port of the member's gossip endpoint
	State      State     // liveness as this node sees it
	Since      time.Time // when this node observed the current State
}

// Config configures [New]. It is copied by New; later changes have no
// effect.
type Config struct {
	// NodeID names this node in the cluster; required and unique. It is
	// also the Meta.NodeID every peer sees, whatever Meta returns.
	NodeID string
	// BindAddr is host:port for gossip (TCP and UDP); port 0 picks a free
	// port, reported by [Gossip.LocalAddr].
	BindAddr string
	// AdvertiseAddr is the host:port peers should use, if not BindAddr
	// (NAT, 0.0.0.0 binds). Optional.
	AdvertiseAddr string
	// SecretKey is a 16, 24 or 32-byte AES key. Every gossip message is
	// encrypted and authenticated with it (AES-GCM, memberlist Keyring) and
	// messages without it are refused. Required unless InsecureNoEncryption.
	// New copies it.
	SecretKey []byte
	// InsecureNoEncryption allows an empty SecretKey: gossip is then plain
	// and anyone who can reach BindAddr can join or forge members. Tests
	// only.
	InsecureNoEncryption bool
	// Profile selects the timing; empty means [ProfileLAN].
	Profile Profile
	// Meta returns this node's current metadata. It is called by New and by
	// every [Gossip.UpdateMeta]; the encoding is cached in between and served
	// to memberlist's NodeMeta delegate, so what was validated is what is
	// sent. Must be cheap and safe to call from any goroutine. Nil publishes
	// only the NodeID.
	Meta func() Meta
	// OnChange is called for every join, meta update, death and departure
	// (including this node's own), one call at a time and in order, from a
	// goroutine owned by the Gossip. memberlist's event callbacks only
	// append to an unbounded queue, so a slow OnChange never stalls gossip,
	// but it must return: Close waits for a call in progress, and it must
	// not call Close. Events still queued at Close are dropped. Optional.
	OnChange func(Member)
	// Logger receives memberlist's own log lines (levels mapped, known
	// benign ones demoted: see memberlistLogRules) and this package's
	// warnings. Nil discards them.
	Logger *slog.Logger
}

// Gossip is one node's membership in the cluster. Its methods are safe for
// concurrent use.
type Gossip struct {
	nodeID    string
	localAddr string
	logger    *slog.Logger
	getMeta   func() Meta
	onChange  func(Member)
	ml        *memberlist.Memberlist

	metaMu sync.Mutex  // serialises UpdateMeta so the cache matches what is broadcast
	left   atomic.Bool // Leave was called

	mu      sync.Mutex // guards local, metaEnc, members, queue
	local   Meta       // last validated local Meta
	metaEnc []byte     // its encoding (with the leaving flag after Leave), served to NodeMeta
	members map[string]Member
	queue   []Member
	wake    chan struct{} // cap 1: a queued event is waiting

	// life guards the memberlist against use after Shutdown (its Leave
	// panics then). Methods hold it for reading; Close for writing.
	life      sync.RWMutex
	closed    bool
	closeOnce sync.Once
	closeErr  error         // set inside closeOnce
	done      chan struct{} // closed by Close: deliver stops
	drained   chan struct{} // closed by deliver on exit
}

// New validates cfg, binds the gossip ports and starts memberlist (which runs
// its own goroutines) and the OnChange goroutine. The node is alone until
// [Gossip.Join]. Call [Gossip.Close] to stop everything. Errors wrap
// [ErrInvalidConfig], [ErrMetaInvalid] or [ErrMetaTooLarge], or report a
// failure to bind.
func New(cfg Config) (*Gossip, error) {
	mc, err := memberlistConfig(cfg.Profile)
	if err != nil {
		return nil, err
	}
	if cfg.NodeID == "" {
		return nil, fmt.Errorf("%w: empty node id", ErrInvalidConfig)
	}
	host, port, err := splitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("%w: bind addr: %w", ErrInvalidConfig, err)
	}
	mc.Name, mc.BindAddr, mc.BindPort, mc.AdvertisePort = cfg.NodeID, host, port, port
	if cfg.AdvertiseAddr != "" {
		ah, ap, err := splitHostPort(cfg.AdvertiseAddr)
		if err != nil || ap == 0 {
			return nil, fmt.Errorf("%w: advertise addr %q", ErrInvalidConfig, cfg.AdvertiseAddr)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ah, ap
	}
	switch {
	case len(cfg.SecretKey) > 0:
		if err := memberlist.ValidateKey(cfg.SecretKey); err != nil {
			return nil, fmt.Errorf("%w: secret key must be 16, 24 or 32 bytes", ErrInvalidConfig)
		}
		// Copy: memberlist keeps the slice, and the caller may zero theirs.
		kr, err := memberlist.NewKeyring(nil, slices.Clone(cfg.SecretKey))
		if err != nil {
			return nil, fmt.Errorf("%w: secret key rejected", ErrInvalidConfig)
		}
		mc.Keyring = kr
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	case !cfg.InsecureNoEncryption:
		return nil, fmt.Errorf("%w: secret key required (or InsecureNoEncryption)", ErrInvalidConfig)
	}

	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "membership", "node", cfg.NodeID)
	g := &Gossip{
		nodeID:   cfg.NodeID,
		logger:   logger,
		getMeta:  cfg.Meta,
		onChange: cfg.OnChange,
		members:  make(map[string]Member),
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		drained:  make(chan struct{}),
	}
	if g.local, g.metaEnc, err = g.encodeLocal(); err != nil {
		return nil, err
	}

	mc.Delegate = metaDelegate{g}
	mc.Events = eventDelegate{g}
	mc.Logger = logbridge.LogLogger(logger, "memberlist", memberlistLogRules)
	mc.LogOutput = nil

	go g.deliver()
	ml, err := memberlist.Create(mc)
	if err != nil {
		close(g.done)
		<-g.drained
		return nil, fmt.Errorf("membership: start memberlist on %s: %w", cfg.BindAddr, err)
	}
	g.ml = ml
	// Read once, now: the advertised address does not change for a
	// host:port bind, and LocalNode's pointer cannot be read race-free later.
	g.localAddr = ml.LocalNode().Address()
	return g, nil
}

func splitHostPort(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, int(port), nil
}

// encodeLocal asks the caller for the current Meta, pins NodeID and encodes.
func (g *Gossip) encodeLocal() (Meta, []byte, error) {
	var m Meta
	if g.getMeta != nil {
		m = g.getMeta()
	}
	m.NodeID = g.nodeID
	b, err := m.Encode()
	return m, b, err
}

// Join contacts seeds (host:port) and merges state with every one it reaches,
// returning how many answered. It fails with an error wrapping [ErrJoin] only
// if none did; a node already in a cluster may call it again. After Leave it
// returns [ErrLeft], after Close [ErrClosed].
func (g *Gossip) Join(seeds []string) (int, error) {
	g.life.RLock()
	defer g.life.RUnlock()
	if g.closed {
		return 0, ErrClosed
	}
	if g.left.Load() {
		return 0, ErrLeft
	}
	if len(seeds) == 0 {
		return 0, fmt.Errorf("%w: no seeds", ErrJoin)
	}
	n, err := g.ml.Join(seeds)
	if n == 0 {
		if err == nil {
			err = errors.New("no seed answered")
		}
		return 0, fmt.Errorf("%w: %w", ErrJoin, err)
	}
	if err != nil {
		g.logger.Debug("join: some seeds failed", "contacted", n, "err", err)
	}
	return n, nil
}

// Members returns this node's view of the cluster, itself included, sorted by
// NodeID: live members and dead or departed ones for up to 24 h after they
// were last seen changing state. The slice is a fresh copy owned by the
// caller. It still answers after Close, with the last view.
func (g *Gossip) Members() []Member {
	now := time.Now()
	g.mu.Lock()
	out := make([]Member, 0, len(g.members))
	for id, m := range g.members {
		if (m.State == StateDead || m.State == StateLeft) && now.Sub(m.Since) > forgetAfter {
			delete(g.members, id)
			continue
		}
		out = append(out, m)
	}
	g.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.NodeID, b.NodeID) })
	return out
}

// LocalAddr returns the host:port peers use to reach this node's gossip
// endpoint (the advertised address; with BindAddr port 0, the port actually
// bound). Pass it to another node's Join.
func (g *Gossip) LocalAddr() string { return g.localAddr }

// UpdateMeta calls Config.Meta again and broadcasts the result, waiting up to
// timeout for it to reach at least one peer (timeout <= 0: do not wait). Call
// it after the seal state, voter flag or applied index changed. Errors wrap
// [ErrMetaInvalid] or [ErrMetaTooLarge] (nothing is sent; peers keep the
// previous Meta), [ErrTimeout], [ErrLeft] or [ErrClosed].
func (g *Gossip) UpdateMeta(timeout time.Duration) error {
	g.life.RLock()
	defer g.life.RUnlock()
	if g.closed {
		return ErrClosed
	}
	g.metaMu.Lock()
	defer g.metaMu.Unlock()
	// After Leave, a fresh alive broadcast would undo the departure.
	if g.left.Load() {
		return ErrLeft
	}
	m, enc, err := g.encodeLocal()
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.local, g.metaEnc = m, enc
	g.mu.Unlock()
	if err := g.ml.UpdateNode(waitFor(timeout)); err != nil && timeout > 0 {
		// memberlist's only error here is its timeout.
		return fmt.Errorf("%w: update meta after %v", ErrTimeout, timeout)
	}
	return nil
}

// Leave tells the cluster this node is departing, so peers mark it
// [StateLeft] instead of waiting to declare it dead, and waits up to timeout
// for the news to spread (timeout <= 0: do not wait, which risks peers
// seeing [StateDead] instead). The node keeps answering gossip until Close;
// it cannot rejoin with the same Gossip. Errors: [ErrTimeout] (calling Leave
// again finishes the departure), [ErrClosed].
//
// It first re-broadcasts the local Meta with a leaving flag and waits for
// that to be fully gossiped, then sends memberlist's leave: memberlist's
// events do not say whether a node left or failed, and its leave message
// would otherwise supersede a still-queued update.
func (g *Gossip) Leave(timeout time.Duration) error {
	g.life.RLock()
	defer g.life.RUnlock()
	if g.closed {
		return ErrClosed
	}
	deadline := time.Now().Add(timeout)
	g.metaMu.Lock()
	defer g.metaMu.Unlock()
	if !g.left.Swap(true) {
		g.mu.Lock()
		// Cannot fail: Encode kept room for the flag.
		enc, err := g.local.encode(true)
		if err == nil {
			g.metaEnc = enc
		}
		g.mu.Unlock()
		// memberlist's only error here is its timeout.
		if err := g.ml.UpdateNode(waitFor(timeout)); err != nil && timeout > 0 {
			return fmt.Errorf("%w: leave announcement after %v", ErrTimeout, timeout)
		}
	}
	if err := g.ml.Leave(waitFor(time.Until(deadline))); err != nil && timeout > 0 {
		return fmt.Errorf("%w: leave after %v", ErrTimeout, timeout)
	}
	return nil
}

// waitFor maps "do not wait" onto memberlist, where 0 means wait forever.
func waitFor(timeout time.Duration) time.Duration {
	if timeout <= 0 {
		return time.Nanosecond
	}
	return timeout
}

// Close stops memberlist and the OnChange goroutine and waits for both. It
// does not leave: peers will declare this node dead. It is idempotent;
// every call waits for the first to finish and returns its result. It waits
// for Join, UpdateMeta and Leave calls in progress (each bounded by its
// timeout) and for an OnChange call in progress; OnChange must therefore not
// call Close (other methods return [ErrClosed] once Close has begun).
func (g *Gossip) Close() error {
	g.closeOnce.Do(func() {
		g.life.Lock()
		g.closed = true
		err := g.ml.Shutdown()
		g.life.Unlock()
		if err != nil {
			g.closeErr = fmt.Errorf("membership: shutdown: %w", err)
		}
		// Outside the life lock, so an OnChange calling UpdateMeta or Leave
		// gets ErrClosed instead of deadlocking.
		close(g.done)
		<-g.drained
	})
	return g.closeErr
}

// deliver runs OnChange for queued events until Close.
func (g *Gossip) deliver() {
	defer close(g.drained)
	for {
		select {
		case <-g.done:
			return
		case <-g.wake:
		}
		for {
			g.mu.Lock()
			if len(g.queue) == 0 {
				g.queue = nil // let a burst's backing array go
				g.mu.Unlock()
				break
			}
			m := g.queue[0]
			g.queue[0] = Member{}
			g.queue = g.queue[1:]
			g.mu.Unlock()
			select {
			case <-g.done:
				return
			default:
			}
			g.onChange(m)
		}
	}
}

// record updates the member map from a memberlist event and queues the
// change for OnChange. memberlist calls it with its node lock held, so it
// only takes g.mu and never blocks.
func (g *Gossip) record(n *memberlist.Node, st State) {
	meta, leaving, err := decodeMeta(n.Meta)
	if err != nil {
		// Keep the member visible but unusable: nobody routes to a node
		// whose addresses and seal state are unknown.
		g.logger.Warn("peer meta rejected", "peer", n.Name, "err", err)
		meta = Meta{Sealed: true}
	} else if meta.NodeID != n.Name {
		g.logger.Warn("peer meta node id differs from gossip name", "peer", n.Name, "meta_id", meta.NodeID)
	}
	// The gossip name is authoritative: it is what memberlist keys on.
	meta.NodeID = n.Name
	if leaving {
		// Announced by Leave, before memberlist's leave message, which looks
		// the same as a failure to us.
		st = StateLeft
	}
	m := Member{Meta: meta, GossipAddr: n.Address(), State: st, Since: time.Now()}

	g.mu.Lock()
	defer g.mu.Unlock()
	if old, ok := g.members[n.Name]; ok && old.State == st {
		m.Since = old.Since
		if old == m {
			return // e.g. the leave message after the leaving announcement
		}
	}
	g.members[n.Name] = m
	if g.onChange == nil {
		return
	}
	g.queue = append(g.queue, m)
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// eventDelegate feeds memberlist events into the Gossip. It is a separate
// type so Gossip does not export memberlist's callback methods.
type eventDelegate struct{ g *Gossip }

func (e eventDelegate) NotifyJoin(n *memberlist.Node)   { e.g.record(n, StateAlive) }
func (e eventDelegate) NotifyUpdate(n *memberlist.Node) { e.g.record(n, StateAlive) }
func (e eventDelegate) NotifyLeave(n *memberlist.Node) {
	if n.State == memberlist.StateLeft {
		e.g.record(n, StateLeft)
		return
	}
	e.g.record(n, StateDead)
}

// metaDelegate serves the cached local Meta. Only NodeMeta matters; the
// other methods are memberlist's user-message hooks, unused.
type metaDelegate struct{ g *Gossip }

func (d metaDelegate) NodeMeta(limit int) []byte {
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	if len(d.g.metaEnc) > limit {
		// Unreachable while limit is MaxMetaSize; memberlist would panic.
		return nil
	}
	return slices.Clone(d.g.metaEnc)
}
func (metaDelegate) NotifyMsg([]byte)                           {}
func (metaDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (metaDelegate) LocalState(join bool) []byte                { return nil }
func (metaDelegate) MergeRemoteState(buf []byte, join bool)     {}
