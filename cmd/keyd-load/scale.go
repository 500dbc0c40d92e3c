package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
	"github.com/keyd/keyd/transport/devcerts"
)

// The scale scenario measures keyd's cost in the number of keys with real
// `keyd server` processes (soft HSMs, LAN timing, audit on): it loads N
// keys with concurrent creates, then reports RSS per node (VmRSS of each
// process), the time from the last custodian share to every node serving
// after a whole-cluster restart, the warm rejoin time of a restarted
// follower, random-key against one-key encrypt with the cache hit rate,
// and the create rate at the start and at the end of the load.

// scaleOptions are the scale scenario's settings.
type scaleOptions struct {
	keyd     string        // keyd binary
	keys     []int         // key counts, one cluster each
	callers  int           // concurrent creates and encrypts
	duration time.Duration // each encrypt measurement
	cache    int           // key_cache_size (0: default)
}

// scaleNode is one keyd server process.
type scaleNode struct {
	id, dir, api, raft string
	cmd                *exec.Cmd
	started            time.Time
}

type scaleCluster struct {
	o     scaleOptions
	dir   string
	ca    *devcerts.CA
	roots *tls.Config
	nodes []*scaleNode
	hc    *http.Client
	token string
	share string
	// waitErrs are the distinct answers waitServing saw, for diagnosis.
	waitErrs []string
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func newScaleCluster(o scaleOptions) (*scaleCluster, error) {
	dir, err := os.MkdirTemp("", "keyd-scale-")
	if err != nil {
		return nil, err
	}
	ca, err := devcerts.NewCA("keyd-scale CA")
	if err != nil {
		return nil, err
	}
	sc := &scaleCluster{o: o, dir: dir, ca: ca, roots: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13}}
	sc.hc = httpClient(sc.roots, o.callers)
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca.CertPEM(), 0o600); err != nil {
		return nil, err
	}
	for i := 1; i <= 3; i++ {
		n := &scaleNode{id: "n" + strconv.Itoa(i), dir: filepath.Join(dir, "n"+strconv.Itoa(i))}
		if n.api, err = freeAddr(); err != nil {
			return nil, err
		}
		if n.raft, err = freeAddr(); err != nil {
			return nil, err
		}
		sc.nodes = append(sc.nodes, n)
	}
	var peers strings.Builder
	for _, n := range sc.nodes {
		fmt.Fprintf(&peers, "  - {id: %s, raft_addr: %s, api_addr: %s}\n", n.id, n.raft, n.api)
	}
	for _, n := range sc.nodes {
		if err := os.MkdirAll(n.dir, 0o700); err != nil {
			return nil, err
		}
		cert, key, err := ca.IssueNodePEM(n.id, "127.0.0.1")
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(n.dir, "cert.pem"), cert, 0o600); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(n.dir, "key.pem"), key, 0o600); err != nil {
			return nil, err
		}
		cacheLine := ""
		if o.cache > 0 {
			cacheLine = fmt.Sprintf("key_cache_size: %d\n", o.cache)
		}
		cfg := fmt.Sprintf(`node_id: %s
data_dir: %s
api_addr: %s
raft_addr: %s
tls:
  cert_file: %s
  key_file: %s
  ca_file: %s
hsm:
  type: soft
  path: %s
peers:
%sbootstrap: true
log_level: info
log_format: text
%s`, n.id, filepath.Join(n.dir, "data"), n.api, n.raft, filepath.Join(n.dir, "cert.pem"), filepath.Join(n.dir, "key.pem"),
			filepath.Join(dir, "ca.pem"), filepath.Join(n.dir, "hsm"), peers.String(), cacheLine)
		if err := os.WriteFile(filepath.Join(n.dir, "keyd.yaml"), []byte(cfg), 0o600); err != nil {
			return nil, err
		}
	}
	return sc, nil
}

