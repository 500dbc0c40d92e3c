package keyring

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
)

// barrierPurpose is bound into the AAD of a sealed keyring so that a blob
// wrapped by the root key for another purpose can never be opened as a
// keyring.
const barrierPurpose = "keyd barrier keyring v1\x00"

// materialAADPrefix starts the AAD of wrapped customer key material.
const materialAADPrefix = "keyd key\x00"

// Serialised keyring (plaintext under the root key):
//
//	format(1) = 1 || count(4, BE) || count × (version(4, BE) || key(32))
//
// with versions strictly descending, so the first entry is the active key.
const (
	keyringFormat = 1
	barrierKeyLen = 32
	entryLen      = 4 + barrierKeyLen
	headerLen     = 1 + 4
)

// barrierKey is one version of the barrier keyring.
type barrierKey struct {
	version uint32
	b       *[barrierKeyLen]byte
	aead    cipher.AEAD
}

func newBarrierKey(version uint32, key []byte) barrierKey {
	bk := barrierKey{version: version, b: new([barrierKeyLen]byte)}
	copy(bk.b[:], key)
	bk.aead = mustAESGCM(bk.b[:])
	return bk
}

// Keyring is the barrier keyring: versioned AES-256 keys that wrap customer
// key material. The active (newest) version wraps; every held version
// unwraps.
//
// A Keyring is an immutable value: Rotate returns a new one, so a node can
// publish it through an atomic.Pointer and read it without locks. All
// methods are safe for concurrent use except Destroy, which must run only
// once no other goroutine uses the keyring. The zero value holds no keys and
// is not usable; build one with NewKeyring or OpenKeyring.
type Keyring struct {
	_ [0]func()
	// keys is sorted by version, strictly descending: keys[0] is active.
	keys []barrierKey
}

// NewKeyring returns a keyring holding one fresh key, version 1, read from
// rand (crypto/rand.Reader if nil).
func NewKeyring(rand io.Reader) (*Keyring, error) {
	bk, err := generateBarrierKey(rand, 1)
	if err != nil {
		return nil, err
	}
	return &Keyring{keys: []barrierKey{bk}}, nil
}

func generateBarrierKey(rand io.Reader, version uint32) (barrierKey, error) {
	var raw [barrierKeyLen]byte
	defer clear(raw[:])
	if err := readRandom(rand, raw[:]); err != nil {
		return barrierKey{}, fmt.Errorf("keyring: generate barrier key: %w", err)
	}
	return newBarrierKey(version, raw[:]), nil
}

// Active returns the version used by WrapMaterial (the newest); 0 for an
// empty or destroyed keyring.
func (r *Keyring) Active() uint32 {
	if r == nil || len(r.keys) == 0 {
		return 0
	}
	return r.keys[0].version
}

// Versions returns the held versions, newest first, in a new slice.
func (r *Keyring) Versions() []uint32 {
	if r == nil {
		return nil
	}
	vs := make([]uint32, len(r.keys))
	for i, k := range r.keys {
		vs[i] = k.version
	}
	return vs
}

// Rotate returns a new keyring with a fresh key, version Active()+1, as the
// active key, keeping copies of all older keys. r is unchanged, and the two
// keyrings share no key buffers, so destroying one leaves the other intact.
// It returns [ErrVersionExhausted] at version 2^32-1 and [ErrDestroyed] for
// an empty keyring.
func (r *Keyring) Rotate(rand io.Reader) (*Keyring, error) {
	if r == nil || len(r.keys) == 0 {
		return nil, fmt.Errorf("keyring: rotate: %w", ErrDestroyed)
	}
	if r.Active() == math.MaxUint32 {
		return nil, fmt.Errorf("keyring: rotate: %w", ErrVersionExhausted)
	}
	bk, err := generateBarrierKey(rand, r.Active()+1)
	if err != nil {
		return nil, err
	}
	keys := make([]barrierKey, 0, len(r.keys)+1)
	keys = append(keys, bk)
	for _, k := range r.keys {
		keys = append(keys, newBarrierKey(k.version, k.b[:]))
	}
	return &Keyring{keys: keys}, nil
}

// Seal serialises the whole keyring and wraps it under root with
// AES-256-GCM. The AAD binds the purpose "keyd barrier keyring v1" and the
// caller's aad (for example a cluster id), which OpenKeyring must repeat.
// The result holds no plaintext key bytes and may be stored and replicated.
func (r *Keyring) Seal(root *RootKey, aad []byte) ([]byte, error) {
	if r == nil || len(r.keys) == 0 {
		return nil, fmt.Errorf("keyring: seal: %w", ErrDestroyed)
	}
	pt := make([]byte, headerLen, headerLen+len(r.keys)*entryLen)
	defer clear(pt[:cap(pt)])
	pt[0] = keyringFormat
	binary.BigEndian.PutUint32(pt[1:], uint32(len(r.keys)))
	for _, k := range r.keys {
		pt = binary.BigEndian.AppendUint32(pt, k.version)
		pt = append(pt, k.b[:]...)
	}
	blob, err := root.Wrap(pt, barrierAAD(aad))
	if err != nil {
		return nil, fmt.Errorf("keyring: seal: %w", err)
	}
	return blob, nil
}

