package fsm

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestRecordUsageMerges(t *testing.T) {
	t.Parallel()
	f := openTest(t, nil)
	d := &driver{t: t, f: f}
	d.apply(initCmd())
	d.apply(&CreateKey{Meta: Meta{At: t0}, Name: "a", Type: "aes256-gcm", First: wv(1)})
	d.apply(&RotateKey{Meta: Meta{At: t0}, Name: "a", FromVersion: 1, New: wv(2)})
	t1, t2 := t0.Add(time.Minute), t0.Add(2*time.Minute)
	use := func(at time.Time, node string, v uint32, last time.Time, n uint64) *Result {
		return d.apply(&RecordUsage{Meta: Meta{At: at}, Node: node,
			Keys: []KeyUse{
				{Name: "a", Versions: []VersionUse{{Version: v, UseStat: UseStat{Last: last, Count: n}}},
					Identities: []PrincipalUse{{ID: "token:ab", UseStat: UseStat{Last: last, Count: n}}}},
				{Name: "gone", Versions: []VersionUse{{Version: 1, UseStat: UseStat{Last: last, Count: 1}}}},
			},
			Principals: []PrincipalUse{{ID: "token:ab", UseStat: UseStat{Last: last, Count: n}}},
		})
	}
	for _, r := range []*Result{
		use(t2, "n1", 1, t2, 3),
		use(t2, "n2", 1, t1, 4),                // older time from another node: max wins, counts add
		use(t2, "n2", 2, t2.Add(time.Hour), 1), // future time: clamped to the command's
		use(t2, "n3", 9, t2, 1),                // unknown version: dropped
	} {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	rec, err := f.KeyUsage("a")
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.Versions[1]; got.Count != 7 || !got.Last.Equal(t2) {
		t.Fatalf("v1 = %+v, want 7 uses, last %v", got, t2)
	}
	if got := rec.Versions[2]; got.Count != 1 || !got.Last.Equal(t2) {
		t.Fatalf("v2 = %+v (a future time must clamp to the command's)", got)
	}
	if _, ok := rec.Versions[9]; ok {
		t.Fatal("a use of a version that does not exist was stored")
	}
	if got := rec.Identities["token:ab"]; got.Count != 9 {
		t.Fatalf("identity = %+v, want 9", got)
	}
	if tot := rec.Total(); tot.Count != 8 || !tot.Last.Equal(t2) {
		t.Fatalf("total = %+v", tot)
	}
	all, _ := f.AllKeyUsage()
	if _, ok := all["gone"]; ok {
		t.Fatal("usage of a missing key was stored")
	}
	p, _ := f.PrincipalUsage()
	if p["token:ab"].Count != 9 {
		t.Fatalf("principal = %+v", p["token:ab"])
	}

	// Snapshots carry usage.
	snap := snapshotOf(t, f)
	dst := openTest(t, nil)
	if err := dst.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dump(t, dst), "usage_keys/") || dump(t, dst) != dump(t, f) {
		t.Fatal("restored snapshot lacks the usage")
	}
	if got, _ := dst.KeyUsage("a"); got.Versions[1].Count != 7 {
		t.Fatal("restored usage differs")
	}

	// Deleting the key forgets its usage.
	d.apply(&ScheduleDeletion{Meta: Meta{At: t2}, Name: "a", DeleteAt: t2.Add(time.Hour)})
	if r := d.apply(&DeleteKey{Meta: Meta{At: t2.Add(time.Hour)}, Name: "a", DeleteAt: t2.Add(time.Hour)}); r.Err != nil {
		t.Fatal(r.Err)
	}
	d.apply(&CreateKey{Meta: Meta{At: t2.Add(2 * time.Hour)}, Name: "a", Type: "aes256-gcm", First: wv(1)})
	if rec, _ := f.KeyUsage("a"); len(rec.Versions) != 0 {
		t.Fatal("a new key inherited a deleted key's usage")
	}
}

func TestRecordUsageRefusesBadInput(t *testing.T) {
	t.Parallel()
	f := openTest(t, nil)
	d := &driver{t: t, f: f}
	d.apply(initCmd())
	d.apply(&CreateKey{Meta: Meta{At: t0}, Name: "a", Type: "aes256-gcm", First: wv(1)})
	before := dump(t, f)
	for name, c := range map[string]*RecordUsage{
		"no node":    {Meta: Meta{At: t0}, Keys: []KeyUse{{Name: "a"}}},
		"version 0":  {Meta: Meta{At: t0}, Node: "n", Keys: []KeyUse{{Name: "a", Versions: []VersionUse{{Version: 0}}}}},
		"bad id":     {Meta: Meta{At: t0}, Node: "n", Principals: []PrincipalUse{{ID: "a b"}}},
		"empty name": {Meta: Meta{At: t0}, Node: "n", Keys: []KeyUse{{Name: ""}}},
		"too many":   {Meta: Meta{At: t0}, Node: "n", Keys: make([]KeyUse, MaxUsageKeys+1)},
		"long id":    {Meta: Meta{At: t0}, Node: "n", Principals: []PrincipalUse{{ID: strings.Repeat("x", 200)}}},
	} {
		if r := d.apply(c); !errors.Is(r.Err, ErrInvalidCommand) {
			t.Errorf("%s: got %v, want ErrInvalidCommand", name, r.Err)
		}
	}
	if dump(t, f) != before {
		t.Fatal("refused usage changed the state")
	}
}

