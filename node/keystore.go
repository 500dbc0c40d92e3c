package node

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/keyring"
)

// liveKey is an unwrapped customer key with the state that gates its use.
type liveKey struct {
	key   *keyring.Key
	state string
}

// keystore is the node's in-memory view of unwrapped key material: the
// barrier keyring and every customer key, kept in step with the FSM by its
// observer. Crypto calls read it without locks; loads, FSM events and
// sealing are serialised by mu.
type keystore struct {
	log *slog.Logger

	mu      sync.Mutex
	barrier atomic.Pointer[keyring.Keyring]
	keys    sync.Map // name -> *liveKey
}

func (s *keystore) unsealed() bool { return s.barrier.Load() != nil }

// open installs the barrier keyring and unwraps every key of the FSM.
func (s *keystore) open(ring *keyring.Keyring, f *fsm.FSM) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.barrier.Load() != nil {
		ring.Destroy()
		return nil
	}
	var loadErr error
	err := f.ForEachKey(func(rec *fsm.KeyRecord) error {
		lk, err := unwrapKey(ring, rec)
		if err != nil {
			// One undecryptable key must not keep the others sealed.
			loadErr = errors.Join(loadErr, err)
			return nil
		}
		s.keys.Store(rec.Name, lk)
		return nil
	})
	if err != nil {
		s.clearLocked()
		return err
	}
	s.barrier.Store(ring)
	if loadErr != nil {
		s.log.Error("some keys could not be unwrapped", "err", loadErr)
	}
	return nil
}

// onEvent applies an FSM change to the in-memory view.
func (s *keystore) onEvent(ev fsm.Event, f *fsm.FSM) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ring := s.barrier.Load()
	if ring == nil {
		return
	}
	if ev.Restored {
		s.keys.Range(func(k, _ any) bool { s.keys.Delete(k); return true })
		_ = f.ForEachKey(func(rec *fsm.KeyRecord) error {
			s.store(ring, rec)
			return nil
		})
		return
	}
	for _, rec := range ev.Keys {
		s.store(ring, rec)
	}
	for _, name := range ev.Deleted {
		if v, ok := s.keys.LoadAndDelete(name); ok {
			v.(*liveKey).key.Destroy()
		}
	}
}

func (s *keystore) store(ring *keyring.Keyring, rec *fsm.KeyRecord) {
	lk, err := unwrapKey(ring, rec)
	if err != nil {
		s.log.Error("key could not be unwrapped", "key", rec.Name, "err", err)
		s.keys.Delete(rec.Name)
		return
	}
	// The replaced key is left to the collector rather than zeroed: a
	// request may still be using it.
	s.keys.Store(rec.Name, lk)
}

// seal drops and zeroes every key and the barrier keyring.
func (s *keystore) seal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clearLocked()
}

func (s *keystore) clearLocked() {
	if ring := s.barrier.Swap(nil); ring != nil {
		ring.Destroy()
	}
	s.keys.Range(func(k, v any) bool {
		s.keys.Delete(k)
		v.(*liveKey).key.Destroy()
		return true
	})
}

// get returns a key for a crypto call.
func (s *keystore) get(name string) (*liveKey, error) {
	if s.barrier.Load() == nil {
		return nil, api.ErrSealed
	}
	v, ok := s.keys.Load(name)
	if !ok {
		return nil, api.ErrNotFound
	}
	return v.(*liveKey), nil
}

// wrapNew generates material for a new version and wraps it under the
// active barrier key.
func (s *keystore) wrapNew(name string, t keyring.KeyType, version uint32, rnd randReader) (fsm.WrappedVersion, error) {
	ring := s.barrier.Load()
	if ring == nil {
		return fsm.WrappedVersion{}, api.ErrSealed
	}
	m, err := keyring.GenerateMaterial(t, rnd)
	if err != nil {
		return fsm.WrappedVersion{}, fmt.Errorf("node: generate material: %w", err)
	}
	defer m.Destroy()
	bv, blob, err := ring.WrapMaterial(name, version, m)
	if err != nil {
		return fsm.WrappedVersion{}, fmt.Errorf("node: wrap material: %w", err)
	}
	w := fsm.WrappedVersion{Version: version, BarrierVersion: bv, Wrapped: blob}
	if t.CanSign() {
		if w.PublicKey, err = keyring.PublicKey(t, m); err != nil {
			return fsm.WrappedVersion{}, fmt.Errorf("node: public key: %w", err)
		}
	}
	return w, nil
}

func unwrapKey(ring *keyring.Keyring, rec *fsm.KeyRecord) (*liveKey, error) {
	t, err := keyring.ParseKeyType(rec.Type)
	if err != nil {
		return nil, fmt.Errorf("node: key %q: %w", rec.Name, err)
	}
	versions := make([]keyring.Version, 0, len(rec.Versions))
	for _, v := range rec.Versions {
		m, err := ring.UnwrapMaterial(rec.Name, v.Version, v.BarrierVersion, v.Wrapped)
		if err != nil {
			for _, done := range versions {
				done.Material.Destroy()
			}
			return nil, fmt.Errorf("node: key %q version %d: %w", rec.Name, v.Version, err)
		}
		versions = append(versions, keyring.Version{Number: v.Version, Material: m})
	}
	k, err := keyring.NewKey(rec.Name, t, versions, rec.MinDecryptionVersion)
	if err != nil {
		return nil, fmt.Errorf("node: key %q: %w", rec.Name, err)
	}
	return &liveKey{key: k, state: rec.State}, nil
}

// AcquireCryptoKey returns the unwrapped key for a crypto call and a
// release function the caller must call when done with it.
func (n *Node) AcquireCryptoKey(name string) (*keyring.Key, func(), error) {
	k, err := n.CryptoKey(name)
	if err != nil {
		return nil, nil, err
	}
	return k, func() {}, nil
}
