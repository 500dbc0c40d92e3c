package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyd/keyd/metrics"
)

// Fast election after the leader's process died.
//
// hashicorp/raft finds a lost leader only by time: a follower's heartbeat
// timer fires every random [HT, 2HT) and starts an election only if it
// heard nothing for HT, so it takes HT to 3HT; and a follower that still
// knows a leader refuses pre-votes and votes, so with two survivors the
// election succeeds only once both timed out, often after a split vote
// and one more election timeout. Shorter timeouts for everyone would
// turn a busy leader into a dead one (spurious elections under load).
//
// leaderWatch uses evidence instead. When the leader's process dies, its
// kernel closes its sockets: the connections it dialed to this follower
// (heartbeats, appends) end with EOF or a reset, and a dial to its Raft
// port is refused. On both (the end of a connection whose certificate
// names the current leader, then a refused TCP dial to the leader's Raft
// address; a port that still answers is dialed twice more within 120 ms,
// as a dying process may close its listener after its connections), the
// follower lowers its heartbeat and election timeouts to the leader
// lease (the least raft accepts) at the moment its last contact with the
// leader is that old: raft's heartbeat check then passes at once and the
// election starts, about one lease after the death instead of HT..3HT.
// Every survivor sees the same evidence; they go one after the other (by
// rank of their ids among the other voters, a fifth of the lease apart),
// so the first one clears its leader and the next one wins the vote
// instead of splitting it. The profile's timeouts come back as soon as a
// leader is known again, and in any case after 4 election timeouts, so
// that a cluster without quorum does not churn. Meanwhile Forward waits
// for the new leader instead of answering "no leader" (forward.go).
//
// A false trigger costs one election, never safety. It needs a refused
// dial to the leader's own port, which a live leader does not give, and
// triggers against the same leader are at least 4 election timeouts
// apart (leaders that die one after the other are each acted on). A
// connection that ends alone (a leader closing a pooled connection, a
// reset on the path) only costs a few dials that connect. Not covered,
// by design: a machine that crashed or hangs, or a network partition:
// the dial times out or cannot route, and the normal timeouts apply.
// Nor a profile whose leader lease equals its heartbeat timeout: there
// is no shorter timeout to switch to.
type leaderWatch struct {
	self    raft.ServerID
	timing  Timing
	log     *slog.Logger
	metrics *metrics.Metrics
	// dial probes an address: a TCP connect, closed at once.
	dial func(ctx context.Context, addr string) error

	r    atomic.Pointer[raft.Raft] // set by start; nil before
	kick chan struct{}             // a leader's connection ended (cap 1)

	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	last   time.Time     // the last trigger
	lastID raft.ServerID // the leader it was against

	dead atomic.Value // string: the leader whose port refused, until a new leader is known
}

func newLeaderWatch(self string, t Timing, log *slog.Logger, m *metrics.Metrics) *leaderWatch {
	w := &leaderWatch{self: raft.ServerID(self), timing: t, log: log, metrics: m, kick: make(chan struct{}, 1)}
	w.dial = func(ctx context.Context, addr string) error {
		d := net.Dialer{Timeout: t.Heartbeat}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			_ = c.Close()
		}
		return err
	}
	return w
}

// enabled reports whether the profile leaves room for shorter timeouts:
// raft wants HeartbeatTimeout >= LeaderLeaseTimeout.
func (w *leaderWatch) enabled() bool { return w.timing.LeaderLease < w.timing.Heartbeat }

// start runs the watch on r until stop.
func (w *leaderWatch) start(r *raft.Raft) {
	w.r.Store(r)
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel, w.done = cancel, make(chan struct{})
	go func() {
		defer close(w.done)
		w.run(ctx)
	}()
}

// stop ends the watch and waits for it; the profile's timeouts are back
// when it returns. Safe on a watch never started.
func (w *leaderWatch) stop() {
	if w == nil || w.cancel == nil {
		return
	}
	w.cancel()
	<-w.done
}

// connEnded is called once per accepted Raft connection, when the peer
// ended it (EOF or reset). It never blocks.
func (w *leaderWatch) connEnded(peer string) {
	r := w.r.Load()
	if r == nil || peer == "" {
		return
	}
	if _, id := r.LeaderWithID(); string(id) != peer {
		return
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *leaderWatch) run(ctx context.Context) {
	r := w.r.Load()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		}
		w.check(ctx, r)
	}
}

// check probes the leader after one of its connections ended and, on a
// refused dial, starts the election early.
func (w *leaderWatch) check(ctx context.Context, r *raft.Raft) {
	addr, id := r.LeaderWithID()
	if id == "" || id == w.self || r.State() != raft.Follower {
		return
	}
	// A process that is stopping may close some connections before its
	// listener, and a connection racing the listener's close may be
	// reset: a port that answered is probed again a little later.
	for i, wait := range probeWaits {
		if i > 0 {
			if !sleepUntil(ctx, time.Now().Add(wait)) {
				return
			}
			if _, now := r.LeaderWithID(); now != id {
				return
			}
		}
		err := w.dial(ctx, string(addr))
		if ctx.Err() != nil {
			return
		}
		res := "refused"
		switch {
		case err == nil:
			res = "open"
		case !errors.Is(err, syscall.ECONNREFUSED):
			res = "error"
		}
		w.metrics.ObserveLeaderProbe(res)
		w.log.Debug("leader's connection ended; probed its Raft port", "leader", string(id), "result", res, "err", err)
		var ne net.Error
		switch {
		case res == "refused":
			w.dead.Store(string(id))
			w.elect(ctx, r, id)
			w.dead.Store("")
			return
		case errors.As(err, &ne) && ne.Timeout():
			return // no answer: a machine down or a partition, for the normal timeouts
		}
	}
}

