package node

import (
	"strconv"
	"testing"
	"time"
)

// BenchmarkUsageRecord is the per-request cost of usage tracking: one
// record of a crypto call (caller, key, version) into the node's
// in-memory aggregate, from parallel goroutines over 1,000 keys.
func BenchmarkUsageRecord(b *testing.B) {
	u := newUsageTracker(time.Now)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "key-" + strconv.Itoa(i)
	}
	v := []uint32{1}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			u.record("token:0123456789abcdef", keys[i%len(keys)], v)
			i++
		}
	})
}

// BenchmarkUsageDrain is the cost of one flush's aggregation (drain into
// batches) of 10,000 keys each used by 4 callers.
func BenchmarkUsageDrain(b *testing.B) {
	v := []uint32{1}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		u := newUsageTracker(time.Now)
		for k := 0; k < 10000; k++ {
			for c := 0; c < 4; c++ {
				u.record("token:"+strconv.Itoa(c), "key-"+strconv.Itoa(k), v)
			}
		}
		b.StartTimer()
		if len(u.drain("n1")) == 0 {
			b.Fatal("nothing drained")
		}
	}
}
