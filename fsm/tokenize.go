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
	v, err := json.Marshal(&VaultRecord{Key: c.Key, KeyCreatedAt: c.KeyCreatedAt, BarrierVersion: c.BarrierVersion, Sealed: c.Sealed, CreatedAt: c.At, ExpiresAt: c.ExpiresAt})
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
