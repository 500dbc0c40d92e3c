package main

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
	"github.com/keyd/keyd/node"
	"github.com/keyd/keyd/transport"
	"github.com/keyd/keyd/transport/devcerts"
)

// result is one measurement.
type result struct {
	name     string
	callers  int
	ops      int64
	elapsed  time.Duration
	p50, p99 time.Duration
	failed   int64
	perOp    int // items per request (batch)
}

func (r result) rate() float64 { return float64(r.ops) / r.elapsed.Seconds() }

func (r result) String() string {
	s := fmt.Sprintf("%-22s callers=%-3d ops/s=%9.0f p50=%8s p99=%8s failed=%d", r.name, r.callers, r.rate(), r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.failed)
	if r.perOp > 1 {
		s += fmt.Sprintf(" items/s=%.0f", r.rate()*float64(r.perOp))
	}
	return s
}

// drive runs callers goroutines issuing op until d has passed and
// collects latencies.
func drive(name string, callers int, d time.Duration, op func(worker int) error) result {
	var wg sync.WaitGroup
	var failed atomic.Int64
	lats := make([][]time.Duration, callers)
	deadline := time.Now().Add(d)
	start := time.Now()
	for w := 0; w < callers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			l := make([]time.Duration, 0, 1<<16)
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := op(w); err != nil {
					failed.Add(1)
					if failed.Load() == 1 {
						fmt.Fprintf(os.Stderr, "%s: first failure: %v\n", name, err)
					}
					continue
				}
				l = append(l, time.Since(t0))
			}
			lats[w] = l
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	r := result{name: name, callers: callers, ops: int64(len(all)), elapsed: elapsed, failed: failed.Load(), perOp: 1}
	if len(all) > 0 {
		r.p50 = all[len(all)*50/100]
		r.p99 = all[len(all)*99/100]
	}
	return r
}

// httpClient is the same for keyd and the reference: HTTP/1.1 keep-alive
// over TLS 1.3, one connection per caller.
func httpClient(roots *tls.Config, callers int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:     roots,
			MaxIdleConnsPerHost: callers,
			MaxConnsPerHost:     callers,
			ForceAttemptHTTP2:   false,
			TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
		},
		Timeout: 30 * time.Second,
	}
}

func post(hc *http.Client, url, token string, body []byte, out any) error {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return do(hc, req, token, out)
}

// do sends req with the bearer token and decodes a 200 reply into out (or
// discards it); any other status is an error carrying the body.
func do(hc *http.Client, req *http.Request, token string, out any) error {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// postBatch posts a batch and checks the reply without decoding it fully,
// so the driver's JSON does not eat the cores the server is measured on:
// the status must be 200, and the body must hold exactly items ciphertexts
// and no per-item error. buf is the caller's own. Neither key can occur inside a ciphertext
// (keyd:vN:<base64>), so counting them is exact for this reply.
func postBatch(hc *http.Client, url, token string, body []byte, items int, buf *bytes.Buffer) error {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	buf.Reset()
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return err
	}
	b := buf.Bytes()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	if n := bytes.Count(b, []byte(`"error":`)); n > 0 {
		return fmt.Errorf("%d of %d items failed", n, items)
	}
	if n := bytes.Count(b, []byte(`"ciphertext":`)); n != items {
		return fmt.Errorf("%d ciphertexts for %d items", n, items)
	}
	return nil
}

// referenceServer is the speed of light: TLS 1.3, the same JSON in and
// out, one AES-256-GCM seal.
func referenceServer(ca *devcerts.CA) (addr string, stop func(), err error) {
	cert, err := ca.IssueNode("reference", "127.0.0.1")
	if err != nil {
		return "", nil, err
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/keys/{name}/encrypt", func(w http.ResponseWriter, r *http.Request) {
		var req api.EncryptRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, api.MaxBodyBytes)).Decode(&req); err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		out := make([]byte, 12, 12+len(req.Plaintext)+16)
		_, _ = rand.Read(out)
		out = aead.Seal(out, out, req.Plaintext, req.Context)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(api.EncryptResponse{Ciphertext: "keyd:v1:" + base64.StdEncoding.EncodeToString(out), Version: 1})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	return ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// startNodes starts n in-process nodes bootstrapped together.
