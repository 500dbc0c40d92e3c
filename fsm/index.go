package fsm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Derived indexes over the key records, kept in the same bbolt
// transaction as every change to a key, so that what grows with the number
// of keys is never walked whole at run time:
//
//   - the number of keys (metrics), instead of bbolt's bucket statistics,
//     which read every page of the keys bucket;
//   - the tags of the keys that have tags (authorization's tag table is
//     rebuilt from it at start and after a restore, instead of decoding
//     every key record, which made a node's start linear in its keys);
//   - each key's next scheduled event (rotation, deletion, retention),
//     ordered by time, so the leader's scheduler reads only what is due
//     instead of decoding every record each interval.
//
// All of it lives under one bucket, "derived", with a format version. A
// database without it (an older version's, or one rebuilt from a DR backup,
// which copies the primary buckets only) gets it built by one walk when it
// is opened; a Raft snapshot is the whole database, so installing one
// carries its indexes along.
var (
	bucketDerived = []byte("derived")
	bucketTagged  = []byte("tagged") // in derived: name -> JSON tags
	bucketDue     = []byte("due")    // in derived: time(8) | name -> nil
	bucketDueOf   = []byte("due_of") // in derived: name -> time(8)
	keyDerivedVer = []byte("version")
	keyKeyCount   = []byte("keys")
)

// derivedVersion changes when the derived indexes change meaning; a
// database with another version has them rebuilt on open.
const derivedVersion = 1

// MaxDuePerPass bounds how many due keys one DueKeys call returns, so a
// mass of keys falling due together is worked through over several
// scheduler passes instead of held in memory at once.
const MaxDuePerPass = 10000

// NextDue returns the earliest time at which the scheduler has something
// to do for k: rotate it, delete it or schedule its deletion for its
// retention. For every now, RotationDue(now), RetentionDue(now) or a
// pending deletion whose time has come imply NextDue() <= now.
func (k *KeyRecord) NextDue() (time.Time, bool) {
	var next time.Time
	var ok bool
	consider := func(t time.Time) {
		if !ok || t.Before(next) {
			next, ok = t, true
		}
	}
	if k.RotationPeriod > 0 && k.State == StateEnabled {
		consider(k.RotatedAt.Add(k.RotationPeriod))
	}
	if k.State == StatePendingDeletion {
		consider(k.DeletionAt)
	}
	if k.Retention > 0 && k.State != StatePendingDeletion {
		consider(k.CreatedAt.Add(k.Retention))
	}
	return next, ok
}

// dueStamp encodes t so that byte order is time order, saturating outside
// the range of UnixNano.
func dueStamp(t time.Time) [8]byte {
	var n int64
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		n = math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		n = math.MaxInt64
	default:
		n = t.UnixNano()
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n)^(1<<63))
	return b
}

// derivedBuckets returns the derived bucket and its three sub-buckets.
func derivedBuckets(tx *bolt.Tx) (d, tagged, due, dueOf *bolt.Bucket) {
	d = tx.Bucket(bucketDerived)
	return d, d.Bucket(bucketTagged), d.Bucket(bucketDue), d.Bucket(bucketDueOf)
}

// indexKey updates the indexes for k, just stored; added says whether it
// is a new key.
func indexKey(tx *bolt.Tx, k *KeyRecord, added bool) error {
	d, tagged, due, dueOf := derivedBuckets(tx)
	name := []byte(k.Name)
	if added {
		if err := addKeyCount(d, 1); err != nil {
			return err
		}
	}
	if len(k.Tags) > 0 {
		v, err := json.Marshal(k.Tags)
		if err != nil {
			return err
		}
		if err := tagged.Put(name, v); err != nil {
			return err
		}
	} else if !added {
		if err := tagged.Delete(name); err != nil {
			return err
		}
	}
	if !added {
		if err := unindexDue(due, dueOf, name); err != nil {
			return err
		}
	}
	if t, ok := k.NextDue(); ok {
		stamp := dueStamp(t)
		if err := due.Put(append(stamp[:], name...), nil); err != nil {
			return err
		}
		if err := dueOf.Put(name, stamp[:]); err != nil {
			return err
		}
	}
	return nil
}

// unindexKey removes a deleted key from the indexes.
func unindexKey(tx *bolt.Tx, name string) error {
	d, tagged, due, dueOf := derivedBuckets(tx)
	if err := addKeyCount(d, -1); err != nil {
		return err
	}
	if err := tagged.Delete([]byte(name)); err != nil {
		return err
	}
	return unindexDue(due, dueOf, []byte(name))
}

