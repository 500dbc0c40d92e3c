package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Tokenization vault. A token stands for a value; the value is sealed
// under the barrier keyring by the leader (AAD: "tok\x00" + key name +
// "\x00" + SHA-256 of the token) and stored under the key's name and the
// token's SHA-256, never the token itself. Tokens may expire; the leader
// purges expired ones with TokenPurge.
//
// Both buckets are created on first use.
var (
	bucketVault    = []byte("vault")     // key name | 0 | sha256(token) -> VaultRecord
	bucketVaultExp = []byte("vault_exp") // expiry (8, BE) | vault key -> nil
)

// Tokenization commands. Values are part of the log format.
const (
	OpTokenize   Op = 120 + iota // store a token's sealed value
	OpTokenPurge                 // drop tokens expired at At
)

// MaxTokenPurge bounds the tokens one purge command removes.
const MaxTokenPurge = 1000

// VaultRecord is one stored token: the key (and that key's creation time,
// so a key deleted and created again does not inherit its tokens), the
// sealed value and the barrier version that sealed it.
type VaultRecord struct {
	Key            string    `json:"key"`
	KeyCreatedAt   time.Time `json:"key_created_at"`
	BarrierVersion uint32    `json:"bv"`
	Sealed         []byte    `json:"s"`
	CreatedAt      time.Time `json:"at"`
	ExpiresAt      time.Time `json:"expires_at,omitzero"`
	// Lookup is the deterministic index entry of the token, if any.
	Lookup []byte `json:"lookup,omitempty"`
}

// Tokenize stores a token for key Key. TokenHash is the SHA-256 of the
// token; a hash already stored for the key is a conflict (the proposer
// draws another token).
type Tokenize struct {
	Meta
	Key            string    `json:"key"`
	KeyCreatedAt   time.Time `json:"key_created_at"`
	TokenHash      []byte    `json:"th"`
	BarrierVersion uint32    `json:"bv"`
	Sealed         []byte    `json:"s"`
	ExpiresAt      time.Time `json:"expires_at,omitzero"`
	// Deterministic tokens: IndexKey, when set, is a new index key for
	// the key (sealed by the leader); Lookup is HMAC(index key, value)
	// and SealedToken the token sealed under the barrier, so the next
	// tokenize of the same value answers the same token.
	IndexKey    *SealedBlob `json:"index_key,omitempty"`
	Lookup      []byte      `json:"lookup,omitempty"`
	SealedToken *SealedBlob `json:"sealed_token,omitempty"`
}

// SealedBlob is data sealed under barrier version BarrierVersion.
type SealedBlob struct {
	BarrierVersion uint32 `json:"bv"`
	Sealed         []byte `json:"s"`
}

// IndexKeyRecord is a key's deterministic-token index key, for the key
// generation created at KeyCreatedAt.
type IndexKeyRecord struct {
	KeyCreatedAt time.Time `json:"key_created_at"`
	SealedBlob
}

// Deterministic index buckets, created on first use.
var (
	bucketVaultIdx = []byte("vault_idx") // key name -> IndexKeyRecord
	bucketVaultDet = []byte("vault_det") // key name | 0 | lookup -> DetRecord
)

// DetRecord is a deterministic index entry: the token for a value,
// sealed, and its hash.
type DetRecord struct {
	TokenHash []byte `json:"th"`
	SealedBlob
}

// IndexKeyAAD binds an index key to its key generation.
func IndexKeyAAD(key string, created time.Time) []byte {
	out := []byte("tokidx\x00" + key + "\x00")
	return binary.BigEndian.AppendUint64(out, uint64(created.UnixNano()))
}

// DetTokenAAD binds a sealed deterministic token to its index entry.
func DetTokenAAD(key string, lookup []byte) []byte {
	return append([]byte("tokdet\x00"+key+"\x00"), lookup...)
}

func detKey(key string, lookup []byte) []byte {
	return append(append([]byte(key), 0), lookup...)
}

// VaultIndexKey returns the index key record of key, or nil.
func (f *FSM) VaultIndexKey(key string) *IndexKeyRecord {
	var rec *IndexKeyRecord
	_ = f.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVaultIdx)
		if b == nil {
			return nil
		}
		if v := b.Get([]byte(key)); v != nil {
			rec = new(IndexKeyRecord)
			if json.Unmarshal(v, rec) != nil {
				rec = nil
			}
		}
		return nil
	})
	return rec
}