// auditMode selects how the measured nodes audit.
type auditMode int

const (
	auditDefault auditMode = iota // node.DefaultConfig: written before the reply, fsynced within 10ms
	auditStrict                   // fsync before each reply (audit_sync_interval: 0)
	auditOff                      // no audit log (to measure its cost)
)

func startNodes(ca *devcerts.CA, n int, mode auditMode) ([]*node.Node, func(), error) {
	var nodes []*node.Node
	var dirs []string
	stop := func() {
		for _, nd := range nodes {
			_ = nd.Close()
		}
		for _, d := range dirs {
			_ = os.RemoveAll(d)
		}
	}
	type lns struct{ api, raft net.Listener }
	var all []lns
	var peers []node.Peer
	for i := 0; i < n; i++ {
		a, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, stop, err
		}
		r, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, stop, err
		}
		all = append(all, lns{a, r})
		peers = append(peers, node.Peer{ID: "n" + strconv.Itoa(i+1), APIAddr: a.Addr().String(), RaftAddr: r.Addr().String()})
	}
	for i, p := range peers {
		dir, err := os.MkdirTemp("", "keyd-load-")
		if err != nil {
			return nil, stop, err
		}
		dirs = append(dirs, dir)
		id, err := ca.Identity(p.ID, "127.0.0.1")
		if err != nil {
			return nil, stop, err
		}
		cfg := node.DefaultConfig()
		cfg.NodeID, cfg.DataDir, cfg.Identity = p.ID, dir, id
		cfg.APIListener, cfg.RaftListener = all[i].api, all[i].raft
		cfg.Peers, cfg.Bootstrap = peers, true
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		cfg.RaftLogOutput = io.Discard
		cfg.AuditDisabled = mode == auditOff
		cfg.StateFsync = stateFsync
		if mode == auditStrict {
			cfg.AuditSyncInterval = 0
		}
		nd, err := node.New(cfg)
		if err != nil {
			return nil, stop, err
		}
		if err := nd.Start(context.Background()); err != nil {
			return nil, stop, err
		}
		nodes = append(nodes, nd)
	}
	return nodes, stop, nil
}

