package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// HandshakeTimeout bounds the server side of each accepted handshake, so a
// peer that connects and stays silent holds only its own goroutine and
// socket for this long, never Accept.
const HandshakeTimeout = 10 * time.Second

// maxPendingHandshakes caps concurrent server handshakes; when reached, the
// accept loop stops taking new connections (kernel backlog applies
// back-pressure) instead of spawning unbounded goroutines.
const maxPendingHandshakes = 64

// Layer is a raft.StreamLayer over mutual TLS: every connection it accepts
// or dials has completed a TLS 1.3 handshake with a node of the cluster
// (PeerServerConfig / PeerClientConfig). It is safe for concurrent use.
//
// Close closes the listener, aborts pending handshakes and dials, and closes
// every connection the Layer returned (accepted or dialed), so no goroutine
// reading one of them outlives the Layer. raft.NetworkTransport calls Close
// from its own Close.
type Layer struct {
	ln        net.Listener
	advertise net.Addr
	serverCfg *tls.Config
	clientCfg *tls.Config

	ctx    context.Context // cancelled by Close; bounds handshakes and dials
	cancel context.CancelFunc

	startOnce sync.Once
	accepted  chan *Conn    // handshaken conns, unbuffered
	loopDone  chan struct{} // closed when the accept loop exits
	loopErr   error         // why the accept loop exited; read after loopDone
	sem       chan struct{} // pending handshake slots
	wg        sync.WaitGroup

	mu     sync.Mutex
	conns  map[*Conn]struct{} // open conns handed out; guarded by mu
	closed bool               // guarded by mu

	closeOnce sync.Once
	closeErr  error
}

var _ raft.StreamLayer = (*Layer)(nil)

// NewLayer returns a Layer serving on ln, a plain TCP listener it takes
// ownership of, with identity id. Addr reports advertise when it is not
// nil (the address peers dial, e.g. behind NAT), and ln.Addr() otherwise.
// NewLayer starts no goroutine: the accept loop starts on the first
// Accept. It returns ErrInvalidIdentity for an identity without a
// certificate or CA pool.
func NewLayer(ln net.Listener, id Identity, advertise net.Addr) (*Layer, error) {
	if ln == nil {
		return nil, errors.New("transport: nil listener")
	}
	if len(id.Cert.Certificate) == 0 || id.CAs == nil {
		return nil, fmt.Errorf("%w: no certificate or CA pool", ErrInvalidIdentity)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Layer{
		ln:        ln,
		advertise: advertise,
		serverCfg: PeerServerConfig(id),
		clientCfg: PeerClientConfig(id),
		ctx:       ctx,
		cancel:    cancel,
		accepted:  make(chan *Conn),
		loopDone:  make(chan struct{}),
		sem:       make(chan struct{}, maxPendingHandshakes),
		conns:     make(map[*Conn]struct{}),
	}, nil
}

// Accept returns the next connection whose TLS handshake completed and
// whose peer is a node of the cluster. Failed handshakes are closed and
// skipped. After Close it returns an error wrapping net.ErrClosed; if the
// underlying listener fails for good it returns that error. The returned
// net.Conn is a *Conn.
func (l *Layer) Accept() (net.Conn, error) {
	l.startOnce.Do(func() {
		l.wg.Add(1)
		go l.acceptLoop()
	})
	select {
	case c := <-l.accepted:
		return c, nil
	case <-l.ctx.Done():
		return nil, fmt.Errorf("transport: accept: %w", net.ErrClosed)
	case <-l.loopDone:
		return nil, fmt.Errorf("transport: accept: %w", l.loopErr)
	}
}

// acceptLoop takes raw connections and hands each to its own handshake
// goroutine, so one slow or hostile peer cannot stall the others.
func (l *Layer) acceptLoop() {
	defer l.wg.Done()
	defer close(l.loopDone)
	var delay time.Duration
	for {
		select {
		case l.sem <- struct{}{}:
		case <-l.ctx.Done():
			l.loopErr = net.ErrClosed
			return
		}
		raw, err := l.ln.Accept()
		if err != nil {
			<-l.sem
			if l.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				l.loopErr = err
				if l.ctx.Err() != nil {
					l.loopErr = net.ErrClosed
				}
				return
			}
			// Anything else (EMFILE, ECONNABORTED) is treated as transient,
			// with the same capped back-off as net/http and raft.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-l.ctx.Done():
				t.Stop()
				l.loopErr = net.ErrClosed
				return
			}
			continue
		}
		delay = 0
		l.wg.Add(1)
		go l.handshake(raw)
	}
}

