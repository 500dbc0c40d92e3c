package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
)

const kvHelp = `Usage: keyd kv <subcommand> PATH [flags]

Versioned secrets (docs/KV.md). PATH is like app1/db: segments of
[A-Za-z0-9._-] separated by '/'.

  put PATH k=v [k=v ...] [-cas N]    write a new version; -cas 0 creates only
  get PATH [-version N] [-field K]   read the latest or version N (-field: one value, raw)
  metadata PATH                      versions and settings, never a value
  list [PREFIX] [-after P] [-limit N]
  delete PATH [-versions 1,2]        soft delete (default: the latest version)
  undelete PATH -versions 1,2
  destroy PATH -versions 1,2         remove the values for good
  config PATH [-max-versions N] [-cas-required true|false]
  delete-all PATH                    remove the secret and every version

Every subcommand takes -addr and -json.
`

func (c *cli) kv(args []string) error {
	return c.dispatch("kv", kvHelp, map[string]func([]string) error{
		"put":        c.kvPut,
		"get":        c.kvGet,
		"metadata":   c.kvMetadata,
		"list":       c.kvList,
		"delete":     c.kvDelete,
		"undelete":   c.kvVersionsCmd("undelete", (*client.Client).KVUndelete),
		"destroy":    c.kvVersionsCmd("destroy", (*client.Client).KVDestroy),
		"config":     c.kvConfig,
		"delete-all": c.kvDeleteAll,
	}, args)
}

func (c *cli) newKVCmd(sub, synopsis string) *keyCmd {
	k := &keyCmd{c: c, fs: c.flags("kv "+sub, synopsis)}
	k.cf.register(k.fs)
	k.fs.BoolVar(&k.asJSON, "json", false, "print the reply as JSON")
	return k
}

// parseKV parses args: a PATH, then extra positional arguments when
// extra is set.
func (k *keyCmd) parseKV(args []string, extra bool) (string, []string, *client.Client, error) {
	npos := 1
	if extra {
		npos = -1
	}
	pos, err := parseArgs(k.fs, args, npos)
	if err != nil {
		return "", nil, nil, err
	}
	if len(pos) == 0 {
		k.fs.Usage()
		return "", nil, nil, usagef("%s: missing PATH", cmdName(k.fs))
	}
	if !api.ValidKVPath(pos[0]) {
		return "", nil, nil, usagef("%s: invalid secret path %q: segments of [A-Za-z0-9._-] separated by '/'", cmdName(k.fs), pos[0])
	}
	cl, err := k.c.newClient(&k.cf)
	if err != nil {
		return "", nil, nil, err
	}
	return pos[0], pos[1:], cl, nil
}

func parseVersionList(s string) ([]uint32, error) {
	if s == "" {
		return nil, nil
	}
	var out []uint32
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(p), 10, 32)
		if err != nil || n == 0 {
			return nil, usagef("-versions: %q is not a positive version number", p)
		}
		out = append(out, uint32(n))
	}
	return out, nil
}

func (c *cli) kvPut(args []string) error {
	k := c.newKVCmd("put", "PATH k=v [k=v ...] [-cas N]")
	cas := k.fs.Int64("cas", -1, "write only if the secret is at this version (0: only if it does not exist)")
	path, rest, cl, err := k.parseKV(args, true)
	if err != nil {
		return err
	}
	defer cl.Close()
	if len(rest) == 0 {
		return usagef("kv put: give at least one k=v")
	}
	data := make(map[string]string, len(rest))
	for i, kv := range rest {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			// The argument is not echoed: it may hold the secret.
			return usagef("kv put: argument %d after PATH is not k=v", i+1)
		}
		data[name] = value
	}
	var casp *uint32
	if *cas >= 0 {
		if *cas > int64(^uint32(0)) {
			return usagef("kv put: -cas out of range")
		}
		v := uint32(*cas)
		casp = &v
	}
	out, err := cl.KVPut(c.ctx, path, data, casp)
	if err != nil {
		return err
	}
	c.settle(cl, &k.cf, out.Index)
	if k.asJSON {
		return printJSON(c.stdout, out)
	}
	_, err = fmt.Fprintf(c.stdout, "%s: version %d written (index %d)\n", out.Path, out.Version, out.Index)
	return err
}

