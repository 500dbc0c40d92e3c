package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
	"github.com/keyd/keyd/hsmbridge"
	"github.com/keyd/keyd/node"
	"github.com/keyd/keyd/transport"
)

// Limits of `keyd dev`.
const (
	devMaxNodes  = 9
	devRegion    = "dev"
	devReadyWait = 30 * time.Second
	devPoll      = 100 * time.Millisecond
)

// devOptions are the flags of `keyd dev`.
type devOptions struct {
	listen     string
	dataDir    string
	nodes      int
	custodians int
	threshold  int
	logLevel   string
	hsm        string
}

// dev runs an in-process development cluster until SIGINT or SIGTERM.
func (c *cli) dev(args []string) error {
	fs := c.flags("dev", "[-listen 127.0.0.1:8200] [-data DIR] [-nodes N] [-custodians N -threshold T]")
	var o devOptions
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8200", "API address of the first node; node i uses port+2i for the API and port+2i+1 for Raft (port 0: free ports; a persistent -data dir with several nodes needs fixed ports)")
	fs.StringVar(&o.dataDir, "data", "", "data directory, kept on exit (default: a temporary directory removed on exit)")
	fs.IntVar(&o.nodes, "nodes", 1, "number of in-process nodes")
	fs.StringVar(&o.hsm, "hsm", devHSMSoft, "HSM holding each node's share of the root: soft (a key file per node), softhsm2 (a SoftHSM2 token per node, via PKCS#11) or none")
	fs.IntVar(&o.custodians, "custodians", 1, "number of custodian shares to deal")
	fs.IntVar(&o.threshold, "threshold", 1, "shares needed to unseal; with 1 the dev cluster unseals itself")
	fs.StringVar(&o.logLevel, "log-level", "warn", "node log level on stderr: debug, info, warn or error")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if o.nodes < 1 || o.nodes > devMaxNodes {
		return usagef("dev: -nodes must be between 1 and %d", devMaxNodes)
	}
	if o.threshold < 1 || o.custodians < o.threshold {
		return usagef("dev: need 1 <= -threshold <= -custodians")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return usagef("dev: -log-level %q: want debug, info, warn or error", o.logLevel)
	}
	err := runDev(c.ctx, o, level, c.stdout, c.stderr)
	if err != nil && c.ctx.Err() != nil && errors.Is(err, c.ctx.Err()) {
		return nil // interrupted while starting: not a failure
	}
	return err
}

// devAddr is one node's API and Raft listen addresses.
type devAddr struct{ api, raft string }

// devAddrs lays out n nodes from listen: API on port p+2i, Raft on
// p+2i+1. Port 0 gives every address port 0, so the OS picks free ports.
func devAddrs(listen string, n int) ([]devAddr, error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, usagef("dev: -listen %q: want host:port", listen)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port+2*n-1 > 65535 {
		return nil, usagef("dev: -listen %q: port out of range for %d nodes", listen, n)
	}
	out := make([]devAddr, n)
	for i := range out {
		ap, rp := 0, 0
		if port != 0 {
			ap, rp = port+2*i, port+2*i+1
		}
		out[i] = devAddr{api: net.JoinHostPort(host, strconv.Itoa(ap)), raft: net.JoinHostPort(host, strconv.Itoa(rp))}
	}
	return out, nil
}

