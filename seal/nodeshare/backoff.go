package nodeshare

import (
	"sync"
	"sync/atomic"
	"time"
)

// MaxBackoff bounds the dealing backoff in dealing intervals.
const MaxBackoff = 30

// Logger is what Backoff logs to (a *slog.Logger).
type Logger interface {
	Info(msg string, args ...any)
	Warn(msg string, args ...any)
}

// Backoff is the leader's node-share dealing state: why node shares are
// off, the retry backoff, and counters for tests. The zero value is ready.
type Backoff struct {
	Ticks    atomic.Int64 // node-share loop iterations
	Attempts atomic.Int64 // dealings started (shares split and sent)

	mu     sync.Mutex
	status string    // shown in SealStatus.NodeShares
	key    string    // voters, epoch and force of the last evaluation
	streak int       // evaluations in a row that did not deal
	next   time.Time // no evaluation before, unless key changes
	pruned string    // committed dealing whose old share files were pruned
}

// Due reports whether the leader should evaluate dealing now: the state
// changed (key) or the backoff elapsed.
func (d *Backoff) Due(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if key != d.key {
		d.key, d.streak, d.next = key, 0, time.Time{}
	}
	return !time.Now().Before(d.next)
}

// Now makes the next evaluation due at once (an unseal, a removal, a
// root rotation).
func (d *Backoff) Now() {
	d.mu.Lock()
	d.next = time.Time{}
	d.mu.Unlock()
}

func (d *Backoff) backoffLocked(interval time.Duration) time.Duration {
	d.streak++
	return interval * time.Duration(1<<min(d.streak, 5)) // 2, 4 ... 32 intervals
}

// Off records that dealing is not possible now, logging the reason once.
func (d *Backoff) Off(log Logger, why string, interval time.Duration) {
	d.mu.Lock()
	changed := d.status != why
	d.status = why
	d.next = time.Now().Add(min(d.backoffLocked(interval), MaxBackoff*interval))
	d.mu.Unlock()
	if changed {
		log.Info("node shares", "status", why)
	}
}

// Failed records a failed dealing and schedules the next attempt.
func (d *Backoff) Failed(log Logger, err error, interval time.Duration) {
	d.mu.Lock()
	wait := min(d.backoffLocked(interval), MaxBackoff*interval)
	d.next = time.Now().Add(wait)
	why := "retrying: " + err.Error()
	changed := d.status != why
	d.status = why
	d.mu.Unlock()
	if changed {
		log.Warn("node-share dealing failed; retrying with backoff", "err", err, "next_in", wait)
	}
}

// On records a standing dealing.
func (d *Backoff) On(log Logger) {
	d.mu.Lock()
	changed := d.status != "on"
	d.status, d.streak, d.next = "on", 0, time.Time{}
	d.mu.Unlock()
	if changed {
		log.Info("node shares", "status", "on")
	}
}

// Status is the leader's last dealing status ("" before any evaluation).
func (d *Backoff) Status() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.status
}

// FirstPrune reports whether committed dealing fp has not been pruned
// for yet, and records that it now is.
func (d *Backoff) FirstPrune(fp string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	first := d.pruned != fp
	d.pruned = fp
	return first
}
