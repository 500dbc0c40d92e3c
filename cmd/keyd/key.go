package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
)

const keyHelp = `Usage: keyd key <subcommand> NAME [flags]

Lifecycle:
  create NAME [-type T] [-rotation-period 720h]
  read NAME [-consistent]
  list [-after X] [-limit N]
  rotate NAME
  enable NAME | disable NAME
  config NAME [-min-decryption-version N] [-rotation-period D]
  schedule-deletion NAME [-window 168h]
  cancel-deletion NAME

Cryptography (input on stdin):
  encrypt NAME [-context STR]          plaintext in, ciphertext line out
  decrypt NAME [-context STR]          ciphertext in, raw plaintext out
  reencrypt NAME [-context STR]        ciphertext in, ciphertext under the latest version out
  datakey NAME [-bytes 32] [-context STR] [-no-plaintext]   prints JSON
  sign NAME | verify NAME -signature S message in
  hmac NAME | verify-hmac NAME -mac M  message in
  tokenize NAME [-ttl D] [-deterministic]  value in, random token out (docs/KV.md)
  detokenize NAME                      token in, value out (needs detokenize)

Personal data (docs/PII.md; VALUE from stdin when omitted):
  decrypt NAME -mask last4|full        masked form only (decrypt or decrypt-masked)
  pseudonym NAME [VALUE] [-context STR] [-version N]
  fpe encrypt|decrypt NAME -format F [-tweak STR] [-version N] [VALUE]

Every subcommand takes -addr and -json. Key types: aes256-gcm (default),
xchacha20-poly1305, hmac-sha256, ed25519, ecdsa-p256, aes256-siv
(deterministic), ff1-aes256 (format-preserving).
`

// errInvalidSignature makes verify and verify-hmac exit 1 when the
// signature or MAC does not match, so scripts can branch on the status.
var errInvalidSignature = errors.New("signature is not valid")

func (c *cli) key(args []string) error {
	return c.dispatch("key", keyHelp, map[string]func([]string) error{
		"create":            c.keyCreate,
		"read":              c.keyRead,
		"list":              c.keyList,
		"rotate":            c.keySimple("rotate", (*client.Client).RotateKey),
		"enable":            c.keySimple("enable", (*client.Client).EnableKey),
		"disable":           c.keySimple("disable", (*client.Client).DisableKey),
		"cancel-deletion":   c.keySimple("cancel-deletion", (*client.Client).CancelDeletion),
		"config":            c.keyConfig,
		"schedule-deletion": c.keyScheduleDeletion,
		"encrypt":           c.keyEncrypt,
		"decrypt":           c.keyDecrypt,
		"reencrypt":         c.keyReencrypt,
		"datakey":           c.keyDataKey,
		"sign":              c.keySign("sign", (*client.Client).Sign),
		"hmac":              c.keySign("hmac", (*client.Client).HMAC),
		"verify":            c.keyVerify("verify", "signature", (*client.Client).Verify),
		"verify-hmac":       c.keyVerify("verify-hmac", "mac", (*client.Client).VerifyHMAC),
		"pseudonym":         c.keyPseudonym,
		"fpe":               c.keyFPE,
		"tokenize":          c.keyTokenize,
		"detokenize":        c.keyDetokenize,
	}, args)
}

// keyCmd holds what every key subcommand shares: its flag set, the client
// flags and -json.
type keyCmd struct {
	c      *cli
	fs     *flag.FlagSet
	cf     clientFlags
	asJSON bool
}

func (c *cli) newKeyCmd(sub, synopsis string) *keyCmd {
	k := &keyCmd{c: c, fs: c.flags("key "+sub, synopsis)}
	k.cf.register(k.fs)
	k.fs.BoolVar(&k.asJSON, "json", false, "print the reply as JSON")
	return k
}

// parse parses args, which must hold exactly one key NAME (none when
// named is false), and returns the name and a client the caller closes.
func (k *keyCmd) parse(args []string, named bool) (string, *client.Client, error) {
	npos := 0
	if named {
		npos = 1
	}
	pos, err := parseArgs(k.fs, args, npos)
	if err != nil {
		return "", nil, err
	}
	name := ""
	if named {
		name = pos[0]
		if !api.ValidKeyName(name) {
			return "", nil, usagef("%s: invalid key name %q: 1 to %d characters from [A-Za-z0-9._-], not starting with '.' or '-'", cmdName(k.fs), name, api.MaxKeyNameLen)
		}
	}
	cl, err := k.c.newClient(&k.cf)
	if err != nil {
		return "", nil, err
	}
	return name, cl, nil
}

