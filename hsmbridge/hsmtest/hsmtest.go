package hsmtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/keyd/keyd/hsmbridge"
)

// Run runs the conformance table against HSMs made by open. Each subtest
// calls open once, may run in parallel with the others, and closes the HSM
// it got (through t.Cleanup; Close is idempotent, so open may also register
// its own cleanup). Several HSMs from open may share one device: every
// subtest uses its own random key labels.
func Run(t *testing.T, open func(t *testing.T) hsmbridge.HSM) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, h hsmbridge.HSM)
	}{
		{"RoundTrip", testRoundTrip},
		{"FreshIV", testFreshIV},
		{"WrongAAD", testWrongAAD},
		{"FlippedBit", testFlippedBit},
		{"Truncated", testTruncated},
		{"Extended", testExtended},
		{"WrongLabel", testWrongLabel},
		{"UnknownLabel", testUnknownLabel},
		{"InvalidLabel", testInvalidLabel},
		{"EnsureKeyIdempotent", testEnsureKeyIdempotent},
		{"ConcurrentEnsureKey", testConcurrentEnsureKey},
		{"Concurrent", testConcurrent},
		{"CanceledContext", testCanceledContext},
		{"Health", testHealth},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := open(t)
			if h == nil {
				t.Fatal("open returned a nil HSM")
			}
			t.Cleanup(func() {
				if err := h.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, h)
		})
	}
}

// newLabel returns a random label so that HSMs sharing a device do not
// collide.
func newLabel(t *testing.T) string {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "hsmtest-" + hex.EncodeToString(b[:])
}

// ensured returns a new label whose key exists.
func ensured(t *testing.T, h hsmbridge.HSM) string {
	t.Helper()
	label := newLabel(t)
	if err := h.EnsureKey(t.Context(), label); err != nil {
		t.Fatalf("EnsureKey(%q): %v", label, err)
	}
	return label
}

func wrap(t *testing.T, h hsmbridge.HSM, label string, pt, aad []byte) []byte {
	t.Helper()
	w, err := h.Wrap(t.Context(), label, pt, aad)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	return w
}

// wantUnwrapErr asserts that Unwrap fails with want and returns no bytes.
func wantUnwrapErr(t *testing.T, h hsmbridge.HSM, label string, w, aad []byte, want error, what string) {
	t.Helper()
	got, err := h.Unwrap(t.Context(), label, w, aad)
	if !errors.Is(err, want) {
		t.Fatalf("Unwrap(%s): got err %v, want %v", what, err, want)
	}
	if got != nil {
		t.Fatalf("Unwrap(%s): got %d bytes with an error, want nil", what, len(got))
	}
}

func testRoundTrip(t *testing.T, h hsmbridge.HSM) {
	label := ensured(t, h)
	tests := []struct {
		name    string
		pt, aad []byte
	}{
		{"share", bytes.Repeat([]byte{0xA5}, 32), []byte("node-1")},
		{"nil aad", []byte("secret"), nil},
		{"empty plaintext", nil, []byte("node-2")},
		{"one byte", []byte{0}, []byte{0}},
		{"4KiB", bytes.Repeat([]byte("k"), 4096), bytes.Repeat([]byte("a"), 300)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := wrap(t, h, label, tc.pt, tc.aad)
			if want := len(tc.pt) + 1 + 12 + 16; len(w) != want {
				t.Errorf("len(wrapped): got %d, want %d (version|iv|ct|tag)", len(w), want)
			}
			if len(tc.pt) >= 8 && bytes.Contains(w, tc.pt) {
				t.Error("wrapped blob contains the plaintext")
			}
			got, err := h.Unwrap(t.Context(), label, w, tc.aad)
			if err != nil {
				t.Fatalf("Unwrap: %v", err)
			}
			if !bytes.Equal(got, tc.pt) {
				t.Fatal("Unwrap: got a different plaintext")
			}
		})
	}
}

func testFreshIV(t *testing.T, h hsmbridge.HSM) {
	label := ensured(t, h)
	pt, aad := []byte("same plaintext"), []byte("same aad")
	a, b := wrap(t, h, label, pt, aad), wrap(t, h, label, pt, aad)
	if bytes.Equal(a[1:13], b[1:13]) {
		t.Fatal("two wraps used the same IV")
	}
	if bytes.Equal(a, b) {
		t.Fatal("two wraps of the same input are equal")
	}
}

