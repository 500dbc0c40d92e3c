package soft

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/keyd/keyd/hsmbridge"
	"github.com/keyd/keyd/hsmbridge/internal/envelope"
)

const keySize = 32 // AES-256

// Config opens a software HSM.
type Config struct {
	// Path is the directory holding one key file per label, named
	// hex(label)+".key" so that no label can escape the directory. It is
	// created with mode 0700 if missing. Empty means in memory only: keys
	// vanish on Close (for tests).
	Path string
}

var _ hsmbridge.Config = Config{}

// Open returns a ready *HSM. With a Path it creates the directory if
// needed; it does not read any key until one is used.
func (c Config) Open(ctx context.Context) (hsmbridge.HSM, error) {
	return Open(ctx, c)
}

// Open is Config.Open with the concrete return type.
func Open(ctx context.Context, c Config) (*HSM, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if c.Path != "" {
		if err := os.MkdirAll(c.Path, 0o700); err != nil {
			return nil, fmt.Errorf("soft: open %s: %w", c.Path, err)
		}
	}
	return &HSM{dir: c.Path, keys: make(map[string]*[keySize]byte)}, nil
}

// HSM is a software HSM. It is safe for concurrent use. Its operations do
// not block on a device, so ctx is only checked when a call starts.
type HSM struct {
	dir string // "" for in memory only

	// mu guards closed and keys. Wrap and Unwrap hold it for reading while
	// they use a key, so Close (which zeroes the keys) waits for them.
	mu     sync.RWMutex
	closed bool
	keys   map[string]*[keySize]byte // cache of loaded keys, by label
}

var _ hsmbridge.HSM = (*HSM)(nil)

// EnsureKey creates the key for label from crypto/rand if it does not exist.
// In a directory the file is created atomically (written to a temporary
// file, then hard-linked into place), so two processes racing on one
// directory end up sharing one key.
func (h *HSM) EnsureKey(ctx context.Context, label string) error {
	if err := h.check(ctx, label); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return hsmbridge.ErrClosed
	}
	if _, err := h.keyLocked(label); !errors.Is(err, hsmbridge.ErrKeyNotFound) {
		return err // nil when the key exists
	}
	k := new([keySize]byte)
	if _, err := rand.Read(k[:]); err != nil {
		return fmt.Errorf("soft: generate key: %w", err)
	}
	if h.dir != "" {
		if err := h.create(label, k); err != nil {
			clear(k[:])
			if errors.Is(err, fs.ErrExist) { // another process won the race
				_, err = h.keyLocked(label)
			}
			return err
		}
	}
	h.keys[label] = k
	return nil
}

