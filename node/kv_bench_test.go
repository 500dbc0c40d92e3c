package node_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

// BenchmarkKVThroughput measures KV put/get and tokenize/detokenize
// through the Go client against an in-process 3-node cluster (TLS,
// Raft over loopback, bbolt). Run with -cpu to set the number of
// concurrent callers per GOMAXPROCS (b.RunParallel): writes gain from
// many in flight, since Raft batches them.
//
//	go test -run '^$' -bench BenchmarkKVThroughput -benchtime 2s ./node
func BenchmarkKVThroughput(b *testing.B) {
	c := testcluster.New(b, testcluster.Options{Nodes: 3})
	c.Init(b, 1, 1)
	c.Unseal(b, 1)
	cl := c.Client(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: "bench"}); err != nil {
		b.Fatal(err)
	}
	value := map[string]string{"user": "svc", "password": "0123456789abcdef0123456789abcdef"}
	if _, err := cl.KVPut(ctx, "bench/read", value, nil); err != nil {
		b.Fatal(err)
	}
	tok, err := cl.Tokenize(ctx, "bench", "4111111111111111", "")
	if err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	b.Run("put", func(b *testing.B) {
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := cl.KVPut(ctx, "bench/w"+strconv.FormatInt(n.Add(1)%64, 10), value, nil); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("get", func(b *testing.B) {
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := cl.KVGet(ctx, "bench/read", 0); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("tokenize", func(b *testing.B) {
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := cl.Tokenize(ctx, "bench", "4111111111111111", "1h"); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("tokenize-deterministic", func(b *testing.B) {
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				v := "card-" + strconv.FormatInt(n.Add(1)%256, 10)
				if _, err := cl.TokenizeRequest(ctx, "bench", api.TokenizeRequest{Value: v, Deterministic: true}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("detokenize", func(b *testing.B) {
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := cl.Detokenize(ctx, "bench", tok.Token); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
