package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
)

// benchOps are the scenarios of keyd bench.
var benchOps = []string{"encrypt", "decrypt", "datakey", "batch", "create", "mixed", "many-keys"}

// benchOptions are keyd bench's flags.
type benchOptions struct {
	op          string
	key         string
	concurrency int
	duration    time.Duration
	count       int
	size        int
	batch       int
	keys        int
	asJSON      bool
	progress    time.Duration
}

// benchResult is one scenario's outcome; -json prints it.
type benchResult struct {
	Op          string  `json:"op"`
	Key         string  `json:"key,omitempty"`
	Concurrency int     `json:"concurrency"`
	PayloadSize int     `json:"payload_bytes"`
	BatchItems  int     `json:"batch_items,omitempty"`
	Ops         int     `json:"ops"`
	Errors      int     `json:"errors"`
	ElapsedS    float64 `json:"elapsed_s"`
	OpsPerSec   float64 `json:"ops_per_s"`
	P50ms       float64 `json:"p50_ms"`
	P90ms       float64 `json:"p90_ms"`
	P99ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	// FirstError is the first failure's code and message (never payload).
	FirstError string `json:"first_error,omitempty"`
}

const benchHelp = `Usage: keyd bench [-op OP] [-key NAME] [-c N] [-duration D | -n COUNT] [-size BYTES] [-json]

Load a cluster and report ops/s, latency percentiles and errors. OP is one of
encrypt (default), decrypt, datakey, batch (-batch items per request),
create (creates keys named bench-*), mixed (45% encrypt, 45% decrypt, 10%
datakey) or many-keys (encrypt with a random one of -keys scratch keys).
Without -key a scratch key is created and scheduled for deletion at the end.
Each batch request counts as one op.
`

func (c *cli) bench(args []string) error {
	fs := c.flags("bench", "[-op OP] [-key NAME] [-c N] [-duration D | -n COUNT] [-size BYTES] [-json]")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), benchHelp)
		fs.PrintDefaults()
	}
	var cf clientFlags
	// No -timeout: a run is bounded by -duration or -n, not by the
	// command deadline of other client commands.
	fs.StringVar(&cf.addr, "addr", "", "comma-separated node API addresses (overrides $"+envAddr+")")
	o := benchOptions{progress: time.Second}
	fs.StringVar(&o.op, "op", "encrypt", "scenario: encrypt, decrypt, datakey, batch, create, mixed, many-keys")
	fs.StringVar(&o.key, "key", "", "existing key to use (default: a scratch key)")
	fs.IntVar(&o.concurrency, "c", 16, "concurrent callers")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to run (ignored with -n)")
	fs.IntVar(&o.count, "n", 0, "run exactly this many ops instead of -duration")
	fs.IntVar(&o.size, "size", 256, "payload bytes per item")
	fs.IntVar(&o.batch, "batch", 32, "items per batch request (-op batch)")
	fs.IntVar(&o.keys, "keys", 100, "scratch keys for -op many-keys")
	fs.BoolVar(&o.asJSON, "json", false, "print the result as JSON")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if err := o.validate(); err != nil {
		return err
	}
	cl, err := c.newClient(&cf)
	if err != nil {
		return err
	}
	defer cl.Close()
	res, err := c.runBench(cl, o)
	if err != nil {
		return err
	}
	if o.asJSON {
		if err := printJSON(c.stdout, res); err != nil {
			return err
		}
		return benchFailures(res)
	}
	return printBench(c, res)
}

// benchFailures makes a run with failed ops exit 1.
func benchFailures(r *benchResult) error {
	if r.Errors > 0 {
		return errors.New("bench: " + strconv.Itoa(r.Errors) + " of " + strconv.Itoa(r.Ops) + " ops failed; first: " + r.FirstError)
	}
	return nil
}

