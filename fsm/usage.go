package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyd/keyd/api"
)

// Key and credential usage: when each key version was last used, by
// whom, and when each token or identity last authenticated. Nodes gather
// uses in memory and flush them as one RecordUsage command per interval
// (never a Raft write per request); applying it merges the latest times
// (max) and adds the counts. Both buckets are created on first use and
// travel in snapshots and backups like every other bucket.
var (
	bucketUsageKeys       = []byte("usage_keys")       // key name -> KeyUsageRecord
	bucketUsagePrincipals = []byte("usage_principals") // principal id -> UseStat
)

// OpRecordUsage is the usage command, in its own range (after the audit
// commands) so that other appended ops never collide with it.
const OpRecordUsage Op = 96

// Bounds on one RecordUsage and on what is kept per key.
const (
	MaxUsageKeys          = 4096 // keys in one command
	MaxUsagePrincipals    = 4096 // principals in one command
	MaxUsageVersions      = 1024 // versions of one key in one command
	MaxIdentitiesPerKey   = 128  // identities remembered per key (the oldest are dropped)
	maxUsageIdentityLen   = 128
	maxUsageNodeLen       = 128
	maxUsageIdentitiesCmd = 1024 // identities of one key in one command
)

// UseStat is the latest use and the number of uses.
type UseStat struct {
	Last  time.Time `json:"l"`
	Count uint64    `json:"c"`
}

// merge folds o into s: the later time, the sum of counts (saturating).
func (s *UseStat) merge(o UseStat) {
	if o.Last.After(s.Last) {
		s.Last = o.Last
	}
	if s.Count+o.Count < s.Count {
		s.Count = ^uint64(0)
	} else {
		s.Count += o.Count
	}
}

// VersionUse is one key version's uses in a RecordUsage.
type VersionUse struct {
	Version uint32 `json:"v"`
	UseStat
}

// PrincipalUse is one caller's uses ("token:<accessor>", "cert:<id>").
type PrincipalUse struct {
	ID string `json:"id"`
	UseStat
}

// KeyUse is one key's uses in a RecordUsage.
type KeyUse struct {
	Name       string         `json:"n"`
	Versions   []VersionUse   `json:"v,omitempty"`
	Identities []PrincipalUse `json:"i,omitempty"`
}

// RecordUsage merges one node's aggregated uses. Uses of keys or versions
// that no longer exist are dropped; times later than the command's own
// (At) are clamped to it, so a node with a fast clock cannot make a key
// look used in the future.
type RecordUsage struct {
	Meta
	Node       string         `json:"node"`
	Keys       []KeyUse       `json:"keys,omitempty"`
	Principals []PrincipalUse `json:"principals,omitempty"`
}

func (*RecordUsage) op() Op { return OpRecordUsage }

// KeyUsageRecord is a key's stored usage.
type KeyUsageRecord struct {
	Versions   map[uint32]UseStat `json:"v,omitempty"`
	Identities map[string]UseStat `json:"i,omitempty"`
}

// Total is the key's latest use and the sum of its versions' counts.
// Every use is noted under its caller but under a version only when the
// reply names one (transit, pseudonym, the PII batches and tokenization
// do not), so the latest use is the latest over versions and callers: a
// key used only through those routes is not reported as never used.
func (r *KeyUsageRecord) Total() UseStat {
	var t UseStat
	if r == nil {
		return t
	}
	for _, s := range r.Versions {
		t.merge(s)
	}
	for _, s := range r.Identities {
		if s.Last.After(t.Last) {
			t.Last = s.Last
		}
	}
	return t
}

