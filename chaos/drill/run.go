package drill

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
)

// Scenario injects one fault (or a sequence) through e.Cluster and returns
// once the fault has healed. The workload runs while it does.
type Scenario func(ctx context.Context, e *Env) error

// Config configures one drill run. Zero fields take the documented
// defaults.
type Config struct {
	// Name names the drill in the report.
	Name string
	// Target names the target in the report ("in-process", "compose").
	Target string
	// Token is a token allowed to create, rotate, read and use keys and
	// read the cluster status (an admin token).
	Token string
	// TLS is the client TLS config (trusting the cluster CA).
	TLS *tls.Config
	// Shares are custodian shares, at least the threshold, for scenarios
	// that restart the whole cluster.
	Shares []string
	// Region is the client's preferred region (empty: none).
	Region string

	// Workers is the number of workload goroutines of each role, crypto
	// and metadata (default 2: four goroutines).
	Workers int
	// MaxOps bounds the workload's operations in total (default 4000).
	MaxOps int
	// MaxLoad bounds the workload's time (default 2 minutes); the load
	// stops earlier when the scenario returns.
	MaxLoad time.Duration
	// Pace is each worker's pause between operations (default 5ms).
	Pace time.Duration
	// CallTimeout bounds one client call, retries included (default 10s).
	CallTimeout time.Duration
	// SharedKeys is the number of keys every worker rotates, reads and
	// uses (default 3).
	SharedKeys int
	// SampleInterval is how often every node's status is sampled
	// (default 100ms).
	SampleInterval time.Duration
	// ProbeTimeout bounds one status probe of one node (default 2s).
	ProbeTimeout time.Duration
	// ApplyGrace is how long a node cut off may still apply entries that
	// were committed before the cut (default 1s).
	ApplyGrace time.Duration
	// SettleTimeout bounds the wait for a healthy cluster after the
	// scenario and between its steps (default 60s).
	SettleTimeout time.Duration
	// PorcupineTimeout bounds the linearizability check (default 60s);
	// past it the verdict is "unknown" and the check fails.
	PorcupineTimeout time.Duration
	// ClockHold is how long the clock-jump drill waits for the jumped
	// leader's scheduler (default 2s; more than the target's scheduler
	// interval).
	ClockHold time.Duration
	// ReportPath, when set, is where the JSON report is written.
	ReportPath string
	// Logf, when set, receives progress lines.
	Logf func(format string, args ...any)
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.Workers <= 0 {
		c.Workers = 2
	}
	if c.MaxOps <= 0 {
		c.MaxOps = 4000
	}
	if c.SharedKeys <= 0 {
		c.SharedKeys = 3
	}
	def(&c.MaxLoad, 2*time.Minute)
	def(&c.Pace, 5*time.Millisecond)
	def(&c.CallTimeout, 10*time.Second)
	def(&c.SampleInterval, 100*time.Millisecond)
	def(&c.ApplyGrace, time.Second)
	def(&c.ProbeTimeout, 2*time.Second)
	def(&c.SettleTimeout, 60*time.Second)
	def(&c.PorcupineTimeout, 60*time.Second)
	if c.Target == "" {
		c.Target = "unnamed"
	}
}

// runner holds one run's state.
type runner struct {
	cfg   Config
	cl    Cluster
	start time.Time
	// wl is the workload client; probe samples status, one node at a
	// time, so its failures never cool down the workload's nodes.
	wl, probe *client.Client
	runID     string
	shared    []string

	hist      *history
	samples   *leaderSamples
	mu        sync.Mutex
	events    []Event
	minority  *minorityWindow
	checks    []Check
	porcupine string
}

