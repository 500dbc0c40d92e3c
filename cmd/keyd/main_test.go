package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testCLI returns a cli reading stdin from in and env from env, with
// captured output.
func testCLI(ctx context.Context, env map[string]string, in io.Reader) (*cli, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	if in == nil {
		in = strings.NewReader("")
	}
	return &cli{ctx: ctx, stdin: in, stdout: &out, stderr: &errb, getenv: func(k string) string { return env[k] }}, &out, &errb
}

// runCmd runs one keyd command line in process.
func runCmd(t *testing.T, env map[string]string, stdin string, args ...string) (string, error) {
	t.Helper()
	c, out, _ := testCLI(t.Context(), env, strings.NewReader(stdin))
	err := c.run(args)
	return out.String(), err
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers (node logs).
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestParseArgs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		npos     int
		wantPos  []string
		wantType string
		// wantUsage expects a *usageError with a message; wantErr a
		// specific sentinel.
		wantUsage bool
		wantErr   error
	}{
		{name: "flag after name", args: []string{"k1", "-type", "ed25519"}, npos: 1, wantPos: []string{"k1"}, wantType: "ed25519"},
		{name: "flag before name", args: []string{"-type", "ed25519", "k1"}, npos: 1, wantPos: []string{"k1"}, wantType: "ed25519"},
		{name: "no flags", args: []string{"k1"}, npos: 1, wantPos: []string{"k1"}},
		{name: "any number", args: []string{"a", "-type", "x", "b"}, npos: -1, wantPos: []string{"a", "b"}, wantType: "x"},
		{name: "extra argument", args: []string{"k1", "k2"}, npos: 1, wantUsage: true},
		{name: "missing argument", args: nil, npos: 1, wantUsage: true},
		{name: "unknown flag", args: []string{"-nope"}, npos: 0, wantErr: errUsageShown},
		{name: "help", args: []string{"-h"}, npos: 0, wantErr: errHelp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := flag.NewFlagSet("keyd test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			typ := fs.String("type", "", "")
			pos, err := parseArgs(fs, tt.args, tt.npos)
			if tt.wantUsage {
				var ue *usageError
				if !errors.As(err, &ue) || ue.msg == "" {
					t.Fatalf("got err %v, want a usage error with a message", err)
				}
				return
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got err %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got err %v, want nil", err)
			}
			if !slices.Equal(pos, tt.wantPos) || *typ != tt.wantType {
				t.Fatalf("got %q type %q, want %q type %q", pos, *typ, tt.wantPos, tt.wantType)
			}
		})
	}
}

func TestExitCodeAndErrorLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		err      error
		wantCode int
		wantLine string
	}{
		{name: "nil", err: nil, wantCode: 0},
		{name: "help", err: errHelp, wantCode: 0},
		{name: "usage", err: usagef("bad flag %d", 1), wantCode: 2, wantLine: "keyd: bad flag 1"},
		{name: "usage already shown", err: errUsageShown, wantCode: 2, wantLine: ""},
		{name: "api error", err: api.ErrNotFound, wantCode: 1, wantLine: "keyd: key_not_found: key not found"},
		{name: "api error from the wire", err: &api.Error{Code: api.CodeSealed, Message: "node n2 is sealed"}, wantCode: 1, wantLine: "keyd: sealed: node n2 is sealed"},
		{name: "wrapped api error", err: fmt.Errorf("client: invalid key name: %w", api.ErrBadRequest), wantCode: 1, wantLine: "keyd: bad_request: client: invalid key name"},
		{name: "connection error", err: &client.ConnError{Addr: "https://127.0.0.1:1", Err: errors.New("refused")}, wantCode: 1, wantLine: "keyd: unavailable: client: connection to https://127.0.0.1:1 failed: refused"},
		{name: "plain error", err: errors.New("boom"), wantCode: 1, wantLine: "keyd: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := exitCode(tt.err); got != tt.wantCode {
				t.Errorf("exitCode: got %d, want %d", got, tt.wantCode)
			}
			if tt.wantCode == 0 {
				return // nothing is printed on success
			}
			if got := errorLine(tt.err); got != tt.wantLine {
				t.Errorf("errorLine: got %q, want %q", got, tt.wantLine)
			}
		})
	}
}

func TestRunDispatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{name: "no command", args: nil, wantCode: 2},
		{name: "unknown command", args: []string{"frobnicate"}, wantCode: 2},
		{name: "help", args: []string{"help"}, wantCode: 0, wantOut: "Usage:"},
		{name: "version", args: []string{"version"}, wantCode: 0, wantOut: "keyd "},
		{name: "key without subcommand", args: []string{"key"}, wantCode: 2},
		{name: "unknown key subcommand", args: []string{"key", "frobnicate"}, wantCode: 2},
		{name: "invalid key name", args: []string{"key", "read", "-bad", "-addr", "127.0.0.1:1"}, wantCode: 2},
		{name: "no address", args: []string{"key", "list"}, wantCode: 2},
		{name: "server without config", args: []string{"server"}, wantCode: 2},
		{name: "dev bad threshold", args: []string{"dev", "-custodians", "1", "-threshold", "2"}, wantCode: 2},
		{name: "config needs a change", args: []string{"key", "config", "k1", "-addr", "127.0.0.1:1"}, wantCode: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, err := runCmd(t, nil, "", tt.args...)
			if got := exitCode(err); got != tt.wantCode {
				t.Fatalf("got exit code %d (err %v), want %d", got, err, tt.wantCode)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Fatalf("got output %q, want it to contain %q", out, tt.wantOut)
			}
		})
	}
}