// printKey prints a key's metadata.
func (k *keyCmd) printKey(info *api.KeyInfo) error {
	if k.asJSON {
		return printJSON(k.c.stdout, info)
	}
	tw := tabwriter.NewWriter(k.c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Name:\t%s\n", info.Name)
	fmt.Fprintf(tw, "Type:\t%s\n", info.Type)
	fmt.Fprintf(tw, "State:\t%s\n", info.State)
	fmt.Fprintf(tw, "Latest version:\t%d\n", info.LatestVersion)
	fmt.Fprintf(tw, "Min decryption version:\t%d\n", info.MinDecryptionVersion)
	fmt.Fprintf(tw, "Rotation period:\t%s\n", orDash(info.RotationPeriod))
	fmt.Fprintf(tw, "Created:\t%s\n", fmtTime(info.CreatedAt))
	fmt.Fprintf(tw, "Rotated:\t%s\n", fmtTime(info.RotatedAt))
	if info.DeletionAt != nil {
		fmt.Fprintf(tw, "Deletion at:\t%s\n", fmtTime(*info.DeletionAt))
	}
	for i, v := range info.Versions {
		label := ""
		if i == 0 {
			label = "Versions:"
		}
		fmt.Fprintf(tw, "%s\tv%d  %s\n", label, v.Version, fmtTime(v.CreatedAt))
	}
	fmt.Fprintf(tw, "Index:\t%d\n", info.Index)
	return tw.Flush()
}

// printWritten waits for the nodes to apply a key write (see cli.settle),
// then prints the key.
func (k *keyCmd) printWritten(cl *client.Client, info *api.KeyInfo) error {
	k.c.settle(cl, &k.cf, info.Index)
	return k.printKey(info)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// readInput reads all of stdin, refusing more than limit bytes rather
// than truncating.
func (c *cli) readInput(what string, limit int) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(c.stdin, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("read %s from stdin: %w", what, err)
	}
	if len(b) > limit {
		return nil, usagef("%s on stdin exceeds %d bytes", what, limit)
	}
	return b, nil
}

// readToken reads a ciphertext, signature-like token from stdin.
func (c *cli) readToken(what string) (string, error) {
	b, err := c.readInput(what, api.MaxBodyBytes)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", usagef("no %s on stdin", what)
	}
	return s, nil
}

