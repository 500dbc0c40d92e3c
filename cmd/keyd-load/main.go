// Command keyd-load measures keyd over its HTTPS API against a reference
// server on the same machine, in the same run: plain net/http over TLS 1.3
// that decodes the same JSON request, does one AES-256-GCM seal and
// encodes the same response, and nothing else. Every loop is bounded by
// -duration. It starts its own in-process nodes on 127.0.0.1.
//
//	go run ./cmd/keyd-load -duration 10s -concurrency 16,64
//
// The batch scenario has its own caller counts (-batch-concurrency, 2,4 by
// default):
//
//	go run ./cmd/keyd-load -scenarios batch -batch-items 100 -batch-concurrency 16 -duration 8s
//
// The scale scenario (-scenarios scale) runs real `keyd server`
// processes instead; see scale.go:
//
//	go build -o bin/keyd ./cmd/keyd
//	go run ./cmd/keyd-load -scenarios scale -scale-keys 1000,100000 -duration 5s
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

func main() {
	duration := flag.Duration("duration", 10*time.Second, "how long each measurement runs")
	conc := flag.String("concurrency", "16,64", "comma-separated numbers of concurrent callers")
	scenarios := flag.String("scenarios", "reference,encrypt,unaudited,auditstrict,decrypt,batch,create,failover", "which measurements to run (also: pii)")
	batchItems := flag.Int("batch-items", 500, "items per batch request")
	batchConc := flag.String("batch-concurrency", "2,4", "comma-separated numbers of concurrent callers of the batch scenario")
	keydBin := flag.String("keyd", "bin/keyd", "keyd binary for the scale scenario (real server processes)")
	scaleKeys := flag.String("scale-keys", "1000", "comma-separated key counts for the scale scenario")
	scaleCallers := flag.Int("scale-callers", 32, "concurrent callers of the scale scenario")
	cacheSize := flag.Int("key-cache-size", 0, "key_cache_size of the scale scenario's nodes (0: default)")
	flag.BoolVar(&stateFsync, "state-fsync", false, "in-process nodes fsync their state database on every commit (state_fsync: true; A/B of the default)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run (driver and servers) to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "keyd-load:", err)
			os.Exit(1)
		}
		_ = pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))

	levels := parseLevels("concurrency", *conc)
	batchLevels := parseLevels("batch-concurrency", *batchConc)
	want := map[string]bool{}
	for _, s := range strings.Split(*scenarios, ",") {
		want[strings.TrimSpace(s)] = true
	}
	ctx := context.Background()
	if want["scale"] {
		o := scaleOptions{keyd: *keydBin, callers: *scaleCallers, duration: *duration, cache: *cacheSize}
		for _, s := range strings.Split(*scaleKeys, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 10 {
				fmt.Fprintf(os.Stderr, "keyd-load: bad -scale-keys %q\n", *scaleKeys)
				os.Exit(2)
			}
			o.keys = append(o.keys, n)
		}
		if err := runScale(ctx, o); err != nil {
			fmt.Fprintln(os.Stderr, "keyd-load:", err)
			os.Exit(1)
		}
		delete(want, "scale")
		if len(want) == 0 {
			return
		}
	}
	if err := run(ctx, *duration, levels, want, *batchItems, batchLevels); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "keyd-load:", err)
		os.Exit(1)
	}
}

// parseLevels parses a comma-separated list of caller counts or exits.
func parseLevels(flagName, v string) []int {
	var levels []int
	for _, s := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 1024 {
			fmt.Fprintf(os.Stderr, "keyd-load: bad -%s %q\n", flagName, v)
			os.Exit(2)
		}
		levels = append(levels, n)
	}
	return levels
}