// advertised returns the address others dial for a listener: the
// listener's own address, with an unspecified host (0.0.0.0, ::) replaced
// by loopback, which is what a dev cluster's clients use.
func advertised(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// devSlot is one in-process node of a dev cluster, before it starts.
type devSlot struct {
	id      string
	dir     string
	apiLn   net.Listener
	raftLn  net.Listener
	apiAdv  string
	raftAdv string
}

// devConfig is the node.Config of one dev node: every dev node is a
// normal node with pre-bound listeners, certificates from the dev CA, and
// all nodes bootstrapped together. There is no dev-only code path in node.
func devConfig(s devSlot, peers []node.Peer, id transport.Identity, hsm hsmbridge.Config, logger *slog.Logger, raftLog io.Writer) node.Config {
	cfg := node.DefaultConfig()
	cfg.NodeID = s.id
	cfg.Region = devRegion
	cfg.DataDir = s.dir
	cfg.APIAddr, cfg.APIAdvertise = s.apiLn.Addr().String(), s.apiAdv
	cfg.RaftAddr, cfg.RaftAdvertise = s.raftLn.Addr().String(), s.raftAdv
	cfg.APIListener, cfg.RaftListener = s.apiLn, s.raftLn
	cfg.Identity = id
	cfg.Peers = peers
	cfg.Bootstrap = true
	cfg.HSM = hsm
	cfg.Logger = logger
	cfg.RaftLogOutput = raftLog
	return cfg
}

// devHosts are the names a dev node's certificate carries, so clients can
// reach it by loopback and by the -listen host.
func devHosts(listen string) []string {
	hosts := []string{"127.0.0.1", "::1", "localhost"}
	if h, _, err := net.SplitHostPort(listen); err == nil && h != "" {
		if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// runDev starts the dev cluster, initialises and (threshold 1) unseals it,
// prints how to reach it on out, and runs until ctx ends. Node logs go to
// logOut. It closes every node, and removes the data directory when it was
// temporary, before returning.
func runDev(ctx context.Context, o devOptions, level slog.Level, out, logOut io.Writer) (err error) {
	addrs, err := devAddrs(o.listen, o.nodes)
	if err != nil {
		return err
	}
	dir, temporary := o.dataDir, o.dataDir == ""
	if temporary {
		if dir, err = os.MkdirTemp("", "keyd-dev-"); err != nil {
			return fmt.Errorf("dev: %w", err)
		}
		defer func() {
			if rmErr := os.RemoveAll(dir); rmErr != nil {
				err = errors.Join(err, fmt.Errorf("dev: remove %s: %w", dir, rmErr))
			}
		}()
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	ca, _, err := loadOrCreateCA(dir, "keyd dev CA")
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}

	// Bind every listener before starting any node, so the peers list
	// holds real addresses even for port 0.
	slots := make([]devSlot, 0, len(addrs))
	defer func() {
		for _, s := range slots {
			// Closing twice is harmless: nodes close their own listeners.
			_ = s.apiLn.Close()
			_ = s.raftLn.Close()
		}
	}()
	for i, a := range addrs {
		s := devSlot{id: fmt.Sprintf("n%d", i+1)}
		s.dir = filepath.Join(dir, s.id)
		if s.apiLn, err = net.Listen("tcp", a.api); err != nil {
			return fmt.Errorf("dev: listen %s: %w", a.api, err)
		}
		if s.raftLn, err = net.Listen("tcp", a.raft); err != nil {
			_ = s.apiLn.Close()
			return fmt.Errorf("dev: listen %s: %w", a.raft, err)
		}
		s.apiAdv, s.raftAdv = advertised(s.apiLn.Addr()), advertised(s.raftLn.Addr())
		slots = append(slots, s)
	}
	peers := make([]node.Peer, len(slots))
	for i, s := range slots {
		peers[i] = node.Peer{ID: s.id, RaftAddr: s.raftAdv, APIAddr: s.apiAdv, Region: devRegion}
	}

	ids := make([]string, len(slots))
	for i, s := range slots {
		ids[i] = s.id
	}
	hsms, err := devHSMs(ctx, o.hsm, dir, ids)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level}))
	var nodes []*node.Node
	defer func() {
		for i := len(nodes) - 1; i >= 0; i-- {
			if cerr := nodes[i].Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
	}()
	for i, s := range slots {
		id, err := ca.Identity(s.id, devHosts(o.listen)...)
		if err != nil {
			return fmt.Errorf("dev: %w", err)
		}
		n, err := node.New(devConfig(s, peers, id, hsms[i], logger, logOut))
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
		if err := n.Start(ctx); err != nil {
			return err
		}
	}

	apiAddrs := make([]string, len(slots))
	for i, s := range slots {
		apiAddrs[i] = s.apiAdv
	}
	cl, err := client.New(ctx, client.Config{
		Addrs: apiAddrs,
		TLS:   &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13},
	})
	if err != nil {
		return err
	}
	defer cl.Close()

	st, err := devWaitLeader(ctx, cl)
	if err != nil {
		return err
	}
	caPath := filepath.Join(dir, caCertFile)
	w := &errWriter{w: out}
	where := dir
	if temporary {
		where += " (temporary: removed on exit)"
	}
	w.printf("keyd dev: %d node(s), data in %s\n\n", len(slots), where)
	for _, s := range slots {
		w.printf("  %s  API https://%s  Raft %s\n", s.id, s.apiAdv, s.raftAdv)
	}
	w.printf("\n")

	token := ""
	switch {
	case !st.Initialized:
		// Dev mode shows the shares: plaintext on purpose.
		res, err := cl.InitWith(ctx, api.InitRequest{Custodians: o.custodians, Threshold: o.threshold, PlaintextShares: true})
		if err != nil {
			return fmt.Errorf("dev: init: %w", err)
		}
		token = res.AdminToken
		w.printf("Custodian shares (shown once, never stored; needed to unseal after a seal or restart):\n")
		for i, sh := range res.Shares {
			w.printf("Share %d: %s\n", i+1, sh)
		}
		w.printf("Admin token: %s\n", token)
		if o.threshold == 1 {
			if err := devUnseal(ctx, cl, apiAddrs, res.Index, res.Shares[0]); err != nil {
				return err
			}
			w.printf("\nThe cluster is initialised and unsealed.\n")
		} else {
			w.printf("\nThe cluster is initialised and sealed: submit %d of the %d shares with `keyd operator unseal`.\n", o.threshold, o.custodians)
		}
	case st.Sealed:
		w.printf("The cluster in %s is already initialised and sealed: keyd never stores shares,\n", dir)
		w.printf("so submit %d of its %d custodian shares with `keyd operator unseal`.\n", st.Threshold, st.Custodians)
		w.printf("Use the admin token printed when the directory was first initialised.\n")
	default:
		w.printf("The cluster in %s is already initialised and unsealed.\n", dir)
	}
	w.printf("CA certificate: %s\n\n", caPath)
	w.printf("export %s=%s\n", envAddr, strings.Join(apiAddrs, ","))
	if token != "" {
		w.printf("export %s=%s\n", envToken, token)
	}
	w.printf("export %s=%s\n\n", envCACert, caPath)
	w.printf("%s\n", devHSMLine(o.hsm, dir))
	w.printf("WARNING: keyd dev is for development only. The admin token, the custodian shares\n")
	w.printf("and the certificate authority above are printed in the clear, the CA key is kept\n")
	w.printf("in the data directory, and so are the dev HSMs' keys. Never use it for real keys.\n")
	w.printf("Press Ctrl-C to stop.\n")
	if w.err != nil {
		return fmt.Errorf("dev: write output: %w", w.err)
	}
	<-ctx.Done()
	return nil
}