// OpenKeyring reverses Seal. A wrong root key, wrong aad, truncation or
// tampering returns an error wrapping [ErrUnwrap]; an authentic blob with a
// structure this version cannot read (unknown format, bad count, zero,
// duplicate or unordered versions) returns [ErrMalformed].
func OpenKeyring(root *RootKey, blob, aad []byte) (*Keyring, error) {
	pt, err := root.Unwrap(blob, barrierAAD(aad))
	if err != nil {
		return nil, fmt.Errorf("keyring: open: %w", err)
	}
	defer clear(pt)
	if len(pt) < headerLen || pt[0] != keyringFormat {
		return nil, fmt.Errorf("keyring: open: bad header: %w", ErrMalformed)
	}
	n := binary.BigEndian.Uint32(pt[1:])
	body := pt[headerLen:]
	if n == 0 || uint64(n)*entryLen != uint64(len(body)) {
		return nil, fmt.Errorf("keyring: open: bad key count: %w", ErrMalformed)
	}
	keys := make([]barrierKey, 0, n)
	for i := range int(n) {
		e := body[i*entryLen : (i+1)*entryLen]
		v := binary.BigEndian.Uint32(e)
		if v == 0 || (i > 0 && v >= keys[i-1].version) {
			return nil, fmt.Errorf("keyring: open: entry %d: bad version order: %w", i, ErrMalformed)
		}
		keys = append(keys, newBarrierKey(v, e[4:]))
	}
	return &Keyring{keys: keys}, nil
}

func barrierAAD(aad []byte) []byte {
	out := make([]byte, 0, len(barrierPurpose)+len(aad))
	return append(append(out, barrierPurpose...), aad...)
}

// Destroy zeroes every key and empties r. It is idempotent and must run only
// after no other goroutine uses r.
//
// Limitation: AES key schedules inside the standard library cannot be
// zeroed; they become garbage.
func (r *Keyring) Destroy() {
	if r == nil {
		return
	}
	for i := range r.keys {
		clear(r.keys[i].b[:])
		r.keys[i] = barrierKey{}
	}
	r.keys = nil
}

// lookup returns the key for version v, or nil.
func (r *Keyring) lookup(v uint32) *barrierKey {
	if r == nil {
		return nil
	}
	// Descending order: compare reversed.
	i, ok := slices.BinarySearchFunc(r.keys, v, func(k barrierKey, v uint32) int {
		switch {
		case k.version > v:
			return -1
		case k.version < v:
			return 1
		}
		return 0
	})
	if !ok {
		return nil
	}
	return &r.keys[i]
}

// WrapMaterial wraps customer key material for key name, version, under the
// active barrier key with AES-256-GCM. The AAD is
// "keyd key\x00" + name + "\x00" + version (uint32 big endian), so a blob
// cannot be replayed as another key's or another version's material. It
// returns the barrier version used (store it beside the blob) and
// nonce || sealed in a new slice.
func (r *Keyring) WrapMaterial(name string, version uint32, m *KeyMaterial) (barrierVersion uint32, blob []byte, err error) {
	if r == nil || len(r.keys) == 0 {
		return 0, nil, fmt.Errorf("keyring: wrap material: %w", ErrDestroyed)
	}
	if m.Len() == 0 {
		return 0, nil, fmt.Errorf("keyring: wrap material: empty material: %w", ErrInvalidKey)
	}
	k := &r.keys[0]
	return k.version, sealRandom(k.aead, m.bytes(), materialAAD(name, version)), nil
}

// UnwrapMaterial reverses WrapMaterial and returns fresh material owned by
// the caller. It returns [ErrUnknownBarrierVersion] when barrierVersion is
// not held and [ErrUnwrap] for a wrong name, version, blob or key.
func (r *Keyring) UnwrapMaterial(name string, version uint32, barrierVersion uint32, blob []byte) (*KeyMaterial, error) {
	k := r.lookup(barrierVersion)
	if k == nil {
		return nil, fmt.Errorf("keyring: unwrap material: barrier version %d: %w", barrierVersion, ErrUnknownBarrierVersion)
	}
	pt, err := openBlob(k.aead, blob, materialAAD(name, version))
	if err != nil {
		return nil, fmt.Errorf("keyring: unwrap material: %w", ErrUnwrap)
	}
	return NewKeyMaterial(pt), nil
}

func materialAAD(name string, version uint32) []byte {
	out := make([]byte, 0, len(materialAADPrefix)+len(name)+1+4)
	out = append(out, materialAADPrefix...)
	out = append(out, name...)
	out = append(out, 0)
	return binary.BigEndian.AppendUint32(out, version)
}

// String describes the keyring without key bytes, e.g.
// "Keyring(active v3, versions [3 2 1])".
func (r Keyring) String() string {
	b := []byte("Keyring(active v")
	if len(r.keys) > 0 {
		b = strconv.AppendUint(b, uint64(r.keys[0].version), 10)
	} else {
		b = append(b, '0')
	}
	b = append(b, ", versions ["...)
	for i, k := range r.keys {
		if i > 0 {
			b = append(b, ' ')
		}
		b = strconv.AppendUint(b, uint64(k.version), 10)
	}
	return string(append(b, "])"...))
}

// GoString is String, so %#v cannot reach the key bytes.
func (r Keyring) GoString() string { return r.String() }

// Format writes String for every verb.
func (r Keyring) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, r.String()) }

// LogValue implements [slog.LogValuer] with the active version and count.
func (r Keyring) LogValue() slog.Value {
	var active uint32
	if len(r.keys) > 0 {
		active = r.keys[0].version
	}
	return slog.GroupValue(slog.Any("active", active), slog.Int("versions", len(r.keys)))
}
