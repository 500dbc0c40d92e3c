package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
)

// Environment variables read by client commands.
const (
	envAddr   = "KEYD_ADDR"   // comma-separated host:port list
	envToken  = "KEYD_TOKEN"  // bearer token
	envCACert = "KEYD_CACERT" // PEM file of the CA that signed the nodes' API certificates
	// envClientCert and envClientKey are PEM files of a client certificate
	// and its key, presented in the TLS handshake: an identity created with
	// `keyd identity create` authenticates with them instead of a token.
	// When KEYD_TOKEN is set too, the server uses the token.
	envClientCert = "KEYD_CLIENT_CERT"
	envClientKey  = "KEYD_CLIENT_KEY"
)

// clientFlags are the flags every client command accepts.
type clientFlags struct {
	addr string
	// timeout bounds the whole command, retries included; 0 (a
	// clientFlags that was never registered) leaves the command unbounded
	// with the client's default retry count.
	timeout time.Duration
}

// defaultCommandTimeout is the default of -timeout: long enough to ride
// through a Raft election (about a second) several times over.
const defaultCommandTimeout = 10 * time.Second

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "addr", "", "comma-separated node API addresses (overrides $"+envAddr+")")
	fs.DurationVar(&f.timeout, "timeout", defaultCommandTimeout, "give up after this long; until then retry through leader elections and node failures")
}

// splitAddrs splits a comma-separated address list, dropping blanks.
func splitAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// addrs returns the seed addresses: -addr, else $KEYD_ADDR.
func (c *cli) addrs(f *clientFlags) ([]string, error) {
	src := f.addr
	if src == "" {
		src = c.getenv(envAddr)
	}
	a := splitAddrs(src)
	if len(a) == 0 {
		return nil, usagef("no node address: set %s or pass -addr", envAddr)
	}
	return a, nil
}

// clientTLS returns the TLS config of client commands: $KEYD_CACERT as
// the roots (the system roots when unset) and, when $KEYD_CLIENT_CERT and
// $KEYD_CLIENT_KEY are set, that key pair as the client certificate. It
// returns nil when neither is set.
//
// The certificate is always presented, whatever CAs the node lists as
// acceptable: a keyd identity is the hash of the certificate's public key
// and need not chain to any CA, so the standard selection (which skips a
// certificate from an unlisted issuer) would drop a self-signed one.
func (c *cli) clientTLS() (*tls.Config, error) {
	var tc *tls.Config
	if path := c.getenv(envCACert); path != "" {
		pem, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", envCACert, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate in %s", envCACert, path)
		}
		tc = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	}
	certPath, keyPath := c.getenv(envClientCert), c.getenv(envClientKey)
	if certPath == "" && keyPath == "" {
		return tc, nil
	}
	if certPath == "" || keyPath == "" {
		return nil, usagef("set both %s and %s, or neither", envClientCert, envClientKey)
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", envClientCert, envClientKey, err)
	}
	if tc == nil {
		tc = &tls.Config{MinVersion: tls.VersionTLS13}
	}
	tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	return tc, nil
}

// newClient builds a client from the flags and the environment. The
// caller closes it.
func (c *cli) newClient(f *clientFlags) (*client.Client, error) {
	addrs, err := c.addrs(f)
	if err != nil {
		return nil, err
	}
	tc, err := c.clientTLS()
	if err != nil {
		return nil, err
	}
	cfg := client.Config{Addrs: addrs, Token: c.getenv(envToken), TLS: tc}
	if f.timeout > 0 {
		// Retry for as long as the deadline allows rather than a fixed
		// number of times: an election takes a second or so, and a write
		// keeps its request id across retries, so it is applied once.
		c.setDeadline(f.timeout)
		cfg.MaxRetries = math.MaxInt32
		cfg.OnRetry = c.retryNotice
	}
	return client.New(c.ctx, cfg)
}

// setDeadline bounds the rest of the command (c.ctx) by d. run releases
// it when the command returns.
func (c *cli) setDeadline(d time.Duration) {
	ctx, cancel := context.WithTimeout(c.ctx, d)
	c.ctx = ctx
	c.timeout = d
	c.release = append(c.release, cancel)
}

// releaseDeadlines cancels the contexts setDeadline made.
func (c *cli) releaseDeadlines() {
	for _, cancel := range c.release {
		cancel()
	}
	c.release = nil
}

