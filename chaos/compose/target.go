// Package compose runs keyd's drills (chaos/drill) against real
// containers: the 5-node, 3-region cluster of docker-compose.cluster.yml,
// each node with its own data volume and its own SoftHSM2 token reached
// through the real PKCS#11 module. Target implements drill.Cluster and the
// optional HSMFaulter and Scaler with docker commands:
//
//   - Kill: docker kill -s KILL; Restart: docker start (the node
//     warm-rejoins with its own token);
//   - Freeze/Thaw: docker kill -s STOP / -s CONT (SIGSTOP to keyd itself,
//     PID 1 of the container; forced from the host's PID namespace);
//   - Partition/Heal: iptables DROP rules between the groups' bridge IPs,
//     installed inside each container's network namespace with nsenter
//     from the host (the FROM-scratch image has no iptables). The host
//     still reaches every node on its published port, so a cut-off node's
//     status (and its refusal of writes) stays observable;
//   - SetHSMFault: a failing HSM is the node's token directory made
//     unreadable (mode 000 on the volume, from the host; the node runs as
//     uid 10001 without CAP_DAC_OVERRIDE); a slow HSM is the node's CPU
//     quota cut to SlowCPUs (SoftHSM2 runs inside the keyd process, so
//     starving the process is what makes the software token slow; the
//     whole node is slower, not only its HSM calls). keyd opens its HSM
//     at start, so a node that started on a failing token keeps node
//     shares off until it restarts after the heal (the drill restarts it);
//   - AddNode: a spare (n6, n7: compose profile "churn") with its own
//     token joins through gossip; RemoveNode: POST /v1/sys/remove, then
//     the container is stopped.
//
// Partitions and HSM faults need root on the docker host (nsenter,
// iptables, the volumes' directories); Up checks that.
//
// The drills run from TestComposeDrills behind KEYD_COMPOSE=1 (make
// chaos); see docs/DRILLS.md.
package compose

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/chaos/drill"
	"github.com/keyd/keyd/client"
)

// Options select the compose instance. Zero fields take the defaults of
// make chaos, which never collide with make cluster-up (project keydc,
// 172.28.0.0/24, ports 182x0, image keyd:local).
type Options struct {
	// Root is the repository root (default: found upwards from the
	// working directory by go.mod).
	Root string
	// Project is the compose project name (default keydchaos).
	Project string
	// NetPrefix is the bridge's /24 prefix (default 172.28.9).
	NetPrefix string
	// PortPrefix makes node i's host port PortPrefix+"i0" (default 195).
	PortPrefix string
	// Image is the node image (default keyd:chaos).
	Image string
	// Gen is the generated-config directory (default
	// Root/deploy/generated-<Project>).
	Gen string
	// SlowCPUs is the CPU quota of a node with a slow HSM (default 0.1).
	SlowCPUs float64
	// Logf receives progress lines (default: none).
	Logf func(format string, args ...any)
}

func (o *Options) defaults() error {
	if o.Root == "" {
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "docker-compose.cluster.yml")); err == nil {
				o.Root = d
				break
			}
			if filepath.Dir(d) == d {
				return errors.New("compose: docker-compose.cluster.yml not found above the working directory")
			}
		}
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.Project, "keydchaos")
	def(&o.NetPrefix, "172.28.9")
	def(&o.PortPrefix, "195")
	def(&o.Image, "keyd:chaos")
	def(&o.Gen, filepath.Join(o.Root, "deploy", "generated-"+o.Project))
	if o.SlowCPUs <= 0 {
		o.SlowCPUs = 0.1
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return nil
}

// initialRegions are the regions of n1-n5 in docker-compose.cluster.yml.
var initialRegions = map[string]string{"n1": "r1", "n2": "r1", "n3": "r2", "n4": "r2", "n5": "r3"}

// spares are the churn profile's nodes, in the order AddNode uses them.
var spares = []string{"n6", "n7"}

