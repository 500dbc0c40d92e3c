package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/keyd/keyd/client"
)

// Environment variables read by client commands.
const (
	envAddr   = "KEYD_ADDR"   // comma-separated host:port list
	envToken  = "KEYD_TOKEN"  // bearer token
	envCACert = "KEYD_CACERT" // PEM file of the CA that signed the nodes' API certificates
)

// clientFlags are the flags every client command accepts.
type clientFlags struct {
	addr string
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "addr", "", "comma-separated node API addresses (overrides $"+envAddr+")")
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

// clientTLS returns the TLS config for $KEYD_CACERT, or nil (system roots)
// when it is unset.
func (c *cli) clientTLS() (*tls.Config, error) {
	path := c.getenv(envCACert)
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", envCACert, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in %s", envCACert, path)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}, nil
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
	return client.New(c.ctx, client.Config{Addrs: addrs, Token: c.getenv(envToken), TLS: tc})
}

// settleWait bounds how long a write command waits for the other nodes.
const settleWait = 5 * time.Second

// settle waits, bounded by settleWait, until every node that answers has
// applied index. Each keyd invocation is a new client that cannot carry
// the index of the previous one's write, so without this `keyd key create
// k` followed by `keyd key encrypt k` could reach a follower that has not
// applied the create yet. A node that does not answer is skipped; on
// timeout a note goes to stderr and the command still succeeds, since the
// write itself is committed.
func (c *cli) settle(cl *client.Client, f *clientFlags, index uint64) {
	if index == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, settleWait)
	defer cancel()
	set := newAddrSet()
	if seeds, err := c.addrs(f); err == nil {
		for _, a := range seeds {
			set.add(a)
		}
	}
	if st, err := cl.Status(ctx); err == nil {
		for _, p := range st.Peers {
			set.add(p.APIAddr)
		}
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for _, a := range set.list {
		for {
			st, err := cl.StatusOf(ctx, a)
			if err != nil || st.Applied >= index {
				break // caught up, or unreachable: nothing to wait for
			}
			select {
			case <-ctx.Done():
				fmt.Fprintf(c.stderr, "note: %s has not applied index %d yet; reads there may lag briefly\n", a, index)
				return
			case <-tick.C:
			}
		}
	}
}