// devWaitLeader polls the cluster until a leader is known.
func devWaitLeader(ctx context.Context, cl *client.Client) (*api.SealStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, devReadyWait)
	defer cancel()
	t := time.NewTicker(devPoll)
	defer t.Stop()
	for {
		st, err := cl.Status(ctx)
		if err == nil && st.LeaderID != "" {
			return st, nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = errors.New("no leader elected")
			}
			return nil, fmt.Errorf("dev: waiting for a leader: %w", err)
		case <-t.C:
		}
	}
}

// devUnseal submits the dev cluster's single needed share to every node
// once each has applied the init record (a node that has not cannot
// verify a share), and waits until all are unsealed.
func devUnseal(ctx context.Context, cl *client.Client, addrs []string, index uint64, share string) error {
	ctx, cancel := context.WithTimeout(ctx, devReadyWait)
	defer cancel()
	t := time.NewTicker(devPoll)
	defer t.Stop()
	for _, a := range addrs {
		for {
			st, err := cl.StatusOf(ctx, a)
			if err == nil && !st.Sealed {
				break
			}
			if err == nil && st.Applied >= index {
				st, err = cl.UnsealAt(ctx, a, share)
				if err == nil && !st.Sealed {
					break
				}
			}
			select {
			case <-ctx.Done():
				if err == nil {
					err = ctx.Err()
				}
				return fmt.Errorf("dev: unseal %s: %w", a, err)
			case <-t.C:
			}
		}
	}
	return nil
}

// errWriter keeps the first write error, so a run of prints is checked
// once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
