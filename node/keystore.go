package node

import (
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

// keystore is the node's in-memory view of key material: the barrier
// keyring, opened at unseal, and a bounded cache of unwrapped customer
// keys.
//
// Customer keys stay wrapped in the FSM (bbolt) until a crypto call uses
// them: unsealing opens only the barrier keyring, whatever the number of
// keys, and the first use of a key reads its record (one bbolt read
// transaction) and unwraps it. The cache (cache.go) keeps the recently
// used keys, evicts the least recently used one when full, and drops a key
// on every FSM event that changes or removes it, on every node, so a
// rotated, disabled or destroyed key is never served from it. Sealing
// empties it. Concurrent first uses of one key unwrap it once.
//
// mu guards the barrier keyring's lifetime: code that uses the ring holds
// mu for reading; installing and destroying it (open, seal) hold it for
// writing.
type keystore struct {
	log *slog.Logger
	src keySource

	mu      sync.RWMutex
	barrier atomic.Pointer[keyring.Keyring]
	cache   *keyCache
}

// keySource reads a key's stored record: the FSM, or a map in tests.
type keySource interface {
	Key(name string) (*fsm.KeyRecord, error)
}

func newKeystore(log *slog.Logger, src keySource, cacheSize int) *keystore {
	return &keystore{log: log, src: src, cache: newKeyCache(cacheSize)}
}

func (s *keystore) unsealed() bool { return s.barrier.Load() != nil }

// open installs the barrier keyring. It unwraps no customer key: each is
// unwrapped on first use.
func (s *keystore) open(ring *keyring.Keyring) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.barrier.Load() != nil {
		ring.Destroy()
		return
	}
	s.cache.clear() // nothing should be there; a stale fill must not survive
	s.barrier.Store(ring)
}

// onEvent drops the cached keys an FSM change affects: a new or changed
// record (rotation, state or configuration change) and a deleted key.
// Every node runs it for every applied batch, before the batch's index is
// published, so a request that waited for the index sees the new state.
func (s *keystore) onEvent(ev fsm.Event) {
	if ev.Restored {
		s.cache.clear()
		return
	}
	for _, rec := range ev.Keys {
		s.cache.invalidate(rec.Name)
	}
	for _, name := range ev.Deleted {
		s.cache.invalidate(name)
	}
}

// seal zeroes the barrier keyring and empties the cache; each cached key
// is zeroed as soon as no in-flight request holds it.
func (s *keystore) seal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ring := s.barrier.Swap(nil); ring != nil {
		ring.Destroy()
	}
	s.cache.clear()
}

// get returns a key for a crypto call with a reference held: the caller
// must release it. A key that is not enabled is never unwrapped: get
// returns its state's error.
func (s *keystore) get(name string) (*liveKey, error) {
	for {
		if s.barrier.Load() == nil {
			return nil, errs.ErrSealed
		}
		lk, retry, err := s.cache.get(name, s.load)
		if err != nil {
			return nil, err
		}
		if !retry {
			return lk, nil
		}
		// Evicted or invalidated under us: look again (the new state
		// is already visible in the FSM).
	}
}

// load reads name's record and unwraps it. It runs outside the cache's
// locks, at most once at a time per name.
func (s *keystore) load(name string) (*liveKey, error) {
	rec, err := s.src.Key(name)
	if err != nil {
		return nil, err
	}
	switch rec.State {
	case fsm.StateEnabled:
	case fsm.StatePendingDeletion:
		return nil, fsm.ErrKeyPendingDeletion
	default:
		return nil, api.ErrKeyDisabled
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	ring := s.barrier.Load()
	if ring == nil {
		return nil, errs.ErrSealed
	}
	lk, err := unwrapKey(ring, rec)
	if err != nil {
		s.log.Error("key could not be unwrapped", "key", rec.Name, "err", err)
		return nil, err
	}
	return lk, nil
}

// wrapNew generates material for a new version and wraps it under the
// active barrier key.
func (s *keystore) wrapNew(name string, t keyring.KeyType, version uint32, rnd randReader) (fsm.WrappedVersion, error) {
	// The barrier keyring is used only under mu, so seal cannot zero it
	// under this call.
	s.mu.RLock()
	defer s.mu.RUnlock()
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

// KeyCacheStats returns the node's key cache size, bound and counters.
func (n *Node) KeyCacheStats() KeyCacheStats { return n.keys.cache.stats() }