func (sc *scaleCluster) start(n *scaleNode) error {
	log, err := os.OpenFile(filepath.Join(n.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	n.cmd = exec.Command(sc.o.keyd, "server", "-config", filepath.Join(n.dir, "keyd.yaml"))
	n.cmd.Stdout, n.cmd.Stderr = log, log
	n.started = time.Now()
	if err := n.cmd.Start(); err != nil {
		log.Close()
		return err
	}
	go func() { _ = n.cmd.Wait(); log.Close() }()
	return nil
}

func (sc *scaleCluster) kill(n *scaleNode) {
	if n.cmd != nil && n.cmd.Process != nil {
		_ = n.cmd.Process.Signal(syscall.SIGKILL)
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			if n.cmd.ProcessState != nil {
				break
			}
			if err := n.cmd.Process.Signal(syscall.Signal(0)); err != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		n.cmd = nil
	}
}

func (sc *scaleCluster) close() {
	for _, n := range sc.nodes {
		sc.kill(n)
	}
	sc.hc.CloseIdleConnections()
	_ = os.RemoveAll(sc.dir)
}

func (sc *scaleCluster) status(n *scaleNode) (*api.SealStatus, error) {
	resp, err := sc.hc.Get("https://" + n.api + "/v1/sys/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st api.SealStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, err
	}
	return &st, nil
}

// waitServing waits until n answers status unsealed and encrypts with key.
func (sc *scaleCluster) waitServing(n *scaleNode, key string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	body := []byte(`{"plaintext":"AAAA"}`)
	sc.waitErrs = nil
	note := func(err error) {
		if len(sc.waitErrs) == 0 || sc.waitErrs[len(sc.waitErrs)-1] != err.Error() {
			sc.waitErrs = append(sc.waitErrs, time.Now().Format("15:04:05.000")+" "+err.Error())
		}
	}
	for time.Now().Before(deadline) {
		st, err := sc.status(n)
		switch {
		case err != nil:
			note(err)
		case !st.Initialized || st.Sealed:
			note(fmt.Errorf("sealed: %s", st.SealReason))
		default:
			if key == "" {
				return nil
			}
			err := post(sc.hc, "https://"+n.api+"/v1/keys/"+key+"/encrypt", sc.token, body, nil)
			if err == nil {
				return nil
			}
			note(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return fmt.Errorf("%s not serving after %s", n.id, limit)
}

func (sc *scaleCluster) addrs() []string {
	var out []string
	for _, n := range sc.nodes {
		out = append(out, n.api)
	}
	return out
}

func (sc *scaleCluster) initialize(ctx context.Context) error {
	cl, err := client.New(ctx, client.Config{Addrs: sc.addrs(), TLS: sc.roots, MaxRetries: 100})
	if err != nil {
		return err
	}
	defer cl.Close()
	var res *api.InitResponse
	for {
		// The nodes may not have elected a leader yet.
		if res, err = cl.InitWith(ctx, api.InitRequest{Custodians: 1, Threshold: 1, PlaintextShares: true}); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
	sc.token, sc.share = res.AdminToken, res.Shares[0]
	return sc.unseal(ctx)
}

// unseal submits the custodian share to the first node and waits for
// every node to serve; it returns the time from the share's submission.
func (sc *scaleCluster) unseal(ctx context.Context) error {
	cl, err := client.New(ctx, client.Config{Addrs: sc.addrs(), TLS: sc.roots, MaxRetries: 100})
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		// A node that has not applied the init yet answers not_initialized.
		if _, err = cl.UnsealAt(ctx, sc.nodes[0].api, sc.share); err == nil || !errors.Is(err, api.ErrNotInitialized) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// memKB is a process's resident memory from /proc/<pid>/status: all of
// it (VmRSS), the anonymous part (Go heap, stacks) and the file-backed
// part (mostly the bbolt files' mmap, reclaimable page cache).
type memKB struct{ rss, anon, file int64 }

func readMem(pid int) (memKB, error) {
	var m memKB
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return m, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		name, v, ok := strings.Cut(s.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch name {
		case "VmRSS":
			m.rss = kb
		case "RssAnon":
			m.anon = kb
		case "RssFile":
			m.file = kb
		}
	}
	return m, s.Err()
}

func (sc *scaleCluster) mem() []memKB {
	var out []memKB
	for _, n := range sc.nodes {
		var m memKB
		if n.cmd != nil {
			m, _ = readMem(n.cmd.Process.Pid)
		}
		out = append(out, m)
	}
	return out
}

func (sc *scaleCluster) leader() *scaleNode {
	for _, n := range sc.nodes {
		var st struct {
			Leader bool `json:"leader"`
		}
		resp, err := sc.hc.Get("https://" + n.api + "/v1/sys/health")
		if err != nil {
			continue
		}
		_ = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if st.Leader {
			return n
		}
	}
	return nil
}

// load creates keys scale-0..scale-(n-1) with callers concurrent creates
// spread over the nodes (followers forward to the leader) and returns the
// create rate over the first and the last tenth of the keys.
func (sc *scaleCluster) load(n int) (first, last, overall float64, err error) {
	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	tenth := max(n/10, 1)
	var firstDone, lastStart atomic.Int64
	start := time.Now()
	var done, retried atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < sc.o.callers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			node := sc.nodes[w%len(sc.nodes)]
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || firstErr.Load() != nil {
					return
				}
				if i == int64(n-tenth) {
					lastStart.Store(int64(time.Since(start)))
				}
				body := []byte(`{"name":"scale-` + strconv.FormatInt(i, 10) + `"}`)
				// An election during the load (a busy shared machine) is
				// ridden through for up to 30 s and counted, not fatal.
				var e error
				for try := 0; try < 300; try++ {
					if e = post(sc.hc, "https://"+node.api+"/v1/keys", sc.token, body, nil); e == nil || strings.Contains(e.Error(), "key_exists") {
						e = nil
						break
					}
					retried.Add(1)
					time.Sleep(100 * time.Millisecond)
				}
				if e != nil {
					firstErr.CompareAndSwap(nil, &e)
					return
				}
				if done.Add(1) == int64(tenth) {
					firstDone.Store(int64(time.Since(start)))
				}
			}
		}(w)
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return 0, 0, 0, *p
	}
	total := time.Since(start)
	if r := retried.Load(); r > 0 {
		fmt.Printf("scale keys=%d load: %d creates retried (no leader for a moment)\n", n, r)
	}
	first = float64(tenth) / time.Duration(firstDone.Load()).Seconds()
	last = float64(tenth) / (total - time.Duration(lastStart.Load())).Seconds()
	return first, last, float64(n) / total.Seconds(), nil
}

// cacheCounters sums hits and misses over the nodes' metrics.
func (sc *scaleCluster) cacheCounters() (hits, misses float64) {
	for _, n := range sc.nodes {
		req, _ := http.NewRequest(http.MethodGet, "https://"+n.api+"/v1/sys/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+sc.token)
		resp, err := sc.hc.Do(req)
		if err != nil {
			continue
		}
		s := bufio.NewScanner(resp.Body)
		for s.Scan() {
			f := strings.Fields(s.Text())
			if len(f) != 2 {
				continue
			}
			v, _ := strconv.ParseFloat(f[1], 64)
			switch f[0] {
			case "keyd_key_cache_hits_total":
				hits += v
			case "keyd_key_cache_misses_total":
				misses += v
			}
		}
		resp.Body.Close()
	}
	return hits, misses
}

// encrypt drives encrypt on every node for d; pick names the key.
func (sc *scaleCluster) encrypt(name string, d time.Duration, pick func(r *rand.Rand) string) (result, float64) {
	h0, m0 := sc.cacheCounters()
	body := []byte(`{"plaintext":"WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpa"}`)
	// Fresh seeds each call: a repeated sequence would find the keys of
	// the previous round in the cache.
	rngs := make([]*rand.Rand, sc.o.callers)
	for i := range rngs {
		rngs[i] = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	r := drive(name, sc.o.callers, d, func(w int) error {
		n := sc.nodes[w%len(sc.nodes)]
		return post(sc.hc, "https://"+n.api+"/v1/keys/"+pick(rngs[w])+"/encrypt", sc.token, body, nil)
	})
	h1, m1 := sc.cacheCounters()
	hit := 0.0
	if t := (h1 - h0) + (m1 - m0); t > 0 {
		hit = (h1 - h0) / t
	}
	return r, hit
}

func mb(kb int64) string { return fmt.Sprintf("%.0f", float64(kb)/1024) }

// runScale runs the scenario for each key count and prints one block per
// count.
func runScale(ctx context.Context, o scaleOptions) error {
	for _, n := range o.keys {
		if err := scaleOnce(ctx, o, n); err != nil {
			return fmt.Errorf("scale %d keys: %w", n, err)
		}
	}
	return nil
}

func scaleOnce(ctx context.Context, o scaleOptions, nkeys int) error {
	sc, err := newScaleCluster(o)
	if err != nil {
		return err
	}
	defer sc.close()
	for _, n := range sc.nodes {
		if err := sc.start(n); err != nil {
			return err
		}
	}
	ictx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := sc.initialize(ictx); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	for _, n := range sc.nodes {
		if err := sc.waitServing(n, "", time.Minute); err != nil {
			return err
		}
	}
	rss0 := sc.mem()
	fmt.Printf("scale keys=%d callers=%d: loading\n", nkeys, o.callers)
	first, last, overall, err := sc.load(nkeys)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	fmt.Printf("scale keys=%d create/s first 10%%=%.0f last 10%%=%.0f overall=%.0f (last/first %.2f)\n", nkeys, first, last, overall, last/first)
	// Let the followers catch up and the allocator settle before reading
	// memory.
	time.Sleep(3 * time.Second)
	rss1 := sc.mem()
	for i, n := range sc.nodes {
		perKey := func(a, b int64) float64 { return float64(b-a) * 1024 / float64(nkeys) }
		fmt.Printf("scale keys=%d %s RSS before=%s MB after=%s MB (%.0f B/key; anon %s MB, %.0f B/key; file-backed %s MB, %.0f B/key)\n", nkeys, n.id,
			mb(rss0[i].rss), mb(rss1[i].rss), perKey(rss0[i].rss, rss1[i].rss),
			mb(rss1[i].anon), perKey(rss0[i].anon, rss1[i].anon), mb(rss1[i].file), perKey(rss0[i].file, rss1[i].file))
	}
	var du int64
	_ = filepath.Walk(filepath.Join(sc.nodes[0].dir, "data"), func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			du += fi.Size()
		}
		return nil
	})
	fmt.Printf("scale keys=%d n1 data dir %.1f MB (%.0f B/key)\n", nkeys, float64(du)/(1<<20), float64(du)/float64(nkeys))
	fmt.Println(sc.createRate(nkeys, o.duration/2))
	if err := sc.listing(nkeys, 100); err != nil {
		return err
	}
	if err := sc.snapshotFigures(nkeys, sc.nodes[0]); err != nil {
		fmt.Printf("scale keys=%d Raft snapshot: %v\n", nkeys, err)
	}

	// One key against a random key, interleaved in rounds so that the
	// shared machine's load drifts over both alike.
	var one, rnd result
	var hits, total float64
	rounds := 4
	for r := 0; r < rounds; r++ {
		o1, _ := sc.encrypt("encrypt one key", o.duration/time.Duration(rounds), func(*rand.Rand) string { return "scale-0" })
		o2, hit := sc.encrypt("encrypt random key", o.duration/time.Duration(rounds), func(r *rand.Rand) string { return "scale-" + strconv.Itoa(r.IntN(nkeys)) })
		one = addResult(one, o1)
		rnd = addResult(rnd, o2)
		hits += hit * float64(o2.ops)
		total += float64(o2.ops)
	}
	fmt.Println(one)
	fmt.Printf("%s cache-hit=%.1f%%\n", rnd, 100*hits/max(total, 1))
	fmt.Printf("scale keys=%d random/one throughput=%.2f\n", nkeys, rnd.rate()/one.rate())

	// Whole-cluster restart: the last (here: only) custodian share to
	// every node serving a key.
	for _, n := range sc.nodes {
		sc.kill(n)
	}
	for _, n := range sc.nodes {
		if err := sc.start(n); err != nil {
			return err
		}
	}
	for _, n := range sc.nodes {
		deadline := time.Now().Add(time.Minute)
		for {
			if st, err := sc.status(n); err == nil && st.Initialized {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s did not come back", n.id)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t0 := time.Now()
	uctx, ucancel := context.WithTimeout(ctx, time.Minute)
	defer ucancel()
	if err := sc.unseal(uctx); err != nil {
		return fmt.Errorf("unseal: %w", err)
	}
	for _, n := range sc.nodes {
		if err := sc.waitServing(n, "scale-1", time.Minute); err != nil {
			return err
		}
	}
	fmt.Printf("scale keys=%d last share -> every node serving: %s\n", nkeys, time.Since(t0).Round(time.Millisecond))

	// Warm rejoin: a follower restarts and unseals with its HSM share
	// and its peers' shares. It presupposes that the node holds a share of
	// the current dealing: after the whole-cluster restart the leader may
	// deal anew, and a node killed before that dealing reached it must
	// wait for the next one (a tick of the node-share loop). Wait until
	// every node reports the same dealing.
	settle := time.Now()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		var fps []string
		for _, n := range sc.nodes {
			// The dealing is topology: only an authenticated status shows it.
			var st api.SealStatus
			if err := getJSON(sc.hc, "https://"+n.api+"/v1/sys/status", sc.token, &st); err == nil && st.NodeShare != "" {
				fps = append(fps, st.NodeShare)
			}
		}
		if len(fps) == len(sc.nodes) && slices.Equal(fps[1:], fps[:len(fps)-1]) {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("node shares did not settle on one dealing within a minute")
		}
	}
	fmt.Printf("scale keys=%d node shares settled %s after every node served\n", nkeys, time.Since(settle).Round(time.Millisecond))
	var follower *scaleNode
	for deadline := time.Now().Add(30 * time.Second); follower == nil && time.Now().Before(deadline); {
		if l := sc.leader(); l != nil {
			for _, n := range sc.nodes {
				if n != l {
					follower = n
					break
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if follower == nil {
		return errors.New("no leader")
	}
	sc.kill(follower)
	if err := sc.start(follower); err != nil {
		return err
	}
	if err := sc.waitServing(follower, "scale-2", 2*time.Minute); err != nil {
		return err
	}
	rejoin := time.Since(follower.started)
	fmt.Printf("scale keys=%d warm rejoin (process start -> serving): %s\n", nkeys, rejoin.Round(time.Millisecond))
	// Every reason the node gave for not rejoining yet (its log since the
	// restart): a peer that is down reads differently from one that
	// refuses.
	if b, err := os.ReadFile(filepath.Join(follower.dir, "server.log")); err == nil {
		lines := strings.Split(string(b), "\n")
		restart := 0
		for i, l := range lines {
			if strings.Contains(l, "msg=started") {
				restart = i
			}
		}
		for _, l := range lines[restart:] {
			if strings.Contains(l, "cannot rejoin") || strings.Contains(l, "msg=unsealed") {
				fmt.Printf("scale keys=%d rejoin log: %s\n", nkeys, l)
			}
		}
	}
	if rejoin > time.Second {
		fmt.Printf("scale keys=%d slow rejoin, answers seen: %s\n", nkeys, strings.Join(sc.waitErrs, " | "))
		// Show what the node did meanwhile (its log since the restart).
		if b, err := os.ReadFile(filepath.Join(follower.dir, "server.log")); err == nil {
			lines := strings.Split(string(b), "\n")
			fmt.Printf("scale keys=%d slow rejoin, %s's log tail:\n%s\n", nkeys, follower.id, strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	}
	if err := sc.failover(nkeys, 5); err != nil {
		return err
	}
	rss2 := sc.mem()
	for i, n := range sc.nodes {
		fmt.Printf("scale keys=%d %s RSS after restarts=%s MB (anon %s MB, file-backed %s MB)\n", nkeys, n.id, mb(rss2[i].rss), mb(rss2[i].anon), mb(rss2[i].file))
	}
	return nil
}

// failover SIGKILLs the leader kills times and reports the time from the
// kill to the first successful write (a key create) on the survivors; the
// killed node is restarted and rejoins before the next kill.
func (sc *scaleCluster) failover(nkeys, kills int) error {
	var times []time.Duration
	for k := 0; k < kills; k++ {
		var leader *scaleNode
		for deadline := time.Now().Add(30 * time.Second); leader == nil; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				return errors.New("failover: no leader")
			}
			leader = sc.leader()
		}
		t0 := time.Now()
		sc.kill(leader)
		for i := 0; ; i++ {
			if time.Since(t0) > time.Minute {
				return errors.New("failover: no write within a minute")
			}
			n := sc.nodes[i%len(sc.nodes)]
			if n == leader {
				continue
			}
			body := []byte(`{"name":"failover-` + strconv.Itoa(k) + `-` + strconv.Itoa(i) + `"}`)
			if post(sc.hc, "https://"+n.api+"/v1/keys", sc.token, body, nil) == nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		times = append(times, time.Since(t0))
		if err := sc.start(leader); err != nil {
			return err
		}
		if err := sc.waitServing(leader, "scale-3", 2*time.Minute); err != nil {
			return err
		}
	}
	sorted := slices.Clone(times)
	slices.Sort(sorted)
	var parts []string
	for _, d := range times {
		parts = append(parts, d.Round(time.Millisecond).String())
	}
	fmt.Printf("scale keys=%d failover (leader SIGKILL -> first write) p50=%s range %s-%s: %s\n", nkeys,
		sorted[len(sorted)/2].Round(time.Millisecond), sorted[0].Round(time.Millisecond), sorted[len(sorted)-1].Round(time.Millisecond), strings.Join(parts, " "))
	return nil
}

// addResult sums two measurements of the same load; the percentiles are
// the worse of the two.
func addResult(a, b result) result {
	if a.callers == 0 {
		return b
	}
	a.ops += b.ops
	a.failed += b.failed
	a.elapsed += b.elapsed
	a.p50 = max(a.p50, b.p50)
	a.p99 = max(a.p99, b.p99)
	return a
}
