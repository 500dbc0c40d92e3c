package fsm

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/keyd/keyd/api"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Versioned secrets (KV). A secret is a path with a list of versions;
// each version's value is sealed under the barrier keyring by the leader
// before it is proposed, so the Raft log, this database and every
// snapshot hold only ciphertext. The AAD of a version binds its path and
// version number (see KVAAD): a sealed value copied to another path or
// version in a node's files no longer opens.
//
// The bucket is created on first use.
var bucketKV = []byte("kv") // path -> KVRecord

// KV commands. Values are part of the log format.
const (
	OpKVPut       Op = 112 + iota // write a new version
	OpKVDelete                    // soft-delete versions
	OpKVUndelete                  // undo a soft delete
	OpKVDestroy                   // remove versions' ciphertext for good
	OpKVConfig                    // set max_versions / cas_required
	OpKVDeleteAll                 // remove the secret with every version
)

// KV limits.
const (
	// MaxKVPathLen bounds a secret path.
	MaxKVPathLen = api.MaxKVPathLen
	// DefaultKVMaxVersions is how many versions a secret keeps when its
	// max_versions is unset; older ones are pruned (removed for good)
	// by the write that exceeds it.
	DefaultKVMaxVersions = 10
	// MaxKVMaxVersions bounds max_versions.
	MaxKVMaxVersions = 100
	// MaxKVSealed bounds one sealed value (the plaintext limit is set by
	// the API, a little below).
	MaxKVSealed = 80 << 10
	// MaxKVRecordSealed bounds the sealed values one secret keeps over
	// all its versions. The versions live in one record that every read
	// decodes and every write re-encodes whole, so without it one path
	// could hold max_versions x MaxKVSealed (8.7 MB of JSON). The write
	// (or configuration) that exceeds it prunes the oldest versions, as
	// exceeding max_versions does; the newest is always kept. At least
	// 12 versions of the largest value fit.
	MaxKVRecordSealed = 1 << 20
)

// KVVersion is one version of a secret as stored: its sealed value (nil
// once destroyed or pruned), the barrier version that sealed it, and its
// life times.
type KVVersion struct {
	Version        uint32    `json:"v"`
	BarrierVersion uint32    `json:"bv,omitempty"`
	Sealed         []byte    `json:"s,omitempty"`
	CreatedAt      time.Time `json:"at"`
	DeletedAt      time.Time `json:"deleted_at,omitzero"`
	Destroyed      bool      `json:"destroyed,omitempty"`
}

// KVRecord is a secret: its path, settings and the versions it keeps, in
// ascending order. Current is the highest version ever written (it never
// goes down, so a version number is never reused for another value).
type KVRecord struct {
	Path        string      `json:"path"`
	Current     uint32      `json:"current"`
	MaxVersions int         `json:"max_versions,omitempty"`
	CASRequired bool        `json:"cas_required,omitempty"`
	CreatedAt   time.Time   `json:"created_at"`
	UpdatedAt   time.Time   `json:"updated_at"`
	Versions    []KVVersion `json:"versions"`
}

// Version returns version v, or nil.
func (r *KVRecord) Version(v uint32) *KVVersion {
	for i := range r.Versions {
		if r.Versions[i].Version == v {
			return &r.Versions[i]
		}
	}
	return nil
}

// Keep returns how many versions r keeps.
func (r *KVRecord) Keep() int {
	if r.MaxVersions > 0 {
		return r.MaxVersions
	}
	return DefaultKVMaxVersions
}

// KVAAD is the additional data a secret version is sealed with:
// "kv\x00" + path + "\x00" + version (uint32, big endian).
func KVAAD(path string, version uint32) []byte {
	out := make([]byte, 0, 3+len(path)+1+4)
	out = append(out, "kv\x00"...)
	out = append(out, path...)
	out = append(out, 0)
	return binary.BigEndian.AppendUint32(out, version)
}

// ValidKVPath reports whether p is a secret path (api.ValidKVPath).
func ValidKVPath(p string) bool { return api.ValidKVPath(p) }

// KVPut writes version Version of Path. It applies only if the secret's
// current version is Version-1 (the leader sealed the value for that
// version number; ErrConflict otherwise, and the leader retries), and,
// when CAS is set, only if the current version is *CAS (0: the secret
// must not exist). A secret with cas_required refuses a write without CAS.
type KVPut struct {
	Meta
	Path           string  `json:"path"`
	Version        uint32  `json:"v"`
	CAS            *uint32 `json:"cas,omitempty"`
	BarrierVersion uint32  `json:"bv"`
	Sealed         []byte  `json:"s"`
}

// KVVersions names versions of a secret for delete, undelete and
// destroy. An empty list in a KVDelete means the current version.
type KVVersions struct {
	Meta
	Path     string   `json:"path"`
	Versions []uint32 `json:"versions,omitempty"`
}

// KVDelete soft-deletes versions: they read as deleted until undeleted.
type KVDelete struct{ KVVersions }

// KVUndelete restores soft-deleted versions (not destroyed ones).
type KVUndelete struct{ KVVersions }