// VaultDet returns the deterministic index entry of key for lookup, or
// nil.
func (f *FSM) VaultDet(key string, lookup []byte) *DetRecord {
	var rec *DetRecord
	_ = f.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVaultDet)
		if b == nil {
			return nil
		}
		if v := b.Get(detKey(key, lookup)); v != nil {
			rec = new(DetRecord)
			if json.Unmarshal(v, rec) != nil {
				rec = nil
			}
		}
		return nil
	})
	return rec
}

// applyDeterministic records c's index key and index entry, if c carries
// them. applyTokenize calls it after its own checks and before its own
// write; it checks all of its conditions before its first write.
func (a *applier) applyDeterministic(c *Tokenize) error {
	if c.IndexKey == nil && c.Lookup == nil && c.SealedToken == nil {
		return nil
	}
	if len(c.Lookup) != sha256.Size || c.SealedToken == nil || c.SealedToken.BarrierVersion == 0 || len(c.SealedToken.Sealed) == 0 || len(c.SealedToken.Sealed) > 1024 {
		return fmt.Errorf("%w: deterministic token incomplete", ErrInvalidCommand)
	}
	if c.IndexKey != nil && (c.IndexKey.BarrierVersion == 0 || len(c.IndexKey.Sealed) == 0 || len(c.IndexKey.Sealed) > 1024) {
		return fmt.Errorf("%w: index key incomplete", ErrInvalidCommand)
	}
	idx, err := a.tx.CreateBucketIfNotExists(bucketVaultIdx)
	if err != nil {
		return errStorage{err}
	}
	det, err := a.tx.CreateBucketIfNotExists(bucketVaultDet)
	if err != nil {
		return errStorage{err}
	}
	var cur IndexKeyRecord
	current := false
	if v := idx.Get([]byte(c.Key)); v != nil && json.Unmarshal(v, &cur) == nil && cur.KeyCreatedAt.Equal(c.KeyCreatedAt) {
		current = true
	}
	if current == (c.IndexKey != nil) {
		// A new index key when one exists for this key generation, or
		// none when none exists: the leader raced another tokenize.
		return fmt.Errorf("%w: index key changed", ErrConflict)
	}
	dk := detKey(c.Key, c.Lookup)
	var stale []byte // the vault key of an expired token the entry names
	if v := det.Get(dk); v != nil {
		var d DetRecord
		if err := json.Unmarshal(v, &d); err != nil {
			return fmt.Errorf("fsm: decode index entry: %w", err)
		}
		vk := vaultKey(c.Key, d.TokenHash)
		if tv := a.tx.Bucket(bucketVault).Get(vk); tv != nil {
			var rec VaultRecord
			if err := json.Unmarshal(tv, &rec); err != nil {
				return fmt.Errorf("fsm: decode token record: %w", err)
			}
			if rec.ExpiresAt.IsZero() || c.At.Before(rec.ExpiresAt) {
				return fmt.Errorf("%w: value already has a token", ErrConflict)
			}
			stale = vk
		}
	}
	if stale != nil {
		// The value's token expired and awaits the purge: replace it.
		if err := a.dropToken(stale); err != nil {
			return err
		}
	}
	if c.IndexKey != nil {
		v, err := json.Marshal(&IndexKeyRecord{KeyCreatedAt: c.KeyCreatedAt, SealedBlob: *c.IndexKey})
		if err != nil {
			return err
		}
		if err := idx.Put([]byte(c.Key), v); err != nil {
			return errStorage{err}
		}
	}
	v, err := json.Marshal(&DetRecord{TokenHash: c.TokenHash, SealedBlob: *c.SealedToken})
	if err != nil {
		return err
	}
	if err := det.Put(dk, v); err != nil {
		return errStorage{err}
	}
	return nil
}

// TokenPurge removes up to MaxTokenPurge tokens whose expiry is at or
// before At, oldest first, and then (within the same bound) every token
// of the keys named in Orphans that no longer exist or were created again
// since (their tokens can never detokenize). Every replica removes the
// same ones.
type TokenPurge struct {
	Meta
	Orphans []string `json:"orphans,omitempty"`
}

func (*Tokenize) op() Op   { return OpTokenize }
func (*TokenPurge) op() Op { return OpTokenPurge }

func newTokenizeCommand(op Op) Command {
	switch op {
	case OpTokenize:
		return new(Tokenize)
	case OpTokenPurge:
		return new(TokenPurge)
	}
	return nil
}

