package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

const operatorHelp = `Usage: keyd operator <subcommand> [flags]

  init -custodians N -threshold T   initialise the cluster; prints the shares and the admin token once
  unseal [-addr A]                  submit one custodian share, read from stdin
  seal                              seal every node (needs KEYD_TOKEN)
  join ADDR -seed G[,G...]          ask the new node at API address ADDR to join the cluster
                                    through the gossip addresses G of existing members
                                    (no token needed while ADDR is a fresh node)
  remove NODE_ID                    demote and remove a node from the cluster
  rotate-root start|submit|status   custodians rotate the root secret (shares, no token)
  snapshot save|inspect|restore     disaster recovery snapshots (keyd operator snapshot -h)
`

// maxShareLine bounds the line read by unseal; an encoded share is far
// shorter.
const maxShareLine = 4 << 10

func (c *cli) operator(args []string) error {
	return c.dispatch("operator", operatorHelp, map[string]func([]string) error{
		"init":        c.operatorInit,
		"unseal":      c.operatorUnseal,
		"seal":        c.operatorSeal,
		"join":        c.operatorJoin,
		"remove":      c.operatorRemove,
		"rotate-root": c.operatorRotateRoot,
		"snapshot":    c.operatorSnapshot,
	}, args)
}

func (c *cli) operatorInit(args []string) error {
	fs := c.flags("operator init", "-custodians N -threshold T [-addr A] [-json]")
	var cf clientFlags
	cf.register(fs)
	custodians := fs.Int("custodians", 5, "number of custodian shares to deal")
	threshold := fs.Int("threshold", 3, "number of shares needed to unseal")
	asJSON := fs.Bool("json", false, "print the reply as JSON")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *threshold < 1 || *custodians < *threshold {
		return usagef("operator init: need 1 <= -threshold <= -custodians")
	}
	cl, err := c.newClient(&cf)
	if err != nil {
		return err
	}
	defer cl.Close()
	res, err := cl.Init(c.ctx, *custodians, *threshold)
	if err != nil {
		return err
	}
	// Let every node apply the init record first: until then a node
	// refuses the admin token and cannot verify a share.
	c.settle(cl, &cf, res.Index)
	fmt.Fprintf(c.stderr, "WARNING: these %d shares and the admin token are shown once and are not stored anywhere.\n"+
		"Give each share to a different custodian now; %d of them are needed to unseal the cluster.\n", *custodians, *threshold)
	if *asJSON {
		return printJSON(c.stdout, res)
	}
	w := &errWriter{w: c.stdout}
	for i, sh := range res.Shares {
		w.printf("Share %d: %s\n", i+1, sh)
	}
	w.printf("Admin token: %s\n", res.AdminToken)
	w.printf("Commitments fingerprint: %s\n", res.Fingerprint)
	return w.err
}

// operatorUnseal submits one share read from stdin. A share on the command
// line is refused: argv is visible to other users (ps, /proc) and is kept
// in shell history.
func (c *cli) operatorUnseal(args []string) error {
	fs := c.flags("operator unseal", "[-addr A] [-json]  (the share is read from stdin)")
	var cf clientFlags
	cf.register(fs)
	asJSON := fs.Bool("json", false, "print the seal status as JSON")
	pos, err := parseArgs(fs, args, -1)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("operator unseal: a share is never accepted as an argument (it would show in ps and shell history); type or pipe it on stdin")
	}
	cl, err := c.newClient(&cf)
	if err != nil {
		return err
	}
	defer cl.Close()
	fmt.Fprint(c.stderr, "Unseal share: ")
	share, err := readLine(c.stdin, maxShareLine)
	fmt.Fprintln(c.stderr)
	if err != nil {
		return fmt.Errorf("operator unseal: read share from stdin: %w", err)
	}
	if share == "" {
		return usagef("operator unseal: no share on stdin")
	}
	st, err := cl.Unseal(c.ctx, share)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(c.stdout, st)
	}
	if st.Sealed {
		_, err = fmt.Fprintf(c.stdout, "Unseal progress: %d of %d\n", st.Progress, st.Threshold)
	} else {
		_, err = fmt.Fprintln(c.stdout, "Unsealed")
	}
	return err
}

func (c *cli) operatorSeal(args []string) error {
	fs := c.flags("operator seal", "[-addr A]")
	var cf clientFlags
	cf.register(fs)
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	cl, err := c.newClient(&cf)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.Seal(c.ctx); err != nil {
		return err
	}
	_, err = fmt.Fprintln(c.stdout, "Sealed")
	return err
}

// operatorJoin sends POST /v1/sys/join to the new node itself: only it
// can start gossiping with the seeds. The client is built for that node
// alone (the cluster's KEYD_ADDR is not needed), and KEYD_TOKEN, when
// set, goes along for a node that is no longer fresh.
func (c *cli) operatorJoin(args []string) error {
	fs := c.flags("operator join", "ADDR -seed GOSSIP_ADDR[,GOSSIP_ADDR...] [-json]")
	seedList := fs.String("seed", "", "comma-separated gossip addresses (host:port) of existing members (required)")
	asJSON := fs.Bool("json", false, "print the reply as JSON")
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	seeds := splitAddrs(*seedList)
	if len(seeds) == 0 {
		return usagef("operator join: -seed is required")
	}
	cl, err := c.newClient(&clientFlags{addr: pos[0]})
	if err != nil {
		return err
	}
	defer cl.Close()
	res, err := cl.Join(c.ctx, pos[0], seeds)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(c.stdout, res)
	}
	_, err = fmt.Fprintf(c.stdout, "Join started: %s contacted %d of %d seed(s); it enters Raft as a non-voter (see keyd peers)\n",
		pos[0], res.Contacted, len(seeds))
	return err
}

func (c *cli) operatorRemove(args []string) error {
	fs := c.flags("operator remove", "NODE_ID [-addr A]")
	var cf clientFlags
	cf.register(fs)
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	cl, err := c.newClient(&cf)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.Remove(c.ctx, pos[0]); err != nil {
		return err
	}
	c.settle(cl, &cf, cl.LastIndex())
	_, err = fmt.Fprintf(c.stdout, "Removed %s\n", pos[0])
	return err
}

// errLineTooLong is a stdin line longer than the command accepts.
var errLineTooLong = errors.New("line too long")

// readLine reads the first line of r, at most limit bytes, without its
// surrounding space.
func readLine(r io.Reader, limit int) (string, error) {
	br := bufio.NewReader(io.LimitReader(r, int64(limit)+1))
	line, err := br.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	if len(strings.TrimRight(line, "\r\n")) > limit {
		return "", errLineTooLong
	}
	return strings.TrimSpace(line), nil
}

// printJSON writes v as indented JSON and a newline.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