// retryNotice is the client's OnRetry hook: while the cluster has no
// leader (an election, or lost quorum: the two look the same until the
// deadline passes) it says once, on stderr, that it is waiting rather
// than failing.
func (c *cli) retryNotice(err error, _ time.Duration) {
	var ae *api.Error
	if c.waitNoted || !errors.As(err, &ae) {
		return
	}
	if ae.Code == api.CodeNotLeader || ae.Code == api.CodeUnavailable {
		c.waitNoted = true
		fmt.Fprintf(c.stderr, "keyd: waiting for a leader (up to -timeout %s)...\n", c.timeout)
	}
}

// Bounds of the wait after a write (see cli.settle).
const (
	// settleWait bounds the whole wait.
	settleWait = 5 * time.Second
	// settleNodeWait bounds the wait for one node, including its
	// connection: a node that does not answer within it is skipped. The
	// nodes are waited for concurrently, so a dead or partitioned peer
	// costs a write command at most this long, not settleWait.
	settleNodeWait = time.Second
	// settlePoll is the interval between status polls of a node that has
	// not applied the index yet.
	settlePoll = 50 * time.Millisecond
)

// settle waits until every node has applied index, so that the next keyd
// invocation reads the write wherever it lands. Each keyd invocation is a
// new client that cannot carry the index of the previous one's write, so
// without this `keyd key create k` followed by `keyd key encrypt k` could
// reach a follower that has not applied the create yet.
//
// The nodes are the seeds plus those the client's topology lists, minus
// nodes the topology reports dead or left and nodes a connection just
// failed to. Each is polled concurrently for
// at most settleNodeWait; one that never answers is skipped silently, one
// that answers but stays behind gets a note on stderr. The command still
// succeeds either way: the write itself is committed.
func (c *cli) settle(cl *client.Client, f *clientFlags, index uint64) {
	c.settleWith(cl, f, index, settleWait, settleNodeWait)
}

// settleWith is settle with explicit bounds, for tests.
func (c *cli) settleWith(cl *client.Client, f *clientFlags, index uint64, total, perNode time.Duration) {
	if index == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, total)
	defer cancel()
	targets := c.settleTargets(ctx, cl, f, perNode)
	for _, a := range settleNodes(ctx, cl, targets, index, perNode) {
		fmt.Fprintf(c.stderr, "note: %s has not applied index %d yet; reads there may lag briefly\n", a, index)
	}
}

// settleTargets lists the nodes settle waits for.
func (c *cli) settleTargets(ctx context.Context, cl *client.Client, f *clientFlags, perNode time.Duration) []string {
	set := newAddrSet()
	if seeds, err := c.addrs(f); err == nil {
		for _, a := range seeds {
			set.add(a)
		}
	}
	topo := cl.Topology()
	if len(topo) == 0 {
		// Nothing learned yet (every seed failed during New): ask once.
		sctx, cancel := context.WithTimeout(ctx, perNode)
		if st, err := cl.Status(sctx); err == nil {
			for _, p := range st.Peers {
				set.add(p.APIAddr)
			}
		}
		cancel()
	}
	gone := newAddrSet()
	for _, a := range set.list {
		if cl.Unreachable(a) {
			// A connection to it just failed (a dead leader the write
			// tried first): waiting on it would cost a connect timeout.
			gone.add(a)
		}
	}
	for _, n := range topo {
		if n.State == api.NodeDead || n.State == api.NodeLeft {
			gone.add(n.APIAddr)
		} else {
			set.add(n.APIAddr)
		}
	}
	out := make([]string, 0, len(set.list))
	for _, a := range set.list {
		if !gone.has(a) {
			out = append(out, a)
		}
	}
	return out
}

// settleNodes polls every addr concurrently, each for at most perNode,
// until it has applied index. It returns the nodes that answered but had
// not caught up when their time ran out, in addrs order; nodes that never
// answered are left out.
func settleNodes(ctx context.Context, cl *client.Client, addrs []string, index uint64, perNode time.Duration) []string {
	behind := make([]bool, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Go(func() {
			nctx, cancel := context.WithTimeout(ctx, perNode)
			defer cancel()
			behind[i] = !waitApplied(nctx, cl, a, index)
		})
	}
	wg.Wait()
	var out []string
	for i, a := range addrs {
		if behind[i] {
			out = append(out, a)
		}
	}
	return out
}

// waitApplied polls addr until it reports index applied, or fails, or
// ctx ends. It reports false only for a node that answered while behind
// and then ran out of time: a node that fails to answer is not waited for.
func waitApplied(ctx context.Context, cl *client.Client, addr string, index uint64) bool {
	tick := time.NewTicker(settlePoll)
	defer tick.Stop()
	answered := false
	for {
		st, err := cl.StatusOf(ctx, addr)
		if err != nil {
			// Unreachable, or out of time mid-poll.
			return !answered || ctx.Err() == nil
		}
		if st.Applied >= index {
			return true
		}
		answered = true
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}
