package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/node"
)

func TestDevAddrs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		listen  string
		n       int
		want    []devAddr
		wantErr bool
	}{
		{name: "three nodes", listen: "127.0.0.1:8200", n: 3, want: []devAddr{
			{"127.0.0.1:8200", "127.0.0.1:8201"}, {"127.0.0.1:8202", "127.0.0.1:8203"}, {"127.0.0.1:8204", "127.0.0.1:8205"},
		}},
		{name: "free ports", listen: "127.0.0.1:0", n: 2, want: []devAddr{{"127.0.0.1:0", "127.0.0.1:0"}, {"127.0.0.1:0", "127.0.0.1:0"}}},
		{name: "ipv6", listen: "[::1]:9000", n: 1, want: []devAddr{{"[::1]:9000", "[::1]:9001"}}},
		{name: "last port", listen: "127.0.0.1:65534", n: 1, want: []devAddr{{"127.0.0.1:65534", "127.0.0.1:65535"}}},
		{name: "port overflow", listen: "127.0.0.1:65535", n: 1, wantErr: true},
		{name: "no port", listen: "127.0.0.1", n: 1, wantErr: true},
		{name: "bad port", listen: "127.0.0.1:http", n: 1, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := devAddrs(tt.listen, tt.n)
			if tt.wantErr {
				var ue *usageError
				if !errors.As(err, &ue) {
					t.Fatalf("got err %v, want a usage error", err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, %v, want %v", got, err, tt.want)
			}
		})
	}
}

func TestAdvertised(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"0.0.0.0:8200":   "127.0.0.1:8200",
		"[::]:8200":      "127.0.0.1:8200",
		"10.0.0.5:8200":  "10.0.0.5:8200",
		"127.0.0.1:8200": "127.0.0.1:8200",
	} {
		a, err := net.ResolveTCPAddr("tcp", in)
		if err != nil {
			t.Fatal(err)
		}
		if got := advertised(a); got != want {
			t.Errorf("advertised(%s): got %s, want %s", in, got, want)
		}
	}
}

func TestDevConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	load := fakeLoader(t)
	var slots []devSlot
	var peers []node.Peer
	for i := range 3 {
		s := devSlot{id: fmt.Sprintf("n%d", i+1), dir: filepath.Join(dir, fmt.Sprintf("n%d", i+1))}
		var err error
		if s.apiLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.apiLn.Close() })
		if s.raftLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.raftLn.Close() })
		s.apiAdv, s.raftAdv = advertised(s.apiLn.Addr()), advertised(s.raftLn.Addr())
		slots = append(slots, s)
		peers = append(peers, node.Peer{ID: s.id, APIAddr: s.apiAdv, RaftAddr: s.raftAdv, Region: devRegion})
	}
	for _, s := range slots {
		id, err := load(s.id, "", "", "")
		if err != nil {
			t.Fatal(err)
		}
		cfg := devConfig(s, peers, id, nil, slog.New(slog.DiscardHandler), io.Discard)
		if err := cfg.Validate(); err != nil {
			t.Fatalf("%s: Validate: %v", s.id, err)
		}
		if cfg.NodeID != s.id || cfg.DataDir != s.dir || !cfg.Bootstrap || len(cfg.Peers) != 3 {
			t.Fatalf("%s: got id %q dir %q bootstrap %v peers %d, want %q %q true 3", s.id, cfg.NodeID, cfg.DataDir, cfg.Bootstrap, len(cfg.Peers), s.id, s.dir)
		}
		if cfg.APIListener != s.apiLn || cfg.RaftListener != s.raftLn || cfg.APIAdvertise != s.apiAdv || cfg.RaftAdvertise != s.raftAdv {
			t.Fatalf("%s: listeners or advertised addresses not wired", s.id)
		}
		if cfg.Identity.NodeID != s.id {
			t.Fatalf("%s: got identity %s", s.id, cfg.Identity)
		}
	}
}

// devRun is a `keyd dev` running in a goroutine.
type devRun struct {
	env    map[string]string
	shares []string
	output []string // lines printed up to the exports
	logs   *lockedBuffer
	cancel context.CancelFunc
	done   chan error
}

// startDev runs `keyd dev args...` until the test ends or stop is called,
// and returns once it printed its export lines.
func startDev(t *testing.T, args ...string) *devRun {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	d := &devRun{env: map[string]string{}, logs: &lockedBuffer{}, cancel: cancel, done: make(chan error, 1)}
	c := &cli{ctx: ctx, stdin: strings.NewReader(""), stdout: pw, stderr: d.logs, getenv: func(string) string { return "" }}
	go func() {
		err := c.dev(args)
		pw.CloseWithError(fmt.Errorf("dev returned: %v", err))
		d.done <- err
	}()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("dev output:\n%s\nnode logs:\n%s", strings.Join(d.output, "\n"), d.logs.String())
		}
	})
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		d.output = append(d.output, line)
		if sh, ok := strings.CutPrefix(line, "Share "); ok {
			_, v, _ := strings.Cut(sh, ": ")
			d.shares = append(d.shares, v)
		}
		if kv, ok := strings.CutPrefix(line, "export "); ok {
			k, v, _ := strings.Cut(kv, "=")
			d.env[k] = v
			if k == envCACert {
				break
			}
		}
	}
	if d.env[envCACert] == "" {
		t.Fatalf("dev printed no %s line: %v", envCACert, sc.Err())
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	return d
}

