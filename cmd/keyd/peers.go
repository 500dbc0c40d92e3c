package main

import (
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/keyd/keyd/api"
)

// peers prints the cluster topology from GET /v1/sys/cluster: every node
// gossip or Raft knows, with its region, Raft role and state.
func (c *cli) peers(args []string) error {
	fs := c.flags("peers", "[-addr A] [-json]")
	var cf clientFlags
	cf.register(fs)
	asJSON := fs.Bool("json", false, "print the topology as JSON")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	cl, err := c.newClient(&cf)
	if err != nil {
		return err
	}
	defer cl.Close()
	ci, err := cl.Cluster(c.ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(c.stdout, ci)
	}
	return printPeers(c, ci)
}

// printPeers writes the topology table. LAST-CONTACT is how long ago the
// node's gossip state last changed (for the answering node: its last
// contact with the leader).
func printPeers(c *cli, ci *api.ClusterInfo) error {
	// Without gossip the answering node knows only the Raft configuration
	// of its peers: their state, seal and applied index are unknown, not
	// "unknown, unsealed, 0".
	gossipOff := true
	for _, n := range ci.Nodes {
		if n.ID == ci.Node && n.GossipAddr != "" {
			gossipOff = false
		}
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tREGION\tAPI\tVOTER\tLEADER\tSTATE\tSEALED\tAPPLIED\tLAST-CONTACT")
	for _, n := range ci.Nodes {
		role := "-" // known by gossip only: joining, or removed
		switch {
		case n.Voter:
			role = "voter"
		case n.NonVoter:
			role = "non-voter"
		}
		leader := ""
		if n.Leader {
			leader = "*"
		}
		state, sealed, applied, contact := orDash(n.State), strconv.FormatBool(n.Sealed), strconv.FormatUint(n.Applied, 10), fmtContact(n.LastContactMS)
		if gossipOff && n.ID != ci.Node && (n.State == "" || n.State == api.NodeUnknown) {
			state, sealed, applied, contact = "-", "-", "-", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", orDash(n.ID), orDash(n.Region), orDash(n.APIAddr), role,
			orDash(leader), state, sealed, applied, contact)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if gossipOff {
		fmt.Fprintf(c.stderr, "note: gossip is off on node %s, so the state, seal and applied index of the other nodes are not known here; keyd status asks each node\n", orDash(ci.Node))
	}
	if ci.LeaderID == "" {
		fmt.Fprintf(c.stderr, "note: node %s knows no leader\n", orDash(ci.Node))
	}
	return nil
}

// fmtContact renders a last-contact age in milliseconds.
func fmtContact(ms int64) string {
	if ms < 0 {
		return "-"
	}
	return (time.Duration(ms) * time.Millisecond).String()
}