// Target is a running compose cluster.
type Target struct {
	opt    Options
	token  string
	shares []string
	tls    *tls.Config

	mu      sync.Mutex
	nodes   map[string]drill.NodeRef // current members, by id
	cids    map[string]string        // container ids
	groups  [][]string               // the active partition, nil when healed
	failing map[string]os.FileMode   // HSM made unreadable: the token dir's old mode
	slow    map[string]bool          // CPU quota cut
	frozen  map[string]bool
	used    map[string]bool // spares started
}

var (
	_ drill.Cluster    = (*Target)(nil)
	_ drill.HSMFaulter = (*Target)(nil)
	_ drill.Scaler     = (*Target)(nil)
)

// Up builds the image when missing (scripts/cluster-image.sh) and starts
// the cluster with scripts/cluster-up.sh: five nodes, their SoftHSM2
// tokens, init (5 custodians, threshold 3) and unseal. The caller must
// call Down, also when Up fails halfway.
func Up(ctx context.Context, opt Options) (*Target, error) {
	if err := opt.defaults(); err != nil {
		return nil, err
	}
	if os.Getuid() != 0 {
		return nil, errors.New("compose: the drills need root on the docker host (nsenter, iptables and the token volumes)")
	}
	for _, tool := range []string{"docker", "docker-compose", "nsenter", "iptables", "jq", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("compose: %s not found: %w", tool, err)
		}
	}
	t := &Target{opt: opt, nodes: map[string]drill.NodeRef{}, cids: map[string]string{},
		failing: map[string]os.FileMode{}, slow: map[string]bool{}, frozen: map[string]bool{}, used: map[string]bool{}}
	if _, err := t.docker(ctx, "image", "inspect", opt.Image); err != nil {
		opt.Logf("compose: building %s", opt.Image)
		if _, err := t.run(ctx, 5*time.Minute, filepath.Join(opt.Root, "scripts", "cluster-image.sh")); err != nil {
			return nil, fmt.Errorf("compose: cluster-image.sh: %w", err)
		}
	}
	opt.Logf("compose: cluster-up (project %s)", opt.Project)
	if _, err := t.run(ctx, 4*time.Minute, filepath.Join(opt.Root, "scripts", "cluster-up.sh")); err != nil {
		return t, fmt.Errorf("compose: cluster-up.sh: %w", err)
	}
	if err := t.loadSecrets(); err != nil {
		return t, err
	}
	for id, region := range initialRegions {
		t.nodes[id] = drill.NodeRef{ID: id, Region: region, APIAddr: t.hostAddr(id)}
	}
	if err := t.loadContainers(ctx); err != nil {
		return t, err
	}
	return t, nil
}

// Down removes everything the cluster made: containers, network, data and
// token volumes, generated secrets (scripts/cluster-down.sh). Faults are
// undone first so no container is left stopped and no directory
// unreadable.
func (t *Target) Down(ctx context.Context) error {
	t.mu.Lock()
	for id, mode := range t.failing {
		if dir, err := t.tokenDir(ctx, id); err == nil {
			_ = os.Chmod(dir, mode)
		}
	}
	t.failing = map[string]os.FileMode{}
	t.mu.Unlock()
	_, err := t.run(ctx, 2*time.Minute, filepath.Join(t.opt.Root, "scripts", "cluster-down.sh"))
	return err
}

// Token is the cluster's admin token.
func (t *Target) Token() string { return t.token }

// Shares are the custodian shares (dev/drill cluster only).
func (t *Target) Shares() []string { return t.shares }

// TLS is a client config trusting the cluster CA.
func (t *Target) TLS() *tls.Config { return t.tls.Clone() }

// Nodes returns the current members, by id.
func (t *Target) Nodes() []drill.NodeRef {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]drill.NodeRef, 0, len(t.nodes))
	for _, n := range t.nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Kill sends SIGKILL to the node's container.
func (t *Target) Kill(ctx context.Context, id string) error {
	cid, err := t.container(ctx, id)
	if err != nil {
		return err
	}
	t.mu.Lock()
	delete(t.frozen, id)
	t.mu.Unlock()
	_, err = t.docker(ctx, "kill", "-s", "KILL", cid)
	return err
}

