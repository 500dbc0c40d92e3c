package hsmtest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyd/keyd/hsmbridge"
	"github.com/keyd/keyd/hsmbridge/hsmtest"
	"github.com/keyd/keyd/hsmbridge/soft"
)

func TestFaultConfig(t *testing.T) {
	f := &hsmtest.Faults{}
	cfg := hsmtest.FaultConfig{Inner: soft.Config{}, Faults: f}
	h, err := cfg.Open(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx := t.Context()
	if err := h.EnsureKey(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	w, err := h.Wrap(ctx, "k", []byte("secret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Failing: every call and a new Open fail with ErrUnavailable.
	f.Set(0, true)
	if _, err := h.Unwrap(ctx, "k", w, nil); !errors.Is(err, hsmbridge.ErrUnavailable) {
		t.Fatalf("unwrap while failing: %v", err)
	}
	if err := h.Health(ctx); !errors.Is(err, hsmbridge.ErrUnavailable) {
		t.Fatalf("health while failing: %v", err)
	}
	if _, err := cfg.Open(ctx); !errors.Is(err, hsmbridge.ErrUnavailable) {
		t.Fatalf("open while failing: %v", err)
	}
	// Slow: a call waits, and its context cuts the wait short.
	f.Set(time.Hour, false)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := h.Unwrap(cctx, "k", w, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow unwrap under a deadline: %v", err)
	}
	// Healed.
	f.Set(0, false)
	pt, err := h.Unwrap(ctx, "k", w, nil)
	if err != nil || string(pt) != "secret" {
		t.Fatalf("unwrap after heal: %q %v", pt, err)
	}
}