// Run runs scenario against cl under the workload, checks the history and
// returns the report (also written to cfg.ReportPath when set). The error
// is for a drill that could not run (no cluster, setup failed); a drill
// that ran and found a violation returns a report with Passed false.
func Run(ctx context.Context, cl Cluster, cfg Config, scenario Scenario) (*Report, error) {
	cfg.defaults()
	r := &runner{cfg: cfg, cl: cl, hist: &history{}, samples: newLeaderSamples(), runID: randHex(4)}
	addrs := r.addrs()
	if len(addrs) == 0 {
		return nil, errors.New("drill: the target has no nodes")
	}
	var err error
	r.wl, err = client.New(ctx, client.Config{Addrs: addrs, Token: cfg.Token, TLS: cfg.TLS, Region: cfg.Region, MaxRetries: 20, Timeout: 3 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("drill: workload client: %w", err)
	}
	defer r.wl.Close()
	r.probe, err = client.New(ctx, client.Config{Addrs: addrs, Token: cfg.Token, TLS: cfg.TLS, MaxRetries: -1, Timeout: cfg.ProbeTimeout, RefreshInterval: -1})
	if err != nil {
		return nil, fmt.Errorf("drill: probe client: %w", err)
	}
	defer r.probe.Close()

	r.start = time.Now()
	env := &Env{Cluster: cl, Config: cfg, run: r}
	if err := env.WaitHealthy(ctx); err != nil {
		return nil, fmt.Errorf("drill: cluster not healthy before the drill: %w", err)
	}
	for i := 0; i < cfg.SharedKeys; i++ {
		name := fmt.Sprintf("drill-%s-s%d", r.runID, i)
		if err := r.setupKey(ctx, name); err != nil {
			return nil, err
		}
		r.shared = append(r.shared, name)
	}

	// Status sampler and workload.
	sctx, scancel := context.WithCancel(ctx)
	var swg sync.WaitGroup
	swg.Add(1)
	go func() { defer swg.Done(); r.sample(sctx) }()
	lctx, lcancel := context.WithTimeout(ctx, cfg.MaxLoad)
	var wg sync.WaitGroup
	budget := newBudget(cfg.MaxOps)
	loadStart := time.Now()
	for w := 0; w < 2*cfg.Workers; w++ {
		wg.Add(1)
		go func(w int) { defer wg.Done(); r.worker(ctx, lctx, w, budget) }(w)
	}

	r.note("load started: %d crypto and %d metadata workers", cfg.Workers, cfg.Workers)
	serr := scenario(ctx, env)
	if serr != nil {
		r.note("scenario error: %v", serr)
	}
	// A short tail of load on the healed cluster.
	env.Sleep(lctx, 500*time.Millisecond)
	lcancel()
	wg.Wait()
	loadEnd := time.Now()
	r.note("load stopped")

	if err := env.WaitHealthy(ctx); err != nil {
		r.addCheck("healed", false, err.Error())
	} else {
		r.addCheck("healed", true, "every node unsealed, one leader")
	}
	scancel()
	swg.Wait()
	if serr != nil {
		r.addCheck("scenario", false, serr.Error())
	} else {
		r.addCheck("scenario", true, "fault injected and healed")
	}
	r.runChecks(ctx)
	rep := r.report(loadStart, loadEnd)
	if cfg.ReportPath != "" {
		if err := rep.WriteJSON(cfg.ReportPath); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func (r *runner) addrs() []string {
	var out []string
	for _, n := range r.cl.Nodes() {
		out = append(out, n.APIAddr)
	}
	return out
}

func (r *runner) logf(format string, args ...any) {
	if r.cfg.Logf != nil {
		r.cfg.Logf(format, args...)
	}
}

func (r *runner) since() time.Duration { return time.Since(r.start) }

func (r *runner) note(format string, args ...any) {
	ev := Event{AtMS: r.since().Milliseconds(), What: fmt.Sprintf(format, args...)}
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	r.logf("drill %s +%dms: %s", r.cfg.Name, ev.AtMS, ev.What)
}

func (r *runner) addCheck(name string, ok bool, detail string) {
	r.mu.Lock()
	r.checks = append(r.checks, Check{Name: name, Passed: ok, Detail: detail})
	r.mu.Unlock()
}

// setupKey creates a shared key before the load, recording the create in
// the history (so the model starts from it). An outcome-unknown create is
// retried under the same request id.
func (r *runner) setupKey(ctx context.Context, name string) error {
	rctx := client.WithRequestID(ctx, "drill-setup-"+name)
	deadline := time.Now().Add(r.cfg.SettleTimeout)
	for {
		op := r.hist.begin(-1, kindCreate, name, r.since())
		cctx, cancel := context.WithTimeout(rctx, r.cfg.CallTimeout)
		k, err := r.wl.CreateKey(cctx, api.CreateKeyRequest{Name: name})
		cancel()
		r.finishWrite(op, k, err)
		if err == nil || errors.Is(err, api.ErrExists) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("drill: create %s: %w", name, err)
		}
	}
}

func (r *runner) addSkipped(name, detail string) {
	r.mu.Lock()
	r.checks = append(r.checks, Check{Name: name, Passed: true, Skipped: true, Detail: detail})
	r.mu.Unlock()
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
