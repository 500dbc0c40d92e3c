package node

import (
	"crypto/rand"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/keyring"
)

// testKeystore returns an unsealed keystore holding one key of type t
// named name and a function that replaces it with a new record built
// from versions 1..n of fixed material (as a rotation does).
func testKeystore(t testing.TB, name string, typ keyring.KeyType) (*keystore, *keyring.Key, func(versions int)) {
	t.Helper()
	ring, err := keyring.NewKeyring(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := &keystore{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s.barrier.Store(ring)
	var mats []*keyring.KeyMaterial
	for i := 0; i < 8; i++ {
		m, err := keyring.GenerateMaterial(typ, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		mats = append(mats, m)
	}
	rec := func(versions int) *fsm.KeyRecord {
		r := &fsm.KeyRecord{Name: name, Type: string(typ), State: fsm.StateEnabled}
		for v := 1; v <= versions; v++ {
			bv, blob, err := ring.WrapMaterial(name, uint32(v), mats[v-1])
			if err != nil {
				t.Fatal(err)
			}
			r.Versions = append(r.Versions, fsm.WrappedVersion{Version: uint32(v), BarrierVersion: bv, Wrapped: blob})
		}
		return r
	}
	ref, err := keyring.NewKey(name, typ, []keyring.Version{{Number: 1, Material: mats[0]}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ref.Destroy)
	s.mu.Lock()
	s.store(ring, rec(1))
	s.mu.Unlock()
	replace := func(versions int) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if r := s.barrier.Load(); r != nil {
			s.store(r, rec(versions))
		}
	}
	return s, ref, replace
}

// TestKeystoreRetireUnderLoad runs HMAC requests against a key while it
// is replaced again and again and finally sealed away: every HMAC a
// request computes matches the reference (never zeros), and every
// replaced key is zeroed once released. Run with -race.
func TestKeystoreRetireUnderLoad(t *testing.T) {
	s, ref, replace := testKeystore(t, "mac", keyring.HMACSHA256)
	msg := []byte("message")
	// Version 1 stays the tag every request checks: the HMAC of a key
	// is over its latest version, so requests verify v1 tags instead.
	want, err := ref.HMAC(msg)
	if err != nil {
		t.Fatal(err)
	}
	var zeroed atomic.Int64
	keyZeroHook.Store(func() *func(*keyring.Key) {
		f := func(*keyring.Key) { zeroed.Add(1) }
		return &f
	}())
	t.Cleanup(func() { keyZeroHook.Store(nil) })

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ok, bad atomic.Int64
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				lk, err := s.get("mac")
				if err != nil {
					continue // sealed at the end
				}
				if lk.key.VerifyHMAC(msg, want) != nil {
					bad.Add(1)
				} else {
					ok.Add(1)
				}
				lk.release()
			}
		}()
	}
	// Replace only while requests are running: on a busy machine the
	// request goroutines may not have been scheduled yet.
	waitRequests := func(min int64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for ok.Load()+bad.Load() < min {
			if time.Now().After(deadline) {
				t.Fatalf("only %d requests ran, want %d", ok.Load()+bad.Load(), min)
			}
			runtime.Gosched()
		}
	}
	const replacements = 200
	for i := 0; i < replacements; i++ {
		if i%50 == 0 {
			waitRequests(ok.Load() + bad.Load() + 1)
		}
		replace(1 + i%3)
	}
	s.seal()
	close(stop)
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d of %d requests computed a wrong HMAC", bad.Load(), bad.Load()+ok.Load())
	}
	if ok.Load() == 0 {
		t.Fatal("no request ran")
	}
	// The first key plus every replacement: all zeroed.
	if z := zeroed.Load(); z != replacements+1 {
		t.Fatalf("%d keys zeroed, want %d", z, replacements+1)
	}
}

// BenchmarkAcquireEncrypt measures the crypto hot path with the
// reference count: acquire, encrypt 64 bytes, release, from all CPUs.
func BenchmarkAcquireEncrypt(b *testing.B) {
	s, _, _ := testKeystore(b, "bench", keyring.AES256GCM)
	pt, ctx := make([]byte, 64), []byte("tenant=42")
	b.ReportAllocs()
	b.SetBytes(64)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			lk, err := s.get("bench")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := lk.key.Encrypt(nil, pt, ctx); err != nil {
				b.Fatal(err)
			}
			lk.release()
		}
	})
}

// BenchmarkEncryptNoRefcount is the same path without the reference
// count, for comparison.
func BenchmarkEncryptNoRefcount(b *testing.B) {
	s, _, _ := testKeystore(b, "bench", keyring.AES256GCM)
	pt, ctx := make([]byte, 64), []byte("tenant=42")
	b.ReportAllocs()
	b.SetBytes(64)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			v, _ := s.keys.Load("bench")
			if _, err := v.(*liveKey).key.Encrypt(nil, pt, ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
