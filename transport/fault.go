package transport

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// ErrBlocked is returned by FaultLayer.Dial when fault injection refuses
// the dial (Block or Isolate).
var ErrBlocked = errors.New("transport: blocked by fault injection")

// FaultLayer wraps a raft.StreamLayer and injects network faults for
// in-process partition tests, in the shape of etcd's Bridge. It is itself a
// raft.StreamLayer and is safe for concurrent use. The zero value is not
// usable; call NewFaultLayer.
//
// Faults act where the layer can name the peer: on dials, by the dialed
// ServerAddress. An accepted connection only has an ephemeral remote
// address, so Block cannot match it; Isolate drops accepted connections
// too. Raft sends requests only on connections it dialed, so Block(B) on A
// stops A's requests to B (votes, appends) but not B's to A: that is an
// asymmetric partition. For a symmetric partition A|B call Block on both
// sides: faultA.Block(addrB) and faultB.Block(addrA). Isolate on one node
// cuts it from everyone in both directions.
type FaultLayer struct {
	inner raft.StreamLayer
	delay atomic.Int64 // time.Duration added before each Write

	mu       sync.Mutex
	blocked  map[raft.ServerAddress]bool // guarded by mu
	isolated bool                        // guarded by mu
	conns    map[*faultConn]struct{}     // open conns; guarded by mu
}

var _ raft.StreamLayer = (*FaultLayer)(nil)

// NewFaultLayer returns a FaultLayer with no faults, wrapping inner. The
// FaultLayer owns inner: its Close closes inner.
func NewFaultLayer(inner raft.StreamLayer) *FaultLayer {
	return &FaultLayer{
		inner:   inner,
		blocked: make(map[raft.ServerAddress]bool),
		conns:   make(map[*faultConn]struct{}),
	}
}

// Block makes every later Dial to addr fail at once with ErrBlocked and
// closes the open connections this layer dialed to addr.
func (f *FaultLayer) Block(addr raft.ServerAddress) {
	f.mu.Lock()
	f.blocked[addr] = true
	victims := f.matchLocked(func(c *faultConn) bool { return c.dialed && c.target == addr })
	f.mu.Unlock()
	closeAll(victims)
}

// Unblock undoes Block(addr). Isolation, if set, still applies.
func (f *FaultLayer) Unblock(addr raft.ServerAddress) {
	f.mu.Lock()
	delete(f.blocked, addr)
	f.mu.Unlock()
}

// Isolate cuts this node off: later dials fail with ErrBlocked, later
// accepted connections are closed at once, and every open connection of
// this layer, dialed or accepted, is closed.
func (f *FaultLayer) Isolate() {
	f.mu.Lock()
	f.isolated = true
	victims := f.matchLocked(func(*faultConn) bool { return true })
	f.mu.Unlock()
	closeAll(victims)
}

// Heal removes every Block and the isolation. It does not change the delay
// (SetDelay(0) does). Raft redials on its own afterwards.
func (f *FaultLayer) Heal() {
	f.mu.Lock()
	f.isolated = false
	clear(f.blocked)
	f.mu.Unlock()
}

// SetDelay adds d of latency before each Write on every connection of this
// layer, existing and future; 0 removes it. Raft flushes once per RPC, so a
// round trip between two FaultLayers pays the sum of both sides' delays.
// Writes on one connection are serialised by the caller, so the delay also
// caps throughput per connection, as a long link would. Negative d is 0.
func (f *FaultLayer) SetDelay(d time.Duration) {
	f.delay.Store(int64(max(d, 0)))
}

// matchLocked returns the open conns for which keep is true. f.mu is held.
func (f *FaultLayer) matchLocked(keep func(*faultConn) bool) []*faultConn {
	var out []*faultConn
	for c := range f.conns {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}

func closeAll(cs []*faultConn) {
	for _, c := range cs {
		_ = c.Close()
	}
}

// Accept returns the next connection of the inner layer, closing and
// skipping those that arrive while isolated. Errors are the inner layer's.
func (f *FaultLayer) Accept() (net.Conn, error) {
	for {
		nc, err := f.inner.Accept()
		if err != nil {
			return nil, err
		}
		if c, ok := f.track(nc, false, ""); ok {
			return c, nil
		}
	}
}

// Dial dials address through the inner layer unless it is blocked or this
// layer is isolated, in which case it returns ErrBlocked without touching
// the network.
func (f *FaultLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if f.refused(address) {
		return nil, fmt.Errorf("transport: dial %s: %w", address, ErrBlocked)
	}
	nc, err := f.inner.Dial(address, timeout)
	if err != nil {
		return nil, err
	}
	// A Block or Isolate that landed during the dial must still win.
	c, ok := f.track(nc, true, address)
	if !ok {
		return nil, fmt.Errorf("transport: dial %s: %w", address, ErrBlocked)
	}
	return c, nil
}

func (f *FaultLayer) refused(addr raft.ServerAddress) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.isolated || f.blocked[addr]
}

// track wraps nc and registers it, or closes it and returns false if the
// current faults refuse it.
func (f *FaultLayer) track(nc net.Conn, dialed bool, target raft.ServerAddress) (*faultConn, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.isolated || (dialed && f.blocked[target]) {
		_ = nc.Close()
		return nil, false
	}
	c := &faultConn{Conn: nc, f: f, dialed: dialed, target: target, done: make(chan struct{})}
	f.conns[c] = struct{}{}
	return c, true
}

// Close closes the inner layer and every open connection of this layer.
// It is as idempotent as the inner layer's Close.
func (f *FaultLayer) Close() error {
	err := f.inner.Close()
	f.mu.Lock()
	victims := f.matchLocked(func(*faultConn) bool { return true })
	f.mu.Unlock()
	closeAll(victims)
	return err
}

// Addr returns the inner layer's address.
func (f *FaultLayer) Addr() net.Addr { return f.inner.Addr() }

// faultConn applies the layer's delay to Writes and unregisters on Close.
type faultConn struct {
	net.Conn
	f      *FaultLayer
	dialed bool
	target raft.ServerAddress
	once   sync.Once
	done   chan struct{} // closed by Close; interrupts a delayed Write
}

func (c *faultConn) Write(p []byte) (int, error) {
	if d := time.Duration(c.f.delay.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-c.done:
			t.Stop()
			return 0, fmt.Errorf("transport: write: %w", net.ErrClosed)
		}
	}
	return c.Conn.Write(p)
}

func (c *faultConn) Close() error {
	c.once.Do(func() {
		close(c.done)
		c.f.mu.Lock()
		delete(c.f.conns, c)
		c.f.mu.Unlock()
	})
	return c.Conn.Close()
}