// contextBytes turns -context into the encryption context; empty is none.
func contextBytes(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

func (c *cli) keyCreate(args []string) error {
	k := c.newKeyCmd("create", "NAME [-type T] [-rotation-period 720h]")
	typ := k.fs.String("type", "", "key type (default aes256-gcm)")
	period := k.fs.String("rotation-period", "", "rotate automatically once per period, e.g. 720h")
	name, cl, err := k.parse(args, true)
	if err != nil {
		return err
	}
	defer cl.Close()
	info, err := cl.CreateKey(c.ctx, api.CreateKeyRequest{Name: name, Type: *typ, RotationPeriod: *period})
	if err != nil {
		return err
	}
	return k.printWritten(cl, info)
}

func (c *cli) keyRead(args []string) error {
	k := c.newKeyCmd("read", "NAME [-consistent]")
	consistent := k.fs.Bool("consistent", false, "linearizable read, confirmed by the leader")
	name, cl, err := k.parse(args, true)
	if err != nil {
		return err
	}
	defer cl.Close()
	info, err := cl.ReadKey(c.ctx, name, *consistent)
	if err != nil {
		return err
	}
	return k.printKey(info)
}

func (c *cli) keyList(args []string) error {
	k := c.newKeyCmd("list", "[-after X] [-limit N]")
	after := k.fs.String("after", "", "list names after this one (the previous page's next)")
	limit := k.fs.Int("limit", 0, fmt.Sprintf("page size, at most %d (default: the server's)", api.MaxListLimit))
	_, cl, err := k.parse(args, false)
	if err != nil {
		return err
	}
	defer cl.Close()
	if *limit < 0 {
		return usagef("key list: -limit must not be negative")
	}
	l, err := cl.ListKeys(c.ctx, *after, *limit)
	if err != nil {
		return err
	}
	if k.asJSON {
		return printJSON(c.stdout, l)
	}
	w := &errWriter{w: c.stdout}
	for _, n := range l.Keys {
		w.printf("%s\n", n)
	}
	if l.Next != "" {
		fmt.Fprintf(c.stderr, "More keys: keyd key list -after %s\n", l.Next)
	}
	return w.err
}

// keySimple builds a subcommand that takes only NAME and returns KeyInfo.
func (c *cli) keySimple(sub string, call func(*client.Client, context.Context, string) (*api.KeyInfo, error)) func([]string) error {
	return func(args []string) error {
		k := c.newKeyCmd(sub, "NAME")
		name, cl, err := k.parse(args, true)
		if err != nil {
			return err
		}
		defer cl.Close()
		info, err := call(cl, c.ctx, name)
		if err != nil {
			return err
		}
		return k.printWritten(cl, info)
	}
}

func (c *cli) keyConfig(args []string) error {
	k := c.newKeyCmd("config", "NAME [-min-decryption-version N] [-rotation-period D]")
	minVer := k.fs.Uint("min-decryption-version", 0, "refuse to decrypt ciphertexts of older versions")
	period := k.fs.String("rotation-period", "", `automatic rotation period, e.g. 720h; "0" turns it off`)
	name, cl, err := k.parse(args, true)
	if err != nil {
		return err
	}
	defer cl.Close()
	if *minVer > uint(^uint32(0)) {
		return usagef("key config: -min-decryption-version out of range")
	}
	var req api.KeyConfigRequest
	k.fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "min-decryption-version":
			v := uint32(*minVer)
			req.MinDecryptionVersion = &v
		case "rotation-period":
			req.RotationPeriod = period
		}
	})
	if req.MinDecryptionVersion == nil && req.RotationPeriod == nil {
		return usagef("key config: set -min-decryption-version or -rotation-period")
	}
	info, err := cl.ConfigureKey(c.ctx, name, req)
	if err != nil {
		return err
	}
	return k.printWritten(cl, info)
}

func (c *cli) keyScheduleDeletion(args []string) error {
	k := c.newKeyCmd("schedule-deletion", "NAME [-window 168h]")
	window := k.fs.Duration("window", 0, "how long the key stays recoverable, 24h to 720h (default: the server's, 168h)")
	name, cl, err := k.parse(args, true)
	if err != nil {
		return err
	}
	defer cl.Close()
	if *window < 0 {
		return usagef("key schedule-deletion: -window must not be negative")
	}
	info, err := cl.ScheduleDeletion(c.ctx, name, *window)
	if err != nil {
		return err
	}
	return k.printWritten(cl, info)
}

func (c *cli) keyEncrypt(args []string) error {
	k := c.newKeyCmd("encrypt", "NAME [-context STR] < plaintext")
	encCtx := k.fs.String("context", "", "encryption context; decrypt must repeat it")
	name, cl, err := k.parse(args, true)
	if err != nil {
		return err
	}
	defer cl.Close()
	pt, err := c.readInput("plaintext", api.MaxPlaintextBytes)
	if err != nil {
		return err
	}
	res, err := cl.Encrypt(c.ctx, name, pt, contextBytes(*encCtx))
	clear(pt)
	if err != nil {
		return err
	}
	if k.asJSON {
		return printJSON(c.stdout, res)
	}
	_, err = fmt.Fprintln(c.stdout, res.Ciphertext)
	return err
}

func (c *cli) keyDecrypt(args []string) error {
	k := c.newKeyCmd("decrypt", "NAME [-context STR] < ciphertext")
	encCtx := k.fs.String("context", "", "the encryption context given to encrypt")
	shape := k.fs.String("mask", "", "print only a masked form: last4 or full (docs/PII.md)")
	name, cl, err := k.parse(args, true)
	if err != nil {
		return err
	}
	defer cl.Close()
	ct, err := c.readToken("ciphertext")
	if err != nil {
		return err
	}
	if *shape != "" {
		res, err := cl.DecryptMasked(c.ctx, name, ct, contextBytes(*encCtx), *shape)
		if err != nil {
			return err
		}
		if k.asJSON {
			return printJSON(c.stdout, res)
		}
		_, err = fmt.Fprintln(c.stdout, res.Masked)
		return err
	}
	res, err := cl.Decrypt(c.ctx, name, ct, contextBytes(*encCtx))
	if err != nil {
		return err
	}
	defer clear(res.Plaintext)
	if k.asJSON {
		return printJSON(c.stdout, res)
	}
	_, err = c.stdout.Write(res.Plaintext)
	return err
}

