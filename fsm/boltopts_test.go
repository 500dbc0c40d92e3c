package fsm

import (
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestStateDBFreelistCompatible: the state database is written without
// its free page list; a file written either way opens either way (an
// older keyd, a newer one) with the same state.
func TestStateDBFreelistCompatible(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	f, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := &driver{t: t, f: f}
	if res := d.apply(initCmd()); res.Err != nil {
		t.Fatal(res.Err)
	}
	for _, name := range []string{"a", "b", "c"} {
		if res := d.apply(&CreateKey{Meta: Meta{At: t0}, Name: name, Type: "aes256-gcm", First: wv(1)}); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	want := dump(t, f)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// An older keyd (free list written) opens it and writes it back.
	old, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put([]byte("x-test"), []byte{1}) }); err != nil {
		t.Fatal(err)
	}
	if err := old.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete([]byte("x-test")) }); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	f2, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	if got := dump(t, f2); got != want {
		t.Fatalf("state changed across reopen:\n%s\nwant\n%s", got, want)
	}
	if f2.AppliedIndex() != d.idx {
		t.Fatalf("applied %d, want %d", f2.AppliedIndex(), d.idx)
	}
	d2 := &driver{t: t, f: f2, idx: d.idx}
	if res := d2.apply(&CreateKey{Meta: Meta{At: t0}, Name: "d", Type: "aes256-gcm", First: wv(1)}); res.Err != nil {
		t.Fatal(res.Err)
	}
}
