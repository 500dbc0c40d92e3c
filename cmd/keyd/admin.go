package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
	"github.com/keyd/keyd/policy"
)

const policyHelp = `Usage: keyd policy <subcommand> [flags]

  write NAME FILE            store the policy document in FILE ("-": stdin)
  write NAME -app 'P[,P..]'  store an app policy: crypto use and read on the
                             keys matching the patterns, nothing else
  read NAME                  print a stored or built-in policy document
  list                       list stored and built-in policies
  delete NAME                delete a stored policy

A document is JSON:
  {"rules":[{"effect":"allow","capabilities":["encrypt","decrypt"],"keys":["app1-*"]}]}
Deny rules win over allow rules. Built-in roles: admin, key-admin, operator,
auditor. Every subcommand takes -addr and -json.
`

const tokenHelp = `Usage: keyd token <subcommand> [flags]

  create -policy P[,P..] [-ttl D] [-name N]   create a token; prints it once on stdout
  list                                        list tokens by accessor (never the tokens)
  revoke ACCESSOR                             revoke a token on every node

Every subcommand takes -addr and -json.
`

const identityHelp = `Usage: keyd identity <subcommand> [flags]

  create -cert FILE -policy P[,P..] [-name N]   bind a client certificate's public key to policies
  create -id HEX -policy P[,P..] [-name N]      the same, given the key's SHA-256 (64 hex digits)
  list                                          list certificate identities
  delete ID                                     delete an identity

A client with that certificate authenticates without a token: set
KEYD_CLIENT_CERT and KEYD_CLIENT_KEY (PEM files) and leave KEYD_TOKEN unset.
Every subcommand takes -addr and -json.
`

// maxCertFile bounds a -cert file; a PEM certificate chain is far shorter.
const maxCertFile = 64 << 10

// adminCmd holds what the policy, token, identity and whoami commands
// share: the flag set, the client flags and -json.
type adminCmd struct {
	c      *cli
	fs     *flag.FlagSet
	cf     clientFlags
	asJSON bool
}

func (c *cli) newAdminCmd(name, synopsis string) *adminCmd {
	a := &adminCmd{c: c, fs: c.flags(name, synopsis)}
	a.cf.register(a.fs)
	a.fs.BoolVar(&a.asJSON, "json", false, "print the reply as JSON")
	return a
}

// parse parses args with npos positional arguments (npos < 0: any) and
// returns them with a client the caller closes.
func (a *adminCmd) parse(args []string, npos int) ([]string, *client.Client, error) {
	pos, err := parseArgs(a.fs, args, npos)
	if err != nil {
		return nil, nil, err
	}
	cl, err := a.c.newClient(&a.cf)
	if err != nil {
		return nil, nil, err
	}
	return pos, cl, nil
}

// done prints v as JSON with -json, and else runs text.
func (a *adminCmd) done(v any, text func(w *errWriter)) error {
	if a.asJSON {
		return printJSON(a.c.stdout, v)
	}
	w := &errWriter{w: a.c.stdout}
	text(w)
	return w.err
}

// splitList splits a comma-separated list, dropping blanks.
func splitList(s string) []string { return splitAddrs(s) }

func (c *cli) policy(args []string) error {
	return c.dispatch("policy", policyHelp, map[string]func([]string) error{
		"write":  c.policyWrite,
		"read":   c.policyRead,
		"list":   c.policyList,
		"delete": c.policyDelete,
	}, args)
}

// policyWrite validates the document locally (policy.Parse, as the server
// does) so a typo is reported with its reason before anything is sent,
// then sends the document as given.
func (c *cli) policyWrite(args []string) error {
	a := c.newAdminCmd("policy write", "NAME FILE|-  or  NAME -app 'PATTERN[,PATTERN...]'")
	app := a.fs.String("app", "", "write an app policy for these comma-separated key patterns instead of a FILE")
	pos, err := parseArgs(a.fs, args, -1)
	if err != nil {
		return err
	}
	switch {
	case *app == "" && len(pos) != 2:
		a.fs.Usage()
		return usagef("policy write: want NAME and FILE (or -app)")
	case *app != "" && len(pos) != 1:
		a.fs.Usage()
		return usagef("policy write: with -app, want NAME only")
	}
	name := pos[0]
	var doc []byte
	if *app != "" {
		p, err := policy.AppPolicy(name, splitList(*app)...)
		if err != nil {
			return fmt.Errorf("policy write %s: %w", name, err)
		}
		if doc, err = p.Marshal(); err != nil {
			return fmt.Errorf("policy write %s: %w", name, err)
		}
	} else if doc, err = c.readFileOrStdin("policy document", pos[1], policy.MaxDocSize); err != nil {
		return err
	}
	if _, err := policy.Parse(name, doc); err != nil {
		return fmt.Errorf("policy write %s: %w", name, err)
	}
	cl, err := c.newClient(&a.cf)
	if err != nil {
		return err
	}
	defer cl.Close()
	info, err := cl.PutPolicy(c.ctx, name, doc)
	if err != nil {
		return err
	}
	c.settle(cl, &a.cf, info.Index)
	return a.done(info, func(w *errWriter) { w.printf("Wrote policy %s\n", info.Name) })
}