func (c *cli) kvGet(args []string) error {
	k := c.newKVCmd("get", "PATH [-version N] [-field K]")
	version := k.fs.Uint("version", 0, "version to read (default: the latest)")
	field := k.fs.String("field", "", "print only this field's value")
	path, _, cl, err := k.parseKV(args, false)
	if err != nil {
		return err
	}
	defer cl.Close()
	if *version > uint(^uint32(0)) {
		return usagef("kv get: -version out of range")
	}
	out, err := cl.KVGet(c.ctx, path, uint32(*version))
	if err != nil {
		return err
	}
	if *field != "" {
		v, ok := out.Data[*field]
		if !ok {
			return &api.Error{Code: api.CodeResourceNotFound, Message: "the secret has no field " + strconv.Quote(*field)}
		}
		_, err = fmt.Fprintln(c.stdout, v)
		return err
	}
	if k.asJSON {
		return printJSON(c.stdout, out)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Path:\t%s\n", out.Path)
	fmt.Fprintf(tw, "Version:\t%d\n", out.Version)
	fmt.Fprintf(tw, "Created:\t%s\n", fmtTime(out.CreatedAt))
	names := make([]string, 0, len(out.Data))
	for n := range out.Data {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(tw, "%s\t%s\n", n, out.Data[n])
	}
	return tw.Flush()
}

func (c *cli) kvMetadata(args []string) error {
	k := c.newKVCmd("metadata", "PATH")
	path, _, cl, err := k.parseKV(args, false)
	if err != nil {
		return err
	}
	defer cl.Close()
	m, err := cl.KVMetadata(c.ctx, path)
	if err != nil {
		return err
	}
	if k.asJSON {
		return printJSON(c.stdout, m)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Path:\t%s\n", m.Path)
	fmt.Fprintf(tw, "Current version:\t%d\n", m.CurrentVersion)
	fmt.Fprintf(tw, "Max versions:\t%d\n", m.MaxVersions)
	fmt.Fprintf(tw, "CAS required:\t%v\n", m.CASRequired)
	fmt.Fprintf(tw, "Created:\t%s\n", fmtTime(m.CreatedAt))
	fmt.Fprintf(tw, "Updated:\t%s\n", fmtTime(m.UpdatedAt))
	for _, v := range m.Versions {
		state := "live"
		switch {
		case v.Destroyed:
			state = "destroyed"
		case v.DeletedAt != nil:
			state = "deleted " + fmtTime(*v.DeletedAt)
		}
		fmt.Fprintf(tw, "v%d\t%s  %s\n", v.Version, fmtTime(v.CreatedAt), state)
	}
	return tw.Flush()
}

func (c *cli) kvList(args []string) error {
	k := c.newKVCmd("list", "[PREFIX] [-after P] [-limit N]")
	after := k.fs.String("after", "", "list paths after this one")
	limit := k.fs.Int("limit", 0, "page size (default: the server's maximum)")
	pos, err := parseArgs(k.fs, args, -1)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("kv list: one PREFIX at most")
	}
	prefix := ""
	if len(pos) == 1 {
		prefix = pos[0]
	}
	cl, err := c.newClient(&k.cf)
	if err != nil {
		return err
	}
	defer cl.Close()
	l, err := cl.KVList(c.ctx, prefix, *after, *limit)
	if err != nil {
		return err
	}
	if k.asJSON {
		return printJSON(c.stdout, l)
	}
	for _, p := range l.Paths {
		if _, err := fmt.Fprintln(c.stdout, p); err != nil {
			return err
		}
	}
	if l.Next != "" {
		_, err = fmt.Fprintf(c.stderr, "more: keyd kv list %s -after %s\n", prefix, l.Next)
	}
	return err
}

func (c *cli) printWrite(k *keyCmd, cl *client.Client, what string, w *api.WriteResponse) error {
	c.settle(cl, &k.cf, w.Index)
	if k.asJSON {
		return printJSON(c.stdout, w)
	}
	_, err := fmt.Fprintf(c.stdout, "%s (index %d)\n", what, w.Index)
	return err
}

func (c *cli) kvDelete(args []string) error {
	k := c.newKVCmd("delete", "PATH [-versions 1,2]")
	vs := k.fs.String("versions", "", "versions to soft-delete (default: the latest)")
	path, _, cl, err := k.parseKV(args, false)
	if err != nil {
		return err
	}
	defer cl.Close()
	versions, err := parseVersionList(*vs)
	if err != nil {
		return err
	}
	w, err := cl.KVDelete(c.ctx, path, versions...)
	if err != nil {
		return err
	}
	return c.printWrite(k, cl, path+": deleted", w)
}

func (c *cli) kvVersionsCmd(sub string, fn func(*client.Client, context.Context, string, ...uint32) (*api.WriteResponse, error)) func([]string) error {
	return func(args []string) error {
		k := c.newKVCmd(sub, "PATH -versions 1,2")
		vs := k.fs.String("versions", "", "versions (required)")
		path, _, cl, err := k.parseKV(args, false)
		if err != nil {
			return err
		}
		defer cl.Close()
		versions, err := parseVersionList(*vs)
		if err != nil {
			return err
		}
		if len(versions) == 0 {
			return usagef("kv %s: -versions is required", sub)
		}
		w, err := fn(cl, c.ctx, path, versions...)
		if err != nil {
			return err
		}
		return c.printWrite(k, cl, path+": "+sub+"d", w)
	}
}

func (c *cli) kvConfig(args []string) error {
	k := c.newKVCmd("config", "PATH [-max-versions N] [-cas-required true|false]")
	maxV := k.fs.Int("max-versions", -1, "versions to keep (0: the default, 10)")
	casReq := k.fs.String("cas-required", "", "refuse writes without -cas (true or false)")
	path, _, cl, err := k.parseKV(args, false)
	if err != nil {
		return err
	}
	defer cl.Close()
	var req api.KVMetadataRequest
	if *maxV >= 0 {
		req.MaxVersions = maxV
	}
	if *casReq != "" {
		b, err := strconv.ParseBool(*casReq)
		if err != nil {
			return usagef("kv config: -cas-required must be true or false")
		}
		req.CASRequired = &b
	}
	w, err := cl.KVConfigure(c.ctx, path, req)
	if err != nil {
		return err
	}
	return c.printWrite(k, cl, path+": configured", w)
}

func (c *cli) kvDeleteAll(args []string) error {
	k := c.newKVCmd("delete-all", "PATH")
	path, _, cl, err := k.parseKV(args, false)
	if err != nil {
		return err
	}
	defer cl.Close()
	w, err := cl.KVDeleteAll(c.ctx, path)
	if err != nil {
		return err
	}
	return c.printWrite(k, cl, path+": removed with every version", w)
}

// keyTokenize reads a value on stdin and prints its token.
func (c *cli) keyTokenize(args []string) error {
	k := c.newKeyCmd("tokenize", "NAME [-ttl D] [-deterministic]   value on stdin, token out")
	ttl := k.fs.String("ttl", "", "token lifetime, e.g. 720h (default: no expiry)")
	det := k.fs.Bool("deterministic", false, "answer the value's existing token (reveals equal values)")
	name, cl, err := k.parse(args, true)
	if err != nil {
		return err
	}
	defer cl.Close()
	b, err := c.readInput("value", api.MaxTokenizeValue)
	if err != nil {
		return err
	}
	out, err := cl.TokenizeRequest(c.ctx, name, api.TokenizeRequest{Value: strings.TrimRight(string(b), "\r\n"), TTL: *ttl, Deterministic: *det})
	if err != nil {
		return err
	}
	c.settle(cl, &k.cf, out.Index)
	if k.asJSON {
		return printJSON(c.stdout, out)
	}
	_, err = fmt.Fprintln(c.stdout, out.Token)
	return err
}

// keyDetokenize reads a token on stdin and prints its value.
func (c *cli) keyDetokenize(args []string) error {
	k := c.newKeyCmd("detokenize", "NAME   token on stdin, value out")
	name, cl, err := k.parse(args, true)
	if err != nil {
		return err
	}
	defer cl.Close()
	tok, err := c.readToken("token")
	if err != nil {
		return err
	}
	v, err := cl.Detokenize(c.ctx, name, tok)
	if err != nil {
		return err
	}
	if k.asJSON {
		return printJSON(c.stdout, &api.DetokenizeResponse{Value: v})
	}
	_, err = fmt.Fprintln(c.stdout, v)
	return err
}
