package node_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
	"github.com/keyd/keyd/node"
	"github.com/keyd/keyd/transport"
	"github.com/keyd/keyd/transport/devcerts"
)

// childEnv makes the test binary run one node instead of the tests, so a
// test can kill a real process with SIGKILL.
const childEnv = "KEYD_TEST_CHILD_NODE"

// runChildNode runs a single-node cluster from the environment until
// killed. It is called from TestMain in the child process.
func runChildNode() {
	dir := os.Getenv("KEYD_TEST_DIR")
	id, err := transport.LoadIdentity("n1", filepath.Join(dir, "n1.pem"), filepath.Join(dir, "n1-key.pem"), filepath.Join(dir, "ca.pem"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	cfg := node.DefaultConfig()
	cfg.NodeID, cfg.DataDir, cfg.Identity = "n1", filepath.Join(dir, "data"), id
	cfg.APIAddr, cfg.RaftAddr = os.Getenv("KEYD_TEST_API"), os.Getenv("KEYD_TEST_RAFT")
	cfg.Peers = []node.Peer{{ID: "n1", APIAddr: cfg.APIAddr, RaftAddr: cfg.RaftAddr}}
	cfg.Bootstrap = true
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.RaftLogOutput = io.Discard
	n, err := node.New(cfg)
	if err == nil {
		err = n.Start(context.Background())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	<-ch
	_ = n.Close()
	os.Exit(0)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestSIGKILLKeepsAcknowledgedWrites kills a node process with SIGKILL
// while writes are in flight and checks that every acknowledged write is
// there after a restart.
func TestSIGKILLKeepsAcknowledgedWrites(t *testing.T) {
	dir := t.TempDir()
	ca, err := devcerts.NewCA("kill test")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueNodePEM("n1", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"n1.pem": certPEM, "n1-key.pem": keyPEM, "ca.pem": ca.CertPEM()} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	apiAddr, raftAddr := freeAddr(t), freeAddr(t)
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=1", "KEYD_TEST_DIR="+dir, "KEYD_TEST_API="+apiAddr, "KEYD_TEST_RAFT="+raftAddr)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	ctx := ctxT(t)
	tc := &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13}
	newClient := func(token string) *client.Client {
		cl, err := client.New(ctx, client.Config{Addrs: []string{apiAddr}, Token: token, TLS: tc, MaxRetries: 40, Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cl.Close() })
		return cl
	}
	waitUp := func(cl *client.Client) {
		deadline := time.Now().Add(20 * time.Second)
		for {
			h, err := cl.Health(ctx, apiAddr)
			if err == nil && h.Leader {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("child node not up: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	cmd := start()
	defer func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() }()
	waitUp(newClient(""))
	res, err := newClient("").InitWith(ctx, api.InitRequest{Custodians: 1, Threshold: 1, PlaintextShares: true})
	if err != nil {
		t.Fatal(err)
	}
	cl := newClient(res.AdminToken)
	if _, err := cl.Unseal(ctx, res.Shares[0]); err != nil {
		t.Fatal(err)
	}

	// Writers create keys until the node dies; acknowledged names are kept.
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			wcl := newClient(res.AdminToken)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("k-%d-%d", w, i)
				wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := wcl.CreateKey(client.WithRequestID(wctx, name), api.CreateKeyRequest{Name: name})
				cancel()
				if err == nil {
					mu.Lock()
					acked = append(acked, name)
					mu.Unlock()
				}
			}
		}(w)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 50 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = cmd.Process.Wait()
	close(stop)
	wg.Wait()
	if len(acked) < 10 {
		t.Fatalf("only %d writes acknowledged before the kill", len(acked))
	}

	cmd = start()
	waitUp(cl)
	if _, err := cl.Unseal(ctx, res.Shares[0]); err != nil {
		t.Fatal(err)
	}
	for _, name := range acked {
		if _, err := cl.ReadKey(ctx, name, true); err != nil {
			t.Fatalf("acknowledged key %s lost after SIGKILL: %v", name, err)
		}
		if _, err := cl.Encrypt(ctx, name, []byte("x"), nil); err != nil && !errors.Is(err, api.ErrSealed) {
			t.Fatalf("key %s unusable after restart: %v", name, err)
		}
	}
	t.Logf("%d acknowledged writes survived SIGKILL", len(acked))
	_ = cmd.Process.Signal(syscall.SIGTERM)
}