// TokenHash is the digest a token is stored and bound under.
func TokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// VaultAAD is the additional data a token's value is sealed with.
func VaultAAD(key string, tokenHash []byte) []byte {
	out := make([]byte, 0, 4+len(key)+1+len(tokenHash))
	out = append(out, "tok\x00"...)
	out = append(out, key...)
	out = append(out, 0)
	return append(out, tokenHash...)
}

func vaultKey(key string, tokenHash []byte) []byte {
	out := make([]byte, 0, len(key)+1+len(tokenHash))
	out = append(out, key...)
	out = append(out, 0)
	return append(out, tokenHash...)
}

func (a *applier) dispatchTokenize(cmd Command) (bool, error) {
	switch c := cmd.(type) {
	case *Tokenize:
		return true, a.applyTokenize(c)
	case *TokenPurge:
		return true, a.applyTokenPurge(c)
	}
	return false, nil
}

func (a *applier) applyTokenize(c *Tokenize) error {
	if c.Key == "" || len(c.Key) > 128 || bytes.IndexByte([]byte(c.Key), 0) >= 0 || len(c.TokenHash) != sha256.Size ||
		c.BarrierVersion == 0 || len(c.Sealed) == 0 || len(c.Sealed) > MaxKVSealed {
		return fmt.Errorf("%w: token record incomplete", ErrInvalidCommand)
	}
	if !c.ExpiresAt.IsZero() && !c.ExpiresAt.After(c.At) {
		return fmt.Errorf("%w: token expiry not in the future", ErrInvalidCommand)
	}
	k, err := getKey(a.tx, c.Key)
	if err != nil {
		return err
	}
	if !k.CreatedAt.Equal(c.KeyCreatedAt) {
		return fmt.Errorf("%w: key %s was replaced", ErrConflict, c.Key)
	}
	if k.State != StateEnabled {
		return fmt.Errorf("%w: key %s is not enabled", ErrConflict, c.Key)
	}
	b, err := a.tx.CreateBucketIfNotExists(bucketVault)
	if err != nil {
		return errStorage{err}
	}
	vk := vaultKey(c.Key, c.TokenHash)
	if b.Get(vk) != nil {
		return fmt.Errorf("%w: token exists", ErrConflict)
	}
	if err := a.applyDeterministic(c); err != nil {
		return err
	}
	v, err := json.Marshal(&VaultRecord{Key: c.Key, KeyCreatedAt: c.KeyCreatedAt, BarrierVersion: c.BarrierVersion, Sealed: c.Sealed, CreatedAt: c.At, ExpiresAt: c.ExpiresAt, Lookup: c.Lookup})
	if err != nil {
		return err
	}
	if err := b.Put(vk, v); err != nil {
		return errStorage{err}
	}
	if c.ExpiresAt.IsZero() {
		return nil
	}
	exp, err := a.tx.CreateBucketIfNotExists(bucketVaultExp)
	if err != nil {
		return errStorage{err}
	}
	if err := exp.Put(expKey(c.ExpiresAt, vk), nil); err != nil {
		return errStorage{err}
	}
	return nil
}

func expKey(t time.Time, vk []byte) []byte {
	out := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(vk)), uint64(t.UnixNano()))
	return append(out, vk...)
}

func (a *applier) applyTokenPurge(c *TokenPurge) error {
	if len(c.Orphans) > MaxTokenPurge {
		return fmt.Errorf("%w: too many orphan keys", ErrInvalidCommand)
	}
	exp := a.tx.Bucket(bucketVaultExp)
	vault := a.tx.Bucket(bucketVault)
	if vault == nil {
		return nil
	}
	n := 0
	if exp != nil {
		var cutoff [8]byte
		binary.BigEndian.PutUint64(cutoff[:], uint64(c.At.UnixNano()))
		cur := exp.Cursor()
		for k, _ := cur.First(); len(k) > 8 && bytes.Compare(k[:8], cutoff[:]) <= 0 && n < MaxTokenPurge; k, _ = cur.First() {
			if err := a.dropLookup(vault.Get(k[8:])); err != nil {
				return err
			}
			if err := vault.Delete(k[8:]); err != nil {
				return errStorage{err}
			}
			if err := cur.Delete(); err != nil {
				return errStorage{err}
			}
			n++
		}
	}
	for _, name := range c.Orphans {
		if n >= MaxTokenPurge {
			break
		}
		if _, err := getKey(a.tx, name); err == nil {
			continue // the key exists (again): not an orphan
		} else if !errors.Is(err, ErrKeyNotFound) {
			return err
		}
		prefix := append([]byte(name), 0)
		vc := vault.Cursor()
		for vk, v := vc.Seek(prefix); n < MaxTokenPurge && vk != nil && bytes.HasPrefix(vk, prefix); vk, v = vc.Seek(prefix) {
			var rec VaultRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("fsm: decode token record: %w", err)
			}
			if err := a.dropLookup(v); err != nil {
				return err
			}
			if !rec.ExpiresAt.IsZero() && exp != nil {
				if err := exp.Delete(expKey(rec.ExpiresAt, vk)); err != nil {
					return errStorage{err}
				}
			}
			if err := vc.Delete(); err != nil {
				return errStorage{err}
			}
			n++
		}
	}
	return nil
}