func (c *RecordUsage) validate() error {
	if c.Node == "" || len(c.Node) > maxUsageNodeLen {
		return fmt.Errorf("%w: usage node id", ErrInvalidCommand)
	}
	if len(c.Keys) > MaxUsageKeys || len(c.Principals) > MaxUsagePrincipals {
		return fmt.Errorf("%w: usage batch of %d keys and %d principals exceeds %d/%d", ErrInvalidCommand, len(c.Keys), len(c.Principals), MaxUsageKeys, MaxUsagePrincipals)
	}
	for i := range c.Keys {
		k := &c.Keys[i]
		if k.Name == "" || len(k.Name) > 256 || len(k.Versions) > MaxUsageVersions || len(k.Identities) > maxUsageIdentitiesCmd {
			return fmt.Errorf("%w: usage of key %d", ErrInvalidCommand, i)
		}
		for _, v := range k.Versions {
			if v.Version == 0 {
				return fmt.Errorf("%w: usage of version 0", ErrInvalidCommand)
			}
		}
		for _, p := range k.Identities {
			if !validUsageID(p.ID) {
				return fmt.Errorf("%w: usage identity", ErrInvalidCommand)
			}
		}
	}
	for _, p := range c.Principals {
		if !validUsageID(p.ID) {
			return fmt.Errorf("%w: usage principal", ErrInvalidCommand)
		}
	}
	return nil
}

func validUsageID(id string) bool {
	if id == "" || len(id) > maxUsageIdentityLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// clamp bounds a reported use time by the command's time.
func clamp(s UseStat, at time.Time) UseStat {
	if s.Last.After(at) {
		s.Last = at
	}
	return s
}

// dispatchUsage applies the usage command; ok is false for others.
func (a *applier) dispatchUsage(cmd Command) (bool, error) {
	c, ok := cmd.(*RecordUsage)
	if !ok {
		return false, nil
	}
	return true, a.applyUsage(c)
}

func (a *applier) applyUsage(c *RecordUsage) error {
	if err := c.validate(); err != nil {
		return err
	}
	if err := a.requireInit(); err != nil {
		return err
	}
	kb, err := a.tx.CreateBucketIfNotExists(bucketUsageKeys)
	if err != nil {
		return errStorage{err}
	}
	pb, err := a.tx.CreateBucketIfNotExists(bucketUsagePrincipals)
	if err != nil {
		return errStorage{err}
	}
	for i := range c.Keys {
		ku := &c.Keys[i]
		k, err := getKey(a.tx, ku.Name)
		if errors.Is(err, ErrKeyNotFound) {
			continue // deleted since it was used
		} else if err != nil {
			return err
		}
		var rec KeyUsageRecord
		if v := kb.Get([]byte(ku.Name)); v != nil {
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("fsm: decode usage of %q: %w", ku.Name, err)
			}
		}
		if rec.Versions == nil {
			rec.Versions = map[uint32]UseStat{}
		}
		if rec.Identities == nil {
			rec.Identities = map[string]UseStat{}
		}
		for _, v := range ku.Versions {
			if v.Version > k.Latest() {
				continue
			}
			s := rec.Versions[v.Version]
			s.merge(clamp(v.UseStat, c.At))
			rec.Versions[v.Version] = s
		}
		for _, p := range ku.Identities {
			s := rec.Identities[p.ID]
			s.merge(clamp(p.UseStat, c.At))
			rec.Identities[p.ID] = s
		}
		trimIdentities(rec.Identities, MaxIdentitiesPerKey)
		b, err := json.Marshal(&rec)
		if err != nil {
			return err
		}
		if err := kb.Put([]byte(ku.Name), b); err != nil {
			return errStorage{err}
		}
	}
	for _, p := range c.Principals {
		var s UseStat
		if v := pb.Get([]byte(p.ID)); v != nil {
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("fsm: decode usage of %q: %w", p.ID, err)
			}
		}
		s.merge(clamp(p.UseStat, c.At))
		b, err := json.Marshal(&s)
		if err != nil {
			return err
		}
		if err := pb.Put([]byte(p.ID), b); err != nil {
			return errStorage{err}
		}
	}
	return nil
}

