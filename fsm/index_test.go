package fsm

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// derivedFromRecords computes what the derived indexes must hold by
// walking every key record: the count, the tags of tagged keys and the
// names of keys with something due at or before now.
func derivedFromRecords(t *testing.T, f *FSM, now time.Time) (int, map[string][]string, []string) {
	t.Helper()
	count, tags := 0, map[string][]string{}
	var due []string
	err := f.ForEachKey(func(rec *KeyRecord) error {
		count++
		if len(rec.Tags) > 0 {
			tags[rec.Name] = rec.Tags
		}
		if at, ok := rec.NextDue(); ok && !now.Before(at) {
			due = append(due, rec.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(due)
	return count, tags, due
}

func checkDerived(t *testing.T, f *FSM, now time.Time, step string) {
	t.Helper()
	wantN, wantTags, wantDue := derivedFromRecords(t, f, now)
	n, err := f.KeyCount()
	if err != nil || n != wantN {
		t.Errorf("%s: KeyCount = %d, %v; records: %d", step, n, err, wantN)
	}
	tags := map[string][]string{}
	if err := f.ForEachTagged(func(name string, tt []string) error { tags[name] = tt; return nil }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tags, wantTags) {
		t.Errorf("%s: tagged index %v; records %v", step, tags, wantTags)
	}
	recs, err := f.DueKeys(now)
	if err != nil {
		t.Fatal(err)
	}
	var due []string
	for _, r := range recs {
		due = append(due, r.Name)
	}
	sort.Strings(due)
	if !reflect.DeepEqual(due, wantDue) {
		t.Errorf("%s: due index %v; records %v", step, due, wantDue)
	}
}

// TestDerivedIndexesFollowEveryKeyChange applies every kind of key change
// and checks after each that the count, the tag index and the due index
// say what a walk of the records says, for a time before and after every
// event.
func TestDerivedIndexesFollowEveryKeyChange(t *testing.T) {
	t.Parallel()
	f := openTest(t, nil)
	d := &driver{t: t, f: f}
	d.apply(initCmd())
	hour, day := time.Hour, 24*time.Hour
	dur := func(v time.Duration) *time.Duration { return &v }
	strs := func(v ...string) *[]string { return &v }
	del := t0.Add(10 * day)
	steps := []struct {
		name string
		cmd  Command
	}{
		{"plain", &CreateKey{Meta: Meta{At: t0}, Name: "plain", Type: "aes256-gcm", First: wv(1)}},
		{"rotating", &CreateKey{Meta: Meta{At: t0}, Name: "rot", Type: "aes256-gcm", First: wv(1), RotationPeriod: hour}},
		{"tagged with retention", &CreateKey{Meta: Meta{At: t0}, Name: "pii", Type: "aes256-gcm", First: wv(1), Tags: []string{"pii"}, Retention: day}},
		{"rotate", &RotateKey{Meta: Meta{At: t0.Add(2 * hour)}, Name: "rot", FromVersion: 1, New: wv(2)}},
		{"disable", &SetKeyState{Meta: Meta{At: t0}, Name: "rot", Enabled: false}},
		{"enable", &SetKeyState{Meta: Meta{At: t0}, Name: "rot", Enabled: true}},
		{"retag", &ConfigureKey{Meta: Meta{At: t0}, Name: "plain", Tags: strs("pci")}},
		{"untag", &ConfigureKey{Meta: Meta{At: t0}, Name: "pii", Tags: strs()}},
		{"period", &ConfigureKey{Meta: Meta{At: t0}, Name: "plain", RotationPeriod: dur(3 * day)}},
		{"schedule", &ScheduleDeletion{Meta: Meta{At: t0}, Name: "pii", DeleteAt: del}},
		{"cancel", &CancelDeletion{Meta: Meta{At: t0}, Name: "pii"}},
		{"reschedule", &ScheduleDeletion{Meta: Meta{At: t0}, Name: "pii", DeleteAt: del}},
		{"delete", &DeleteKey{Meta: Meta{At: del}, Name: "pii", DeleteAt: del}},
		{"recreate", &CreateKey{Meta: Meta{At: t0}, Name: "pii", Type: "aes256-gcm", First: wv(1), Tags: []string{"phi"}}},
	}
	probes := []time.Time{t0.Add(-time.Hour), t0, t0.Add(90 * time.Minute), t0.Add(3 * hour), t0.Add(2 * day), del, t0.Add(365 * day)}
	for _, s := range steps {
		if r := d.apply(s.cmd); r.Err != nil {
			t.Fatalf("%s: %v", s.name, r.Err)
		}
		for _, now := range probes {
			checkDerived(t, f, now, s.name+" at "+now.Format(time.RFC3339))
		}
	}
	if n, _ := f.KeyCount(); n != 3 {
		t.Fatalf("KeyCount = %d, want 3", n)
	}
}

// TestDerivedIndexesBuiltForOldDatabase opens a database that has no
// derived indexes (an older version's, or one rebuilt from a DR backup)
// and one whose indexes have another format version: both get them built
// from the records.
func TestDerivedIndexesBuiltForOldDatabase(t *testing.T) {
	t.Parallel()
	for _, damage := range []string{"missing", "other version"} {
		path := filepath.Join(t.TempDir(), "state.db")
		f, err := Open(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		d := &driver{t: t, f: f}
		d.apply(initCmd())
		d.apply(&CreateKey{Meta: Meta{At: t0}, Name: "a", Type: "aes256-gcm", First: wv(1), Tags: []string{"pii"}, Retention: time.Hour})
		d.apply(&CreateKey{Meta: Meta{At: t0}, Name: "b", Type: "aes256-gcm", First: wv(1)})
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			if damage == "missing" {
				return tx.DeleteBucket(bucketDerived)
			}
			// A stale index of another version: wrong count, no tags.
			dd := tx.Bucket(bucketDerived)
			if err := dd.Put(keyDerivedVer, []byte{derivedVersion + 1}); err != nil {
				return err
			}
			if err := dd.DeleteBucket(bucketTagged); err != nil {
				return err
			}
			_, err := dd.CreateBucket(bucketTagged)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		_ = db.Close()
		f, err = Open(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkDerived(t, f, t0.Add(2*time.Hour), damage)
		if n, _ := f.KeyCount(); n != 2 {
			t.Errorf("%s: KeyCount %d", damage, n)
		}
		_ = f.Close()
	}
}

// TestNextDueCoversEverythingDue: whatever the record, anything the
// scheduler would act on at now has NextDue <= now (the scheduler reads
// only keys the index says are due).
func TestNextDueCoversEverythingDue(t *testing.T) {
	t.Parallel()
	states := []string{StateEnabled, StateDisabled, StatePendingDeletion}
	durs := []time.Duration{0, time.Minute, time.Hour, 1<<63 - 1}
	times := []time.Time{t0.Add(-time.Hour), t0, t0.Add(time.Hour), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}
	for _, st := range states {
		for _, period := range durs {
			for _, ret := range durs {
				for _, delAt := range times {
					k := &KeyRecord{State: st, CreatedAt: t0, RotatedAt: t0, RotationPeriod: period, Retention: ret, DeletionAt: delAt}
					next, ok := k.NextDue()
					for _, now := range times {
						due := k.RotationDue(now) || k.RetentionDue(now) || (st == StatePendingDeletion && !now.Before(delAt))
						if due && (!ok || next.After(now) || dueStamp(next) != minStamp(dueStamp(next), dueStamp(now))) {
							b, _ := json.Marshal(k)
							t.Fatalf("due at %v but NextDue = %v, %v for %s", now, next, ok, b)
						}
					}
				}
			}
		}
	}
}

func minStamp(a, b [8]byte) [8]byte {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return a
			}
			return b
		}
	}
	return a
}

// TestDueKeysResume: passes of at most limit due keys resume after the last
// key returned and start over once they reach the end, so every due key is
// returned even when more than limit stay due; keys not yet due never are.
func TestDueKeysResume(t *testing.T) {
	t.Parallel()
	f := openTest(t, nil)
	d := &driver{t: t, f: f}
	d.apply(initCmd())
	const dueCount = 7
	for i := 0; i < dueCount; i++ {
		d.apply(&CreateKey{Meta: Meta{At: t0.Add(time.Duration(i) * time.Second)}, Name: fmt.Sprintf("due-%d", i), Type: "aes256-gcm", RotationPeriod: time.Minute, First: wv(1)})
	}
	d.apply(&CreateKey{Meta: Meta{At: t0}, Name: "later", Type: "aes256-gcm", RotationPeriod: 24 * time.Hour, First: wv(1)})
	now := t0.Add(time.Hour)
	tests := []struct {
		want    []string
		resumes bool
	}{
		{[]string{"due-0", "due-1", "due-2"}, true},
		{[]string{"due-3", "due-4", "due-5"}, true},
		{[]string{"due-6"}, false},
		{[]string{"due-0", "due-1", "due-2"}, true}, // from the start again
	}
	var cur DueCursor
	for i, tt := range tests {
		recs, next, err := f.DueKeysFrom(now, cur, 3)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range recs {
			got = append(got, r.Name)
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) || (next != nil) != tt.resumes {
			t.Fatalf("pass %d: got %v (resumes %v), want %v (resumes %v)", i, got, next != nil, tt.want, tt.resumes)
		}
		cur = next
	}
	all, err := f.DueKeys(now)
	if err != nil || len(all) != dueCount {
		t.Fatalf("DueKeys: %d keys, %v", len(all), err)
	}
}