// dropToken removes a vault record with its expiry entry.
func (a *applier) dropToken(vk []byte) error {
	vault := a.tx.Bucket(bucketVault)
	v := vault.Get(vk)
	if v == nil {
		return nil
	}
	var rec VaultRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return fmt.Errorf("fsm: decode token record: %w", err)
	}
	if exp := a.tx.Bucket(bucketVaultExp); exp != nil && !rec.ExpiresAt.IsZero() {
		if err := exp.Delete(expKey(rec.ExpiresAt, vk)); err != nil {
			return errStorage{err}
		}
	}
	if err := vault.Delete(vk); err != nil {
		return errStorage{err}
	}
	return nil
}

// dropLookup removes the deterministic index entry of a vault record
// (and, for an orphaned key, its index key), if any.
func (a *applier) dropLookup(v []byte) error {
	if v == nil {
		return nil
	}
	var rec VaultRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return fmt.Errorf("fsm: decode token record: %w", err)
	}
	if rec.Lookup == nil {
		return nil
	}
	if det := a.tx.Bucket(bucketVaultDet); det != nil {
		if err := det.Delete(detKey(rec.Key, rec.Lookup)); err != nil {
			return errStorage{err}
		}
	}
	if _, err := getKey(a.tx, rec.Key); errors.Is(err, ErrKeyNotFound) {
		if idx := a.tx.Bucket(bucketVaultIdx); idx != nil {
			if err := idx.Delete([]byte(rec.Key)); err != nil {
				return errStorage{err}
			}
		}
	}
	return nil
}

// OrphanVaultKeys returns up to limit key names that have tokens in the
// vault but no longer exist. The leader proposes them in a TokenPurge.
func (f *FSM) OrphanVaultKeys(limit int) []string {
	var out []string
	_ = f.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVault)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, _ := c.First(); k != nil && len(out) < limit; {
			i := bytes.IndexByte(k, 0)
			if i < 0 {
				k, _ = c.Next()
				continue
			}
			name := string(k[:i])
			if tx.Bucket(bucketKeys).Get(k[:i]) == nil {
				out = append(out, name)
			}
			k, _ = c.Seek(append([]byte(name), 1))
		}
		return nil
	})
	return out
}

// VaultToken returns the stored record of a key's token, or ErrNotFound.
func (f *FSM) VaultToken(key string, tokenHash []byte) (*VaultRecord, error) {
	var rec *VaultRecord
	err := f.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVault)
		if b == nil {
			return fmt.Errorf("%w: token", ErrNotFound)
		}
		v := b.Get(vaultKey(key, tokenHash))
		if v == nil {
			return fmt.Errorf("%w: token", ErrNotFound)
		}
		rec = new(VaultRecord)
		return json.Unmarshal(v, rec)
	})
	return rec, err
}

// TokensExpiredBy reports whether some token expired at or before t
// (the leader's scheduler proposes a TokenPurge only then).
func (f *FSM) TokensExpiredBy(t time.Time) bool {
	found := false
	_ = f.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVaultExp)
		if b == nil {
			return nil
		}
		k, _ := b.Cursor().First()
		found = len(k) > 8 && binary.BigEndian.Uint64(k[:8]) <= uint64(t.UnixNano())
		return nil
	})
	return found
}

func vaultCount(tx *bolt.Tx) int {
	if b := tx.Bucket(bucketVault); b != nil {
		return b.Stats().KeyN
	}
	return 0
}