func testWrongAAD(t *testing.T, h hsmbridge.HSM) {
	label := ensured(t, h)
	w := wrap(t, h, label, []byte("share"), []byte("node-1"))
	for _, aad := range [][]byte{[]byte("node-2"), []byte("node-1 "), nil, {}} {
		wantUnwrapErr(t, h, label, w, aad, hsmbridge.ErrUnwrap, fmt.Sprintf("aad %q", aad))
	}
	w = wrap(t, h, label, []byte("share"), nil)
	wantUnwrapErr(t, h, label, w, []byte{0}, hsmbridge.ErrUnwrap, "aad added")
}

func testFlippedBit(t *testing.T, h hsmbridge.HSM) {
	label := ensured(t, h)
	aad := []byte("node-1")
	w := wrap(t, h, label, bytes.Repeat([]byte{1}, 32), aad)
	for i := range len(w) * 8 {
		bad := bytes.Clone(w)
		bad[i/8] ^= 1 << (i % 8)
		wantUnwrapErr(t, h, label, bad, aad, hsmbridge.ErrUnwrap, fmt.Sprintf("bit %d flipped", i))
	}
	// The original still unwraps: failures left no broken state behind.
	if _, err := h.Unwrap(t.Context(), label, w, aad); err != nil {
		t.Fatalf("Unwrap(original) after failures: %v", err)
	}
}

func testTruncated(t *testing.T, h hsmbridge.HSM) {
	label := ensured(t, h)
	w := wrap(t, h, label, bytes.Repeat([]byte{2}, 32), nil)
	for n := range len(w) {
		wantUnwrapErr(t, h, label, w[:n], nil, hsmbridge.ErrUnwrap, fmt.Sprintf("first %d bytes", n))
	}
}

func testExtended(t *testing.T, h hsmbridge.HSM) {
	label := ensured(t, h)
	w := wrap(t, h, label, []byte("share"), nil)
	wantUnwrapErr(t, h, label, append(bytes.Clone(w), 0), nil, hsmbridge.ErrUnwrap, "byte appended")
	wantUnwrapErr(t, h, label, append([]byte{w[0]}, w...), nil, hsmbridge.ErrUnwrap, "version repeated")
}

func testWrongLabel(t *testing.T, h hsmbridge.HSM) {
	a, b := ensured(t, h), ensured(t, h)
	w := wrap(t, h, a, []byte("share"), nil)
	wantUnwrapErr(t, h, b, w, nil, hsmbridge.ErrUnwrap, "other key")
}

func testUnknownLabel(t *testing.T, h hsmbridge.HSM) {
	label := newLabel(t)
	if _, err := h.Wrap(t.Context(), label, []byte("x"), nil); !errors.Is(err, hsmbridge.ErrKeyNotFound) {
		t.Fatalf("Wrap: got err %v, want ErrKeyNotFound", err)
	}
	w := wrap(t, h, ensured(t, h), []byte("x"), nil)
	wantUnwrapErr(t, h, label, w, nil, hsmbridge.ErrKeyNotFound, "unknown label")
}

func testInvalidLabel(t *testing.T, h hsmbridge.HSM) {
	for _, label := range []string{"", string(bytes.Repeat([]byte{'x'}, hsmbridge.MaxLabelLen+1)), "\xff"} {
		if err := h.EnsureKey(t.Context(), label); !errors.Is(err, hsmbridge.ErrInvalidLabel) {
			t.Errorf("EnsureKey(%q): got err %v, want ErrInvalidLabel", label, err)
		}
		if _, err := h.Wrap(t.Context(), label, nil, nil); !errors.Is(err, hsmbridge.ErrInvalidLabel) {
			t.Errorf("Wrap(%q): got err %v, want ErrInvalidLabel", label, err)
		}
		if _, err := h.Unwrap(t.Context(), label, nil, nil); !errors.Is(err, hsmbridge.ErrInvalidLabel) {
			t.Errorf("Unwrap(%q): got err %v, want ErrInvalidLabel", label, err)
		}
	}
}