func (c *cli) keyReencrypt(args []string) error {
	k := c.newKeyCmd("reencrypt", "NAME [-context STR] < ciphertext")
	encCtx := k.fs.String("context", "", "the encryption context given to encrypt")
	name, cl, err := k.parse(args, true)
	if err != nil {
		return err
	}
	defer cl.Close()
	ct, err := c.readToken("ciphertext")
	if err != nil {
		return err
	}
	res, err := cl.Reencrypt(c.ctx, name, ct, contextBytes(*encCtx))
	if err != nil {
		return err
	}
	if k.asJSON {
		return printJSON(c.stdout, res)
	}
	_, err = fmt.Fprintln(c.stdout, res.Ciphertext)
	return err
}

func (c *cli) keyDataKey(args []string) error {
	k := c.newKeyCmd("datakey", "NAME [-bytes 32] [-context STR] [-no-plaintext]")
	size := k.fs.Int("bytes", 0, "data key length: 16, 24 or 32 (default 32)")
	encCtx := k.fs.String("context", "", "encryption context bound to the wrapped data key")
	noPlain := k.fs.Bool("no-plaintext", false, "return only the wrapped data key")
	name, cl, err := k.parse(args, true)
	if err != nil {
		return err
	}
	defer cl.Close()
	res, err := cl.GenerateDataKey(c.ctx, name, api.DataKeyRequest{Bytes: *size, Context: contextBytes(*encCtx), WithoutPlaintext: *noPlain})
	if err != nil {
		return err
	}
	defer clear(res.Plaintext)
	// Always JSON: the plaintext data key is binary (base64 in JSON).
	return printJSON(c.stdout, res)
}

// keySign builds sign and hmac: message on stdin, signature line out.
func (c *cli) keySign(sub string, call func(*client.Client, context.Context, string, []byte) (*api.SignResponse, error)) func([]string) error {
	return func(args []string) error {
		k := c.newKeyCmd(sub, "NAME < message")
		name, cl, err := k.parse(args, true)
		if err != nil {
			return err
		}
		defer cl.Close()
		msg, err := c.readInput("message", api.MaxPlaintextBytes)
		if err != nil {
			return err
		}
		res, err := call(cl, c.ctx, name, msg)
		if err != nil {
			return err
		}
		if k.asJSON {
			return printJSON(c.stdout, res)
		}
		_, err = fmt.Fprintln(c.stdout, res.Signature)
		return err
	}
}

// keyVerify builds verify and verify-hmac: message on stdin, the
// signature in a flag (it is not secret); exits 1 when it does not match.
func (c *cli) keyVerify(sub, flagName string, call func(*client.Client, context.Context, string, []byte, string) (bool, error)) func([]string) error {
	return func(args []string) error {
		k := c.newKeyCmd(sub, "NAME -"+flagName+" S < message")
		sig := k.fs.String(flagName, "", "the "+flagName+" to check (keyd:vN:...)")
		name, cl, err := k.parse(args, true)
		if err != nil {
			return err
		}
		defer cl.Close()
		if *sig == "" {
			return usagef("key %s: -%s is required", sub, flagName)
		}
		msg, err := c.readInput("message", api.MaxPlaintextBytes)
		if err != nil {
			return err
		}
		valid, err := call(cl, c.ctx, name, msg, *sig)
		if err != nil {
			return err
		}
		if k.asJSON {
			err = printJSON(c.stdout, api.VerifyResponse{Valid: valid})
		} else if valid {
			_, err = fmt.Fprintln(c.stdout, "valid")
		} else {
			_, err = fmt.Fprintln(c.stdout, "invalid")
		}
		if err != nil {
			return err
		}
		if !valid {
			return errInvalidSignature
		}
		return nil
	}
}
