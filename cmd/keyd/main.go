// Command keyd is the keyd server and its command-line client.
//
// The command holds no business logic: it parses flags and config files,
// turns them into a node.Config (server, dev) or client calls (everything
// else), prints results and maps errors to exit codes: 0 success, 1 a
// failed operation, 2 a usage error, 3 a share that a sealed node ignored
// (operator unseal).
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
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "devel"

// commit is set at build time with -ldflags "-X main.commit=abc123" (make
// build does); without it keyd version falls back to the Go build info.
var commit = ""

const usageText = `keyd is a Raft-replicated key management service.

Usage:
  keyd <command> [flags] [args]

Server:
  server -config FILE        run a node from a YAML config file
  dev [flags]                run an in-process development cluster
  certs -ca-dir DIR -node ID create or reuse a CA and issue a node certificate

Operator:
  operator init              initialise the cluster; shares encrypted to custodian keys
  operator unseal            submit one share (stdin; -identity decrypts it) to one node
  operator rotate-root       custodians rotate the root secret
  operator seal              seal every node
  operator join ADDR -seed G ask a new node to join through gossip seeds G
  operator snapshot save|inspect|restore FILE   disaster recovery snapshots
  operator remove NODE_ID    demote and remove a node
  peers [-json]              show the topology: regions, voters, leader, state

Client:
  status [-json]             show every node's seal and Raft state
  key <subcommand> ...       create, manage and use keys (keyd key -h)
  kv <subcommand> ...        versioned secrets: put, get, list, delete, destroy (keyd kv -h)

Access control:
  policy write|read|list|delete   manage policies (keyd policy -h)
  token create|list|revoke        manage bearer tokens (keyd token -h)
  identity create|list|delete     manage client-certificate identities
  whoami                          show the caller's identity and policies

Audit:
  audit fetch -addr NODE -out FILE   download a node's audit log
  audit anchors -addr NODE -node ID -out FILE
                                     export a node's audit key and Raft anchors
  audit verify -anchors FILE LOG...  check audit log files against the cluster's anchors

Other:
  version                    print the version
  bench [-op OP] [-duration D]  load the cluster; ops/s and latency percentiles
  completion bash|zsh|fish   print a shell completion script

Client commands read KEYD_ADDR (comma-separated host:port list, overridden by
-addr), KEYD_TOKEN (the bearer token) and KEYD_CACERT (a PEM CA file; the
system roots when unset). KEYD_CLIENT_CERT and KEYD_CLIENT_KEY (PEM files)
present a client certificate, which authenticates a certificate identity
when KEYD_TOKEN is unset.

Write commands return once every reachable node has applied the write
(all nodes at once, at most 1s each and 5s in all; nodes the topology
reports dead, or that a connection just failed to, are skipped).
Client commands take -timeout (default 10s): until it passes they retry
through leader elections and dead nodes, saying "waiting for a leader".

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

	// Set by newClient from -timeout (see setDeadline).
	timeout   time.Duration
	release   []context.CancelFunc
	waitNoted bool // the "waiting for a leader" note was printed
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
		"kv":       c.kv,
		"policy":   c.policy,
		"token":    c.token,
		"identity": c.identity,
		"whoami":   c.whoami,
		"audit":    c.audit,
		"version":  c.version,
		"bench":    c.bench,

		"completion": c.completion,
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
	defer c.releaseDeadlines()
	return deadlineError(cmd(args[1:]), c.timeout)
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
	rev := commit
	if bi, ok := debug.ReadBuildInfo(); ok && rev == "" {
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if rev != "" && modified {
			rev += "-dirty"
		}
	}
	if rev == "" {
		rev = "unknown"
	}
	fmt.Fprintf(c.stdout, "keyd %s commit %s %s %s/%s\n", version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

// deadlineError explains a command that ran out of its -timeout while
// retrying: the last error alone (not_leader: no leader is known) would
// not say that keyd waited, nor for how long.
func deadlineError(err error, timeout time.Duration) error {
	if err == nil || timeout <= 0 || !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &deadlineErr{timeout: timeout, err: err}
}

// deadlineErr is a command that gave up at its -timeout; it keeps the
// last error for errors.Is and errors.As.
type deadlineErr struct {
	timeout time.Duration
	err     error
}

func (e *deadlineErr) Error() string {
	last := e.err.Error()
	var ae *api.Error
	if errors.As(e.err, &ae) {
		last = string(ae.Code) + ": " + ae.Message
	}
	return fmt.Sprintf("keyd: gave up after -timeout %s; last error: %s", e.timeout, last)
}

func (e *deadlineErr) Unwrap() error { return e.err }

// usageError is a mistake in how keyd was invoked; it exits with 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitError is an outcome, neither success nor failure, that a script
// must tell apart: it exits with code after msg on stderr (operator
// unseal: 3 when the node ignored the share and is still sealed).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

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
	addFormatFlag(fs)
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

// addFormatFlag gives every command that has -json a -format json|table
// flag too, the spelling kubectl-style tools use: -format json is -json,
// -format table (the default) is -json=false.
func addFormatFlag(fs *flag.FlagSet) {
	if fs.Lookup("json") == nil || fs.Lookup("format") != nil {
		return
	}
	fs.Func("format", "output format: table or json (same as -json)", func(v string) error {
		switch v {
		case "json":
			return fs.Set("json", "true")
		case "table":
			return fs.Set("json", "false")
		}
		return fmt.Errorf("want table or json")
	})
}

// cmdName is the command a FlagSet belongs to, without the program name.
func cmdName(fs *flag.FlagSet) string { return strings.TrimPrefix(fs.Name(), "keyd ") }

// exitCode maps an error returned by a command to the process exit code.
func exitCode(err error) int {
	var ue *usageError
	var ee *exitError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return 0
	case errors.As(err, &ue):
		return 2
	case errors.As(err, &ee):
		return ee.code
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
	var de *deadlineErr
	if errors.As(err, &de) {
		return de.Error()
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
