package fsm

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

func kvPut(path string, v uint32, cas *uint32, sealed string) *KVPut {
	return &KVPut{Meta: Meta{At: t0.Add(time.Duration(v) * time.Minute)}, Path: path, Version: v, CAS: cas, BarrierVersion: 1, Sealed: []byte(sealed)}
}

func u32p(v uint32) *uint32 { return &v }

func TestKVVersionsCASAndDelete(t *testing.T) {
	t.Parallel()
	f := openTest(t, nil)
	d := &driver{t: t, f: f}
	if r := d.apply(kvPut("app1/db", 1, nil, "c1")); !errors.Is(r.Err, ErrNotInitialized) {
		t.Fatalf("before init: %v", r.Err)
	}
	d.apply(initCmd())
	steps := []struct {
		name string
		cmd  Command
		want error
	}{
		{"create-only", kvPut("app1/db", 1, u32p(0), "c1"), nil},
		{"create-only again", kvPut("app1/db", 2, u32p(0), "c2"), ErrConflict},
		{"stale cas", kvPut("app1/db", 2, u32p(5), "c2"), ErrConflict},
		{"sealed for a stale version", kvPut("app1/db", 1, nil, "cX"), ErrConflict},
		{"cas ok", kvPut("app1/db", 2, u32p(1), "c2"), nil},
		{"blind write", kvPut("app1/db", 3, nil, "c3"), nil},
		{"bad path", kvPut("app1//db", 1, nil, "c"), ErrInvalidCommand},
		{"dot path", kvPut("app1/../db", 1, nil, "c"), ErrInvalidCommand},
		{"empty value", kvPut("app1/x", 1, nil, ""), ErrInvalidCommand},
		{"delete latest", &KVDelete{KVVersions{Meta: Meta{At: t0.Add(time.Hour)}, Path: "app1/db"}}, nil},
		{"delete missing version", &KVDelete{KVVersions{Meta: Meta{At: t0}, Path: "app1/db", Versions: []uint32{1, 9}}}, ErrNotFound},
		{"delete missing secret", &KVDelete{KVVersions{Meta: Meta{At: t0}, Path: "app1/nope"}}, ErrNotFound},
		{"undelete none", &KVUndelete{KVVersions{Meta: Meta{At: t0}, Path: "app1/db"}}, ErrInvalidCommand},
		{"destroy 1", &KVDestroy{KVVersions{Meta: Meta{At: t0}, Path: "app1/db", Versions: []uint32{1}}}, nil},
	}
	for _, s := range steps {
		before := dump(t, f)
		r := d.apply(s.cmd)
		if !errors.Is(r.Err, s.want) || (s.want == nil) != (r.Err == nil) {
			t.Fatalf("%s: got %v, want %v", s.name, r.Err, s.want)
		}
		if r.Err != nil && dump(t, f) != before {
			t.Fatalf("%s: a refused command changed the state", s.name)
		}
	}
	rec, err := f.KV("app1/db")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Current != 3 || len(rec.Versions) != 3 {
		t.Fatalf("record %+v", rec)
	}
	if v := rec.Version(3); v.DeletedAt.IsZero() || string(v.Sealed) != "c3" {
		t.Fatalf("v3 %+v", v)
	}
	if v := rec.Version(1); !v.Destroyed || v.Sealed != nil {
		t.Fatalf("v1 %+v", v)
	}
	r := d.apply(&KVUndelete{KVVersions{Meta: Meta{At: t0}, Path: "app1/db", Versions: []uint32{3, 1}}})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	rec, _ = f.KV("app1/db")
	if v := rec.Version(3); !v.DeletedAt.IsZero() {
		t.Fatal("undelete did not restore v3")
	}
	if v := rec.Version(1); !v.Destroyed || v.Sealed != nil {
		t.Fatal("undelete brought back a destroyed version")
	}
	// cas_required refuses blind writes.
	if r := d.apply(&KVConfig{Meta: Meta{At: t0}, Path: "app1/db", CASRequired: new(bool)}); r.Err != nil {
		t.Fatal(r.Err)
	}
	yes := true
	d.apply(&KVConfig{Meta: Meta{At: t0}, Path: "app1/db", CASRequired: &yes})
	if r := d.apply(kvPut("app1/db", 4, nil, "c4")); !errors.Is(r.Err, ErrInvalidCommand) {
		t.Fatalf("blind write with cas_required: %v", r.Err)
	}
	if r := d.apply(kvPut("app1/db", 4, u32p(3), "c4")); r.Err != nil {
		t.Fatal(r.Err)
	}
}