// handshake completes the server handshake of raw within HandshakeTimeout
// and delivers it to Accept, or closes it.
func (l *Layer) handshake(raw net.Conn) {
	defer l.wg.Done()
	ctx, cancel := context.WithTimeout(l.ctx, HandshakeTimeout)
	tc := tls.Server(raw, l.serverCfg)
	err := tc.HandshakeContext(ctx)
	cancel()
	<-l.sem
	if err != nil {
		_ = tc.Close()
		return
	}
	c, ok := l.track(tc)
	if !ok {
		return
	}
	select {
	case l.accepted <- c:
	case <-l.ctx.Done():
		_ = c.Close()
	}
}

// Dial opens a mutually authenticated connection to address, failing if
// TCP connect plus TLS handshake take longer than timeout or the server is
// not a node of the cluster (errors wrap ErrUntrustedPeer or ErrNoNodeID).
// After Close it returns an error wrapping net.ErrClosed. The returned
// net.Conn is a *Conn.
//
// With TLS 1.3 the client finishes its handshake before the server checks
// the client's certificate, so a server that rejects this node shows up as
// an error on the first Read, not from Dial.
func (l *Layer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if l.ctx.Err() != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", address, net.ErrClosed)
	}
	ctx := l.ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	d := tls.Dialer{Config: l.clientCfg}
	nc, err := d.DialContext(ctx, "tcp", string(address))
	if err != nil {
		if l.ctx.Err() != nil {
			return nil, fmt.Errorf("transport: dial %s: %w", address, net.ErrClosed)
		}
		return nil, fmt.Errorf("transport: dial %s: %w", address, err)
	}
	c, ok := l.track(nc.(*tls.Conn))
	if !ok {
		return nil, fmt.Errorf("transport: dial %s: %w", address, net.ErrClosed)
	}
	return c, nil
}

// track registers tc so Close can close it; it closes tc and returns false
// if the Layer is already closed.
func (l *Layer) track(tc *tls.Conn) (*Conn, bool) {
	id, _ := verifiedNodeID(tc.ConnectionState())
	c := &Conn{Conn: tc, peer: id, layer: l}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = tc.Close()
		return nil, false
	}
	l.conns[c] = struct{}{}
	return c, true
}

func (l *Layer) untrack(c *Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// verifiedNodeID returns the node id of a connection whose handshake our
// configs completed: from VerifiedChains on the server side, and from the
// leaf on the client side, where VerifyConnection has already verified it.
func verifiedNodeID(cs tls.ConnectionState) (string, bool) {
	if id, ok := PeerNodeID(cs); ok {
		return id, true
	}
	if len(cs.PeerCertificates) == 0 {
		return "", false
	}
	return nodeIDFromCert(cs.PeerCertificates[0])
}

// Close stops accepting, aborts pending handshakes and dials, closes every
// connection the Layer handed out and the listener, and waits for its
// goroutines to exit. It is idempotent: later calls return the first
// call's result.
func (l *Layer) Close() error {
	l.closeOnce.Do(func() {
		l.cancel()
		l.mu.Lock()
		l.closed = true
		conns := l.conns
		l.conns = nil
		l.mu.Unlock()
		l.closeErr = l.ln.Close()
		for c := range conns {
			_ = c.Conn.Close()
		}
		l.wg.Wait()
	})
	return l.closeErr
}

// Addr returns the advertised address if one was given to NewLayer, else
// the listener's address. Raft uses it as this node's ServerAddress.
func (l *Layer) Addr() net.Addr {
	if l.advertise != nil {
		return l.advertise
	}
	return l.ln.Addr()
}

// Conn is a connection returned by Layer.Accept or Layer.Dial. It embeds
// the *tls.Conn (so ConnectionState is available) and is closed by
// Layer.Close if still open. Like tls.Conn, it is safe for one reader and
// one writer at a time; Close may be called concurrently and repeatedly.
// Close it through Conn, not the embedded *tls.Conn, or the Layer keeps
// tracking it until its own Close.
type Conn struct {
	*tls.Conn
	peer  string
	layer *Layer
	once  sync.Once
}

// PeerNodeID returns the verified node id of the other end, on both the
// accepting and the dialing side.
func (c *Conn) PeerNodeID() string { return c.peer }

// Close closes the connection and forgets it in its Layer.
func (c *Conn) Close() error {
	c.once.Do(func() { c.layer.untrack(c) })
	return c.Conn.Close()
}
