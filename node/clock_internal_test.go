package node

import (
	"sync"
	"testing"
	"time"
)

// fakeWall is a wall clock that follows real time plus a settable skew.
type fakeWall struct {
	mu   sync.Mutex
	skew time.Duration
}

func (f *fakeWall) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return time.Now().Add(f.skew)
}

func (f *fakeWall) set(d time.Duration) {
	f.mu.Lock()
	f.skew = d
	f.mu.Unlock()
}

func TestClockIgnoresJumps(t *testing.T) {
	t.Parallel()
	w := &fakeWall{}
	var warned []time.Duration
	var mu sync.Mutex
	c := newClock(w.now, func(d time.Duration) { mu.Lock(); warned = append(warned, d); mu.Unlock() })
	near := func(got time.Time, want time.Time) {
		t.Helper()
		if d := got.Sub(want).Abs(); d > 5*time.Second {
			t.Fatalf("clock %v, want about %v (off by %v)", got, want, d)
		}
	}
	near(c.now(), time.Now())
	// A small step is followed.
	w.set(20 * time.Second)
	near(c.now(), time.Now().Add(20*time.Second))
	// Jumps of hours, forward and back, are ignored.
	w.set(30 * 24 * time.Hour)
	near(c.now(), time.Now().Add(20*time.Second))
	near(c.now(), time.Now().Add(20*time.Second))
	w.set(-2 * time.Hour)
	near(c.now(), time.Now().Add(20*time.Second))
	// Back within the tolerance: followed again.
	w.set(0)
	near(c.now(), time.Now())
	// A new jump after the agreement warns again: once per episode.
	w.set(time.Hour)
	near(c.now(), time.Now())
	mu.Lock()
	defer mu.Unlock()
	if len(warned) != 2 {
		t.Fatalf("warned %d times, want once per episode (2): %v", len(warned), warned)
	}
}

func TestTokenExpiryUsesNodeClock(t *testing.T) {
	t.Parallel()
	w := &fakeWall{}
	c := newClock(w.now, nil)
	a := testAuth(map[string]time.Time{"kd_soon": time.Now().Add(time.Hour)})
	a.now = c.now
	if _, err := a.authenticateToken("Bearer kd_soon"); err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
	// The wall clock jumps two hours ahead: the token has not expired.
	w.set(2 * time.Hour)
	if _, err := a.authenticateToken("Bearer kd_soon"); err != nil {
		t.Fatalf("token refused after a forward clock jump: %v", err)
	}
	// A node whose clock reads past the expiry, without a jump, refuses.
	b := testAuth(map[string]time.Time{"kd_old": time.Now().Add(-time.Second)})
	b.now = newClock(w.now, nil).now
	if _, err := b.authenticateToken("Bearer kd_old"); err == nil {
		t.Fatal("expired token accepted")
	}
}