// Restart starts the node's stopped container on its volumes. An active
// partition is applied to it again (a restart does not heal a cut).
func (t *Target) Restart(ctx context.Context, id string) error {
	cid, err := t.container(ctx, id)
	if err != nil {
		return err
	}
	if _, err := t.docker(ctx, "start", cid); err != nil {
		return err
	}
	t.mu.Lock()
	groups := t.groups
	t.mu.Unlock()
	if groups != nil {
		return t.cut(ctx, id, groups)
	}
	return nil
}

// Freeze sends SIGSTOP to keyd in the node's container.
func (t *Target) Freeze(ctx context.Context, id string) error {
	cid, err := t.container(ctx, id)
	if err != nil {
		return err
	}
	if _, err := t.docker(ctx, "kill", "-s", "STOP", cid); err != nil {
		return err
	}
	t.mu.Lock()
	t.frozen[id] = true
	t.mu.Unlock()
	return nil
}

// Thaw sends SIGCONT.
func (t *Target) Thaw(ctx context.Context, id string) error {
	cid, err := t.container(ctx, id)
	if err != nil {
		return err
	}
	if _, err := t.docker(ctx, "kill", "-s", "CONT", cid); err != nil {
		return err
	}
	t.mu.Lock()
	delete(t.frozen, id)
	t.mu.Unlock()
	return nil
}

// Partition cuts the cluster into groups: inside every listed node's
// network namespace, traffic to and from the bridge IPs of the nodes of
// other groups is dropped (Raft, gossip and node-to-node API alike).
func (t *Target) Partition(ctx context.Context, groups [][]string) error {
	if err := t.Heal(ctx); err != nil {
		return err
	}
	t.mu.Lock()
	t.groups = groups
	t.mu.Unlock()
	for _, g := range groups {
		for _, id := range g {
			if err := t.cut(ctx, id, groups); err != nil {
				return err
			}
		}
	}
	return nil
}

// cut installs node id's DROP rules for groups.
func (t *Target) cut(ctx context.Context, id string, groups [][]string) error {
	rules := dropRules(id, groups, t.bridgeIP)
	if len(rules) == 0 {
		return nil
	}
	return t.iptables(ctx, id, rules)
}

// dropRules returns node id's iptables rules under groups: DROP traffic to
// and from every node of another group. A node in no group is not cut.
func dropRules(id string, groups [][]string, ipOf func(string) string) []string {
	var mine []string
	for _, g := range groups {
		if contains(g, id) {
			mine = g
		}
	}
	if mine == nil {
		return nil
	}
	var rules []string
	for _, g := range groups {
		for _, x := range g {
			if x == id || contains(mine, x) {
				continue
			}
			ip := ipOf(x)
			rules = append(rules, "-A INPUT -s "+ip+" -j DROP", "-A OUTPUT -d "+ip+" -j DROP")
		}
	}
	return rules
}

// Heal removes every partition rule (each namespace's INPUT and OUTPUT
// chains hold only the drill's rules: docker's own rules live in the
// host's namespace).
func (t *Target) Heal(ctx context.Context) error {
	t.mu.Lock()
	t.groups = nil
	t.mu.Unlock()
	var errs []error
	for _, n := range t.Nodes() {
		if !t.running(ctx, n.ID) {
			continue
		}
		if err := t.iptables(ctx, n.ID, nil); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// iptables flushes node id's INPUT and OUTPUT chains and appends rules,
// in one iptables-restore inside the container's network namespace.
func (t *Target) iptables(ctx context.Context, id string, rules []string) error {
	pid, err := t.pid(ctx, id)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, "nsenter", "-t", strconv.Itoa(pid), "-n", "iptables-restore", "--noflush")
	cmd.Stdin = strings.NewReader(restoreScript(rules))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("compose: iptables in %s's namespace: %v: %s", id, err, bytes.TrimSpace(out))
	}
	return nil
}

