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
	"github.com/keyd/keyd/node/errs"
)

// keyZeroHook, when set (by tests), is called with every customer key the
// keystore zeroes.
var keyZeroHook atomic.Pointer[func(*keyring.Key)]

func zeroKey(k *keyring.Key) {
	k.Destroy()
	if f := keyZeroHook.Load(); f != nil {
		(*f)(k)
	}
}

// liveKey is an unwrapped customer key with the state that gates its use.
//
// Its material is zeroed only when no request can hold it: a crypto call
// acquires the key (one atomic add) and releases it when done; seal,
// rotation, deletion and removal retire it (drop it from the keystore and
// set the retired bit), and whoever brings the count of holders of a
// retired key to zero zeroes it. A retired key cannot be acquired again.
type liveKey struct {
	key   *keyring.Key
	state string
	refs  atomic.Int64 // holders, plus retiredBit once retired
	once  sync.Once
}

const retiredBit = int64(1) << 62

// acquire takes a reference; it fails once the key is retired.
func (lk *liveKey) acquire() bool {
	if lk.refs.Add(1)&retiredBit != 0 {
		lk.release()
		return false
	}
	return true
}

// release drops a reference; the last one of a retired key zeroes it.
func (lk *liveKey) release() {
	if lk.refs.Add(-1) == retiredBit {
		lk.zero()
	}
}

// retire marks the key replaced or dropped; it is zeroed now if nobody
// holds it, or else by the last release.
func (lk *liveKey) retire() {
	if lk.refs.Or(retiredBit)&^retiredBit == 0 {
		lk.zero()
	}
}

func (lk *liveKey) zero() { lk.once.Do(func() { zeroKey(lk.key) }) }

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
		s.keys.Range(func(k, _ any) bool {
			if v, ok := s.keys.LoadAndDelete(k); ok {
				v.(*liveKey).retire()
			}
			return true
		})
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
			v.(*liveKey).retire()
		}
	}
}

func (s *keystore) store(ring *keyring.Keyring, rec *fsm.KeyRecord) {
	lk, err := unwrapKey(ring, rec)
	if err != nil {
		s.log.Error("key could not be unwrapped", "key", rec.Name, "err", err)
		if old, ok := s.keys.LoadAndDelete(rec.Name); ok {
			old.(*liveKey).retire()
		}
		return
	}
	// The replaced key is zeroed once the requests holding it end.
	if old, ok := s.keys.Swap(rec.Name, lk); ok {
		old.(*liveKey).retire()
	}
}

// seal drops every key and zeroes the barrier keyring; each key is
// zeroed as soon as no in-flight request holds it.
func (s *keystore) seal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clearLocked()
}

func (s *keystore) clearLocked() {
	if ring := s.barrier.Swap(nil); ring != nil {
		ring.Destroy()
	}
	s.keys.Range(func(k, _ any) bool {
		if v, ok := s.keys.LoadAndDelete(k); ok {
			v.(*liveKey).retire()
		}
		return true
	})
}

// get returns a key for a crypto call with a reference held: the caller
// must release it.
func (s *keystore) get(name string) (*liveKey, error) {
	for {
		if s.barrier.Load() == nil {
			return nil, errs.ErrSealed
		}
		v, ok := s.keys.Load(name)
		if !ok {
			return nil, fsm.ErrKeyNotFound
		}
		lk := v.(*liveKey)
		if lk.acquire() {
			return lk, nil
		}
		// Retired between the load and the acquire: its replacement (or
		// the seal, or the deletion) is already visible.
	}
}

// wrapNew generates material for a new version and wraps it under the
// active barrier key.
func (s *keystore) wrapNew(name string, t keyring.KeyType, version uint32, rnd randReader) (fsm.WrappedVersion, error) {
	// The barrier keyring is used only under mu, so seal cannot zero it
	// under this call.
	s.mu.Lock()
	defer s.mu.Unlock()
	ring := s.barrier.Load()
	if ring == nil {
		return fsm.WrappedVersion{}, errs.ErrSealed
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

// AcquireCryptoKey returns the unwrapped key for a crypto call, or the
// error that forbids its use (sealed, not found, disabled, pending
// deletion), and a release function the caller must call once it no
// longer uses the key. Until then the key's material is not zeroed, even
// if the node seals or the key is rotated or deleted meanwhile.
func (n *Node) AcquireCryptoKey(name string) (*keyring.Key, func(), error) {
	lk, err := n.keys.get(name)
	if err != nil {
		return nil, nil, err
	}
	switch lk.state {
	case fsm.StateEnabled:
		return lk.key, lk.release, nil
	case fsm.StatePendingDeletion:
		lk.release()
		return nil, nil, fsm.ErrKeyPendingDeletion
	default:
		lk.release()
		return nil, nil, api.ErrKeyDisabled
	}
}