func (o *benchOptions) validate() error {
	switch {
	case !slices.Contains(benchOps, o.op):
		return usagef("bench: -op %q: want one of %v", o.op, benchOps)
	case o.concurrency < 1 || o.concurrency > 4096:
		return usagef("bench: -c must be between 1 and 4096")
	case o.count < 0:
		return usagef("bench: -n must not be negative")
	case o.count == 0 && o.duration <= 0:
		return usagef("bench: -duration must be positive")
	case o.size < 0 || o.size > api.MaxPlaintextBytes:
		return usagef("bench: -size must be between 0 and %d", api.MaxPlaintextBytes)
	case o.op == "batch" && (o.batch < 1 || o.batch > api.MaxBatchItems):
		return usagef("bench: -batch must be between 1 and %d", api.MaxBatchItems)
	case o.op == "many-keys" && (o.keys < 1 || o.keys > 100000):
		return usagef("bench: -keys must be between 1 and 100000")
	}
	return nil
}

// benchName returns a fresh key name with prefix.
func benchName(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// randIntn is a uniform index below n from crypto/rand (no math/rand in
// this code base).
func randIntn(n int) int {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return int(binary.LittleEndian.Uint64(b[:]) % uint64(n))
}

// runBench prepares the scenario (scratch keys, a ciphertext to decrypt),
// runs it and cleans up.
func (c *cli) runBench(cl *client.Client, o benchOptions) (*benchResult, error) {
	ctx := c.ctx
	payload := make([]byte, o.size)
	_, _ = rand.Read(payload)

	keys := []string{o.key}
	var scratch []string
	createKey := func(name string) error {
		_, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: name})
		return err
	}
	if o.op == "many-keys" {
		keys = keys[:0]
		for range o.keys {
			keys = append(keys, benchName("bench-many-"))
		}
		if err := parallel(ctx, o.concurrency, keys, createKey); err != nil {
			return nil, fmt.Errorf("bench: create the scratch keys: %w", err)
		}
		scratch = keys
	} else if o.key == "" && o.op != "create" {
		keys[0] = benchName("bench-")
		if err := createKey(keys[0]); err != nil {
			return nil, fmt.Errorf("bench: create a scratch key (or name one with -key): %w", err)
		}
		scratch = keys
	}
	defer func() {
		if len(scratch) == 0 {
			return
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		err := parallel(dctx, o.concurrency, scratch, func(name string) error {
			_, err := cl.ScheduleDeletion(dctx, name, 0)
			return err
		})
		if err != nil {
			fmt.Fprintf(c.stderr, "note: scratch keys (bench-*) left in place: %s\n", errorLine(err))
		}
	}()

	var ct string
	if o.op == "decrypt" || o.op == "mixed" {
		r, err := cl.Encrypt(ctx, keys[0], payload, nil)
		if err != nil {
			return nil, fmt.Errorf("bench: encrypt the ciphertext to decrypt: %w", err)
		}
		ct = r.Ciphertext
	}
	items := make([]api.EncryptRequest, o.batch)
	for i := range items {
		items[i] = api.EncryptRequest{Plaintext: payload}
	}

	var op func(ctx context.Context) error
	encrypt := func(ctx context.Context, key string) error {
		_, err := cl.Encrypt(ctx, key, payload, nil)
		return err
	}
	decrypt := func(ctx context.Context) error {
		_, err := cl.Decrypt(ctx, keys[0], ct, nil)
		return err
	}
	datakey := func(ctx context.Context) error {
		_, err := cl.GenerateDataKey(ctx, keys[0], api.DataKeyRequest{Bytes: 32})
		return err
	}
	switch o.op {
	case "encrypt":
		op = func(ctx context.Context) error { return encrypt(ctx, keys[0]) }
	case "decrypt":
		op = decrypt
	case "datakey":
		op = datakey
	case "batch":
		op = func(ctx context.Context) error {
			res, err := cl.BatchEncrypt(ctx, keys[0], items)
			if err != nil {
				return err
			}
			for _, r := range res {
				if r.Error != nil {
					return fmt.Errorf("batch item: %s: %s", r.Error.Code, r.Error.Message)
				}
			}
			return nil
		}
	case "create":
		op = func(ctx context.Context) error { return createKey(benchName("bench-create-")) }
	case "mixed":
		op = func(ctx context.Context) error {
			switch r := randIntn(20); {
			case r < 9:
				return encrypt(ctx, keys[0])
			case r < 18:
				return decrypt(ctx)
			default:
				return datakey(ctx)
			}
		}
	case "many-keys":
		op = func(ctx context.Context) error { return encrypt(ctx, keys[randIntn(len(keys))]) }
	}
	res := c.drive(ctx, o, op)
	res.Op, res.Concurrency, res.PayloadSize = o.op, o.concurrency, o.size
	if o.op == "batch" {
		res.BatchItems = o.batch
	}
	if o.op != "many-keys" && o.op != "create" {
		res.Key = keys[0]
	}
	return res, nil
}

