package node

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/keyring"
	"github.com/keyd/keyd/node/errs"
)

// zeroCounter counts the keys the keystore zeroes, by identity.
func zeroCounter(t *testing.T) func(*keyring.Key) bool {
	var mu sync.Mutex
	zeroed := map[*keyring.Key]bool{}
	f := func(k *keyring.Key) {
		mu.Lock()
		zeroed[k] = true
		mu.Unlock()
	}
	keyZeroHook.Store(&f)
	t.Cleanup(func() { keyZeroHook.Store(nil) })
	return func(k *keyring.Key) bool {
		mu.Lock()
		defer mu.Unlock()
		return zeroed[k]
	}
}

// TestKeyCacheBoundedLRU: the cache never holds more than its bound,
// evicts the least recently used key, and zeroes an evicted key once its
// last holder releases it (not before).
func TestKeyCacheBoundedLRU(t *testing.T) {
	isZeroed := zeroCounter(t)
	s, src, recs := newTestStore(t, keyring.AES256GCM, 3)
	for i := 0; i < 10; i++ {
		src.put(s, recs.rec(fmt.Sprintf("k%d", i), 1, fsm.StateEnabled))
	}
	held, err := s.get("k0")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"k1", "k2"} {
		lk, err := s.get(n)
		if err != nil {
			t.Fatal(err)
		}
		lk.release()
	}
	// k0 is the least recently used; touch it so k1 is.
	lk, err := s.get("k0")
	if err != nil {
		t.Fatal(err)
	}
	lk.release()
	lk3, err := s.get("k3")
	if err != nil {
		t.Fatal(err)
	}
	lk3.release()
	if s.cache.contains("k1") || !s.cache.contains("k0") || !s.cache.contains("k2") || !s.cache.contains("k3") {
		t.Fatal("eviction did not drop the least recently used key")
	}
	for i := 4; i < 10; i++ {
		lk, err := s.get(fmt.Sprintf("k%d", i))
		if err != nil {
			t.Fatal(err)
		}
		lk.release()
		if st := s.cache.stats(); st.Size > 3 {
			t.Fatalf("cache holds %d keys, bound 3", st.Size)
		}
	}
	if s.cache.contains("k0") {
		t.Fatal("k0 still cached")
	}
	// k0 was evicted while held: still usable, not zeroed until released.
	if isZeroed(held.key) {
		t.Fatal("evicted key zeroed under its holder")
	}
	if _, err := held.key.Encrypt(nil, []byte("x"), nil); err != nil {
		t.Fatalf("held evicted key: %v", err)
	}
	held.release()
	if !isZeroed(held.key) {
		t.Fatal("evicted key not zeroed after its last release")
	}
	st := s.cache.stats()
	if st.Evictions != 7 || st.Hits != 1 || st.Misses != 10 {
		t.Fatalf("stats %+v, want 7 evictions, 1 hit, 10 misses", st)
	}
}

// TestKeyCacheSingleFlight: many concurrent first uses of one key read
// and unwrap it once and all get the same key.
func TestKeyCacheSingleFlight(t *testing.T) {
	s, src, recs := newTestStore(t, keyring.AES256GCM, 0)
	src.put(s, recs.rec("hot", 1, fsm.StateEnabled))
	release := make(chan struct{})
	src.gate = func(string) { <-release }
	const callers = 16
	var started sync.WaitGroup
	got := make([]*liveKey, callers)
	errc := make(chan error, callers)
	var wg sync.WaitGroup
	for i := 0; i < callers; i++ {
		wg.Add(1)
		started.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			lk, err := s.get("hot")
			if err != nil {
				errc <- err
				return
			}
			got[i] = lk
		}()
	}
	started.Wait()
	// Let the waiters pile up behind the one fill (no timing assertion:
	// late arrivals hit the cache, which is also one unwrap).
	deadline := time.Now().Add(10 * time.Second)
	for src.reads.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if r := src.reads.Load(); r != 1 {
		t.Fatalf("%d record reads for one key", r)
	}
	if u := s.cache.loads.Load(); u != 1 {
		t.Fatalf("%d unwraps for one key", u)
	}
	for i := range got {
		if got[i] != got[0] {
			t.Fatal("callers got different keys")
		}
		got[i].release()
	}
}

