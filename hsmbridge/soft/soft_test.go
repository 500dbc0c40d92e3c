package soft_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/keyd/keyd/hsmbridge"
	"github.com/keyd/keyd/hsmbridge/hsmtest"
	"github.com/keyd/keyd/hsmbridge/soft"
)

func TestConformanceMemory(t *testing.T) {
	t.Parallel()
	hsmtest.Run(t, func(t *testing.T) hsmbridge.HSM {
		h, err := soft.Config{}.Open(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return h
	})
}

func TestConformanceDir(t *testing.T) {
	t.Parallel()
	// One directory shared by every subtest, as several nodes' HSMs never
	// would, to exercise loading keys another HSM created.
	dir := t.TempDir()
	hsmtest.Run(t, func(t *testing.T) hsmbridge.HSM {
		h, err := soft.Config{Path: dir}.Open(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return h
	})
}

func TestKeyFile(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "keys")
	h, err := soft.Open(t.Context(), soft.Config{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.EnsureKey(t.Context(), "../node-1"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("dir mode: got %04o, want 0700", got)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("got %d entries, want 1 key file (temporary file left behind?)", len(entries))
	}
	name := entries[0].Name()
	if want := "2e2e2f6e6f64652d31.key"; name != want {
		t.Errorf("key file name: got %q, want %q (hex of the label)", name, want)
	}
	info, err := entries[0].Info()
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != 0o600 {
		t.Errorf("key file mode: got %04o, want 0600", got)
	}
	if got := info.Size(); got != 32 {
		t.Errorf("key file size: got %d, want 32", got)
	}
}

func TestPersistence(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := t.Context()
	h1, err := soft.Open(ctx, soft.Config{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := h1.EnsureKey(ctx, "node-1"); err != nil {
		t.Fatal(err)
	}
	w, err := h1.Wrap(ctx, "node-1", []byte("share"), []byte("node-1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := h1.Close(); err != nil {
		t.Fatal(err)
	}

	h2, err := soft.Open(ctx, soft.Config{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	got, err := h2.Unwrap(ctx, "node-1", w, []byte("node-1"))
	if err != nil {
		t.Fatalf("Unwrap after reopen: %v", err)
	}
	if string(got) != "share" {
		t.Fatal("Unwrap after reopen: got a different plaintext")
	}

	// A memory-only HSM never sees the directory's keys.
	m, err := soft.Open(ctx, soft.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Unwrap(ctx, "node-1", w, []byte("node-1")); !errors.Is(err, hsmbridge.ErrKeyNotFound) {
		t.Fatalf("memory Unwrap: got err %v, want ErrKeyNotFound", err)
	}
}

func TestConcurrentEnsureKeyAcrossHSMs(t *testing.T) {
	t.Parallel()
	// Two HSMs on one directory (as two processes would be) racing to
	// create the same label end up with one key.
	dir := t.TempDir()
	ctx := t.Context()
	hs := make([]*soft.HSM, 4)
	for i := range hs {
		h, err := soft.Open(ctx, soft.Config{Path: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		hs[i] = h
	}
	var wg sync.WaitGroup
	errs := make([]error, len(hs))
	for i, h := range hs {
		wg.Go(func() { errs[i] = h.EnsureKey(ctx, "shared") })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("EnsureKey on HSM %d: %v", i, err)
		}
	}
	w, err := hs[0].Wrap(ctx, "shared", []byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range hs {
		if _, err := h.Unwrap(ctx, "shared", w, nil); err != nil {
			t.Errorf("HSM %d: Unwrap: %v (keys diverged)", i, err)
		}
	}
}

func TestBadKeyFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mode    os.FileMode
		content []byte
		want    string
	}{
		{"group readable", 0o640, make([]byte, 32), "mode"},
		{"short", 0o600, make([]byte, 31), "bytes"},
		{"long", 0o600, make([]byte, 33), "bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "6b.key") // hex("k")
			if err := os.WriteFile(path, tc.content, tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil { // umask-proof
				t.Fatal(err)
			}
			h, err := soft.Open(t.Context(), soft.Config{Path: dir})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			_, err = h.Wrap(t.Context(), "k", []byte("x"), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Wrap: got err %v, want one mentioning %q", err, tc.want)
			}
			if errors.Is(err, hsmbridge.ErrKeyNotFound) {
				t.Fatal("Wrap: a bad key file must not look like a missing key (EnsureKey would replace it)")
			}
			if err := h.EnsureKey(t.Context(), "k"); err == nil {
				t.Fatal("EnsureKey over a bad key file: got nil error, want one")
			}
		})
	}
}

func TestHealthDirGone(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "keys")
	h, err := soft.Open(t.Context(), soft.Config{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := h.Health(t.Context()); !errors.Is(err, hsmbridge.ErrUnavailable) {
		t.Fatalf("Health: got err %v, want ErrUnavailable", err)
	}
}

func FuzzUnwrap(f *testing.F) {
	h, err := soft.Open(f.Context(), soft.Config{})
	if err != nil {
		f.Fatal(err)
	}
	defer h.Close()
	if err := h.EnsureKey(f.Context(), "k"); err != nil {
		f.Fatal(err)
	}
	good, err := h.Wrap(f.Context(), "k", []byte("share"), []byte("aad"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, []byte("aad"))
	f.Add([]byte{}, []byte{})
	f.Add(good[:20], []byte("aad"))
	f.Add(append([]byte{2}, good[1:]...), []byte("aad"))
	f.Fuzz(func(t *testing.T, w, aad []byte) {
		pt, err := h.Unwrap(t.Context(), "k", w, aad)
		if err != nil {
			if !errors.Is(err, hsmbridge.ErrUnwrap) || pt != nil {
				t.Fatalf("Unwrap: got (%d bytes, %v), want (nil, ErrUnwrap)", len(pt), err)
			}
			return
		}
		// Only the seed blob can authenticate.
		if !bytes.Equal(w, good) || string(aad) != "aad" || string(pt) != "share" {
			t.Fatalf("Unwrap accepted a forged blob %x", w)
		}
	})
}

func benchHSM(b *testing.B) *soft.HSM {
	h, err := soft.Open(b.Context(), soft.Config{Path: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	if err := h.EnsureKey(b.Context(), "bench"); err != nil {
		b.Fatal(err)
	}
	return h
}

func BenchmarkWrap(b *testing.B) {
	h := benchHSM(b)
	pt, aad := make([]byte, 32), []byte("node-1")
	for b.Loop() {
		if _, err := h.Wrap(b.Context(), "bench", pt, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnwrap(b *testing.B) {
	h := benchHSM(b)
	aad := []byte("node-1")
	w, err := h.Wrap(b.Context(), "bench", make([]byte, 32), aad)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := h.Unwrap(b.Context(), "bench", w, aad); err != nil {
			b.Fatal(err)
		}
	}
}