// KVDestroy removes versions' sealed values from the state for good.
type KVDestroy struct{ KVVersions }

// KVConfig changes a secret's settings; nil fields are left unchanged.
// Lowering MaxVersions prunes the oldest versions at once.
type KVConfig struct {
	Meta
	Path        string `json:"path"`
	MaxVersions *int   `json:"max_versions,omitempty"`
	CASRequired *bool  `json:"cas_required,omitempty"`
}

// KVDeleteAll removes a secret with every version and its settings.
type KVDeleteAll struct {
	Meta
	Path string `json:"path"`
}

func (*KVPut) op() Op       { return OpKVPut }
func (*KVDelete) op() Op    { return OpKVDelete }
func (*KVUndelete) op() Op  { return OpKVUndelete }
func (*KVDestroy) op() Op   { return OpKVDestroy }
func (*KVConfig) op() Op    { return OpKVConfig }
func (*KVDeleteAll) op() Op { return OpKVDeleteAll }

func newKVCommand(op Op) Command {
	switch op {
	case OpKVPut:
		return new(KVPut)
	case OpKVDelete:
		return new(KVDelete)
	case OpKVUndelete:
		return new(KVUndelete)
	case OpKVDestroy:
		return new(KVDestroy)
	case OpKVConfig:
		return new(KVConfig)
	case OpKVDeleteAll:
		return new(KVDeleteAll)
	}
	return newTokenizeCommand(op)
}

// ErrKVNotFound: no such secret, or no such version of it.
var ErrKVNotFound = fmt.Errorf("%w: secret", ErrNotFound)

// dispatchKV applies the KV and tokenization commands; ok is false for
// others.
func (a *applier) dispatchKV(cmd Command) (bool, error) {
	switch c := cmd.(type) {
	case *KVPut:
		return true, a.applyKVPut(c)
	case *KVDelete:
		return true, a.updateKV(c.Path, func(r *KVRecord) error {
			vs := c.Versions
			if len(vs) == 0 {
				vs = []uint32{r.Current}
			}
			return r.eachVersion(vs, func(v *KVVersion) {
				if v.DeletedAt.IsZero() && !v.Destroyed {
					v.DeletedAt = c.At
				}
			})
		})
	case *KVUndelete:
		return true, a.updateKV(c.Path, func(r *KVRecord) error {
			if len(c.Versions) == 0 {
				return fmt.Errorf("%w: undelete names no version", ErrInvalidCommand)
			}
			return r.eachVersion(c.Versions, func(v *KVVersion) {
				if !v.Destroyed {
					v.DeletedAt = time.Time{}
				}
			})
		})
	case *KVDestroy:
		return true, a.updateKV(c.Path, func(r *KVRecord) error {
			if len(c.Versions) == 0 {
				return fmt.Errorf("%w: destroy names no version", ErrInvalidCommand)
			}
			return r.eachVersion(c.Versions, func(v *KVVersion) {
				v.Destroyed, v.Sealed, v.BarrierVersion = true, nil, 0
			})
		})
	case *KVConfig:
		return true, a.updateKV(c.Path, func(r *KVRecord) error {
			if c.MaxVersions == nil && c.CASRequired == nil {
				return fmt.Errorf("%w: nothing to change", ErrInvalidCommand)
			}
			if c.MaxVersions != nil {
				if *c.MaxVersions < 0 || *c.MaxVersions > MaxKVMaxVersions {
					return fmt.Errorf("%w: max_versions outside 0..%d", ErrInvalidCommand, MaxKVMaxVersions)
				}
				r.MaxVersions = *c.MaxVersions
				r.prune()
			}
			if c.CASRequired != nil {
				r.CASRequired = *c.CASRequired
			}
			return nil
		})
	case *KVDeleteAll:
		if !ValidKVPath(c.Path) {
			return true, fmt.Errorf("%w: secret path", ErrInvalidCommand)
		}
		b, err := a.tx.CreateBucketIfNotExists(bucketKV)
		if err != nil {
			return true, errStorage{err}
		}
		if b.Get([]byte(c.Path)) == nil {
			return true, ErrKVNotFound
		}
		if err := b.Delete([]byte(c.Path)); err != nil {
			return true, errStorage{err}
		}
		return true, nil
	}
	return a.dispatchTokenize(cmd)
}

// eachVersion calls fn on each named version after checking that every
// one exists (a pruned or never-written version is ErrKVNotFound, and
// nothing changes).
func (r *KVRecord) eachVersion(vs []uint32, fn func(*KVVersion)) error {
	if len(vs) > MaxKVMaxVersions {
		return fmt.Errorf("%w: more than %d versions named", ErrInvalidCommand, MaxKVMaxVersions)
	}
	for _, v := range vs {
		if r.Version(v) == nil {
			return fmt.Errorf("%w: version %d", ErrKVNotFound, v)
		}
	}
	for _, v := range vs {
		fn(r.Version(v))
	}
	return nil
}