func TestKVPruneAndMaxVersions(t *testing.T) {
	t.Parallel()
	f := openTest(t, nil)
	d := &driver{t: t, f: f}
	d.apply(initCmd())
	for v := uint32(1); v <= DefaultKVMaxVersions+2; v++ {
		if r := d.apply(kvPut("p", v, nil, "sealed-value-"+string(rune('a'+v)))); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	rec, _ := f.KV("p")
	if len(rec.Versions) != DefaultKVMaxVersions || rec.Versions[0].Version != 3 || rec.Current != DefaultKVMaxVersions+2 {
		t.Fatalf("after prune: %d versions from %d, current %d", len(rec.Versions), rec.Versions[0].Version, rec.Current)
	}
	two := 2
	if r := d.apply(&KVConfig{Meta: Meta{At: t0}, Path: "p", MaxVersions: &two}); r.Err != nil {
		t.Fatal(r.Err)
	}
	rec, _ = f.KV("p")
	if len(rec.Versions) != 2 || rec.Versions[0].Version != 11 {
		t.Fatalf("after max_versions=2: %+v", rec.Versions)
	}
	bad := MaxKVMaxVersions + 1
	if r := d.apply(&KVConfig{Meta: Meta{At: t0}, Path: "p", MaxVersions: &bad}); !errors.Is(r.Err, ErrInvalidCommand) {
		t.Fatalf("max_versions too large: %v", r.Err)
	}
	// Deleting the secret and writing it again starts at version 1.
	if r := d.apply(&KVDeleteAll{Meta: Meta{At: t0}, Path: "p"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if _, err := f.KV("p"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete all: %v", err)
	}
	if r := d.apply(kvPut("p", 1, u32p(0), "again")); r.Err != nil {
		t.Fatal(r.Err)
	}
}

// everyValue calls fn with every key and value of every bucket, nested
// ones included.
func everyValue(t *testing.T, f *FSM, fn func(k, v []byte)) {
	t.Helper()
	var walk func(b *bolt.Bucket)
	walk = func(b *bolt.Bucket) {
		_ = b.ForEach(func(k, v []byte) error {
			if v == nil {
				if nb := b.Bucket(k); nb != nil {
					walk(nb)
				}
			}
			fn(k, v)
			return nil
		})
	}
	err := f.view(func(tx *bolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bolt.Bucket) error {
			walk(b)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestKVDestroyRemovesCiphertext checks that a destroyed version's sealed
// bytes are in no bucket of the state and in no operator snapshot, and
// that pruned versions go the same way.
func TestKVDestroyRemovesCiphertext(t *testing.T) {
	t.Parallel()
	f, secret := backupState(t)
	d := &driver{t: t, f: f, idx: f.AppliedIndex()}
	// Records are JSON: sealed bytes are stored in base64.
	c1 := bytes.Repeat([]byte("CIPHERTEXT-ONE-"), 4)
	c2 := bytes.Repeat([]byte("CIPHERTEXT-TWO-"), 4)
	v1 := []byte(base64.StdEncoding.EncodeToString(c1))
	v2 := []byte(base64.StdEncoding.EncodeToString(c2))
	for i, s := range [][]byte{c1, c2} {
		if r := d.apply(&KVPut{Meta: Meta{At: t0}, Path: "app/x", Version: uint32(i + 1), BarrierVersion: 1, Sealed: s}); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	file, b := writeBackup(t, f, macKey(t, secret))
	if !bytes.Contains(file, v1) || b.Header.Counts.Secrets != 1 || b.Header.Counts.SecretVersions != 2 {
		t.Fatalf("snapshot before destroy: contains v1 %v, counts %+v", bytes.Contains(file, v1), b.Header.Counts)
	}
	if r := d.apply(&KVDestroy{KVVersions{Meta: Meta{At: t0}, Path: "app/x", Versions: []uint32{1}}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	everyValue(t, f, func(k, v []byte) {
		if bytes.Contains(v, v1) || bytes.Contains(k, v1) {
			t.Fatalf("destroyed ciphertext still in the state under %q", k)
		}
	})
	file, b = writeBackup(t, f, macKey(t, secret))
	if bytes.Contains(file, v1) {
		t.Fatal("destroyed ciphertext in the operator snapshot")
	}
	if !bytes.Contains(file, v2) || b.Header.Counts.SecretVersions != 1 {
		t.Fatalf("live version missing from the snapshot: counts %+v", b.Header.Counts)
	}
	// Pruning by max_versions removes the value too.
	one := 1
	if r := d.apply(&KVConfig{Meta: Meta{At: t0}, Path: "app/x", MaxVersions: &one}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := d.apply(&KVPut{Meta: Meta{At: t0}, Path: "app/x", Version: 3, BarrierVersion: 1, Sealed: []byte("v3")}); r.Err != nil {
		t.Fatal(r.Err)
	}
	everyValue(t, f, func(k, v []byte) {
		if bytes.Contains(v, v2) {
			t.Fatalf("pruned ciphertext still in the state under %q", k)
		}
	})
}

func TestKVList(t *testing.T) {
	t.Parallel()
	f := openTest(t, nil)
	d := &driver{t: t, f: f}
	d.apply(initCmd())
	for _, p := range []string{"app1/a", "app1/b", "app1/c/d", "app2/x", "app10/y"} {
		if r := d.apply(kvPut(p, 1, nil, "s")); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	got, more, err := f.ListKV("app1/", "", 2, nil)
	if err != nil || more != true || len(got) != 2 || got[0] != "app1/a" || got[1] != "app1/b" {
		t.Fatalf("page 1: %v %v %v", got, more, err)
	}
	got, more, _ = f.ListKV("app1/", "app1/b", 2, nil)
	if more || len(got) != 1 || got[0] != "app1/c/d" {
		t.Fatalf("page 2: %v %v", got, more)
	}
	// Hidden paths shape neither the page nor more.
	got, more, _ = f.ListKV("app", "", 10, func(p string) bool { return p != "app2/x" })
	if more || len(got) != 4 {
		t.Fatalf("filtered: %v %v", got, more)
	}
}

func TestTokenVault(t *testing.T) {
	t.Parallel()
	f := openTest(t, nil)
	d := &driver{t: t, f: f}
	d.apply(initCmd())
	d.apply(&CreateKey{Meta: Meta{At: t0}, Name: "k", Type: "aes256-gcm", First: wv(1)})
	h1, h2 := TokenHash("tok1"), TokenHash("tok2")
	tok := func(h []byte, exp time.Time, keyAt time.Time) *Tokenize {
		return &Tokenize{Meta: Meta{At: t0}, Key: "k", KeyCreatedAt: keyAt, TokenHash: h, BarrierVersion: 1, Sealed: []byte("sealed"), ExpiresAt: exp}
	}
	if r := d.apply(tok(h1, t0.Add(time.Hour), t0)); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := d.apply(tok(h1, time.Time{}, t0)); !errors.Is(r.Err, ErrConflict) {
		t.Fatalf("duplicate token: %v", r.Err)
	}
	if r := d.apply(tok(h2, time.Time{}, t0.Add(time.Second))); !errors.Is(r.Err, ErrConflict) {
		t.Fatalf("token for a replaced key: %v", r.Err)
	}
	if r := d.apply(tok(h2, t0.Add(-time.Second), t0)); !errors.Is(r.Err, ErrInvalidCommand) {
		t.Fatalf("expiry in the past: %v", r.Err)
	}
	if r := d.apply(tok(h2, time.Time{}, t0)); r.Err != nil {
		t.Fatal(r.Err)
	}
	if _, err := f.VaultToken("k", h1); err != nil {
		t.Fatal(err)
	}
	if f.TokensExpiredBy(t0.Add(time.Minute)) || !f.TokensExpiredBy(t0.Add(time.Hour)) {
		t.Fatal("TokensExpiredBy")
	}
	if r := d.apply(&TokenPurge{Meta: Meta{At: t0.Add(time.Hour)}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if _, err := f.VaultToken("k", h1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired token after purge: %v", err)
	}
	if _, err := f.VaultToken("k", h2); err != nil {
		t.Fatalf("token without expiry purged: %v", err)
	}
	if f.TokensExpiredBy(t0.Add(1000 * time.Hour)) {
		t.Fatal("expiry index not cleaned")
	}
}

func FuzzKVCommands(f *testing.F) {
	for _, c := range []Command{
		kvPut("a/b", 1, u32p(0), "x"),
		&KVDelete{KVVersions{Path: "a", Versions: []uint32{1}}},
		&KVDestroy{KVVersions{Path: "a", Versions: []uint32{1, 2}}},
		&KVConfig{Path: "a", MaxVersions: new(int)},
		&Tokenize{Key: "k", TokenHash: TokenHash("t"), BarrierVersion: 1, Sealed: []byte("s")},
		&TokenPurge{},
	} {
		b, err := Encode(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	fs := openFuzzFSM(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidCommand) && !errors.Is(err, ErrUnknownCommand) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		// Whatever decodes, Check (an apply that rolls back) must not
		// panic and must fail with a typed error or not at all.
		if err := fs.Check(c); err != nil && !errors.Is(err, ErrInvalidCommand) && !errors.Is(err, ErrNotFound) &&
			!errors.Is(err, ErrConflict) && !errors.Is(err, ErrNotInitialized) && !errors.Is(err, ErrKeyNotFound) &&
			!errors.Is(err, ErrAlreadyInitialized) && !errors.Is(err, ErrKeyExists) && !errors.Is(err, ErrKeyPendingDeletion) && !errors.Is(err, ErrUnknownCommand) {
			t.Fatalf("check %T: untyped error %v", c, err)
		}
	})
}

func openFuzzFSM(f *testing.F) *FSM {
	fs, err := Open(f.TempDir()+"/state.db", nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = fs.Close() })
	b, err := Encode(initCmd())
	if err != nil {
		f.Fatal(err)
	}
	if r := fs.Apply(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: b}).(*Result); r.Err != nil {
		f.Fatal(r.Err)
	}
	return fs
}

func TestTokenPurgeOrphans(t *testing.T) {
	t.Parallel()
	f := openTest(t, nil)
	d := &driver{t: t, f: f}
	d.apply(initCmd())
	for _, k := range []string{"gone", "kept"} {
		d.apply(&CreateKey{Meta: Meta{At: t0}, Name: k, Type: "aes256-gcm", First: wv(1)})
	}
	for i, k := range []string{"gone", "gone", "kept"} {
		exp := time.Time{}
		if i == 1 {
			exp = t0.Add(time.Hour)
		}
		if r := d.apply(&Tokenize{Meta: Meta{At: t0}, Key: k, KeyCreatedAt: t0, TokenHash: TokenHash(string(rune('a' + i))), BarrierVersion: 1, Sealed: []byte("s"), ExpiresAt: exp}); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if got := f.OrphanVaultKeys(10); len(got) != 0 {
		t.Fatalf("orphans before deletion: %v", got)
	}
	d.apply(&ScheduleDeletion{Meta: Meta{At: t0}, Name: "gone", DeleteAt: t0.Add(time.Minute)})
	if r := d.apply(&DeleteKey{Meta: Meta{At: t0.Add(time.Minute)}, Name: "gone", DeleteAt: t0.Add(time.Minute)}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if got := f.OrphanVaultKeys(10); len(got) != 1 || got[0] != "gone" {
		t.Fatalf("orphans: %v", got)
	}
	// Naming an existing key as an orphan removes nothing of it.
	if r := d.apply(&TokenPurge{Meta: Meta{At: t0}, Orphans: []string{"gone", "kept"}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if got := f.OrphanVaultKeys(10); len(got) != 0 {
		t.Fatalf("orphans after purge: %v", got)
	}
	if _, err := f.VaultToken("kept", TokenHash("c")); err != nil {
		t.Fatalf("kept key's token: %v", err)
	}
	if f.TokensExpiredBy(t0.Add(2 * time.Hour)) {
		t.Fatal("expiry index kept an orphan's entry")
	}
}

func TestRaftSnapshotCarriesKV(t *testing.T) {
	t.Parallel()
	src := openTest(t, nil)
	d := &driver{t: t, f: src}
	d.apply(initCmd())
	d.apply(kvPut("a/b", 1, nil, "sealed"))
	d.apply(&CreateKey{Meta: Meta{At: t0}, Name: "k", Type: "aes256-gcm", First: wv(1)})
	d.apply(&Tokenize{Meta: Meta{At: t0}, Key: "k", KeyCreatedAt: t0, TokenHash: TokenHash("x"), BarrierVersion: 1, Sealed: []byte("s")})
	dst := openTest(t, nil)
	if err := dst.Restore(io.NopCloser(bytes.NewReader(snapshotOf(t, src)))); err != nil {
		t.Fatal(err)
	}
	if rec, err := dst.KV("a/b"); err != nil || string(rec.Version(1).Sealed) != "sealed" {
		t.Fatalf("restored secret: %+v %v", rec, err)
	}
	if _, err := dst.VaultToken("k", TokenHash("x")); err != nil {
		t.Fatalf("restored token: %v", err)
	}
	if dump(t, dst) != dump(t, src) {
		t.Fatal("restored state differs")
	}
}

func TestDeterministicTokenIndex(t *testing.T) {
	t.Parallel()
	f := openTest(t, nil)
	d := &driver{t: t, f: f}
	d.apply(initCmd())
	d.apply(&CreateKey{Meta: Meta{At: t0}, Name: "k", Type: "aes256-gcm", First: wv(1)})
	lookup := TokenHash("lookup")
	blob := &SealedBlob{BarrierVersion: 1, Sealed: []byte("sealed")}
	tok := func(th string, at time.Time, ik *SealedBlob, exp time.Time) *Tokenize {
		return &Tokenize{Meta: Meta{At: at}, Key: "k", KeyCreatedAt: t0, TokenHash: TokenHash(th), BarrierVersion: 1, Sealed: []byte("v"),
			ExpiresAt: exp, IndexKey: ik, Lookup: lookup, SealedToken: blob}
	}
	if r := d.apply(tok("a", t0, nil, time.Time{})); !errors.Is(r.Err, ErrConflict) {
		t.Fatalf("entry without an index key: %v", r.Err)
	}
	if r := d.apply(tok("a", t0, blob, t0.Add(time.Hour))); r.Err != nil {
		t.Fatal(r.Err)
	}
	if f.VaultIndexKey("k") == nil || f.VaultDet("k", lookup) == nil {
		t.Fatal("index not stored")
	}
	if r := d.apply(tok("b", t0, blob, time.Time{})); !errors.Is(r.Err, ErrConflict) {
		t.Fatalf("second index key: %v", r.Err)
	}
	before := dump(t, f)
	if r := d.apply(tok("b", t0.Add(time.Minute), nil, time.Time{})); !errors.Is(r.Err, ErrConflict) {
		t.Fatalf("second token for a live value: %v", r.Err)
	}
	if dump(t, f) != before {
		t.Fatal("refused command changed the state")
	}
	// Once the value's token has expired, a new one replaces it.
	if r := d.apply(tok("b", t0.Add(2*time.Hour), nil, time.Time{})); r.Err != nil {
		t.Fatal(r.Err)
	}
	if _, err := f.VaultToken("k", TokenHash("a")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("replaced token: %v", err)
	}
	if dt := f.VaultDet("k", lookup); dt == nil || !bytes.Equal(dt.TokenHash, TokenHash("b")) {
		t.Fatal("index does not name the new token")
	}
	if f.TokensExpiredBy(t0.Add(3 * time.Hour)) {
		t.Fatal("replaced token left in the expiry index")
	}
}
