package audit

import (
	"context"
	"sync/atomic"
	"testing"
)

// countingSink counts fsyncs so the benchmark can report the batch size.
type countingSink struct {
	inner sink
	syncs atomic.Int64
}

func (s *countingSink) Write(p []byte) (int, error) { return s.inner.Write(p) }
func (s *countingSink) Sync() error                 { s.syncs.Add(1); return s.inner.Sync() }

// BenchmarkLogParallel measures audited throughput with many concurrent
// callers, as the HTTP layer produces them. records/fsync shows the group
// commit at work: it should be well above 1 under parallel load.
func BenchmarkLogParallel(b *testing.B) {
	cfg := testConfig(b)
	cs := &countingSink{}
	cfg.wrapSink = func(s sink) sink { cs.inner = s; return cs }
	l := mustOpen(b, cfg)
	r := rec(1)
	r.Hashed = map[string]string{"plaintext": l.HMAC([]byte("p")), "context": l.HMAC([]byte("c"))}
	b.SetParallelism(32) // many requests in flight, as under ~20k req/s
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if err := l.Log(ctx, r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	if n := cs.syncs.Load(); n > 0 {
		b.ReportMetric(float64(b.N)/float64(n), "records/fsync")
	}
}

func BenchmarkHMAC(b *testing.B) {
	l := mustOpen(b, testConfig(b))
	v := make([]byte, 256)
	b.ReportAllocs()
	for b.Loop() {
		l.HMAC(v)
	}
}
