package hsmtest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/keyd/keyd/hsmbridge"
)

// Faults is a switch for HSM faults shared by every HSM opened through a
// FaultConfig that points to it, across node restarts. The zero value
// injects nothing. It is safe for concurrent use.
type Faults struct {
	delay atomic.Int64 // time.Duration before every call
	fail  atomic.Bool
}

// Set makes every later call wait delay (interrupted by its context) and
// then, when fail is set, fail with hsmbridge.ErrUnavailable. Set(0, false)
// heals.
func (f *Faults) Set(delay time.Duration, fail bool) {
	f.delay.Store(int64(max(delay, 0)))
	f.fail.Store(fail)
}

// apply runs the configured fault for one call named op.
func (f *Faults) apply(ctx context.Context, op string) error {
	if d := time.Duration(f.delay.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("hsmtest: %s: %w", op, ctx.Err())
		case <-t.C:
		}
	}
	if f.fail.Load() {
		return fmt.Errorf("hsmtest: %s: injected fault: %w", op, hsmbridge.ErrUnavailable)
	}
	return nil
}

// FaultConfig opens Inner and wraps the HSM so every call first goes
// through Faults. Open itself fails while Faults fails.
type FaultConfig struct {
	Inner  hsmbridge.Config
	Faults *Faults
}

// Open implements hsmbridge.Config.
func (c FaultConfig) Open(ctx context.Context) (hsmbridge.HSM, error) {
	if c.Inner == nil || c.Faults == nil {
		return nil, errors.New("hsmtest: FaultConfig needs Inner and Faults")
	}
	if err := c.Faults.apply(ctx, "open"); err != nil {
		return nil, err
	}
	h, err := c.Inner.Open(ctx)
	if err != nil {
		return nil, err
	}
	return &faultHSM{inner: h, f: c.Faults}, nil
}

type faultHSM struct {
	inner hsmbridge.HSM
	f     *Faults
}

func (h *faultHSM) EnsureKey(ctx context.Context, label string) error {
	if err := h.f.apply(ctx, "ensure key"); err != nil {
		return err
	}
	return h.inner.EnsureKey(ctx, label)
}

func (h *faultHSM) Wrap(ctx context.Context, label string, plaintext, aad []byte) ([]byte, error) {
	if err := h.f.apply(ctx, "wrap"); err != nil {
		return nil, err
	}
	return h.inner.Wrap(ctx, label, plaintext, aad)
}

func (h *faultHSM) Unwrap(ctx context.Context, label string, wrapped, aad []byte) ([]byte, error) {
	if err := h.f.apply(ctx, "unwrap"); err != nil {
		return nil, err
	}
	return h.inner.Unwrap(ctx, label, wrapped, aad)
}

func (h *faultHSM) Health(ctx context.Context) error {
	if err := h.f.apply(ctx, "health"); err != nil {
		return err
	}
	return h.inner.Health(ctx)
}

func (h *faultHSM) Close() error { return h.inner.Close() }