// TestKeyCacheStaleFill: a fill that read the record before a change
// (here: the key is disabled while its first use unwraps it) never puts
// the old key in the cache, and its caller sees the new state.
func TestKeyCacheStaleFill(t *testing.T) {
	var zeroed atomic.Int64
	zf := func(*keyring.Key) { zeroed.Add(1) }
	keyZeroHook.Store(&zf)
	t.Cleanup(func() { keyZeroHook.Store(nil) })
	s, src, recs := newTestStore(t, keyring.AES256GCM, 0)
	src.put(s, recs.rec("k", 1, fsm.StateEnabled))
	inRead := make(chan struct{})
	proceed := make(chan struct{})
	var calls atomic.Int64
	src.gate = func(string) {
		if calls.Add(1) == 1 {
			close(inRead) // the enabled record is in hand
			<-proceed
		}
	}
	type res struct {
		lk  *liveKey
		err error
	}
	out := make(chan res, 1)
	go func() {
		lk, err := s.get("k")
		out <- res{lk, err}
	}()
	<-inRead
	src.put(s, recs.rec("k", 1, fsm.StateDisabled)) // the FSM event
	close(proceed)
	r := <-out
	if r.err == nil {
		r.lk.release()
		t.Fatal("a key disabled during its first use was served")
	}
	if !errors.Is(r.err, api.ErrKeyDisabled) {
		t.Fatalf("got %v, want disabled", r.err)
	}
	if s.cache.contains("k") {
		t.Fatal("a stale fill cached the key")
	}
	if calls.Load() != 2 {
		t.Fatalf("%d record reads, want 2 (the stale one and the new one)", calls.Load())
	}
	// The stale fill's key was unwrapped and must be zeroed, not left to
	// the garbage collector.
	if u, z := s.cache.loads.Load(), zeroed.Load(); u != 1 || z != 1 {
		t.Fatalf("%d unwraps, %d zeroed; want 1 and 1", u, z)
	}
}

// TestKeyCacheDisabledAndDeleted: a cached key that is disabled, put
// pending deletion or deleted leaves the cache at once (it is zeroed) and
// cannot be used; a sealed keystore has an empty cache and refuses.
func TestKeyCacheDisabledAndDeleted(t *testing.T) {
	isZeroed := zeroCounter(t)
	s, src, recs := newTestStore(t, keyring.AES256GCM, 0)
	for _, n := range []string{"a", "b", "c", "d"} {
		src.put(s, recs.rec(n, 1, fsm.StateEnabled))
	}
	cached := map[string]*keyring.Key{}
	for _, n := range []string{"a", "b", "c", "d"} {
		lk, err := s.get(n)
		if err != nil {
			t.Fatal(err)
		}
		cached[n] = lk.key
		lk.release()
	}
	src.put(s, recs.rec("a", 1, fsm.StateDisabled))
	src.put(s, recs.rec("b", 1, fsm.StatePendingDeletion))
	src.del(s, "c")
	for n, want := range map[string]error{"a": api.ErrKeyDisabled, "b": fsm.ErrKeyPendingDeletion, "c": fsm.ErrKeyNotFound} {
		if s.cache.contains(n) {
			t.Errorf("%s still cached", n)
		}
		if !isZeroed(cached[n]) {
			t.Errorf("%s not zeroed", n)
		}
		if lk, err := s.get(n); !errors.Is(err, want) {
			if lk != nil {
				lk.release()
			}
			t.Errorf("%s: %v, want %v", n, err, want)
		}
		if s.cache.contains(n) {
			t.Errorf("%s cached after a refused use", n)
		}
	}
	before := s.cache.loads.Load()
	lk, err := s.get("d")
	if err != nil {
		t.Fatal(err)
	}
	lk.release()
	if s.cache.loads.Load() != before {
		t.Fatal("a cached key was unwrapped again")
	}
	s.seal()
	if st := s.cache.stats(); st.Size != 0 {
		t.Fatalf("sealed keystore caches %d keys", st.Size)
	}
	if !isZeroed(cached["d"]) {
		t.Fatal("seal left a cached key unzeroed")
	}
	if _, err := s.get("d"); !errors.Is(err, errs.ErrSealed) {
		t.Fatalf("get on a sealed keystore: %v", err)
	}
}