// trimIdentities drops the least recently used identities beyond max
// (ties broken by id, so every replica drops the same).
func trimIdentities(m map[string]UseStat, max int) {
	if len(m) <= max {
		return
	}
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(x, y string) int {
		if c := m[x].Last.Compare(m[y].Last); c != 0 {
			return c
		}
		if x < y {
			return -1
		}
		return 1
	})
	for _, id := range ids[:len(m)-max] {
		delete(m, id)
	}
}

// deleteUsage forgets a deleted key's usage, so a new key of the same
// name starts unused.
func (a *applier) deleteUsage(name string) error {
	b := a.tx.Bucket(bucketUsageKeys)
	if b == nil {
		return nil
	}
	if err := b.Delete([]byte(name)); err != nil {
		return errStorage{err}
	}
	return nil
}

// KeyUsage returns a key's recorded usage (an empty record when none).
func (f *FSM) KeyUsage(name string) (*KeyUsageRecord, error) {
	rec := &KeyUsageRecord{}
	err := f.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsageKeys)
		if b == nil {
			return nil
		}
		if v := b.Get([]byte(name)); v != nil {
			return json.Unmarshal(v, rec)
		}
		return nil
	})
	return rec, err
}

// AllKeyUsage returns every key's recorded usage by name.
func (f *FSM) AllKeyUsage() (map[string]*KeyUsageRecord, error) {
	out := map[string]*KeyUsageRecord{}
	err := f.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsageKeys)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			rec := &KeyUsageRecord{}
			if err := json.Unmarshal(v, rec); err != nil {
				return fmt.Errorf("fsm: decode usage of %q: %w", k, err)
			}
			out[string(k)] = rec
			return nil
		})
	})
	return out, err
}

// PrincipalUsage returns every recorded principal's usage by id.
func (f *FSM) PrincipalUsage() (map[string]UseStat, error) {
	out := map[string]UseStat{}
	err := f.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsagePrincipals)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var s UseStat
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("fsm: decode usage of %q: %w", k, err)
			}
			out[string(k)] = s
			return nil
		})
	})
	return out, err
}

func dumpUsage(tx *bolt.Tx, w io.Writer) error {
	for _, name := range [][]byte{bucketUsageKeys, bucketUsagePrincipals} {
		b := tx.Bucket(name)
		if b == nil {
			continue
		}
		err := b.ForEach(func(k, v []byte) error {
			_, err := fmt.Fprintf(w, "%s/%x=%x\n", name, k, v)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// keyRetentionDue reports whether a key with a retention is old enough
// to have its deletion scheduled at now.
func keyRetentionDue(k *KeyRecord, now time.Time) bool {
	return k.Retention > 0 && k.State != StatePendingDeletion && !now.Before(k.CreatedAt.Add(k.Retention))
}

// RetentionDue reports whether the key's retention period has passed at
// now and its deletion is not scheduled yet.
func (k *KeyRecord) RetentionDue(now time.Time) bool { return keyRetentionDue(k, now) }

// checkTagsRetention checks what the proposer validated with
// api.NormalizeTags: a bounded, sorted list without duplicates of valid
// tags, and a non-negative retention.
func checkTagsRetention(tags []string, retention time.Duration) error {
	if retention < 0 {
		return fmt.Errorf("%w: negative retention", ErrInvalidCommand)
	}
	norm, err := api.NormalizeTags(tags)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidCommand, err)
	}
	if !slices.Equal(norm, tags) && !(len(norm) == 0 && len(tags) == 0) {
		return fmt.Errorf("%w: tags not sorted or duplicated", ErrInvalidCommand)
	}
	return nil
}

func configureTagsRetention(k *KeyRecord, c *ConfigureKey) error {
	tags := k.Tags
	if c.Tags != nil {
		tags = *c.Tags
	}
	ret := k.Retention
	if c.Retention != nil {
		ret = *c.Retention
	}
	if err := checkTagsRetention(tags, ret); err != nil {
		return err
	}
	if len(tags) == 0 {
		tags = nil
	}
	k.Tags, k.Retention = tags, ret
	return nil
}