// initCluster initialises and unseals through the client and returns the
// admin token.
func initCluster(ctx context.Context, ca *devcerts.CA, nodes []*node.Node) (string, error) {
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.APIAddr())
	}
	tc := &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13}
	cl, err := client.New(ctx, client.Config{Addrs: addrs, TLS: tc, MaxRetries: 50})
	if err != nil {
		return "", err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := cl.InitWith(ctx, api.InitRequest{Custodians: 1, Threshold: 1, PlaintextShares: true})
	if err != nil {
		return "", err
	}
	for _, n := range nodes {
		for deadline := time.Now().Add(10 * time.Second); n.AppliedIndex() < res.Index && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if _, err := cl.Unseal(ctx, res.Shares[0]); err != nil {
		return "", err
	}
	for _, n := range nodes {
		for deadline := time.Now().Add(10 * time.Second); n.Sealed() && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	return res.AdminToken, nil
}

// startInitialized starts n nodes, initialises and unseals them, and
// returns the admin token. stop is safe to call on error too.
// stateFsync is -state-fsync.
var stateFsync bool

func startInitialized(ctx context.Context, ca *devcerts.CA, n int, mode auditMode) ([]*node.Node, string, func(), error) {
	nodes, stop, err := startNodes(ca, n, mode)
	if err != nil {
		return nil, "", stop, err
	}
	token, err := initCluster(ctx, ca, nodes)
	return nodes, token, stop, err
}

// singleNodeWithKey starts one initialised node holding the AES key "k"
// and returns its base URL and the admin token.
func singleNodeWithKey(ctx context.Context, ca *devcerts.CA, roots *tls.Config, mode auditMode) (string, string, func(), error) {
	nodes, token, stop, err := startInitialized(ctx, ca, 1, mode)
	if err != nil {
		return "", "", stop, err
	}
	base := "https://" + nodes[0].APIAddr()
	hc := httpClient(roots, 1)
	defer hc.CloseIdleConnections()
	if err := post(hc, base+"/v1/keys", token, []byte(`{"name":"k"}`), nil); err != nil {
		return "", "", stop, err
	}
	return base, token, stop, nil
}

func run(ctx context.Context, d time.Duration, levels []int, want map[string]bool, batchItems int, batchLevels []int) error {
	fmt.Printf("keyd-load: GOMAXPROCS=%d duration=%s (driver and servers share the cores)\n", runtime.GOMAXPROCS(0), d)
	ca, err := devcerts.NewCA("keyd-load CA")
	if err != nil {
		return err
	}
	roots := &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13}
	payload := bytes.Repeat([]byte{0x5a}, 64)
	encBody, _ := json.Marshal(api.EncryptRequest{Plaintext: payload})
	var results []result

	if want["reference"] {
		addr, stop, err := referenceServer(ca)
		if err != nil {
			return err
		}
		for _, c := range levels {
			hc := httpClient(roots, c)
			r := drive("reference encrypt", c, d, func(int) error {
				return post(hc, "https://"+addr+"/v1/keys/k/encrypt", "", encBody, nil)
			})
			hc.CloseIdleConnections()
			fmt.Println(r)
			results = append(results, r)
		}
		stop()
	}

	if want["encrypt"] || want["decrypt"] || want["batch"] {
		base, token, stop, err := singleNodeWithKey(ctx, ca, roots, auditDefault)
		if err != nil {
			stop()
			return err
		}
		hc := httpClient(roots, 1)
		var enc api.EncryptResponse
		if err := post(hc, base+"/v1/keys/k/encrypt", token, encBody, &enc); err != nil {
			stop()
			return err
		}
		hc.CloseIdleConnections()
		decBody, _ := json.Marshal(api.DecryptRequest{Ciphertext: enc.Ciphertext})
		for _, c := range levels {
			hc := httpClient(roots, c)
			if want["encrypt"] {
				r := drive("keyd encrypt", c, d, func(int) error { return post(hc, base+"/v1/keys/k/encrypt", token, encBody, nil) })
				fmt.Println(r)
				results = append(results, r)
			}
			if want["decrypt"] {
				r := drive("keyd decrypt", c, d, func(int) error { return post(hc, base+"/v1/keys/k/decrypt", token, decBody, nil) })
				fmt.Println(r)
				results = append(results, r)
			}
			hc.CloseIdleConnections()
		}
		if want["batch"] {
			items := make([]api.EncryptRequest, batchItems)
			for i := range items {
				items[i] = api.EncryptRequest{Plaintext: payload}
			}
			body, _ := json.Marshal(api.BatchEncryptRequest{Items: items})
			for _, c := range batchLevels {
				hc := httpClient(roots, c)
				// A body in one write and one TLS record, not 4 KiB pieces:
				// the driver shares the cores with the server.
				hc.Transport.(*http.Transport).WriteBufferSize = 64 << 10
				bufs := make([]bytes.Buffer, c)
				r := drive("keyd batch encrypt", c, d, func(w int) error {
					return postBatch(hc, base+"/v1/keys/k/batch/encrypt", token, body, batchItems, &bufs[w])
				})
				r.perOp = batchItems
				fmt.Println(r)
				results = append(results, r)
				hc.CloseIdleConnections()
			}
		}
		stop()
	}

	for _, m := range []struct {
		scenario, name string
		mode           auditMode
	}{{"unaudited", "keyd encrypt unaudited", auditOff}, {"auditstrict", "keyd encrypt fsync each", auditStrict}} {
		if !want[m.scenario] {
			continue
		}
		base, token, stop, err := singleNodeWithKey(ctx, ca, roots, m.mode)
		if err != nil {
			stop()
			return err
		}
		for _, c := range levels {
			hc := httpClient(roots, c)
			r := drive(m.name, c, d, func(int) error { return post(hc, base+"/v1/keys/k/encrypt", token, encBody, nil) })
			fmt.Println(r)
			results = append(results, r)
			hc.CloseIdleConnections()
		}
		stop()
	}

	if want["create"] {
		// The bare raft reference first, in the same run.
		raftLeader, stopRaft, err := rawRaftCluster()
		if err != nil {
			stopRaft()
			return err
		}
		for _, c := range levels {
			r := rawRaftApply(raftLeader, c, d, 300) // about the size of a create command
			fmt.Println(r)
			results = append(results, r)
		}
		stopRaft()
		nodes, token, stop, err := startInitialized(ctx, ca, 3, auditDefault)
		if err != nil {
			stop()
			return err
		}
		var leader string
		for deadline := time.Now().Add(10 * time.Second); leader == "" && time.Now().Before(deadline); {
			for _, n := range nodes {
				if n.IsLeader() {
					leader = n.APIAddr()
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		var seq atomic.Int64
		for _, c := range levels {
			hc := httpClient(roots, c)
			r := drive("keyd create (3 nodes)", c, d, func(int) error {
				name := "key-" + strconv.FormatInt(seq.Add(1), 10)
				return post(hc, "https://"+leader+"/v1/keys", token, []byte(`{"name":"`+name+`"}`), nil)
			})
			fmt.Println(r)
			results = append(results, r)
			hc.CloseIdleConnections()
		}
		stop()
	}
	if want["pii"] { // issue 14, pii.go
		rs, err := runPII(ctx, ca, roots, d, levels)
		if err != nil {
			return err
		}
		results = append(results, rs...)
	}
	printRatios(results)
	if want["pii"] {
		printPIIRatios(results)
	}
	if want["failover"] {
		if err := runFailover(ctx, ca, 10); err != nil {
			return err
		}
	}
	return nil
}

func printRatios(rs []result) {
	ref := map[int]result{}
	unaudited := map[int]result{}
	for _, r := range rs {
		switch r.name {
		case "reference encrypt":
			ref[r.callers] = r
		case "keyd encrypt unaudited":
			unaudited[r.callers] = r
		}
	}
	for _, r := range rs {
		if u, ok := unaudited[r.callers]; ok && (r.name == "keyd encrypt" || r.name == "keyd encrypt fsync each") && u.ops > 0 {
			fmt.Printf("ratio %s / unaudited callers=%-3d throughput=%.2f, p99=%.2fx\n", r.name, r.callers, r.rate()/u.rate(), float64(r.p99)/float64(u.p99))
		}
	}
	for _, r := range rs {
		if r.name != "keyd create (3 nodes)" {
			continue
		}
		for _, b := range rs {
			if b.name == "bare raft apply (3 nodes)" && b.callers == r.callers && b.ops > 0 && b.p99 > 0 {
				fmt.Printf("ratio keyd create callers=%-3d throughput=%.2f of bare raft, p99=%.2fx bare raft\n", r.callers, r.rate()/b.rate(), float64(r.p99)/float64(b.p99))
			}
		}
	}
	for _, r := range rs {
		if r.name != "keyd encrypt" && r.name != "keyd decrypt" {
			continue
		}
		base, ok := ref[r.callers]
		if !ok || base.ops == 0 || base.p99 == 0 {
			continue
		}
		fmt.Printf("ratio %-13s callers=%-3d throughput=%.2f of reference, p99=%.2fx reference\n", r.name, r.callers, r.rate()/base.rate(), float64(r.p99)/float64(base.p99))
	}
}

var _ = transport.ValidateNodeID