// stop cancels dev and waits for it; it is idempotent.
func (d *devRun) stop(t *testing.T) {
	t.Helper()
	d.cancel()
	if err, ok := <-d.done; ok {
		close(d.done)
		if err != nil {
			t.Errorf("dev: %v", err)
		}
	}
}

func TestDevEndToEnd(t *testing.T) {
	t.Parallel()
	d := startDev(t, "-listen", "127.0.0.1:0", "-nodes", "3")
	if got := len(strings.Split(d.env[envAddr], ",")); got != 3 {
		t.Fatalf("got %d addresses in %s=%q, want 3", got, envAddr, d.env[envAddr])
	}
	if !strings.HasPrefix(d.env[envToken], "kd_") {
		t.Fatalf("got token %q, want the kd_ prefix", d.env[envToken])
	}
	if len(d.shares) != 1 {
		t.Fatalf("got %d shares, want 1", len(d.shares))
	}

	if _, err := runCmd(t, d.env, "", "key", "create", "k1", "-type", "aes256-gcm"); err != nil {
		t.Fatalf("key create: %v", err)
	}
	plaintext := "attack at dawn\n\x00binary"
	ct, err := runCmd(t, d.env, plaintext, "key", "encrypt", "k1", "-context", "order=42")
	if err != nil {
		t.Fatalf("key encrypt: %v", err)
	}
	if !strings.HasPrefix(ct, "keyd:v1:") || strings.Contains(ct, "attack") {
		t.Fatalf("got ciphertext %q, want keyd:v1:...", ct)
	}
	got, err := runCmd(t, d.env, ct, "key", "decrypt", "k1", "-context", "order=42")
	if err != nil {
		t.Fatalf("key decrypt: %v", err)
	}
	if got != plaintext {
		t.Fatalf("got plaintext %q, want %q", got, plaintext)
	}
	_, err = runCmd(t, d.env, ct, "key", "decrypt", "k1", "-context", "order=43")
	if !errors.Is(err, api.ErrDecrypt) || exitCode(err) != 1 {
		t.Fatalf("decrypt with a wrong context: got err %v, want %v", err, api.ErrDecrypt)
	}
	status, err := runCmd(t, d.env, "", "status")
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if n := strings.Count(status, " unsealed "); n != 3 {
		t.Fatalf("got %d unsealed rows in status, want 3:\n%s", n, status)
	}
	d.stop(t)
}

// TestDevRestartSealed restarts a persistent dev directory: the cluster
// comes back sealed (shares are never stored) and `operator unseal` with
// the share printed on the first run opens it, with the key still usable.
func TestDevRestartSealed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := startDev(t, "-listen", "127.0.0.1:0", "-data", dir)
	env := first.env
	if _, err := runCmd(t, env, "", "key", "create", "k1"); err != nil {
		t.Fatalf("key create: %v", err)
	}
	ct, err := runCmd(t, env, "persisted", "key", "encrypt", "k1")
	if err != nil {
		t.Fatalf("key encrypt: %v", err)
	}
	first.stop(t)

	second := startDev(t, "-listen", "127.0.0.1:0", "-data", dir)
	out := strings.Join(second.output, "\n")
	if !strings.Contains(out, "sealed") || !strings.Contains(out, "keyd operator unseal") {
		t.Fatalf("got output\n%s\nwant the sealed notice", out)
	}
	if _, ok := second.env[envToken]; ok || len(second.shares) != 0 {
		t.Fatalf("restart printed a token or shares, want neither")
	}
	env2 := map[string]string{envAddr: second.env[envAddr], envCACert: second.env[envCACert], envToken: env[envToken]}
	if _, err := runCmd(t, env2, ct, "key", "decrypt", "k1"); !errors.Is(err, api.ErrSealed) {
		t.Fatalf("decrypt while sealed: got err %v, want %v", err, api.ErrSealed)
	}
	res, err := runCmd(t, env2, first.shares[0]+"\n", "operator", "unseal")
	if err != nil {
		t.Fatalf("operator unseal: %v", err)
	}
	if !strings.HasSuffix(strings.TrimSpace(res), ": Unsealed") {
		t.Fatalf("got %q, want the node Unsealed", res)
	}
	got, err := runCmd(t, env2, ct, "key", "decrypt", "k1")
	if err != nil || got != "persisted" {
		t.Fatalf("decrypt after restart: got %q, %v, want %q", got, err, "persisted")
	}
}
