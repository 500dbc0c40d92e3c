// Command keyd is the keyd server and its command-line client.
//
// The command holds no business logic: it parses flags and config files,
// turns them into a node.Config (server, dev) or client calls (everything
// else), prints results and maps errors to exit codes: 0 success, 1 a
// failed operation, 2 a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "devel"

const usageText = `keyd is a Raft-replicated key management service.

Usage:
  keyd <command> [flags] [args]

Server:
  server -config FILE        run a node from a YAML config file
  dev [flags]                run an in-process development cluster
  certs -ca-dir DIR -node ID create or reuse a CA and issue a node certificate

Operator:
  operator init              initialise the cluster and print custodian shares
  operator unseal            submit one share, read from stdin
  operator seal              seal every node
  operator join ADDR -seed G ask a new node to join through gossip seeds G
  operator snapshot save|inspect|restore FILE   disaster recovery snapshots
  operator remove NODE_ID    demote and remove a node
  peers [-json]              show the topology: regions, voters, leader, state

Client:
  status [-json]             show every node's seal and Raft state
  key <subcommand> ...       create, manage and use keys (keyd key -h)

Access control:
  policy write|read|list|delete   manage policies (keyd policy -h)
  token create|list|revoke        manage bearer tokens (keyd token -h)
  identity create|list|delete     manage client-certificate identities
  whoami                          show the caller's identity and policies

Audit:
  audit fetch -addr NODE -out FILE   download a node's audit log and public key
  audit verify FILE -pubkey P        check an audit log's hash chain and signatures (offline)

Other:
  version                    print the version

Client commands read KEYD_ADDR (comma-separated host:port list, overridden by
-addr), KEYD_TOKEN (the bearer token) and KEYD_CACERT (a PEM CA file; the
system roots when unset). KEYD_CLIENT_CERT and KEYD_CLIENT_KEY (PEM files)
present a client certificate, which authenticates a certificate identity
when KEYD_TOKEN is unset.

Write commands return once every reachable node has applied the write
(at most 1s per node; nodes the topology reports dead are skipped).

Run "keyd <command> -h" for a command's flags.
`

// cli is one invocation's environment. Commands read and write only
// through it, so tests run them in process with their own streams,
// environment and context. A cli is used by one goroutine.
type cli struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

// commands maps each top-level command to its function.
func (c *cli) commands() map[string]func(args []string) error {
	return map[string]func(args []string) error{
		"server":   c.server,
		"dev":      c.dev,
		"certs":    c.certs,
		"operator": c.operator,
		"status":   c.status,
		"peers":    c.peers,
		"key":      c.key,
		"policy":   c.policy,
		"token":    c.token,
		"identity": c.identity,
		"whoami":   c.whoami,
		"audit":    c.audit,
		"version":  c.version,
	}
}

// run dispatches args (without the program name) to a command.
func (c *cli) run(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, usageText)
		return errUsageShown
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(c.stdout, usageText)
		return nil
	}
	cmd, ok := c.commands()[args[0]]
	if !ok {
		return usagef("unknown command %q (run keyd help)", args[0])
	}
	return cmd(args[1:])
}

// dispatch runs the subcommand args[0] of group from subs.
func (c *cli) dispatch(group, help string, subs map[string]func([]string) error, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, help)
		return errUsageShown
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(c.stdout, help)
		return nil
	}
	sub, ok := subs[args[0]]
	if !ok {
		names := make([]string, 0, len(subs))
		for n := range subs {
			names = append(names, n)
		}
		sort.Strings(names)
		return usagef("unknown %s subcommand %q (want one of %s)", group, args[0], strings.Join(names, ", "))
	}
	return sub(args[1:])
}

func (c *cli) version(args []string) error {
	fs := c.flags("version", "")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	rev := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = " " + s.Value
			}
		}
	}
	fmt.Fprintf(c.stdout, "keyd %s%s %s %s/%s\n", version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

// usageError is a mistake in how keyd was invoked; it exits with 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// errUsageShown is a usage error whose explanation (the flag package's
// message or the usage text) is already on stderr.
var errUsageShown = &usageError{}

// errHelp reports that -h was asked for and the help printed: exit 0.
var errHelp = errors.New("keyd: help shown")

// flags returns a FlagSet for "keyd <name>" that reports errors instead
// of exiting, so the command functions can run in tests.
func (c *cli) flags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("keyd "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: keyd %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseArgs parses flags that may come before, between or after positional
// arguments ("key create NAME -type T"), and requires exactly npos
// positional arguments (npos < 0: any number).
func parseArgs(fs *flag.FlagSet, args []string, npos int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, errUsageShown // the flag package printed why
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if npos >= 0 && len(pos) != npos {
		fs.Usage()
		if len(pos) > npos {
			return nil, usagef("%s: unexpected argument %q", cmdName(fs), pos[npos])
		}
		return nil, usagef("%s: missing argument", cmdName(fs))
	}
	return pos, nil
}

// cmdName is the command a FlagSet belongs to, without the program name.
func cmdName(fs *flag.FlagSet) string { return strings.TrimPrefix(fs.Name(), "keyd ") }

// exitCode maps an error returned by a command to the process exit code.
func exitCode(err error) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return 0
	case errors.As(err, &ue):
		return 2
	}
	return 1
}

// errorLine renders err for stderr as "keyd: <code>: <message>" when the
// cluster answered with an api.Error, and "keyd: <message>" otherwise. It
// returns "" for a usage error already explained on stderr.
func errorLine(err error) string {
	var ue *usageError
	if errors.As(err, &ue) {
		if ue.msg == "" {
			return ""
		}
		return "keyd: " + ue.msg
	}
	var ae *api.Error
	if errors.As(err, &ae) {
		full := err.Error()
		if full == ae.Error() {
			return full
		}
		return "keyd: " + string(ae.Code) + ": " + strings.TrimSuffix(full, ": "+ae.Error())
	}
	var ce *client.ConnError
	if errors.As(err, &ce) {
		return "keyd: " + string(api.CodeUnavailable) + ": " + err.Error()
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "keyd: ") {
		return msg
	}
	return "keyd: " + msg
}

// fatalf prints a message (unless format is empty) and exits with code.
// It is the only place keyd exits.
func fatalf(code int, format string, args ...any) {
	if format != "" {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
	os.Exit(code)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	c := &cli{ctx: ctx, stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	err := c.run(os.Args[1:])
	stop()
	if code := exitCode(err); code != 0 {
		if line := errorLine(err); line != "" {
			fatalf(code, "%s", line)
		}
		fatalf(code, "")
	}
}
