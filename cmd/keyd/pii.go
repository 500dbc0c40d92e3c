package main

import (
	"fmt"
	"strconv"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
)

// PII subcommands of `keyd key` (docs/PII.md):
//
//	keyd key pseudonym NAME [VALUE] [-context STR] [-version N]
//	keyd key fpe encrypt NAME -format F [-tweak STR] [-version N] [VALUE]
//	keyd key fpe decrypt NAME -format F [-tweak STR] [-version N] [-mask last4|full] [VALUE]
//
// VALUE is read from stdin (surrounding white space trimmed) when not
// given: prefer stdin for real personal data, which otherwise lands in
// shell history and process listings.

const fpeHelp = `Usage: keyd key fpe encrypt|decrypt NAME -format F [flags] [VALUE]

Format-preserving encryption with an ff1-aes256 key. Formats: digits,
alphanumeric, card, phone, ssn, national-id, email-local. VALUE is read
from stdin when omitted. Decrypt needs the version encrypt printed
(-version; default the latest).
`

// parseNameValue parses NAME and an optional VALUE (else stdin).
func (k *keyCmd) parseNameValue(args []string) (string, string, *client.Client, error) {
	pos, err := parseArgs(k.fs, args, -1)
	if err != nil {
		return "", "", nil, err
	}
	if len(pos) < 1 || len(pos) > 2 {
		k.fs.Usage()
		return "", "", nil, usagef("%s: want NAME and an optional VALUE", cmdName(k.fs))
	}
	name := pos[0]
	if !api.ValidKeyName(name) {
		return "", "", nil, usagef("%s: invalid key name %q: 1 to %d characters from [A-Za-z0-9._-], not starting with '.' or '-'", cmdName(k.fs), name, api.MaxKeyNameLen)
	}
	var value string
	if len(pos) == 2 {
		value = pos[1]
	} else if value, err = k.c.readToken("value"); err != nil {
		return "", "", nil, err
	}
	cl, err := k.c.newClient(&k.cf)
	if err != nil {
		return "", "", nil, err
	}
	return name, value, cl, nil
}

func (c *cli) keyPseudonym(args []string) error {
	k := c.newKeyCmd("pseudonym", "NAME [VALUE] [-context STR] [-version N]")
	encCtx := k.fs.String("context", "", "the pseudonym's context (e.g. the data set); pseudonyms differ per context")
	version := k.fs.Uint("version", 0, "pin the key version (0: latest); a pinned version keeps pseudonyms stable across rotations")
	name, value, cl, err := k.parseNameValue(args)
	if err != nil {
		return err
	}
	defer cl.Close()
	v, err := versionFlag(*version)
	if err != nil {
		return err
	}
	res, err := cl.Pseudonym(c.ctx, name, []byte(value), contextBytes(*encCtx), v)
	if err != nil {
		return err
	}
	if k.asJSON {
		return printJSON(c.stdout, res)
	}
	_, err = fmt.Fprintln(c.stdout, res.Pseudonym)
	return err
}

func versionFlag(v uint) (uint32, error) {
	if v > 1<<32-1 {
		return 0, usagef("-version %s out of range", strconv.FormatUint(uint64(v), 10))
	}
	return uint32(v), nil
}

func (c *cli) keyFPE(args []string) error {
	return c.dispatch("key fpe", fpeHelp, map[string]func([]string) error{
		"encrypt": func(a []string) error { return c.keyFPEOp("encrypt", a) },
		"decrypt": func(a []string) error { return c.keyFPEOp("decrypt", a) },
	}, args)
}

func (c *cli) keyFPEOp(op string, args []string) error {
	k := c.newKeyCmd("fpe "+op, "NAME -format F [-tweak STR] [-version N] [VALUE]")
	format := k.fs.String("format", "", "digits, alphanumeric, card, phone, ssn, national-id or email-local")
	tweak := k.fs.String("tweak", "", "optional tweak (public, e.g. a tenant id): the same tweak is needed to decrypt")
	version := k.fs.Uint("version", 0, "key version (0: latest); on decrypt, the version encrypt printed")
	var shape *string
	if op == "decrypt" {
		shape = k.fs.String("mask", "", "print only a masked form: last4 or full")
	}
	name, value, cl, err := k.parseNameValue(args)
	if err != nil {
		return err
	}
	defer cl.Close()
	if *format == "" {
		return usagef("%s: -format is required", cmdName(k.fs))
	}
	v, err := versionFlag(*version)
	if err != nil {
		return err
	}
	req := api.FPERequest{Value: value, Format: *format, Version: v}
	if *tweak != "" {
		req.Tweak = []byte(*tweak)
	}
	var res *api.FPEResponse
	if op == "encrypt" {
		res, err = cl.FPEEncrypt(c.ctx, name, req)
	} else {
		req.Mask = *shape
		res, err = cl.FPEDecrypt(c.ctx, name, req)
	}
	if err != nil {
		return err
	}
	if k.asJSON {
		return printJSON(c.stdout, res)
	}
	out := res.Value
	if res.Masked != "" {
		out = res.Masked
	}
	if op == "encrypt" {
		// The version is needed to decrypt after a rotation.
		_, err = fmt.Fprintf(c.stdout, "%s\nversion: %d\n", out, res.Version)
		return err
	}
	_, err = fmt.Fprintln(c.stdout, out)
	return err
}
