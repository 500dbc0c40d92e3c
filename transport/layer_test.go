package transport_test

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyd/keyd/transport"
)

// acceptAll runs l.Accept in a goroutine until it fails, delivering
// connections on the returned channel. The goroutine ends when l closes.
func acceptAll(t testing.TB, l net.Listener) <-chan net.Conn {
	t.Helper()
	ch := make(chan net.Conn, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			ch <- c
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
	})
	return ch
}

func recvConn(t testing.TB, ch <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting for an accepted connection")
		return nil
	}
}

func addr(l net.Listener) raft.ServerAddress { return raft.ServerAddress(l.Addr().String()) }

func TestLayerDialAccept(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "cluster")
	a, b := newLayer(t, ca, "a"), newLayer(t, ca, "b")
	accepted := acceptAll(t, a)

	c, err := b.Dial(addr(a), 5*time.Second)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	if got := c.(*transport.Conn).PeerNodeID(); got != "a" {
		t.Errorf("dialer sees peer %q, want a", got)
	}
	s := recvConn(t, accepted).(*transport.Conn)
	if got := s.PeerNodeID(); got != "b" {
		t.Errorf("acceptor sees peer %q, want b", got)
	}
	if got, ok := transport.PeerNodeID(s.ConnectionState()); !ok || got != "b" {
		t.Errorf("PeerNodeID(state) = %q, %v, want b, true", got, ok)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := s.Read(buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v, want ping", buf, err)
	}
}

func TestLayerAdvertise(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "cluster")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adv := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 7000}
	l, err := transport.NewLayer(ln, nodeIdentity(t, ca, "a"), adv)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := l.Addr().String(); got != adv.String() {
		t.Errorf("Addr() = %s, want %s", got, adv)
	}
	if _, err := transport.NewLayer(ln, transport.Identity{}, nil); !errors.Is(err, transport.ErrInvalidIdentity) {
		t.Errorf("NewLayer with empty identity: got %v, want %v", err, transport.ErrInvalidIdentity)
	}
}

// TestLayerRejectsBadPeers checks that a peer that is not a node of the
// cluster never reaches Accept or Dial's caller.
func TestLayerRejectsBadPeers(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "cluster")
	other := newCA(t, "other")
	foreign := nodeIdentity(t, other, "x")
	appCert, err := ca.IssueClient("app")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("inbound", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name string
			cfg  *tls.Config
		}{
			{"cert from other CA", forceCert(transport.PeerClientConfig(transport.Identity{Cert: foreign.Cert, CAs: ca.Pool()}))},
			{"cert without node URI", transport.PeerClientConfig(transport.Identity{Cert: appCert, CAs: ca.Pool()})},
			{"no cert", &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				a := newLayer(t, ca, "a")
				accepted := acceptAll(t, a)
				c, err := tls.Dial("tcp", a.Addr().String(), tt.cfg)
				if err == nil {
					// TLS 1.3: the server's verdict arrives after the
					// client's handshake; a read returns it.
					_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
					_, err = c.Read(make([]byte, 1))
					c.Close()
				}
				if err == nil {
					t.Fatal("bad peer could read from the layer")
				}
				// The bad handshake has failed; a good peer must now be
				// the first one Accept returns.
				b := newLayer(t, ca, "b")
				good, err := b.Dial(addr(a), 5*time.Second)
				if err != nil {
					t.Fatalf("good Dial: %v", err)
				}
				defer good.Close()
				if got := recvConn(t, accepted).(*transport.Conn).PeerNodeID(); got != "b" {
					t.Fatalf("Accept returned peer %q, want b", got)
				}
			})
		}
	})

	t.Run("outbound", func(t *testing.T) {
		t.Parallel()
		// A server outside the cluster: another CA, or a cluster CA
		// certificate without a node URI (forced to be served).
		appSrv := transport.PeerServerConfig(transport.Identity{Cert: appCert, CAs: ca.Pool()})
		tests := []struct {
			name    string
			srv     *tls.Config
			wantErr error
		}{
			{"server from other CA", transport.PeerServerConfig(foreign), transport.ErrUntrustedPeer},
			{"server with client-only cert", appSrv, transport.ErrUntrustedPeer}, // no server-auth EKU
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				ln, err := tls.Listen("tcp", "127.0.0.1:0", tt.srv)
				if err != nil {
					t.Fatal(err)
				}
				srvDone := make(chan struct{})
				go func() {
					defer close(srvDone)
					c, err := ln.Accept()
					if err != nil {
						return
					}
					_ = c.(*tls.Conn).Handshake()
					c.Close()
				}()
				b := newLayer(t, ca, "b")
				c, err := b.Dial(addr(ln), 5*time.Second)
				if !errors.Is(err, tt.wantErr) {
					if c != nil {
						c.Close()
					}
					t.Errorf("Dial err = %v, want %v", err, tt.wantErr)
				}
				<-srvDone
				ln.Close()
			})
		}
	})
}

func TestLayerSilentPeerDoesNotBlockAccept(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "cluster")
	a, b := newLayer(t, ca, "a"), newLayer(t, ca, "b")
	accepted := acceptAll(t, a)

	silent, err := net.Dial("tcp", a.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	c, err := b.Dial(addr(a), 5*time.Second)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	if got := recvConn(t, accepted).(*transport.Conn).PeerNodeID(); got != "b" {
		t.Fatalf("Accept returned %q, want b", got)
	}
	// Closing a aborts the silent peer's pending handshake (goleak in
	// TestMain checks its goroutine is gone) and closes the silent socket.
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_ = silent.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := silent.Read(make([]byte, 1)); err == nil {
		t.Fatal("silent peer's socket still open after Close")
	}
}

func TestLayerClose(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "cluster")
	a, b := newLayer(t, ca, "a"), newLayer(t, ca, "b")

	acceptErr := make(chan error, 1)
	acceptedConn := make(chan net.Conn, 1)
	go func() {
		c, err := a.Accept()
		if err != nil {
			acceptErr <- err
			return
		}
		acceptedConn <- c
		_, err = a.Accept() // blocks until Close
		acceptErr <- err
	}()
	dialed, err := b.Dial(addr(a), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer dialed.Close()
	var srv net.Conn
	select {
	case srv = <-acceptedConn:
	case err := <-acceptErr:
		t.Fatalf("Accept: %v", err)
	}

	first := a.Close()
	if err := <-acceptErr; !errors.Is(err, net.ErrClosed) {
		t.Errorf("blocked Accept after Close: got %v, want net.ErrClosed", err)
	}
	if second := a.Close(); second != first {
		t.Errorf("second Close = %v, want %v", second, first)
	}
	if _, err := a.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: got %v, want net.ErrClosed", err)
	}
	if _, err := a.Dial(addr(b), time.Second); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Dial after Close: got %v, want net.ErrClosed", err)
	}
	if _, err := srv.Read(make([]byte, 1)); err == nil {
		t.Error("accepted conn still readable after Close")
	}
	// The remote side sees the close.
	_ = dialed.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := dialed.Read(make([]byte, 1)); err == nil {
		t.Error("peer still reads from a conn its layer closed")
	}
}
