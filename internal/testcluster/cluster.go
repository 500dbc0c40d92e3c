// Package testcluster runs in-process keyd clusters on 127.0.0.1 for
// integration tests, in the shape of raft's MakeCluster: each node has its
// own data directory, certificates from one in-memory CA and a
// fault-injecting Raft stream layer.
package testcluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/hashicorp/raft"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
	"github.com/keyd/keyd/custodian"
	"github.com/keyd/keyd/hsmbridge"
	"github.com/keyd/keyd/node"
	"github.com/keyd/keyd/transport"
	"github.com/keyd/keyd/transport/devcerts"
)

// Options configures a cluster.
type Options struct {
	Nodes int
	// Regions are assigned round-robin.
	Regions []string
	// Log receives every node's logs (default: discarded). Tests that
	// scan logs for secrets pass a buffer.
	Log io.Writer
	// SchedulerInterval for every node (default 100ms).
	SchedulerInterval time.Duration
	// HSM selects each node's HSM: HSMNone, HSMSoft or HSMSoftHSM2.
	HSM string
	// Gossip turns on memberlist (encrypted with a per-cluster key) and
	// the leader's membership reconciliation.
	Gossip bool
	// DeadVoterTimeout for every node (default 2s with gossip).
	DeadVoterTimeout time.Duration
	// Configure, when set, adjusts each node's config before it starts.
	Configure func(slot int, cfg *node.Config)
}

// Slot is one node position; it survives restarts.
type Slot struct {
	ID     string
	Region string
	Dir    string
	// Joiner slots were added after bootstrap and join through gossip.
	Joiner bool
	// GossipAddr is fixed per slot, so a restarted node comes back at the
	// same gossip address (as a production node would).
	GossipAddr string
	APIAddr    string
	RaftAddr   string
	Faults     *transport.FaultLayer
	Node       *node.Node
	identity   transport.Identity
	hsm        hsmbridge.Config
	hsmLabel   string
}