// readFileOrStdin reads path ("-": stdin), refusing more than limit bytes.
func (c *cli) readFileOrStdin(what, path string, limit int) ([]byte, error) {
	if path == "-" {
		return c.readInput(what, limit)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > limit {
		return nil, usagef("%s %s exceeds %d bytes", what, path, limit)
	}
	return b, nil
}

// policyRead prints the document indented, so its output can be edited
// and written back with policy write.
func (c *cli) policyRead(args []string) error {
	a := c.newAdminCmd("policy read", "NAME [-addr A] [-json]")
	pos, cl, err := a.parse(args, 1)
	if err != nil {
		return err
	}
	defer cl.Close()
	info, err := cl.Policy(c.ctx, pos[0])
	if err != nil {
		return err
	}
	if a.asJSON {
		return printJSON(c.stdout, info)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, info.Document, "", "  "); err != nil {
		return fmt.Errorf("policy read: the document is not JSON: %w", err)
	}
	buf.WriteByte('\n')
	if info.Builtin {
		fmt.Fprintf(c.stderr, "%s is a built-in role (read-only)\n", info.Name)
	}
	_, err = c.stdout.Write(buf.Bytes())
	return err
}

func (c *cli) policyList(args []string) error {
	a := c.newAdminCmd("policy list", "[-addr A] [-json]")
	_, cl, err := a.parse(args, 0)
	if err != nil {
		return err
	}
	defer cl.Close()
	l, err := cl.ListPolicies(c.ctx)
	if err != nil {
		return err
	}
	if a.asJSON {
		return printJSON(c.stdout, l)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND")
	for _, n := range l.Builtin {
		fmt.Fprintf(tw, "%s\tbuilt-in\n", n)
	}
	for _, n := range l.Policies {
		fmt.Fprintf(tw, "%s\tstored\n", n)
	}
	return tw.Flush()
}

func (c *cli) policyDelete(args []string) error {
	a := c.newAdminCmd("policy delete", "NAME [-addr A]")
	pos, cl, err := a.parse(args, 1)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.DeletePolicy(c.ctx, pos[0]); err != nil {
		return err
	}
	c.settle(cl, &a.cf, cl.LastIndex())
	return a.done(&api.WriteResponse{Index: cl.LastIndex()}, func(w *errWriter) { w.printf("Deleted policy %s\n", pos[0]) })
}

func (c *cli) token(args []string) error {
	return c.dispatch("token", tokenHelp, map[string]func([]string) error{
		"create": c.tokenCreate,
		"list":   c.tokenList,
		"revoke": c.tokenRevoke,
	}, args)
}

// tokenCreate prints the token alone on stdout (so `T=$(keyd token
// create ...)` captures it) and the accessor and the shown-once warning
// on stderr. It waits for every node to apply the create, so the token
// works at once wherever it is used.
func (c *cli) tokenCreate(args []string) error {
	a := c.newAdminCmd("token create", "-policy P[,P...] [-ttl 720h] [-name N] [-addr A] [-json]")
	policies := a.fs.String("policy", "", "comma-separated policies the token is bound to (required)")
	ttl := a.fs.String("ttl", "", "lifetime, like 720h (at least 1m); default: no expiry")
	name := a.fs.String("name", "", "a label shown by token list")
	if _, err := parseArgs(a.fs, args, 0); err != nil {
		return err
	}
	req := api.CreateTokenRequest{Name: *name, Policies: splitList(*policies), TTL: *ttl}
	if len(req.Policies) == 0 {
		return usagef("token create: -policy is required")
	}
	if req.TTL != "" {
		if d, err := time.ParseDuration(req.TTL); err != nil || d < time.Minute {
			return usagef("token create: -ttl %q: want a duration of at least 1m, like 720h", req.TTL)
		}
	}
	cl, err := c.newClient(&a.cf)
	if err != nil {
		return err
	}
	defer cl.Close()
	tok, err := cl.CreateToken(c.ctx, req)
	if errors.Is(err, api.ErrConflict) {
		return fmt.Errorf("token create: the reply was lost and a token was created that cannot be shown again; "+
			"find it with `keyd token list` (name %q) and revoke it, then retry: %w", req.Name, err)
	}
	if err != nil {
		return err
	}
	c.settle(cl, &a.cf, tok.Index)
	fmt.Fprintf(c.stderr, "WARNING: the token is shown once and is not stored anywhere; keep it now.\n"+
		"Accessor: %s (names the token in keyd token list and keyd token revoke)\n", tok.Accessor)
	return a.done(tok, func(w *errWriter) { w.printf("%s\n", tok.Token) })
}

func (c *cli) tokenList(args []string) error {
	a := c.newAdminCmd("token list", "[-addr A] [-json]")
	_, cl, err := a.parse(args, 0)
	if err != nil {
		return err
	}
	defer cl.Close()
	l, err := cl.ListTokens(c.ctx)
	if err != nil {
		return err
	}
	if a.asJSON {
		return printJSON(c.stdout, l)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCESSOR\tNAME\tPOLICIES\tCREATED\tEXPIRES\tLAST USED")
	for _, t := range l.Tokens {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Accessor, orDash(t.Name), strings.Join(t.Policies, ","), fmtTime(t.CreatedAt), fmtTime(t.ExpiresAt), fmtLastUsed(t.LastUsed))
	}
	return tw.Flush()
}

// tokenRevoke waits for every node to apply the revocation, so the token
// is refused everywhere once the command returns.
func (c *cli) tokenRevoke(args []string) error {
	a := c.newAdminCmd("token revoke", "ACCESSOR [-addr A]")
	pos, cl, err := a.parse(args, 1)
	if err != nil {
		return err
	}
	defer cl.Close()
	res, err := cl.RevokeTokenReport(c.ctx, pos[0])
	if err != nil {
		return err
	}
	if len(res.NotApplied) > 0 {
		// Those nodes refuse the token once they apply the revocation;
		// until then a node cut off from the leader may still accept it
		// for crypto calls.
		fmt.Fprintf(c.stderr, "keyd: warning: not yet applied on %s (unreachable or cut off from the leader)\n", strings.Join(res.NotApplied, ", "))
	}
	c.settle(cl, &a.cf, cl.LastIndex())
	return a.done(&api.WriteResponse{Index: cl.LastIndex(), NotApplied: res.NotApplied}, func(w *errWriter) { w.printf("Revoked token %s\n", pos[0]) })
}

func (c *cli) identity(args []string) error {
	return c.dispatch("identity", identityHelp, map[string]func([]string) error{
		"create": c.identityCreate,
		"list":   c.identityList,
		"delete": c.identityDelete,
	}, args)
}

func (c *cli) identityCreate(args []string) error {
	a := c.newAdminCmd("identity create", "-cert FILE|-id HEX -policy P[,P...] [-name N] [-addr A] [-json]")
	certFile := a.fs.String("cert", "", "PEM file of the client certificate")
	id := a.fs.String("id", "", "instead of -cert: the SHA-256 of the certificate's public key, 64 hex digits")
	policies := a.fs.String("policy", "", "comma-separated policies the identity is bound to (required)")
	name := a.fs.String("name", "", "a label shown by identity list")
	if _, err := parseArgs(a.fs, args, 0); err != nil {
		return err
	}
	req := api.CreateIdentityRequest{Name: *name, ID: *id, Policies: splitList(*policies)}
	if len(req.Policies) == 0 {
		return usagef("identity create: -policy is required")
	}
	if (*certFile == "") == (*id == "") {
		return usagef("identity create: give exactly one of -cert and -id")
	}
	if *certFile != "" {
		b, err := c.readFileOrStdin("certificate", *certFile, maxCertFile)
		if err != nil {
			return err
		}
		req.Certificate = string(b)
	}
	cl, err := c.newClient(&a.cf)
	if err != nil {
		return err
	}
	defer cl.Close()
	info, err := cl.CreateIdentity(c.ctx, req)
	if err != nil {
		return err
	}
	c.settle(cl, &a.cf, info.Index)
	return a.done(info, func(w *errWriter) {
		w.printf("Created identity %s (policies: %s)\n", info.ID, strings.Join(info.Policies, ", "))
	})
}

func (c *cli) identityList(args []string) error {
	a := c.newAdminCmd("identity list", "[-addr A] [-json]")
	_, cl, err := a.parse(args, 0)
	if err != nil {
		return err
	}
	defer cl.Close()
	l, err := cl.ListIdentities(c.ctx)
	if err != nil {
		return err
	}
	if a.asJSON {
		return printJSON(c.stdout, l)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tPOLICIES\tCREATED\tLAST USED")
	for _, i := range l.Identities {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", i.ID, orDash(i.Name), strings.Join(i.Policies, ","), fmtTime(i.CreatedAt), fmtLastUsed(i.LastUsed))
	}
	return tw.Flush()
}

func (c *cli) identityDelete(args []string) error {
	a := c.newAdminCmd("identity delete", "ID [-addr A]")
	pos, cl, err := a.parse(args, 1)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.DeleteIdentity(c.ctx, pos[0]); err != nil {
		return err
	}
	c.settle(cl, &a.cf, cl.LastIndex())
	return a.done(&api.WriteResponse{Index: cl.LastIndex()}, func(w *errWriter) { w.printf("Deleted identity %s\n", pos[0]) })
}

// whoami shows who the cluster takes the caller for: the token's or the
// client certificate's identity and its policies.
func (c *cli) whoami(args []string) error {
	a := c.newAdminCmd("whoami", "[-addr A] [-json]")
	_, cl, err := a.parse(args, 0)
	if err != nil {
		return err
	}
	defer cl.Close()
	who, err := cl.WhoAmI(c.ctx)
	if err != nil {
		return err
	}
	return a.done(who, func(w *errWriter) {
		w.printf("Identity: %s\nPolicies: %s\n", who.Identity, strings.Join(who.Policies, ", "))
	})
}