// restoreScript is the iptables-restore --noflush input that empties the
// INPUT and OUTPUT chains and appends rules. --noflush keeps the rest of
// the table; the explicit -F lines are what empty the two chains (chain
// declarations alone do not flush built-in chains under --noflush).
func restoreScript(rules []string) string {
	var b strings.Builder
	b.WriteString("*filter\n-F INPUT\n-F OUTPUT\n")
	for _, r := range rules {
		b.WriteString(r + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// SetHSMFault degrades node id's SoftHSM2 token: fail makes its directory
// unreadable; a delay (without fail) cuts the node's CPU quota to
// SlowCPUs; zero and !fail heal both. keyd opens its HSM only at start,
// so a node that started on a failing token needs a restart after the
// heal (the drill does it; Repair too).
func (t *Target) SetHSMFault(ctx context.Context, id string, delay time.Duration, fail bool) error {
	cid, err := t.container(ctx, id)
	if err != nil {
		return err
	}
	dir, err := t.tokenDir(ctx, id)
	if err != nil {
		return err
	}
	t.mu.Lock()
	oldMode, wasFailing := t.failing[id]
	wasSlow := t.slow[id]
	t.mu.Unlock()

	if fail && !wasFailing {
		fi, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("compose: token directory of %s: %w", id, err)
		}
		if err := os.Chmod(dir, 0); err != nil {
			return fmt.Errorf("compose: make %s's token unreadable: %w", id, err)
		}
		t.mu.Lock()
		t.failing[id] = fi.Mode().Perm()
		t.mu.Unlock()
	}
	if !fail && wasFailing {
		if err := os.Chmod(dir, oldMode); err != nil {
			return fmt.Errorf("compose: restore %s's token: %w", id, err)
		}
		t.mu.Lock()
		delete(t.failing, id)
		t.mu.Unlock()
	}
	switch {
	case delay > 0 && !fail && !wasSlow:
		if _, err := t.docker(ctx, "update", "--cpus", strconv.FormatFloat(t.opt.SlowCPUs, 'f', -1, 64), cid); err != nil {
			return err
		}
		t.mu.Lock()
		t.slow[id] = true
		t.mu.Unlock()
	case (delay == 0 || fail) && wasSlow:
		// docker update cannot unset a CPU quota (--cpus 0 is ignored):
		// a quota of every host CPU is no limit.
		if _, err := t.docker(ctx, "update", "--cpus", strconv.Itoa(runtime.NumCPU()), cid); err != nil {
			return err
		}
		t.mu.Lock()
		delete(t.slow, id)
		t.mu.Unlock()
	}
	return nil
}

// AddNode starts the next spare (n6, then n7) in region; it joins through
// gossip (scripts/cluster-add-node.sh).
func (t *Target) AddNode(ctx context.Context, region string) (drill.NodeRef, error) {
	t.mu.Lock()
	var id string
	for _, s := range spares {
		if !t.used[s] {
			id = s
			break
		}
	}
	if id != "" {
		t.used[id] = true
	}
	t.mu.Unlock()
	if id == "" {
		return drill.NodeRef{}, errors.New("compose: no spare node left (n6 and n7 are in use)")
	}
	if _, err := t.run(ctx, 3*time.Minute, filepath.Join(t.opt.Root, "scripts", "cluster-add-node.sh"), id, region); err != nil {
		return drill.NodeRef{}, fmt.Errorf("compose: add %s: %w", id, err)
	}
	n := drill.NodeRef{ID: id, Region: region, APIAddr: t.hostAddr(id)}
	t.mu.Lock()
	t.nodes[id] = n
	t.mu.Unlock()
	return n, t.loadContainers(ctx)
}

// RemoveNode removes id from the cluster (POST /v1/sys/remove through the
// client, which routes it to the leader) and stops its container.
func (t *Target) RemoveNode(ctx context.Context, id string) error {
	var addrs []string
	for _, n := range t.Nodes() {
		if n.ID != id {
			addrs = append(addrs, n.APIAddr)
		}
	}
	cl, err := client.New(ctx, client.Config{Addrs: addrs, Token: t.token, TLS: t.TLS(), Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer cl.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := cl.Remove(rctx, id); err != nil {
		return fmt.Errorf("compose: remove %s: %w", id, err)
	}
	t.mu.Lock()
	delete(t.nodes, id)
	t.mu.Unlock()
	cid, err := t.container(ctx, id)
	if err != nil {
		return err
	}
	_, err = t.docker(ctx, "stop", "-t", "10", cid)
	return err
}

// --- helpers -----------------------------------------------------------------

func (t *Target) hostAddr(id string) string {
	return "127.0.0.1:" + t.opt.PortPrefix + strings.TrimPrefix(id, "n") + "0"
}

func (t *Target) bridgeIP(id string) string {
	return t.opt.NetPrefix + ".1" + strings.TrimPrefix(id, "n")
}

func (t *Target) env() []string {
	return append(os.Environ(),
		"KEYD_PROJECT="+t.opt.Project, "KEYD_NET_PREFIX="+t.opt.NetPrefix,
		"KEYD_PORT_PREFIX="+t.opt.PortPrefix, "KEYD_IMAGE="+t.opt.Image, "IMAGE="+t.opt.Image,
		"KEYD_GEN="+t.opt.Gen)
}

// run runs a command bounded by limit; the error carries its output's tail.
func (t *Target) run(ctx context.Context, limit time.Duration, name string, args ...string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(cctx, name, args...)
	cmd.Dir = t.opt.Root
	cmd.Env = t.env()
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		tail := out
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return string(out), fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, tail)
	}
	return string(out), nil
}

func (t *Target) docker(ctx context.Context, args ...string) (string, error) {
	out, err := t.run(ctx, time.Minute, "docker", args...)
	return strings.TrimSpace(out), err
}

// container returns node id's container id. The ids come from one
// `docker ps` over the project's labels (fast, unlike docker-compose,
// whose start-up takes seconds on a busy machine and would delay a fault
// behind the moment the drill recorded for it); Up and AddNode load them.
func (t *Target) container(ctx context.Context, id string) (string, error) {
	t.mu.Lock()
	cid := t.cids[id]
	t.mu.Unlock()
	if cid != "" {
		return cid, nil
	}
	if err := t.loadContainers(ctx); err != nil {
		return "", err
	}
	t.mu.Lock()
	cid = t.cids[id]
	t.mu.Unlock()
	if cid == "" {
		return "", fmt.Errorf("compose: no container for %s in project %s", id, t.opt.Project)
	}
	return cid, nil
}

// loadContainers maps service names to container ids for the project.
func (t *Target) loadContainers(ctx context.Context) error {
	out, err := t.docker(ctx, "ps", "-a", "--filter", "label=com.docker.compose.project="+t.opt.Project,
		"--format", `{{.ID}} {{.Label "com.docker.compose.service"}}`)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, line := range strings.Split(out, "\n") {
		if cid, svc, ok := strings.Cut(strings.TrimSpace(line), " "); ok && svc != "" {
			t.cids[svc] = cid
		}
	}
	return nil
}

func (t *Target) pid(ctx context.Context, id string) (int, error) {
	cid, err := t.container(ctx, id)
	if err != nil {
		return 0, err
	}
	out, err := t.docker(ctx, "inspect", "-f", "{{.State.Pid}}", cid)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(out)
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("compose: %s is not running (pid %q)", id, out)
	}
	return pid, nil
}

func (t *Target) running(ctx context.Context, id string) bool {
	_, err := t.pid(ctx, id)
	return err == nil
}

// tokenDir is the host directory of node id's token volume.
func (t *Target) tokenDir(ctx context.Context, id string) (string, error) {
	out, err := t.docker(ctx, "volume", "inspect", "-f", "{{.Mountpoint}}", t.opt.Project+"_"+id+"-hsm")
	if err != nil {
		return "", err
	}
	return out, nil
}

// status reads node id's status with the admin token, in one attempt.
func (t *Target) status(ctx context.Context, id string) (*api.SealStatus, error) {
	cl, err := client.New(ctx, client.Config{Addrs: []string{t.hostAddr(id)}, Token: t.token, TLS: t.TLS(),
		Timeout: 2 * time.Second, MaxRetries: -1, RefreshInterval: -1})
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	return cl.StatusOf(ctx, t.hostAddr(id))
}

// loadSecrets reads the admin token and custodian shares cluster-up.sh
// saved (0600) and the CA.
func (t *Target) loadSecrets() error {
	f, err := os.Open(filepath.Join(t.opt.Gen, "secrets.env"))
	if err != nil {
		return fmt.Errorf("compose: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		switch {
		case !ok:
		case k == "KEYD_TOKEN":
			t.token = v
		case strings.HasPrefix(k, "KEYD_SHARE_"):
			t.shares = append(t.shares, v)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if t.token == "" || len(t.shares) < 3 {
		return errors.New("compose: secrets.env has no admin token or fewer than 3 shares")
	}
	pem, err := os.ReadFile(filepath.Join(t.opt.Gen, "ca", "ca.pem"))
	if err != nil {
		return fmt.Errorf("compose: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return errors.New("compose: ca.pem holds no certificate")
	}
	t.tls = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	return nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// Repair undoes whatever a failed drill may have left behind, so the next
// drill starts from a healthy cluster: it heals partitions and HSM faults,
// thaws frozen nodes, starts stopped members and unseals, with the
// custodian shares, any member still sealed after a bounded wait for warm
// rejoin.
func (t *Target) Repair(ctx context.Context) error {
	var errs []error
	if err := t.Heal(ctx); err != nil {
		errs = append(errs, err)
	}
	t.mu.Lock()
	var failing, slow, frozen []string
	for id := range t.failing {
		failing = append(failing, id)
	}
	for id := range t.slow {
		slow = append(slow, id)
	}
	for id := range t.frozen {
		frozen = append(frozen, id)
	}
	t.mu.Unlock()
	for _, id := range append(failing, slow...) {
		if err := t.SetHSMFault(ctx, id, 0, false); err != nil {
			errs = append(errs, err)
		}
	}
	// A node that started on the failing token reopens it only at start.
	for _, id := range failing {
		if cid, err := t.container(ctx, id); err == nil && t.running(ctx, id) {
			if _, err := t.docker(ctx, "restart", "-t", "10", cid); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, id := range frozen {
		if err := t.Thaw(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range t.Nodes() {
		if !t.running(ctx, n.ID) {
			if err := t.Restart(ctx, n.ID); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// Warm rejoin first; custodians for whoever is still sealed.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var sealed []string
		for _, n := range t.Nodes() {
			if st, err := t.status(ctx, n.ID); err != nil || st.Sealed {
				sealed = append(sealed, n.ID)
			}
		}
		if len(sealed) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, id := range sealed {
				if err := t.unseal(ctx, id); err != nil {
					errs = append(errs, err)
				}
			}
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return errors.Join(errs...)
}

// unseal submits custodian shares to node id until it unseals.
func (t *Target) unseal(ctx context.Context, id string) error {
	cl, err := client.New(ctx, client.Config{Addrs: []string{t.hostAddr(id)}, TLS: t.TLS(),
		Timeout: 5 * time.Second, MaxRetries: -1, RefreshInterval: -1})
	if err != nil {
		return err
	}
	defer cl.Close()
	for _, sh := range t.shares {
		st, err := cl.UnsealAt(ctx, t.hostAddr(id), sh)
		if err != nil {
			return fmt.Errorf("compose: unseal %s: %w", id, err)
		}
		if !st.Sealed {
			return nil
		}
	}
	return fmt.Errorf("compose: %s still sealed after %d shares", id, len(t.shares))
}