// Cluster is an in-process cluster. Methods are safe for use from one test
// goroutine; Node accessors may be used from others.
type Cluster struct {
	CA    *devcerts.CA
	base  string
	id    string
	key   []byte
	opts  Options
	mu    sync.Mutex
	slots []*Slot
	log   *syncWriter
	// Token is the admin token once Init ran.
	Token string
	// Shares are the custodian shares once Init ran.
	Shares []string
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// New starts a cluster and registers its Close with t.Cleanup.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if len(opts.Regions) == 0 {
		opts.Regions = []string{"local"}
	}
	if opts.Log == nil {
		opts.Log = io.Discard
		if os.Getenv("KEYD_TEST_LOG") != "" {
			opts.Log = os.Stderr
		}
	}
	if opts.SchedulerInterval == 0 {
		opts.SchedulerInterval = 100 * time.Millisecond
	}
	ca, err := devcerts.NewCA("keyd test CA")
	if err != nil {
		t.Fatal(err)
	}
	// The base directory is registered before Close, so cleanup closes
	// every node before the directories are removed.
	base := t.TempDir()
	c := &Cluster{CA: ca, id: randomID(), opts: opts, log: &syncWriter{w: opts.Log}, key: []byte(randomID() + randomID() + "abcdefgh"), base: base}
	t.Cleanup(c.Close)
	var lns [][2]net.Listener
	for i := 0; i < opts.Nodes; i++ {
		id := fmt.Sprintf("n%d", i+1)
		apiLn, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		raftLn, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ident, err := ca.Identity(id, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		c.slots = append(c.slots, &Slot{ID: id, Region: opts.Regions[i%len(opts.Regions)], Dir: filepath.Join(base, id), APIAddr: apiLn.Addr().String(), RaftAddr: raftLn.Addr().String(), identity: ident})
		lns = append(lns, [2]net.Listener{apiLn, raftLn})
	}
	for i, s := range c.slots {
		s.hsm, s.hsmLabel = c.hsmFor(t, i, s.Dir)
		if err := c.start(s, lns[i][0], lns[i][1], i); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (c *Cluster) peers() []node.Peer {
	var ps []node.Peer
	for _, s := range c.slots {
		if !s.Joiner {
			ps = append(ps, node.Peer{ID: s.ID, APIAddr: s.APIAddr, RaftAddr: s.RaftAddr, Region: s.Region})
		}
	}
	return ps
}

// seeds returns the gossip addresses of running nodes other than skip.
func (c *Cluster) seeds(skip *Slot) []string {
	var out []string
	for _, s := range c.slots {
		if s == skip {
			continue
		}
		if n := c.node(s); n != nil && n.GossipAddr() != "" {
			out = append(out, n.GossipAddr())
		}
	}
	return out
}

func (c *Cluster) start(s *Slot, apiLn, raftLn net.Listener, i int) error {
	cfg := node.DefaultConfig()
	cfg.NodeID = s.ID
	cfg.Region = s.Region
	cfg.DataDir = s.Dir
	cfg.APIListener = apiLn
	cfg.RaftListener = raftLn
	cfg.Identity = s.identity
	cfg.Peers = c.peers()
	cfg.Bootstrap = !s.Joiner
	if c.opts.Gossip {
		if s.GossipAddr == "" {
			s.GossipAddr = freeGossipAddr()
		}
		cfg.GossipAddr = s.GossipAddr
		cfg.GossipKey = c.key
		cfg.Join = c.seeds(s)
		cfg.ReconcileInterval = 200 * time.Millisecond
		cfg.DeadVoterTimeout = c.opts.DeadVoterTimeout
		if cfg.DeadVoterTimeout == 0 {
			cfg.DeadVoterTimeout = 2 * time.Second
		}
	}
	cfg.SchedulerInterval = c.opts.SchedulerInterval
	cfg.MinRotationPeriod = 100 * time.Millisecond
	cfg.NodeShareInterval = 100 * time.Millisecond
	if s.hsm != nil {
		cfg.HSM, cfg.HSMKeyLabel = s.hsm, s.hsmLabel
	}
	cfg.Logger = slog.New(slog.NewTextHandler(c.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.RaftLogOutput = c.log
	cfg.WrapStreamLayer = func(l raft.StreamLayer) raft.StreamLayer {
		s.Faults = transport.NewFaultLayer(l)
		return s.Faults
	}
	if c.opts.Configure != nil {
		c.opts.Configure(i, &cfg)
	}
	n, err := node.New(cfg)
	if err != nil {
		return err
	}
	if err := n.Start(context.Background()); err != nil {
		_ = n.Close()
		return err
	}
	c.mu.Lock()
	s.Node = n
	c.mu.Unlock()
	return nil
}

// Close stops every node.
func (c *Cluster) Close() {
	for _, s := range c.slots {
		if n := c.node(s); n != nil {
			_ = n.Close()
		}
	}
}

func (c *Cluster) node(s *Slot) *node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return s.Node
}

// Size returns the number of slots.
func (c *Cluster) Size() int { return len(c.slots) }

// Slot returns slot i.
func (c *Cluster) Slot(i int) *Slot { return c.slots[i] }

// Node returns the running node in slot i (nil when stopped).
func (c *Cluster) Node(i int) *node.Node { return c.node(c.slots[i]) }

// Addrs returns every slot's API address.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, s := range c.slots {
		out = append(out, s.APIAddr)
	}
	return out
}

// Stop closes the node in slot i, keeping its data directory. In process
// this is as abrupt as a kill for everything that is not yet on disk:
// acknowledged writes are fsynced by Raft before they are acknowledged.
func (c *Cluster) Stop(t testing.TB, i int) {
	t.Helper()
	s := c.slots[i]
	n := c.node(s)
	if n == nil {
		return
	}
	_ = n.Close()
	c.mu.Lock()
	s.Node = nil
	c.mu.Unlock()
}

// Restart starts slot i again on the same addresses and data directory.
func (c *Cluster) Restart(t testing.TB, i int) {
	t.Helper()
	s := c.slots[i]
	var apiLn, raftLn net.Listener
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		apiLn, err = net.Listen("tcp", s.APIAddr)
		if err == nil {
			raftLn, err = net.Listen("tcp", s.RaftAddr)
			if err == nil {
				break
			}
			_ = apiLn.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("rebind %s: %v", s.ID, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := c.start(s, apiLn, raftLn, i); err != nil {
		t.Fatal(err)
	}
}

// WaitLeader waits until exactly one running node is leader and every
// running node agrees on it, and returns its slot.
func (c *Cluster) WaitLeader(t testing.TB) int {
	t.Helper()
	var leader int
	c.Eventually(t, 15*time.Second, func() error {
		leader = -1
		var leaderID string
		for i := range c.slots {
			n := c.Node(i)
			if n == nil {
				continue
			}
			if n.IsLeader() {
				if leader >= 0 {
					return fmt.Errorf("two leaders: %d and %d", leader, i)
				}
				leader = i
			}
			id, _ := n.Leader()
			if leaderID == "" {
				leaderID = id
			} else if id != leaderID {
				return fmt.Errorf("nodes disagree on the leader")
			}
		}
		if leader < 0 {
			return fmt.Errorf("no leader")
		}
		return nil
	})
	return leader
}

// Eventually polls fn until it returns nil or the timeout, scaled by
// TimeoutScale, passes. Timeouts are what a condition needs on an idle
// machine; the scale gives a busy 2-core CI machine room, and only a
// failing test waits the longer time.
func (c *Cluster) Eventually(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	timeout = Scaled(timeout)
	deadline := time.Now().Add(timeout)
	delay := 10 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not reached within %s: %v", timeout, err)
		}
		time.Sleep(delay)
		if delay < 200*time.Millisecond {
			delay *= 2
		}
	}
}

// TimeoutScale multiplies every Eventually deadline. KEYD_TEST_TIMEOUT_SCALE
// overrides it (an integer, at least 1).
var TimeoutScale = func() time.Duration {
	if v, err := strconv.Atoi(os.Getenv("KEYD_TEST_TIMEOUT_SCALE")); err == nil && v >= 1 {
		return time.Duration(v)
	}
	return 3
}()

// Scaled returns d scaled by TimeoutScale, for tests' own deadlines.
func Scaled(d time.Duration) time.Duration { return d * TimeoutScale }

// TLS returns a client TLS config trusting the cluster CA.
func (c *Cluster) TLS() *tls.Config {
	return &tls.Config{RootCAs: c.CA.Pool(), MinVersion: tls.VersionTLS13}
}

// Client returns a client for every node, with the admin token.
func (c *Cluster) Client(t testing.TB) *client.Client {
	return c.ClientFor(t, c.Addrs()...)
}

// ClientFor returns a client seeded with the given addresses only.
func (c *Cluster) ClientFor(t testing.TB, addrs ...string) *client.Client {
	t.Helper()
	// A TLS handshake under -race on a busy 2-core machine can take more
	// than the client's LAN default of one second.
	cl, err := client.New(context.Background(), client.Config{Addrs: addrs, Token: c.Token, TLS: c.TLS(), Timeout: 5 * time.Second, MaxRetries: 10, ConnectTimeout: Scaled(client.DefaultConnectTimeout)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// Init initialises the cluster with n custodians and threshold k and
// records the shares and the admin token. The test plays every custodian:
// it asks for shares encrypted to n fresh age keys (and the token to
// another) and decrypts them, so a retried init still gets its answer
// after a leader change (encrypted secrets are replicated; plaintext ones
// stay in one leader's memory). The reply is returned with Shares and
// AdminToken filled in.
func (c *Cluster) Init(t testing.TB, n, k int) *api.InitResponse {
	t.Helper()
	c.WaitLeader(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ids := make([]*custodian.Identity, n+1)
	keys := make([]string, n+1)
	for i := range ids {
		x, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		if ids[i], err = custodian.ParseIdentity([]byte(x.String())); err != nil {
			t.Fatal(err)
		}
		keys[i] = x.Recipient().String()
	}
	res, err := c.Client(t).InitWith(ctx, api.InitRequest{Custodians: n, Threshold: k, CustodianKeys: keys[:n], AdminKey: keys[n]})
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	if len(res.EncryptedShares) != n || res.EncryptedAdminToken == "" {
		t.Fatalf("init: %d encrypted shares", len(res.EncryptedShares))
	}
	open := func(i int, msg string) string {
		b, err := ids[i].Decrypt(msg)
		if err != nil {
			t.Fatalf("init: custodian %d: %v", i+1, err)
		}
		return string(b)
	}
	res.Shares = make([]string, n)
	for i, msg := range res.EncryptedShares {
		res.Shares[i] = open(i, msg)
	}
	res.AdminToken = open(n, res.EncryptedAdminToken)
	c.Token = res.AdminToken
	c.Shares = res.Shares
	c.WaitApplied(t, res.Index)
	return res
}

// Unseal submits the first threshold shares to slot 0's node and waits
// until every running node is unsealed.
func (c *Cluster) Unseal(t testing.TB, threshold int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := c.Client(t)
	for _, sh := range c.Shares[:threshold] {
		if _, err := cl.UnsealAt(ctx, c.slots[0].APIAddr, sh); err != nil {
			t.Fatalf("unseal: %v", err)
		}
	}
	c.WaitUnsealed(t)
}

// WaitUnsealed waits until every running node is unsealed.
func (c *Cluster) WaitUnsealed(t testing.TB) {
	t.Helper()
	c.Eventually(t, 15*time.Second, func() error {
		for i := range c.slots {
			if n := c.Node(i); n != nil && n.Sealed() {
				return fmt.Errorf("%s still sealed: %s", n.ID(), n.Status().SealReason)
			}
		}
		return nil
	})
}

// WaitApplied waits until every running node applied index.
func (c *Cluster) WaitApplied(t testing.TB, index uint64) {
	t.Helper()
	c.Eventually(t, 15*time.Second, func() error {
		for i := range c.slots {
			if n := c.Node(i); n != nil && n.AppliedIndex() < index {
				return fmt.Errorf("%s applied %d < %d", n.ID(), n.AppliedIndex(), index)
			}
		}
		return nil
	})
}

// EnsureSameState waits until every running node holds the same
// replicated state.
func (c *Cluster) EnsureSameState(t testing.TB) {
	t.Helper()
	c.Eventually(t, 15*time.Second, func() error {
		var first []byte
		for i := range c.slots {
			n := c.Node(i)
			if n == nil {
				continue
			}
			var b bytes.Buffer
			if err := n.DumpState(&b); err != nil {
				return err
			}
			if first == nil {
				first = b.Bytes()
			} else if !bytes.Equal(first, b.Bytes()) {
				return fmt.Errorf("%s differs", n.ID())
			}
		}
		return nil
	})
}

// AddNode starts a new node in region that joins the running cluster
// through gossip (the cluster needs Options.Gossip). It returns its slot.
func (c *Cluster) AddNode(t testing.TB, region string) int {
	t.Helper()
	if !c.opts.Gossip {
		t.Fatal("AddNode needs Options.Gossip")
	}
	i := len(c.slots)
	id := fmt.Sprintf("n%d", i+1)
	apiLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	raftLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ident, err := c.CA.Identity(id, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	s := &Slot{ID: id, Region: region, Dir: filepath.Join(c.base, id), APIAddr: apiLn.Addr().String(), RaftAddr: raftLn.Addr().String(), identity: ident, Joiner: true}
	s.hsm, s.hsmLabel = c.hsmFor(t, i, s.Dir)
	c.mu.Lock()
	c.slots = append(c.slots, s)
	c.mu.Unlock()
	if err := c.start(s, apiLn, raftLn, i); err != nil {
		t.Fatal(err)
	}
	return i
}

// SetHSM replaces slot i's HSM configuration (used before a Restart to
// simulate a missing or wrong HSM key).
func (c *Cluster) SetHSM(i int, cfg hsmbridge.Config, label string) {
	c.slots[i].hsm, c.slots[i].hsmLabel = cfg, label
}

// HSMConfig returns slot i's HSM configuration and key label.
func (c *Cluster) HSMConfig(i int) (hsmbridge.Config, string) {
	return c.slots[i].hsm, c.slots[i].hsmLabel
}

// Isolate cuts slot i off from every peer, both ways.
func (c *Cluster) Isolate(t testing.TB, i int) {
	t.Helper()
	c.slots[i].Faults.Isolate()
	for j, s := range c.slots {
		if j != i && s.Faults != nil {
			s.Faults.Block(raft.ServerAddress(c.slots[i].RaftAddr))
		}
	}
}

// Heal removes every fault.
func (c *Cluster) Heal(t testing.TB) {
	t.Helper()
	for _, s := range c.slots {
		if s.Faults != nil {
			s.Faults.Heal()
		}
	}
}

// freeGossipAddr finds a loopback port free for both TCP and UDP.
func freeGossipAddr() string {
	for i := 0; i < 50; i++ {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			continue
		}
		addr := tl.Addr().String()
		ul, err := net.ListenPacket("udp", addr)
		_ = tl.Close()
		if err != nil {
			continue
		}
		_ = ul.Close()
		return addr
	}
	return "127.0.0.1:0"
}