// Wrap implements hsmbridge.HSM.
func (h *HSM) Wrap(ctx context.Context, label string, plaintext, aad []byte) ([]byte, error) {
	if err := h.check(ctx, label); err != nil {
		return nil, err
	}
	iv, err := envelope.NewIV()
	if err != nil {
		return nil, err
	}
	var out []byte
	err = h.withKey(label, func(aead cipher.AEAD) error {
		out = envelope.Marshal(iv, aead.Seal(nil, iv, plaintext, envelope.AAD(aad)))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("soft: wrap under %q: %w", label, err)
	}
	return out, nil
}

// Unwrap implements hsmbridge.HSM.
func (h *HSM) Unwrap(ctx context.Context, label string, wrapped, aad []byte) ([]byte, error) {
	if err := h.check(ctx, label); err != nil {
		return nil, err
	}
	var out []byte
	err := h.withKey(label, func(aead cipher.AEAD) error {
		iv, sealed, err := envelope.Parse(wrapped)
		if err != nil {
			return err
		}
		out, err = aead.Open(nil, iv, sealed, envelope.AAD(aad))
		if err != nil {
			return hsmbridge.ErrUnwrap // crypto/cipher's error says nothing more
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("soft: unwrap under %q: %w", label, err)
	}
	return out, nil
}

// Health returns ErrClosed after Close and ErrUnavailable when the key
// directory is no longer a directory.
func (h *HSM) Health(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return hsmbridge.ErrClosed
	}
	if h.dir == "" {
		return nil
	}
	fi, err := os.Stat(h.dir)
	if err != nil {
		return fmt.Errorf("soft: %w: %w", hsmbridge.ErrUnavailable, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("soft: %w: %s is not a directory", hsmbridge.ErrUnavailable, h.dir)
	}
	return nil
}

// Close zeroes the cached keys. It is idempotent and always returns nil.
func (h *HSM) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	for label, k := range h.keys {
		clear(k[:])
		delete(h.keys, label)
	}
	return nil
}

// check validates the arguments every method shares.
func (h *HSM) check(ctx context.Context, label string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return hsmbridge.ValidateLabel(label)
}

// withKey runs fn with an AEAD for label under the read lock, loading the
// key from disk on first use.
func (h *HSM) withKey(label string, fn func(cipher.AEAD) error) error {
	h.mu.RLock()
	k, ok := h.keys[label]
	if !ok {
		// Load under the write lock, then downgrade by re-taking the read
		// lock; the key cannot be zeroed in between because only Close
		// zeroes keys and it sets closed, which is checked again.
		h.mu.RUnlock()
		h.mu.Lock()
		var err error
		if h.closed {
			err = hsmbridge.ErrClosed
		} else {
			_, err = h.keyLocked(label)
		}
		h.mu.Unlock()
		if err != nil {
			return err
		}
		h.mu.RLock()
		k, ok = h.keys[label]
	}
	defer h.mu.RUnlock()
	if h.closed {
		return hsmbridge.ErrClosed
	}
	if !ok {
		return hsmbridge.ErrKeyNotFound
	}
	block, err := aes.NewCipher(k[:])
	if err != nil {
		return fmt.Errorf("soft: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return fmt.Errorf("soft: %w", err)
	}
	return fn(aead)
}

// keyLocked returns the key for label, loading it from disk into the cache
// if needed. h.mu must be held for writing.
func (h *HSM) keyLocked(label string) (*[keySize]byte, error) {
	if k, ok := h.keys[label]; ok {
		return k, nil
	}
	if h.dir == "" {
		return nil, hsmbridge.ErrKeyNotFound
	}
	k, err := readKey(h.path(label))
	if err != nil {
		return nil, err
	}
	h.keys[label] = k
	return k, nil
}

func (h *HSM) path(label string) string {
	return filepath.Join(h.dir, hex.EncodeToString([]byte(label))+".key")
}

// readKey reads a key file, refusing anything but a regular file of
// exactly keySize bytes that only its owner can read or write.
func readKey(path string) (*[keySize]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, hsmbridge.ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("soft: read key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("soft: read key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("soft: key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("soft: key file %s has mode %04o, want 0600", path, perm)
	}
	if fi.Size() != keySize {
		return nil, fmt.Errorf("soft: key file %s is %d bytes, want %d", path, fi.Size(), keySize)
	}
	k := new([keySize]byte)
	if _, err := io.ReadFull(f, k[:]); err != nil {
		clear(k[:])
		return nil, fmt.Errorf("soft: read key file %s: %w", path, err)
	}
	return k, nil
}

// create writes k as the key file for label. It returns an error wrapping
// fs.ErrExist when the file already exists, and never replaces it.
func (h *HSM) create(label string, k *[keySize]byte) (err error) {
	tmp, err := os.CreateTemp(h.dir, ".tmp-*.key") // mode 0600
	if err != nil {
		return fmt.Errorf("soft: create key file: %w", err)
	}
	defer func() {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
	}()
	if err := tmp.Chmod(0o600); err != nil { // in case of an odd umask-less filesystem
		return fmt.Errorf("soft: create key file: %w", err)
	}
	if _, err := tmp.Write(k[:]); err != nil {
		return fmt.Errorf("soft: write key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("soft: sync key file: %w", err)
	}
	// Link, unlike Rename, fails if the target exists: a key already in use
	// is never replaced.
	if err := os.Link(tmp.Name(), h.path(label)); err != nil {
		return fmt.Errorf("soft: install key file: %w", err)
	}
	if d, err := os.Open(h.dir); err == nil { // persist the new name
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