func testEnsureKeyIdempotent(t *testing.T, h hsmbridge.HSM) {
	label := ensured(t, h)
	w := wrap(t, h, label, []byte("before"), nil)
	for range 3 {
		if err := h.EnsureKey(t.Context(), label); err != nil {
			t.Fatalf("EnsureKey again: %v", err)
		}
	}
	// The key was not replaced: the old blob still unwraps.
	got, err := h.Unwrap(t.Context(), label, w, nil)
	if err != nil {
		t.Fatalf("Unwrap after EnsureKey again: %v", err)
	}
	if string(got) != "before" {
		t.Fatal("Unwrap after EnsureKey again: got a different plaintext")
	}
}

func testConcurrentEnsureKey(t *testing.T, h hsmbridge.HSM) {
	label := newLabel(t)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range cap(errs) {
		wg.Go(func() { errs <- h.EnsureKey(t.Context(), label) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent EnsureKey: %v", err)
		}
	}
	// Exactly one key: a blob wrapped now unwraps on every later call.
	w := wrap(t, h, label, []byte("one key"), nil)
	for range 4 {
		if _, err := h.Unwrap(t.Context(), label, w, nil); err != nil {
			t.Fatalf("Unwrap: %v", err)
		}
	}
}

func testConcurrent(t *testing.T, h hsmbridge.HSM) {
	labels := []string{ensured(t, h), ensured(t, h)}
	const workers, rounds = 16, 20
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			label := labels[g%len(labels)]
			for r := range rounds {
				pt := fmt.Appendf(nil, "worker %d round %d", g, r)
				aad := fmt.Appendf(nil, "aad %d", g)
				w, err := h.Wrap(t.Context(), label, pt, aad)
				if err != nil {
					errs <- fmt.Errorf("worker %d: Wrap: %w", g, err)
					return
				}
				got, err := h.Unwrap(t.Context(), label, w, aad)
				if err != nil {
					errs <- fmt.Errorf("worker %d: Unwrap: %w", g, err)
					return
				}
				if !bytes.Equal(got, pt) {
					errs <- fmt.Errorf("worker %d round %d: got a different plaintext", g, r)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func testCanceledContext(t *testing.T, h hsmbridge.HSM) {
	label := ensured(t, h)
	w := wrap(t, h, label, []byte("x"), nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := h.EnsureKey(ctx, newLabel(t)); !errors.Is(err, context.Canceled) {
		t.Errorf("EnsureKey: got err %v, want context.Canceled", err)
	}
	if _, err := h.Wrap(ctx, label, []byte("x"), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Wrap: got err %v, want context.Canceled", err)
	}
	if got, err := h.Unwrap(ctx, label, w, nil); !errors.Is(err, context.Canceled) || got != nil {
		t.Errorf("Unwrap: got (%d bytes, %v), want (nil, context.Canceled)", len(got), err)
	}
	if err := h.Health(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Health: got err %v, want context.Canceled", err)
	}
	// The HSM still works with a live context.
	if _, err := h.Unwrap(t.Context(), label, w, nil); err != nil {
		t.Fatalf("Unwrap after cancellations: %v", err)
	}
}

func testHealth(t *testing.T, h hsmbridge.HSM) {
	if err := h.Health(t.Context()); err != nil {
		t.Fatalf("Health: %v", err)
	}
}

func testClose(t *testing.T, h hsmbridge.HSM) {
	label := ensured(t, h)
	w := wrap(t, h, label, []byte("x"), nil)
	for i := range 2 {
		if err := h.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	ctx := t.Context()
	if err := h.EnsureKey(ctx, label); !errors.Is(err, hsmbridge.ErrClosed) {
		t.Errorf("EnsureKey after Close: got err %v, want ErrClosed", err)
	}
	if _, err := h.Wrap(ctx, label, []byte("x"), nil); !errors.Is(err, hsmbridge.ErrClosed) {
		t.Errorf("Wrap after Close: got err %v, want ErrClosed", err)
	}
	if got, err := h.Unwrap(ctx, label, w, nil); !errors.Is(err, hsmbridge.ErrClosed) || got != nil {
		t.Errorf("Unwrap after Close: got (%d bytes, %v), want (nil, ErrClosed)", len(got), err)
	}
	if err := h.Health(ctx); !errors.Is(err, hsmbridge.ErrClosed) {
		t.Errorf("Health after Close: got err %v, want ErrClosed", err)
	}
}