func TestTrimIdentitiesKeepsRecent(t *testing.T) {
	t.Parallel()
	m := map[string]UseStat{}
	for i := 0; i < MaxIdentitiesPerKey+5; i++ {
		m[string(rune('A'+i%26))+strings.Repeat("x", i/26)] = UseStat{Last: t0.Add(time.Duration(i) * time.Second)}
	}
	trimIdentities(m, MaxIdentitiesPerKey)
	if len(m) != MaxIdentitiesPerKey {
		t.Fatalf("%d identities kept", len(m))
	}
	if _, ok := m["A"]; ok {
		t.Fatal("the oldest identity was kept")
	}
}

func TestTagsAndRetention(t *testing.T) {
	t.Parallel()
	f := openTest(t, nil)
	d := &driver{t: t, f: f}
	d.apply(initCmd())
	if r := d.apply(&CreateKey{Meta: Meta{At: t0}, Name: "a", Type: "aes256-gcm", First: wv(1), Tags: []string{"pci", "pii"}, Retention: time.Hour}); r.Err != nil {
		t.Fatal(r.Err)
	}
	k, _ := f.Key("a")
	if len(k.Tags) != 2 || k.Retention != time.Hour {
		t.Fatalf("record %+v", k)
	}
	if k.RetentionDue(t0.Add(59*time.Minute)) || !k.RetentionDue(t0.Add(time.Hour)) {
		t.Fatal("RetentionDue")
	}
	for name, tags := range map[string][]string{
		"unsorted":  {"pii", "pci"},
		"duplicate": {"pii", "pii"},
		"upper":     {"PII"},
		"colon":     {"tag:x"},
	} {
		if r := d.apply(&CreateKey{Meta: Meta{At: t0}, Name: "b-" + name, Type: "aes256-gcm", First: wv(1), Tags: tags}); !errors.Is(r.Err, ErrInvalidCommand) {
			t.Errorf("%s: got %v", name, r.Err)
		}
	}
	none := []string{}
	zero := time.Duration(0)
	if r := d.apply(&ConfigureKey{Meta: Meta{At: t0}, Name: "a", Tags: &none, Retention: &zero}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if k, _ := f.Key("a"); k.Tags != nil || k.Retention != 0 {
		t.Fatalf("after clearing: %+v", k)
	}
	neg := -time.Second
	if r := d.apply(&ConfigureKey{Meta: Meta{At: t0}, Name: "a", Retention: &neg}); !errors.Is(r.Err, ErrInvalidCommand) {
		t.Fatalf("negative retention: %v", r.Err)
	}
}

// FuzzDecodeUsage feeds arbitrary bodies to the usage command decoder
// and applier check: no panic, and a decoded command re-encodes.
func FuzzDecodeUsage(f *testing.F) {
	good, _ := Encode(&RecordUsage{Meta: Meta{At: t0}, Node: "n1", Keys: []KeyUse{{Name: "a", Versions: []VersionUse{{Version: 1, UseStat: UseStat{Last: t0, Count: 2}}}}}})
	f.Add(good)
	f.Add([]byte{formatVersion, byte(OpRecordUsage)})
	f.Add([]byte{formatVersion, byte(OpRecordUsage), '{', '}'})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			return
		}
		u, ok := c.(*RecordUsage)
		if !ok {
			return
		}
		_ = u.validate()
		if _, err := Encode(u); err != nil && !errors.Is(err, ErrInvalidCommand) {
			t.Fatalf("re-encode: %v", err)
		}
	})
}

// Operator backups (and so DR restores) carry usage.
func TestBackupCarriesUsage(t *testing.T) {
	t.Parallel()
	f, secret := backupState(t)
	d := &driver{t: t, f: f, idx: f.AppliedIndex()}
	if r := d.apply(&RecordUsage{Meta: Meta{At: t0}, Node: "n1",
		Keys:       []KeyUse{{Name: "a", Versions: []VersionUse{{Version: 2, UseStat: UseStat{Last: t0, Count: 5}}}}},
		Principals: []PrincipalUse{{ID: "token:x", UseStat: UseStat{Last: t0, Count: 5}}}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	file, _ := writeBackup(t, f, macKey(t, secret))
	p := filepath.Join(t.TempDir(), "db")
	if _, err := VerifyBackup(bytes.NewReader(file), p); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(p, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		kb, pb := tx.Bucket(bucketUsageKeys), tx.Bucket(bucketUsagePrincipals)
		if kb == nil || kb.Get([]byte("a")) == nil || pb == nil || pb.Get([]byte("token:x")) == nil {
			return errors.New("usage lost in the backup")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