// prune drops the oldest versions beyond Keep, with their values, and
// then the oldest while the kept values exceed MaxKVRecordSealed (never
// the newest).
func (r *KVRecord) prune() {
	n := max(len(r.Versions)-r.Keep(), 0)
	total := 0
	for _, v := range r.Versions[n:] {
		total += len(v.Sealed)
	}
	for ; total > MaxKVRecordSealed && n < len(r.Versions)-1; n++ {
		total -= len(r.Versions[n].Sealed)
	}
	if n > 0 {
		clear(r.Versions[:n])
		r.Versions = slices.Delete(r.Versions, 0, n)
	}
}

func (a *applier) applyKVPut(c *KVPut) error {
	if !ValidKVPath(c.Path) {
		return fmt.Errorf("%w: secret path", ErrInvalidCommand)
	}
	if c.Version == 0 || c.BarrierVersion == 0 || len(c.Sealed) == 0 || len(c.Sealed) > MaxKVSealed {
		return fmt.Errorf("%w: secret version needs a sealed value", ErrInvalidCommand)
	}
	if err := a.requireInit(); err != nil {
		return err
	}
	r, err := a.getKV(c.Path)
	if err != nil && !errors.Is(err, ErrKVNotFound) {
		return err
	}
	if r == nil {
		r = &KVRecord{Path: c.Path, CreatedAt: c.At}
	}
	if c.CAS != nil && *c.CAS != r.Current {
		return fmt.Errorf("%w: check-and-set: secret is at version %d, not %d", ErrConflict, r.Current, *c.CAS)
	}
	if c.CAS == nil && r.CASRequired {
		return fmt.Errorf("%w: this secret requires check-and-set (cas)", ErrInvalidCommand)
	}
	if r.Current == ^uint32(0) || c.Version != r.Current+1 {
		return fmt.Errorf("%w: secret is at version %d, the write was sealed for %d", ErrConflict, r.Current, c.Version-1)
	}
	r.Current = c.Version
	r.UpdatedAt = c.At
	r.Versions = append(r.Versions, KVVersion{Version: c.Version, BarrierVersion: c.BarrierVersion, Sealed: c.Sealed, CreatedAt: c.At})
	r.prune()
	return a.putKV(r)
}

func (a *applier) updateKV(path string, fn func(*KVRecord) error) error {
	if !ValidKVPath(path) {
		return fmt.Errorf("%w: secret path", ErrInvalidCommand)
	}
	r, err := a.getKV(path)
	if err != nil {
		return err
	}
	if err := fn(r); err != nil {
		return err
	}
	return a.putKV(r)
}

func (a *applier) getKV(path string) (*KVRecord, error) {
	b := a.tx.Bucket(bucketKV)
	if b == nil {
		return nil, ErrKVNotFound
	}
	return decodeKV(b.Get([]byte(path)))
}

func decodeKV(v []byte) (*KVRecord, error) {
	if v == nil {
		return nil, ErrKVNotFound
	}
	var r KVRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("fsm: decode secret record: %w", err)
	}
	return &r, nil
}

func (a *applier) putKV(r *KVRecord) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	b, err := a.tx.CreateBucketIfNotExists(bucketKV)
	if err != nil {
		return errStorage{err}
	}
	if err := b.Put([]byte(r.Path), v); err != nil {
		return errStorage{err}
	}
	return nil
}

// KV returns the record of a secret, or ErrKVNotFound.
func (f *FSM) KV(path string) (*KVRecord, error) {
	var rec *KVRecord
	err := f.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKV)
		if b == nil {
			return ErrKVNotFound
		}
		var err error
		rec, err = decodeKV(b.Get([]byte(path)))
		return err
	})
	return rec, err
}

// ListKV returns up to limit secret paths starting with prefix, after
// `after`, that keep accepts (every path when keep is nil), in order, and
// whether another accepted path follows. Refused paths shape neither the
// page nor `more`.
func (f *FSM) ListKV(prefix, after string, limit int, keep func(path string) bool) ([]string, bool, error) {
	var out []string
	more := false
	err := f.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKV)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		start := prefix
		if after > start {
			start = after
		}
		k, _ := c.Seek([]byte(start))
		if k != nil && after != "" && string(k) == after {
			k, _ = c.Next()
		}
		for ; k != nil && strings.HasPrefix(string(k), prefix); k, _ = c.Next() {
			if keep != nil && !keep(string(k)) {
				continue
			}
			if len(out) == limit {
				more = true
				break
			}
			out = append(out, string(k))
		}
		return nil
	})
	return out, more, err
}

// kvCounts counts secrets and the versions holding a value, for backup
// headers.
func kvCounts(tx *bolt.Tx) (secrets, versions int, err error) {
	b := tx.Bucket(bucketKV)
	if b == nil {
		return 0, 0, nil
	}
	err = b.ForEach(func(_, v []byte) error {
		r, err := decodeKV(v)
		if err != nil {
			return fmt.Errorf("%w: secret record: %v", ErrSnapshotCorrupt, err)
		}
		secrets++
		for _, ver := range r.Versions {
			if !ver.Destroyed {
				versions++
			}
		}
		return nil
	})
	return secrets, versions, err
}
