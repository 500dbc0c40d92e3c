package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/custodian"
)

const operatorHelp = `Usage: keyd operator <subcommand> [flags]

  init -custodian-keys K1,...,KN -threshold T [-admin-key K] [-out-dir DIR]
                                    initialise the cluster; each share is encrypted to its
                                    custodian's public key (age1..., a file holding one,
                                    or an armored OpenPGP public key file)
                                    and printed as an armored age block (or written to
                                    DIR/share-N.age), so the operator never sees a share
  init -plaintext-shares -custodians N -threshold T
                                    rehearsals only: prints every share in the clear
  unseal [-identity KEYFILE] [-in FILE] [-addr NODE]
                                    submit one custodian share to NODE (default: the first
                                    address of KEYD_ADDR), read from stdin or FILE; with
                                    -identity the encrypted share is decrypted here first.
                                    Exit status 3: the node ignored the share (already
                                    submitted) and is still sealed; the reason is on stderr
  seal                              seal every node (needs KEYD_TOKEN)
  join ADDR -seed G[,G...]          ask the new node at API address ADDR to join the cluster
                                    through the gossip addresses G of existing members
                                    (no token needed while ADDR is a fresh node)
  remove NODE_ID                    demote and remove a node from the cluster
  rotate-root start|submit|cancel|status
                                    custodians rotate the root secret (shares, no token)
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
	fs := c.flags("operator init", "-custodian-keys K1,K2,... -threshold T [-admin-key K] [-out-dir DIR] [-addr A] [-json]\n"+
		"       keyd operator init -plaintext-shares -custodians N -threshold T   (rehearsals only: you see every share)")
	var cf clientFlags
	cf.register(fs)
	var df dealFlags
	df.register(fs)
	custodians := fs.Int("custodians", 5, "number of custodian shares to deal (with -custodian-keys: the number of keys)")
	threshold := fs.Int("threshold", 3, "number of shares needed to unseal")
	adminKey := fs.String("admin-key", "", "age public key (age1...) or file holding one (or an armored OpenPGP public key file): the admin token is encrypted to it")
	asJSON := fs.Bool("json", false, "print the reply as JSON")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	keys, n, err := df.resolve("operator init", *custodians, flagSet(fs, "custodians"))
	if err != nil {
		return err
	}
	if *asJSON && df.outDir != "" {
		return usagef("operator init: -json and -out-dir exclude each other")
	}
	if *threshold < 1 || n < *threshold {
		return usagef("operator init: need 1 <= -threshold <= the number of custodians (%d)", n)
	}
	req := api.InitRequest{Custodians: n, Threshold: *threshold, CustodianKeys: keys, PlaintextShares: df.plaintext}
	if *adminKey != "" {
		if req.AdminKey, err = custodian.LoadRecipient(*adminKey); err != nil {
			return usagef("operator init: -admin-key: %v", err)
		}
	}
	if err := prepareOutDir("operator init", df.outDir); err != nil {
		return err
	}
	cl, err := c.newClient(&cf)
	if err != nil {
		return err
	}
	defer cl.Close()
	res, err := cl.InitWith(c.ctx, req)
	if err != nil {
		return err
	}
	// Let every node apply the init record first: until then a node
	// refuses the admin token and cannot verify a share.
	c.settle(cl, &cf, res.Index)
	if !df.plaintext {
		if err := checkSealedReply("operator init", res.Shares, res.EncryptedShares, n); err != nil {
			return err
		}
	}
	if req.AdminKey != "" && (res.AdminToken != "" || !isArmored(res.EncryptedAdminToken)) {
		return errors.New("operator init: the server did not encrypt the admin token to -admin-key; it was discarded unseen")
	}
	if df.plaintext {
		fmt.Fprint(c.stderr, plaintextWarning)
	}
	if *asJSON {
		return printJSON(c.stdout, res)
	}
	w := &errWriter{w: c.stdout}
	var emitErr error // -out-dir could not be written; all was printed instead
	if df.plaintext {
		fmt.Fprintf(c.stderr, "These %d shares and the admin token are shown once and are not stored anywhere.\n"+
			"Give each share to a different custodian now; %d of them are needed to unseal the cluster.\n", n, *threshold)
		for i, sh := range res.Shares {
			w.printf("Share %d: %s\n", i+1, sh)
		}
	} else {
		fmt.Fprintf(c.stderr, "Each share below is encrypted to one custodian's key and shown once; nobody else can read it.\n"+
			"Send share N to custodian N, who unseals with:  keyd operator unseal -identity key.txt < share-N.age\n"+
			"(a custodian with an OpenPGP key:  gpg -d share-N.asc | keyd operator unseal)\n"+
			"%d of the %d custodians are needed to unseal the cluster.\n", *threshold, n)
		items := shareItems(res.EncryptedShares, keys)
		if req.AdminKey != "" {
			file := "admin-token.age"
			if isPGPMessage(res.EncryptedAdminToken) {
				file = "admin-token.asc"
			}
			items = append(items, sealedItem{file: file, label: "Admin token for " + keyLabel(req.AdminKey), armor: res.EncryptedAdminToken})
		}
		emitErr = c.emitSealed(w, df.outDir, items)
	}
	if req.AdminKey == "" {
		w.printf("Admin token: %s\n", res.AdminToken)
	}
	w.printf("Commitments fingerprint: %s\n", res.Fingerprint)
	if w.err != nil {
		return w.err
	}
	return emitErr
}

// Exit status of operator unseal (see operatorHelp).
const exitShareIgnored = 3

// operatorUnseal submits one share to one node: the node named by -addr,
// else the first node of $KEYD_ADDR. The share comes from stdin or -in,
// in the clear or encrypted to -identity (decrypted here, on the
// custodian's machine). A share on the command line is refused: argv is
// visible to other users (ps, /proc) and is kept in shell history.
func (c *cli) operatorUnseal(args []string) error {
	fs := c.flags("operator unseal", "[-identity KEYFILE] [-in FILE] [-addr NODE] [-json]  (the share is read from stdin unless -in)")
	var cf clientFlags
	fs.StringVar(&cf.addr, "addr", "", "API address of the one node to submit the share to (default: the first address of $"+envAddr+")")
	var src shareSource
	src.register(fs)
	asJSON := fs.Bool("json", false, "print the seal status as JSON")
	pos, err := parseArgs(fs, args, -1)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("operator unseal: a share is never accepted as an argument (it would show in ps and shell history); type or pipe it on stdin")
	}
	target, err := c.oneNode("operator unseal", &cf)
	if err != nil {
		return err
	}
	share, err := c.readShareFrom("operator unseal", src, "Unseal share: ")
	if err != nil {
		return err
	}
	cl, err := c.newClient(&clientFlags{addr: target})
	if err != nil {
		return err
	}
	defer cl.Close()
	st, err := cl.UnsealAt(c.ctx, target, share)
	if err != nil {
		return err
	}
	if *asJSON {
		err = printJSON(c.stdout, st)
	} else if st.Sealed {
		_, err = fmt.Fprintf(c.stdout, "Node %s (%s): sealed, unseal progress %d of %d\n", st.NodeID, target, st.Progress, st.Threshold)
	} else {
		_, err = fmt.Fprintf(c.stdout, "Node %s (%s): Unsealed\n", st.NodeID, target)
	}
	if err != nil {
		return err
	}
	if st.ShareIgnored == "" {
		return nil
	}
	if st.Sealed {
		// The share did not count: the caller must know.
		return &exitError{code: exitShareIgnored, msg: fmt.Sprintf("share ignored by %s: %s (the node is still sealed)", st.NodeID, st.ShareIgnored)}
	}
	fmt.Fprintf(c.stderr, "note: share ignored by %s: %s\n", st.NodeID, st.ShareIgnored)
	return nil
}

// oneNode returns the single node a share goes to: -addr, which must name
// one node, else the first address of $KEYD_ADDR.
func (c *cli) oneNode(cmd string, cf *clientFlags) (string, error) {
	if cf.addr != "" {
		a := splitAddrs(cf.addr)
		if len(a) != 1 {
			return "", usagef("%s: -addr must name exactly one node: the share goes to that node only", cmd)
		}
		return a[0], nil
	}
	a, err := c.addrs(cf)
	if err != nil {
		return "", err
	}
	return a[0], nil
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
