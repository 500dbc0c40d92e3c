// Command failover is a small service loop that shows a keyd client riding
// through failovers: every -interval (50ms) it encrypts a random message
// and decrypts it again, each call under its own -deadline, for -duration.
// Kill the leader, cut a region off or restart nodes meanwhile; crypto
// calls never need the leader and move to the next healthy node at once,
// so the expected count of failed calls is zero and the worst latency
// stays around one connection attempt. It prints leader changes as the
// client's topology sees them and, at the end, the calls made, the calls
// failed and the latency (p50, p99, max).
//
//	export KEYD_ADDR=keyd-1:8200,keyd-2:8200 KEYD_TOKEN=... KEYD_CACERT=ca.pem
//	failover -key demo -create -duration 2m -region eu-west
//
// The environment is read like the keyd CLI: KEYD_ADDR (or -addr),
// KEYD_TOKEN and KEYD_CACERT. The exit status is 1 when any call failed.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
)

func main() {
	failed, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		os.Exit(2)
	}
	if failed > 0 {
		os.Exit(1)
	}
}

// stats accumulates what the loop saw.
type stats struct {
	calls, failures int
	latencies       []time.Duration
}

func (s *stats) add(d time.Duration, err error) {
	s.calls++
	s.latencies = append(s.latencies, d)
	if err != nil {
		s.failures++
	}
}

func (s *stats) quantile(q float64) time.Duration {
	if len(s.latencies) == 0 {
		return 0
	}
	l := slices.Clone(s.latencies)
	slices.Sort(l)
	return l[min(len(l)-1, int(q*float64(len(l))))]
}

func run() (int, error) {
	var (
		keyName  = flag.String("key", "failover-demo", "key to encrypt with")
		create   = flag.Bool("create", false, "create the key first if it does not exist")
		duration = flag.Duration("duration", time.Minute, "how long to run")
		interval = flag.Duration("interval", 50*time.Millisecond, "pause between two encrypt+decrypt rounds")
		deadline = flag.Duration("deadline", 5*time.Second, "deadline of each call: the budget for its retries")
		region   = flag.String("region", "", "preferred region for crypto calls")
		addr     = flag.String("addr", "", "comma-separated node API addresses (overrides $KEYD_ADDR)")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	c, err := newClient(ctx, *addr, *region)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if *create {
		cctx, cancel := context.WithTimeout(ctx, *deadline)
		_, err := c.CreateKey(cctx, api.CreateKeyRequest{Name: *keyName})
		cancel()
		if err != nil && !errors.Is(err, api.ErrExists) {
			return 0, fmt.Errorf("create key: %w", err)
		}
	}

	var st stats
	leader := leaderOf(c.Topology())
	fmt.Printf("start: leader %s, %d nodes known\n", orNone(leader), len(c.Topology()))
	end := time.After(*duration)
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	msg := make([]byte, 64)
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-end:
			break loop
		case <-tick.C:
		}
		rand.Read(msg)
		ct, err := timed(ctx, *deadline, &st, func(ctx context.Context) (string, error) {
			r, err := c.Encrypt(ctx, *keyName, msg, nil)
			if err != nil {
				return "", err
			}
			return r.Ciphertext, nil
		})
		if err == nil {
			_, err = timed(ctx, *deadline, &st, func(ctx context.Context) (string, error) {
				r, err := c.Decrypt(ctx, *keyName, ct, nil)
				if err != nil {
					return "", err
				}
				if !bytes.Equal(r.Plaintext, msg) {
					return "", errors.New("round trip returned other bytes")
				}
				return "", nil
			})
		}
		if err != nil && ctx.Err() == nil {
			fmt.Printf("%s call failed: %v\n", time.Now().Format(time.TimeOnly), err)
		}
		if l := leaderOf(c.Topology()); l != leader {
			fmt.Printf("%s leader %s -> %s\n", time.Now().Format(time.TimeOnly), orNone(leader), orNone(l))
			leader = l
		}
	}
	fmt.Printf("calls %d, failed %d, latency p50 %v p99 %v max %v\n",
		st.calls, st.failures, st.quantile(0.5), st.quantile(0.99), st.quantile(1))
	return st.failures, nil
}

// timed runs one call under its own deadline and records it. A call cut
// short by Ctrl-C is not counted.
func timed(ctx context.Context, deadline time.Duration, st *stats, f func(context.Context) (string, error)) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	start := time.Now()
	v, err := f(cctx)
	if ctx.Err() == nil {
		st.add(time.Since(start), err)
	}
	return v, err
}

func leaderOf(nodes []api.ClusterNode) string {
	for _, n := range nodes {
		if n.Leader {
			if n.ID != "" {
				return n.ID
			}
			return n.APIAddr
		}
	}
	return ""
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// newClient builds a client from -addr or $KEYD_ADDR, $KEYD_TOKEN and
// $KEYD_CACERT, like the keyd CLI.
func newClient(ctx context.Context, addrFlag, region string) (*client.Client, error) {
	src := addrFlag
	if src == "" {
		src = os.Getenv("KEYD_ADDR")
	}
	var addrs []string
	for _, a := range strings.Split(src, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return nil, errors.New("no node address: set KEYD_ADDR or pass -addr")
	}
	var tc *tls.Config
	if path := os.Getenv("KEYD_CACERT"); path != "" {
		pem, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("KEYD_CACERT: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("KEYD_CACERT: no PEM certificate in %s", path)
		}
		tc = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	}
	return client.New(ctx, client.Config{Addrs: addrs, Token: os.Getenv("KEYD_TOKEN"), TLS: tc, Region: region,
		// Retries are bounded by each call's deadline; give them room.
		MaxRetries: 20})
}