// parallel runs fn on every name with at most n at once and returns the
// first error.
func parallel(ctx context.Context, n int, names []string, fn func(string) error) error {
	var (
		wg    sync.WaitGroup
		next  atomic.Int64
		first atomic.Pointer[error]
	)
	for range min(n, len(names)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(names) || ctx.Err() != nil || first.Load() != nil {
					return
				}
				if err := fn(names[i]); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if p := first.Load(); p != nil {
		return *p
	}
	return ctx.Err()
}

// drive runs op from o.concurrency goroutines until o.count ops were
// started (with -n) or o.duration passed, printing a progress line on
// stderr every o.progress, and summarises the latencies. Ops in flight
// when the time is up finish and count: cancelling them would turn a
// clean end into aborted requests on the server.
func (c *cli) drive(ctx context.Context, o benchOptions, op func(context.Context) error) *benchResult {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	end := time.Now().Add(o.duration)
	more := func() bool { return ctx.Err() == nil && (o.count > 0 || time.Now().Before(end)) }
	var (
		started  atomic.Int64
		done     atomic.Int64
		failed   atomic.Int64
		firstErr atomic.Pointer[string]
		wg       sync.WaitGroup
		lats     = make([][]time.Duration, o.concurrency)
	)
	start := time.Now()
	for w := range o.concurrency {
		wg.Go(func() {
			for more() {
				if o.count > 0 && started.Add(1) > int64(o.count) {
					return
				}
				t0 := time.Now()
				err := op(ctx)
				if err != nil && ctx.Err() != nil {
					return // interrupted (^C), not a failure of the cluster
				}
				lats[w] = append(lats[w], time.Since(t0))
				done.Add(1)
				if err != nil {
					failed.Add(1)
					msg := errorLine(err)
					firstErr.CompareAndSwap(nil, &msg)
				}
			}
		})
	}
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if o.progress <= 0 {
			return
		}
		t := time.NewTicker(o.progress)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				el := time.Since(start)
				n := done.Load()
				fmt.Fprintf(c.stderr, "\r%s %6.1fs  %8d ops  %9.1f ops/s  %d errors ", o.op, el.Seconds(), n, float64(n)/el.Seconds(), failed.Load())
			}
		}
	}()
	wg.Wait()
	elapsed := time.Since(start)
	cancel() // stops the progress line
	<-progressDone
	if o.progress > 0 && elapsed >= o.progress {
		fmt.Fprintln(c.stderr)
	}

	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	slices.Sort(all)
	res := &benchResult{Ops: len(all), Errors: int(failed.Load()), ElapsedS: elapsed.Seconds()}
	if elapsed > 0 {
		res.OpsPerSec = float64(len(all)) / elapsed.Seconds()
	}
	if len(all) > 0 {
		res.P50ms, res.P90ms, res.P99ms = ms(quantile(all, 0.50)), ms(quantile(all, 0.90)), ms(quantile(all, 0.99))
		res.MaxMs = ms(all[len(all)-1])
	}
	if p := firstErr.Load(); p != nil {
		res.FirstError = *p
	}
	return res
}

// quantile returns the q-quantile of sorted (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())) / 1000 }

func printBench(c *cli, r *benchResult) error {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "OP\tCALLERS\tOPS\tOPS/S\tP50 MS\tP90 MS\tP99 MS\tMAX MS\tERRORS\t")
	fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t\n", r.Op, r.Concurrency, r.Ops, r.OpsPerSec,
		r.P50ms, r.P90ms, r.P99ms, r.MaxMs, r.Errors)
	if err := tw.Flush(); err != nil {
		return err
	}
	return benchFailures(r)
}
