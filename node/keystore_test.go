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

// mapSource is a keySource over a map, standing in for the FSM.
type mapSource struct {
	mu    sync.Mutex
	recs  map[string]*fsm.KeyRecord
	reads atomic.Int64
	// gate, when set, is called by Key after it read the record and
	// before it returns it (tests hold a fill there).
	gate func(name string)
}

func (m *mapSource) Key(name string) (*fsm.KeyRecord, error) {
	m.reads.Add(1)
	m.mu.Lock()
	r, ok := m.recs[name]
	m.mu.Unlock()
	if m.gate != nil {
		m.gate(name)
	}
	if !ok {
		return nil, fsm.ErrKeyNotFound
	}
	return r, nil
}

// put stores rec and delivers the FSM event for it, as an apply does.
func (m *mapSource) put(s *keystore, rec *fsm.KeyRecord) {
	m.mu.Lock()
	m.recs[rec.Name] = rec
	m.mu.Unlock()
	s.onEvent(fsm.Event{Keys: []*fsm.KeyRecord{rec}})
}

// del removes name and delivers the event.
func (m *mapSource) del(s *keystore, name string) {
	m.mu.Lock()
	delete(m.recs, name)
	m.mu.Unlock()
	s.onEvent(fsm.Event{Deleted: []string{name}})
}

// testRecords wraps fresh material of type typ under ring.
type testRecords struct {
	t    testing.TB
	ring *keyring.Keyring
	typ  keyring.KeyType
	mats map[string][]*keyring.KeyMaterial
}

// rec returns name's record with versions 1..versions, in state.
func (r *testRecords) rec(name string, versions int, state string) *fsm.KeyRecord {
	r.t.Helper()
	for len(r.mats[name]) < versions {
		m, err := keyring.GenerateMaterial(r.typ, rand.Reader)
		if err != nil {
			r.t.Fatal(err)
		}
		r.mats[name] = append(r.mats[name], m)
	}
	rec := &fsm.KeyRecord{Name: name, Type: string(r.typ), State: state}
	for v := 1; v <= versions; v++ {
		bv, blob, err := r.ring.WrapMaterial(name, uint32(v), r.mats[name][v-1])
		if err != nil {
			r.t.Fatal(err)
		}
		rec.Versions = append(rec.Versions, fsm.WrappedVersion{Version: uint32(v), BarrierVersion: bv, Wrapped: blob})
	}
	return rec
}

// reference returns version 1 of name as a key of its own.
func (r *testRecords) reference(name string) *keyring.Key {
	r.t.Helper()
	ref, err := keyring.NewKey(name, r.typ, []keyring.Version{{Number: 1, Material: r.mats[name][0]}}, 0)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(ref.Destroy)
	return ref
}

// newTestStore returns an unsealed keystore over an empty mapSource with
// a cache of size entries.
func newTestStore(t testing.TB, typ keyring.KeyType, size int) (*keystore, *mapSource, *testRecords) {
	t.Helper()
	ring, err := keyring.NewKeyring(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	src := &mapSource{recs: map[string]*fsm.KeyRecord{}}
	s := newKeystore(slog.New(slog.NewTextHandler(io.Discard, nil)), src, size)
	// The keystore destroys what it opens; the records helper wraps
	// with a keyring of the same keys.
	wrapRing, err := keyring.OpenKeyring(mustRoot(t), mustSeal(t, ring), []byte("test"))
	if err != nil {
		t.Fatal(err)
	}
	s.open(ring)
	t.Cleanup(wrapRing.Destroy)
	return s, src, &testRecords{t: t, ring: wrapRing, typ: typ, mats: map[string][]*keyring.KeyMaterial{}}
}

var testRootSeed = make([]byte, 32)

func mustRoot(t testing.TB) *keyring.RootKey {
	t.Helper()
	root, err := keyring.DeriveRootKey(testRootSeed)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func mustSeal(t testing.TB, ring *keyring.Keyring) []byte {
	t.Helper()
	blob, err := ring.Seal(mustRoot(t), []byte("test"))
	if err != nil {
		t.Fatal(err)
	}
	return blob
}

// testKeystore returns an unsealed keystore holding one key of type t
// named name and a function that replaces it with a new record built
// from versions 1..n of fixed material (as a rotation does).
func testKeystore(t testing.TB, name string, typ keyring.KeyType) (*keystore, *keyring.Key, func(versions int)) {
	t.Helper()
	s, src, recs := newTestStore(t, typ, 0)
	src.put(s, recs.rec(name, 1, fsm.StateEnabled))
	ref := recs.reference(name)
	recs.rec(name, 8, fsm.StateEnabled) // material for every later version
	replace := func(versions int) { src.put(s, recs.rec(name, versions, fsm.StateEnabled)) }
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
	// Every key unwrapped (on first use after each replacement): all
	// zeroed.
	if z, u := zeroed.Load(), int64(s.cache.loads.Load()); z != u || u == 0 {
		t.Fatalf("%d keys zeroed, %d unwrapped", z, u)
	}
	if st := s.cache.stats(); st.Size != 0 {
		t.Fatalf("sealed keystore caches %d keys", st.Size)
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
	lk, err := s.get("bench")
	if err != nil {
		b.Fatal(err)
	}
	defer lk.release()
	pt, ctx := make([]byte, 64), []byte("tenant=42")
	b.ReportAllocs()
	b.SetBytes(64)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := lk.key.Encrypt(nil, pt, ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
