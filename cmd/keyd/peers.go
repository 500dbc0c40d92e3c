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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%t\t%s\t%s\n", orDash(n.ID), orDash(n.Region), orDash(n.APIAddr), role,
			orDash(leader), orDash(n.State), n.Sealed, strconv.FormatUint(n.Applied, 10), fmtContact(n.LastContactMS))
	}
	if err := tw.Flush(); err != nil {
		return err
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