// probeWaits are the pauses before each dial of one check.
var probeWaits = []time.Duration{0, 20 * time.Millisecond, 100 * time.Millisecond}

// elect starts the election early, this node's turn among the
// survivors, and restores the profile's timeouts afterwards.
func (w *leaderWatch) elect(ctx context.Context, r *raft.Raft, id raft.ServerID) {
	bound := 4 * w.timing.Election
	w.mu.Lock()
	limited := w.lastID == id && time.Since(w.last) < bound
	w.mu.Unlock()
	if limited || !w.enabled() {
		return
	}
	// Rank among the surviving voters: survivors go one after the other.
	f := r.GetConfiguration()
	if f.Error() != nil {
		return
	}
	var voters []raft.ServerID
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter && s.ID != id {
			voters = append(voters, s.ID)
		}
	}
	slices.Sort(voters)
	rank := slices.Index(voters, w.self)
	if rank < 0 {
		return // not a voter: raft would not campaign anyway
	}
	lease := w.timing.LeaderLease
	// Raft's check passes once the last contact is lease old; a little
	// margin keeps timer slack from missing it.
	at := r.LastContact().Add(lease + lease/50)
	if now := time.Now(); at.Before(now) {
		at = now
	}
	at = at.Add(time.Duration(rank) * (lease / 5))
	if !sleepUntil(ctx, at) {
		return
	}
	if _, now := r.LeaderWithID(); now != id || r.State() != raft.Follower {
		return // a new leader, or this node already campaigns
	}
	term := r.CurrentTerm()
	started := time.Now()
	if !w.setTimeouts(r, lease, lease) {
		return
	}
	w.mu.Lock()
	w.last, w.lastID = started, id
	w.mu.Unlock()
	w.metrics.ObserveFastElection()
	w.log.Info("leader's process is gone (its connection ended, its Raft port refused a dial): election now",
		"leader", string(id), "rank", rank)

	// Back to the profile once a leader is known, or after bound.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := started.Add(bound)
	for time.Now().Before(deadline) {
		if _, lid := r.LeaderWithID(); lid != "" && (lid != id || r.CurrentTerm() > term) {
			w.log.Info("leader elected after the fast election", "leader", string(lid), "after", time.Since(started).Round(time.Millisecond).String())
			break
		}
		select {
		case <-ctx.Done():
			w.setTimeouts(r, w.timing.Heartbeat, w.timing.Election)
			return
		case <-tick.C:
		}
	}
	w.setTimeouts(r, w.timing.Heartbeat, w.timing.Election)
	select { // connections of the dead leader that ended meanwhile
	case <-w.kick:
	default:
	}
}

// gone reports whether id is a leader whose process this node found gone
// and that no new leader has replaced yet.
func (w *leaderWatch) gone(id string) bool {
	if w == nil || id == "" {
		return false
	}
	d, _ := w.dead.Load().(string)
	return d == id
}

// setTimeouts sets raft's heartbeat and election timeouts, keeping the
// other reloadable fields (trailing logs, snapshot interval and
// threshold) as they are. Nothing else in the node reloads raft's
// configuration, so the read-modify-write is not raced.
func (w *leaderWatch) setTimeouts(r *raft.Raft, hb, el time.Duration) bool {
	rc := r.ReloadableConfig()
	rc.HeartbeatTimeout, rc.ElectionTimeout = hb, el
	if err := r.ReloadConfig(rc); err != nil {
		w.log.Warn("could not change raft timeouts", "err", err)
		return false
	}
	return true
}

// sleepUntil waits until t or ctx ends; it reports whether t came.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

// watchLayer is the Raft stream layer that reports to a leaderWatch when
// a peer ends a connection it dialed to this node. It wraps the
// transport.Layer (whose conns name their peer) under any test wrapper.
type watchLayer struct {
	raft.StreamLayer
	w *leaderWatch
}

// peerNamer is a connection that knows its peer's verified node id
// (transport.Conn).
type peerNamer interface{ PeerNodeID() string }

func (l *watchLayer) Accept() (net.Conn, error) {
	c, err := l.StreamLayer.Accept()
	if err != nil {
		return nil, err
	}
	pn, ok := c.(peerNamer)
	if !ok {
		return c, nil
	}
	return &watchConn{Conn: c, peer: pn.PeerNodeID(), w: l.w}, nil
}

// watchConn reports, once, that the peer ended the connection: EOF
// (clean or not) or a reset. This node closing it (net.ErrClosed) is not
// reported.
type watchConn struct {
	net.Conn
	peer string
	w    *leaderWatch
	once sync.Once
}

func (c *watchConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && peerEnded(err) {
		c.once.Do(func() { c.w.connEnded(c.peer) })
	}
	return n, err
}

func peerEnded(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}
