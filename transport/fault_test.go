package transport_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyd/keyd/transport"
)

// tcpLayer is a plain-TCP raft.StreamLayer, so FaultLayer is tested on its
// own.
type tcpLayer struct{ net.Listener }

func (l tcpLayer) Dial(a raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(a), timeout)
}

func newFault(t *testing.T) (*transport.FaultLayer, <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := transport.NewFaultLayer(tcpLayer{ln})
	return f, acceptAll(t, f)
}

// roundTrip checks that c and its accepted peer s carry bytes both ways.
func roundTrip(t *testing.T, c, s net.Conn) {
	t.Helper()
	for _, p := range [][2]net.Conn{{c, s}, {s, c}} {
		if _, err := p[0].Write([]byte{7}); err != nil {
			t.Fatalf("write: %v", err)
		}
		b := make([]byte, 1)
		if _, err := io.ReadFull(p[1], b); err != nil || b[0] != 7 {
			t.Fatalf("read %v, %v, want 7", b, err)
		}
	}
}

// closedRemotely reports whether reading c fails, i.e. its peer closed it.
func closedRemotely(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !errors.Is(err, net.ErrClosed) && !isTimeout(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestFaultBlock(t *testing.T) {
	t.Parallel()
	a, _ := newFault(t)
	b, bAcc := newFault(t)
	aAddr, bAddr := raft.ServerAddress(a.Addr().String()), raft.ServerAddress(b.Addr().String())

	c, err := a.Dial(bAddr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s := recvConn(t, bAcc)
	roundTrip(t, c, s)

	a.Block(bAddr)
	if !closedRemotely(s) {
		t.Error("conn dialed to a blocked address is still open")
	}
	if _, err := a.Dial(bAddr, time.Second); !errors.Is(err, transport.ErrBlocked) {
		t.Errorf("Dial to blocked address: got %v, want %v", err, transport.ErrBlocked)
	}
	// One-sided: b can still reach a.
	back, err := b.Dial(aAddr, time.Second)
	if err != nil {
		t.Fatalf("reverse Dial under one-sided Block: %v", err)
	}
	back.Close()

	a.Unblock(bAddr)
	c2, err := a.Dial(bAddr, time.Second)
	if err != nil {
		t.Fatalf("Dial after Unblock: %v", err)
	}
	defer c2.Close()
	roundTrip(t, c2, recvConn(t, bAcc))
}

func TestFaultIsolateHeal(t *testing.T) {
	t.Parallel()
	a, aAcc := newFault(t)
	b, bAcc := newFault(t)
	aAddr, bAddr := raft.ServerAddress(a.Addr().String()), raft.ServerAddress(b.Addr().String())

	out, err := a.Dial(bAddr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	outPeer := recvConn(t, bAcc)
	in, err := b.Dial(aAddr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	recvConn(t, aAcc)

	a.Isolate()
	if !closedRemotely(outPeer) {
		t.Error("dialed conn open after Isolate")
	}
	if !closedRemotely(in) {
		t.Error("accepted conn open after Isolate")
	}
	if _, err := a.Dial(bAddr, time.Second); !errors.Is(err, transport.ErrBlocked) {
		t.Errorf("Dial while isolated: got %v, want %v", err, transport.ErrBlocked)
	}
	refused, err := b.Dial(aAddr, time.Second) // TCP connects; a drops it
	if err != nil {
		t.Fatal(err)
	}
	if !closedRemotely(refused) {
		t.Error("conn accepted while isolated was not dropped")
	}
	out.Close()

	a.Block(bAddr)
	a.Heal()
	c, err := a.Dial(bAddr, time.Second)
	if err != nil {
		t.Fatalf("Dial after Heal: %v", err)
	}
	defer c.Close()
	roundTrip(t, c, recvConn(t, bAcc))
	in2, err := b.Dial(aAddr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer in2.Close()
	roundTrip(t, in2, recvConn(t, aAcc))
}

func TestFaultDelay(t *testing.T) {
	t.Parallel()
	a, _ := newFault(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peerAcc := acceptAll(t, ln)

	c, err := a.Dial(raft.ServerAddress(ln.Addr().String()), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s := recvConn(t, peerAcc)
	defer s.Close()

	// A write under a huge delay stays pending until the conn closes:
	// Close must interrupt it rather than leak the writer.
	a.SetDelay(time.Hour)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write([]byte{1})
		werr <- err
	}()
	c.Close()
	if err := <-werr; !errors.Is(err, net.ErrClosed) {
		t.Errorf("delayed Write after Close: got %v, want net.ErrClosed", err)
	}

	a.SetDelay(0)
	c2, err := a.Dial(raft.ServerAddress(ln.Addr().String()), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	roundTrip(t, c2, recvConn(t, peerAcc))
}
