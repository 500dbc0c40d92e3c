package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
	"github.com/keyd/keyd/hsmbridge/soft"
	"github.com/keyd/keyd/node"
	"github.com/keyd/keyd/transport/devcerts"
)

// failoverCluster is three restartable in-process nodes (LAN timing,
// software HSMs so a restarted node rejoins without custodians).
type failoverCluster struct {
	ca    *devcerts.CA
	peers []node.Peer
	dirs  []string
	nodes []*node.Node
}

func (fc *failoverCluster) start(i int) error {
	p := fc.peers[i]
	var apiLn, raftLn net.Listener
	var err error
	for try := 0; try < 100; try++ {
		if apiLn, err = net.Listen("tcp", p.APIAddr); err == nil {
			if raftLn, err = net.Listen("tcp", p.RaftAddr); err == nil {
				break
			}
			apiLn.Close()
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	id, err := fc.ca.Identity(p.ID, "127.0.0.1")
	if err != nil {
		return err
	}
	cfg := node.DefaultConfig()
	cfg.NodeID, cfg.DataDir, cfg.Identity = p.ID, fc.dirs[i], id
	cfg.APIListener, cfg.RaftListener = apiLn, raftLn
	cfg.Peers, cfg.Bootstrap = fc.peers, true
	cfg.HSM = soft.Config{Path: filepath.Join(fc.dirs[i], "hsm")}
	cfg.NodeShareInterval = 100 * time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.RaftLogOutput = io.Discard
	n, err := node.New(cfg)
	if err != nil {
		return err
	}
	if err := n.Start(context.Background()); err != nil {
		return err
	}
	fc.nodes[i] = n
	return nil
}

func (fc *failoverCluster) close() {
	for _, n := range fc.nodes {
		if n != nil {
			_ = n.Close()
		}
	}
	for _, d := range fc.dirs {
		_ = os.RemoveAll(d)
	}
}

func (fc *failoverCluster) leader() int {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		for i, n := range fc.nodes {
			if n != nil && n.IsLeader() {
				return i
			}
		}
	}
	return -1
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, len(s)*p/100)]
}

// runFailover kills the leader rounds times while a client writes and
// runs crypto calls, and reports the time from the kill to the first
// successful write seen by the client, and the crypto calls that failed.
func runFailover(ctx context.Context, ca *devcerts.CA, rounds int) error {
	fc := &failoverCluster{ca: ca, nodes: make([]*node.Node, 3)}
	defer fc.close()
	for i := 0; i < 3; i++ {
		a, _ := net.Listen("tcp", "127.0.0.1:0")
		r, _ := net.Listen("tcp", "127.0.0.1:0")
		fc.peers = append(fc.peers, node.Peer{ID: "n" + strconv.Itoa(i+1), APIAddr: a.Addr().String(), RaftAddr: r.Addr().String()})
		a.Close()
		r.Close()
		d, err := os.MkdirTemp("", "keyd-failover-")
		if err != nil {
			return err
		}
		fc.dirs = append(fc.dirs, d)
	}
	for i := range fc.peers {
		if err := fc.start(i); err != nil {
			return err
		}
	}
	token, err := initCluster(ctx, ca, fc.nodes)
	if err != nil {
		return err
	}
	var addrs []string
	for _, p := range fc.peers {
		addrs = append(addrs, p.APIAddr)
	}
	cl, err := client.New(ctx, client.Config{Addrs: addrs, Token: token, TLS: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13}, MaxRetries: 50, Timeout: time.Second})
	if err != nil {
		return err
	}
	defer cl.Close()
	if _, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: "f"}); err != nil {
		return err
	}
	var cryptoOK, cryptoFail atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := cl.Encrypt(cctx, "f", []byte("payload"), nil)
				cancel()
				if err != nil {
					cryptoFail.Add(1)
				} else {
					cryptoOK.Add(1)
				}
			}
		}()
	}
	var times, elected []time.Duration
	for r := 0; r < rounds; r++ {
		old := fc.leader()
		if old < 0 {
			return fmt.Errorf("no leader")
		}
		// Close stops the API first and Raft last; the leader is gone for
		// its followers when Close returns, so the clock starts there.
		_ = fc.nodes[old].Close()
		killed := time.Now()
		fc.nodes[old] = nil
		var survivors []*node.Node
		for _, n := range fc.nodes {
			if n != nil {
				survivors = append(survivors, n)
			}
		}
		electedCh := make(chan time.Duration, 1)
		go func() { electedCh <- waitElected(survivors, killed) }()
		for {
			wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			_, err := cl.RotateKey(wctx, "f")
			cancel()
			if err == nil {
				break
			}
			if time.Since(killed) > 30*time.Second {
				return fmt.Errorf("no write succeeded 30s after the kill: %v", err)
			}
		}
		times = append(times, time.Since(killed))
		elected = append(elected, <-electedCh)
		if err := fc.start(old); err != nil {
			return err
		}
		for deadline := time.Now().Add(20 * time.Second); fc.nodes[old].Sealed() && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	fmt.Printf("failover (3 nodes, LAN timing, %d leader kills): kill -> first successful write p50=%s p99=%s max=%s; crypto calls ok=%d failed=%d\n",
		rounds, pct(times, 50).Round(time.Millisecond), pct(times, 99).Round(time.Millisecond), pct(times, 100).Round(time.Millisecond), cryptoOK.Load(), cryptoFail.Load())
	fmt.Printf("failover: kill -> new leader elected p50=%s p99=%s max=%s\n",
		pct(elected, 50).Round(time.Millisecond), pct(elected, 99).Round(time.Millisecond), pct(elected, 100).Round(time.Millisecond))
	return nil
}

// waitElected polls survivors until one is leader and returns the time
// since killed (10s at most).
func waitElected(survivors []*node.Node, killed time.Time) time.Duration {
	for time.Since(killed) < 10*time.Second {
		for _, n := range survivors {
			if n.IsLeader() {
				return time.Since(killed)
			}
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(killed)
}
