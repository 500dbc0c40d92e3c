package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
)

// nodeStatus is one row of `keyd status`.
type nodeStatus struct {
	Addr   string          `json:"addr"`
	Status *api.SealStatus `json:"status,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// errNoNodeReachable is returned by status when no node answered.
var errNoNodeReachable = errors.New("no node reachable")

// status shows every node named in KEYD_ADDR (or -addr) and every peer
// the cluster reports, one row each.
func (c *cli) status(args []string) error {
	fs := c.flags("status", "[-addr A] [-json]")
	var cf clientFlags
	cf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	seeds, err := c.addrs(&cf)
	if err != nil {
		return err
	}
	cl, err := c.newClient(&cf)
	if err != nil {
		return err
	}
	defer cl.Close()

	rows := c.statusRows(cl, seeds, statusNodeWait)
	reachable := 0
	for _, r := range rows {
		if r.Status != nil {
			reachable++
		}
	}
	if *asJSON {
		if err := printJSON(c.stdout, rows); err != nil {
			return err
		}
	} else if err := printStatusTable(c, rows); err != nil {
		return err
	}
	if reachable == 0 {
		return errNoNodeReachable
	}
	return nil
}

// statusNodeWait bounds the wait for one node's status, connection
// included, so a down node costs `keyd status` about a second.
const statusNodeWait = time.Second

// statusRows asks the seeds and every peer the cluster reports for their
// status, concurrently, each for at most perNode, and returns one row per
// node: addresses that answer with the same node id (a seed given as a
// published port and the node's advertised address) collapse into the
// first row, and an unreachable address is dropped when the peer list
// names it as a node that answered at another address.
func (c *cli) statusRows(cl *client.Client, seeds []string, perNode time.Duration) []nodeStatus {
	addrs := newAddrSet()
	for _, a := range seeds {
		addrs.add(a)
	}
	idOf := map[string]string{} // address -> node id, from the peer list
	// Any answering node reports its peers' API addresses; list them too.
	sctx, cancel := context.WithTimeout(c.ctx, 2*perNode)
	st, err := cl.Status(sctx)
	cancel()
	if err == nil {
		for _, p := range st.Peers {
			addrs.add(p.APIAddr)
			idOf[trimAddr(p.APIAddr)] = p.ID
		}
	}
	for _, n := range cl.Topology() {
		if n.ID != "" && n.APIAddr != "" {
			idOf[trimAddr(n.APIAddr)] = n.ID
		}
	}
	all := make([]nodeStatus, len(addrs.list))
	var wg sync.WaitGroup
	for i, a := range addrs.list {
		wg.Go(func() {
			nctx, cancel := context.WithTimeout(c.ctx, perNode)
			defer cancel()
			st, err := cl.StatusOf(nctx, a)
			all[i] = nodeStatus{Addr: a, Status: st}
			if err != nil {
				all[i].Error = errorLine(err)
			}
		})
	}
	wg.Wait()
	answered := map[string]bool{}
	for _, r := range all {
		if r.Status != nil && r.Status.NodeID != "" {
			answered[r.Status.NodeID] = true
		}
	}
	rows := make([]nodeStatus, 0, len(all))
	shown := map[string]bool{}
	for _, r := range all {
		id := idOf[trimAddr(r.Addr)]
		if r.Status != nil {
			id = r.Status.NodeID
		} else if id != "" && answered[id] {
			continue // the node answered at another of its addresses
		}
		if id != "" {
			if shown[id] {
				continue
			}
			shown[id] = true
		}
		rows = append(rows, r)
	}
	return rows
}

func printStatusTable(c *cli, rows []nodeStatus) error {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tSEAL\tUNSEALED BY\tPROGRESS\tHSM\tNODE SHARE\tRAFT\tLEADER\tAPPLIED")
	for _, r := range rows {
		st := r.Status
		if st == nil {
			fmt.Fprintf(tw, "?\t%s\tunreachable\t-\t-\t-\t-\t-\t-\t-\n", r.Addr)
			continue
		}
		seal, progress := "unsealed", "-"
		switch {
		case !st.Initialized:
			seal = "uninitialized"
		case st.Sealed:
			seal = "sealed"
			progress = fmt.Sprintf("%d of %d", st.Progress, st.Threshold)
		}
		leader := orDash(st.LeaderID)
		hsm := st.HSM
		if len(hsm) > 40 {
			hsm = hsm[:40] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", orDash(st.NodeID), r.Addr, seal, orDash(st.UnsealedBy), progress,
			orDash(hsm), orDash(st.NodeShare), orDash(st.RaftState), leader, strconv.FormatUint(st.Applied, 10))
	}
	for _, r := range rows {
		if r.Status != nil && r.Status.SealReason != "" {
			fmt.Fprintf(c.stdout, "%s: sealed: %s\n", r.Status.NodeID, r.Status.SealReason)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rows {
		if r.Error != "" {
			fmt.Fprintf(c.stderr, "%s: %s\n", r.Addr, r.Error)
		}
	}
	for _, r := range rows {
		// The public view has no Raft state: the caller had no token with
		// the cluster capability.
		if r.Status != nil && r.Status.RaftState == "" {
			fmt.Fprintln(c.stderr, "note: peers, addresses, Raft state and HSM detail need KEYD_TOKEN with the cluster capability")
			break
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// addrSet is an ordered set of addresses, compared without a scheme.
type addrSet struct {
	seen map[string]bool
	list []string
}

func newAddrSet() *addrSet { return &addrSet{seen: map[string]bool{}} }

func (s *addrSet) add(a string) {
	a = trimAddr(a)
	if a == "" || s.seen[strings.ToLower(a)] {
		return
	}
	s.seen[strings.ToLower(a)] = true
	s.list = append(s.list, a)
}

// has reports whether a, compared like add, is in the set.
func (s *addrSet) has(a string) bool { return s.seen[strings.ToLower(trimAddr(a))] }

// trimAddr drops surrounding space, an https:// scheme and a trailing
// slash.
func trimAddr(a string) string {
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(a), "https://"), "/")
}