func unindexDue(due, dueOf *bolt.Bucket, name []byte) error {
	stamp := dueOf.Get(name)
	if stamp == nil {
		return nil
	}
	if err := due.Delete(append(bytes.Clone(stamp), name...)); err != nil {
		return err
	}
	return dueOf.Delete(name)
}

func addKeyCount(d *bolt.Bucket, delta int64) error {
	var n uint64
	if v := d.Get(keyKeyCount); len(v) == 8 {
		n = binary.BigEndian.Uint64(v)
	}
	switch {
	case delta < 0 && n < uint64(-delta):
		n = 0
	default:
		n = uint64(int64(n) + delta)
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return d.Put(keyKeyCount, b[:])
}

// ensureDerived builds the derived indexes when the database has none of
// the current version (one walk of the key records).
func ensureDerived(tx *bolt.Tx) error {
	if d := tx.Bucket(bucketDerived); d != nil {
		if v := d.Get(keyDerivedVer); len(v) == 1 && v[0] == derivedVersion {
			return nil
		}
		if err := tx.DeleteBucket(bucketDerived); err != nil {
			return err
		}
	}
	d, err := tx.CreateBucket(bucketDerived)
	if err != nil {
		return err
	}
	for _, name := range [][]byte{bucketTagged, bucketDue, bucketDueOf} {
		if _, err := d.CreateBucket(name); err != nil {
			return err
		}
	}
	if err := addKeyCount(d, 0); err != nil {
		return err
	}
	err = tx.Bucket(bucketKeys).ForEach(func(_, v []byte) error {
		var rec KeyRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("fsm: decode key record: %w", err)
		}
		return indexKey(tx, &rec, true)
	})
	if err != nil {
		return err
	}
	return d.Put(keyDerivedVer, []byte{derivedVersion})
}

// KeyCount returns the number of key records (the metric keyd_keys): one
// read of a counter, whatever the number of keys.
func (f *FSM) KeyCount() (int, error) {
	var n int
	err := f.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketDerived).Get(keyKeyCount); len(v) == 8 {
			n = int(binary.BigEndian.Uint64(v))
		}
		return nil
	})
	return n, err
}

// ForEachTagged calls fn with the name and tags of every key that has
// tags, in name order; keys without tags cost nothing.
func (f *FSM) ForEachTagged(fn func(name string, tags []string) error) error {
	return f.view(func(tx *bolt.Tx) error {
		_, tagged, _, _ := derivedBuckets(tx)
		return tagged.ForEach(func(k, v []byte) error {
			var tags []string
			if err := json.Unmarshal(v, &tags); err != nil {
				return fmt.Errorf("fsm: decode tags of %q: %w", k, err)
			}
			return fn(string(k), tags)
		})
	})
}

// DueKeys returns the records of the keys whose next scheduled event
// (KeyRecord.NextDue) is at or before now, earliest first, at most
// MaxDuePerPass of them. The caller decides what is due exactly (the
// record's RotationDue, RetentionDue and deletion time).
func (f *FSM) DueKeys(now time.Time) ([]*KeyRecord, error) {
	recs, _, err := f.DueKeysFrom(now, nil, MaxDuePerPass)
	return recs, err
}

// DueCursor is where a pass over the due keys stopped; nil is the start.
type DueCursor []byte

// DueKeysFrom is DueKeys for passes that resume: it returns at most limit
// due keys after cursor from, and the cursor to resume from, nil once it
// reached the last due key. A pass that always started at the earliest due
// key would, when more than limit keys stay due (their action keeps
// failing), never reach the keys after them.
func (f *FSM) DueKeysFrom(now time.Time, from DueCursor, limit int) ([]*KeyRecord, DueCursor, error) {
	var out []*KeyRecord
	var last, next DueCursor
	until := dueStamp(now)
	err := f.view(func(tx *bolt.Tx) error {
		_, _, due, _ := derivedBuckets(tx)
		keys := tx.Bucket(bucketKeys)
		c := due.Cursor()
		k, _ := c.First()
		if from != nil {
			k, _ = c.Seek(from)
			if k != nil && bytes.Equal(k, from) {
				k, _ = c.Next()
			}
		}
		for ; k != nil; k, _ = c.Next() {
			if len(k) < 8 || bytes.Compare(k[:8], until[:]) > 0 {
				return nil
			}
			if len(out) == limit {
				next = last // more are due: resume after the last returned
				return nil
			}
			v := keys.Get(k[8:])
			if v == nil {
				continue
			}
			var rec KeyRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("fsm: decode key record: %w", err)
			}
			out = append(out, &rec)
			last = bytes.Clone(k)
		}
		return nil
	})
	return out, next, err
}
