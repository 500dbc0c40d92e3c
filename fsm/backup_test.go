package fsm

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyd/keyd/shamir"
)

// backupState builds an initialised state with real commitments, two keys
// (three versions), a policy, an extra token and an identity, and returns
// the FSM and its root secret.
func backupState(t *testing.T) (*FSM, *shamir.Secret) {
	t.Helper()
	f := openTest(t, nil)
	d := &driver{t: t, f: f}
	secret, err := shamir.NewSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(secret.Destroy)
	_, commits, err := shamir.Split(secret, 2, 3, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cb, _ := commits.MarshalBinary()
	in := initCmd()
	in.Commitments = cb
	cmds := []Command{
		in,
		&CreateKey{Meta: Meta{At: t0}, Name: "a", Type: "aes256-gcm", First: wv(1)},
		&RotateKey{Meta: Meta{At: t0}, Name: "a", FromVersion: 1, New: wv(2)},
		&CreateKey{Meta: Meta{At: t0}, Name: "b", Type: "aes256-gcm", First: wv(1)},
		&PutPolicy{Meta: Meta{At: t0}, Name: "p", Doc: []byte(`{"rules":[]}`)},
		&PutToken{Meta: Meta{At: t0}, Hash: bytes.Repeat([]byte{9}, 32), Policies: []string{"p"}},
		&PutIdentity{Meta: Meta{At: t0}, ID: strings.Repeat("ab", 32), Policies: []string{"p"}},
		&PutNodeShares{Meta: Meta{At: t0}, Epoch: 1, Threshold: 2, Commitments: cb, Holders: map[string]int{"n1": 1, "n2": 2}, Voters: []string{"n1", "n2", "n3"}},
		&RemoveNode{Meta: Meta{At: t0}, NodeID: "n9"},
		&PinDeliveryKey{Meta: Meta{At: t0}, Node: "n2", PublicKey: bytes.Repeat([]byte{7}, 32)},
	}
	for _, c := range cmds {
		if r := d.apply(c); r.Err != nil {
			t.Fatalf("%T: %v", c, r.Err)
		}
	}
	return f, secret
}

func macKey(t *testing.T, s *shamir.Secret) []byte {
	t.Helper()
	k, err := BackupMACKey(s.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writeBackup(t *testing.T, f *FSM, key []byte) ([]byte, *Backup) {
	t.Helper()
	var buf bytes.Buffer
	b, err := f.WriteBackup(&buf, BackupOptions{MACKey: key, Node: "n1", Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), b
}

func TestBackupRoundTrip(t *testing.T) {
	t.Parallel()
	f, secret := backupState(t)
	key := macKey(t, secret)
	file, wrote := writeBackup(t, f, key)
	want := BackupCounts{Keys: 2, Versions: 3, Policies: 1, Tokens: 2, Identities: 1}
	if wrote.Header.Counts != want {
		t.Fatalf("counts %+v, want %+v", wrote.Header.Counts, want)
	}
	if wrote.Header.Index != f.AppliedIndex() || wrote.Header.Cluster == "" {
		t.Fatalf("header %+v", wrote.Header)
	}
	dir := t.TempDir()
	b, err := VerifyBackup(bytes.NewReader(file), filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	if b.Header != wrote.Header || b.Digest != wrote.Digest || b.MAC != wrote.MAC {
		t.Fatalf("read %+v, wrote %+v", b, wrote)
	}
	if !b.VerifyMAC(key) {
		t.Fatal("MAC does not verify with the root")
	}
	other, _ := shamir.NewSecret(rand.Reader)
	defer other.Destroy()
	if b.VerifyMAC(macKey(t, other)) {
		t.Fatal("MAC verifies with another root")
	}

	// Prepare and restore into a fresh FSM: same keys, tokens, policies;
	// no node shares, no removed nodes, a marker that verifies.
	size, err := PrepareRestore(filepath.Join(dir, "db"), filepath.Join(dir, "snap"), b, t0, 5000, &Local{
		Pins:    []DeliveryKeyRecord{{Node: "n5", PublicKey: bytes.Repeat([]byte{5}, 32), At: t0}},
		Removed: map[string][]byte{"n7": []byte(`"2026-01-01T00:00:00Z"`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "snap")); fi.Size() != size {
		t.Fatalf("size %d, file %d", size, fi.Size())
	}
	g := openTest(t, nil)
	sf, _ := os.Open(filepath.Join(dir, "snap"))
	if err := g.Restore(sf); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		k1, _ := f.Key(name)
		k2, err := g.Key(name)
		if err != nil || len(k1.Versions) != len(k2.Versions) || !bytes.Equal(k1.Versions[0].Wrapped, k2.Versions[0].Wrapped) {
			t.Fatalf("key %s not restored: %v", name, err)
		}
	}
	toks, _ := g.Tokens()
	pols, _ := g.Policies()
	if len(toks) != 2 || len(pols) != 1 {
		t.Fatalf("tokens %d policies %d", len(toks), len(pols))
	}
	if ns, _ := g.NodeShares(); ns != nil {
		t.Fatal("old node-share dealing survived the restore")
	}
	if g.AppliedIndex() != 5000 {
		t.Fatalf("restored applied index %d, want 5000", g.AppliedIndex())
	}
	if g.Removed("n9") {
		t.Fatal("old removed-node list survived the restore")
	}
	if !g.Removed("n7") {
		t.Fatal("the restoring cluster's own removed node was dropped: reconciliation could add it back")
	}
	if pub, _ := f.DeliveryKey("n2"); pub == nil {
		t.Fatal("delivery key not pinned before the backup")
	}
	if pub, err := g.DeliveryKey("n2"); pub != nil || err != nil {
		t.Fatalf("the snapshot's delivery key pin survived the restore (%v): a new node n2 could never be dealt a share", err)
	}
	if pub, err := g.DeliveryKey("n5"); err != nil || !bytes.Equal(pub, bytes.Repeat([]byte{5}, 32)) {
		t.Fatalf("the restoring cluster's own pin was not kept: %x, %v", pub, err)
	}
	m, err := g.RestoreMarker()
	if err != nil || m == nil {
		t.Fatalf("marker: %v", err)
	}
	if !m.Verify(key) || m.Verify(macKey(t, other)) || m.Cluster != b.Header.Cluster {
		t.Fatal("marker MAC check wrong")
	}
	if m0, _ := f.RestoreMarker(); m0 != nil {
		t.Fatal("marker on a state that was never restored")
	}
}

// TestBackupRefusesDamage is the attacker's view: every flipped byte,
// every truncation and trailing junk is refused, and nothing is left
// behind.
func TestBackupRefusesDamage(t *testing.T) {
	t.Parallel()
	f, secret := backupState(t)
	file, _ := writeBackup(t, f, macKey(t, secret))
	dir := t.TempDir()
	try := func(name string, b []byte) {
		t.Helper()
		p := filepath.Join(dir, "db")
		_, err := VerifyBackup(bytes.NewReader(b), p)
		if !errors.Is(err, ErrSnapshotCorrupt) {
			t.Fatalf("%s: err %v, want ErrSnapshotCorrupt", name, err)
		}
		if _, serr := os.Stat(p); !os.IsNotExist(serr) {
			t.Fatalf("%s: left %s behind", name, p)
		}
	}
	// Flip bytes across the file except the MAC (which only the root
	// can check).
	step := max(1, (len(file)-BackupMACSize)/300)
	for i := 0; i < len(file)-BackupMACSize; i += step {
		c := bytes.Clone(file)
		c[i] ^= 0x41
		try("flip", c)
	}
	for _, n := range []int{0, 5, 13, 40, len(file) / 2, len(file) - BackupMACSize - 1, len(file) - 1} {
		try("truncate", file[:n])
	}
	try("trailing", append(bytes.Clone(file), 0))
	try("empty", nil)
}

// TestBackupTamperedDigestFailsMAC: an attacker who edits the state and
// recomputes the (unkeyed) digest passes the checks that need no secret,
// but not the MAC.
func TestBackupTamperedDigestFailsMAC(t *testing.T) {
	t.Parallel()
	f, secret := backupState(t)
	key := macKey(t, secret)
	file, _ := writeBackup(t, f, key)
	// Change the header's node name (same length) and recompute the digest.
	c := bytes.Clone(file)
	i := bytes.Index(c, []byte(`"node":"n1"`))
	if i < 0 {
		t.Fatal("node name not found")
	}
	copy(c[i:], `"node":"n2"`)
	end := len(c) - BackupMACSize - sha256.Size
	sum := sha256.Sum256(c[:end])
	copy(c[end:], sum[:])
	b, err := VerifyBackup(bytes.NewReader(c), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatalf("tampered file with a fresh digest should pass the unkeyed checks: %v", err)
	}
	if b.VerifyMAC(key) {
		t.Fatal("tampered snapshot passes the MAC")
	}
}

func TestBackupNeedsInit(t *testing.T) {
	t.Parallel()
	f := openTest(t, nil)
	if _, err := f.WriteBackup(&bytes.Buffer{}, BackupOptions{MACKey: []byte("k"), Now: time.Now()}); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("err %v", err)
	}
	// A header that lies about the counts is refused.
	g, secret := backupState(t)
	file, _ := writeBackup(t, g, macKey(t, secret))
	c := bytes.Clone(file)
	hl := binary.BigEndian.Uint32(c[9:13])
	i := bytes.Index(c[:13+hl], []byte(`"keys":2`))
	copy(c[i:], `"keys":3`)
	end := len(c) - BackupMACSize - sha256.Size
	sum := sha256.Sum256(c[:end])
	copy(c[end:], sum[:])
	if _, err := VerifyBackup(bytes.NewReader(c), filepath.Join(t.TempDir(), "db")); !errors.Is(err, ErrSnapshotCorrupt) {
		t.Fatalf("lying header: err %v", err)
	}
}

// rehash recomputes the digest of a backup whose body was edited, as an
// attacker would.
func rehash(file []byte) {
	end := len(file) - BackupMACSize - sha256.Size
	sum := sha256.Sum256(file[:end])
	copy(file[end:], sum[:])
}

// TestBackupCraftedBody: a file whose body is edited and whose digest is
// recomputed must be refused or accepted, never crash or hang the
// verifier (which runs on the leader for anonymous callers of a fresh
// cluster). Edits cover every byte position of a small state.
func TestBackupCraftedBody(t *testing.T) {
	t.Parallel()
	f, secret := backupState(t)
	file, _ := writeBackup(t, f, macKey(t, secret))
	hl := int(binary.BigEndian.Uint32(file[9:13]))
	bodyStart := 13 + hl + 8
	bodyEnd := len(file) - BackupMACSize - sha256.Size
	dir := t.TempDir()
	refused := 0
	step := max(1, (bodyEnd-bodyStart)/150)
	for i, pos := 0, bodyStart; pos < bodyEnd; i, pos = i+1, pos+step {
		for _, x := range []byte{0xff, 0x01, 0x80} {
			c := bytes.Clone(file)
			c[pos] ^= x
			rehash(c)
			p := filepath.Join(dir, fmt.Sprintf("%d-%d", i, x))
			if _, err := VerifyBackup(bytes.NewReader(c), p); err != nil {
				if !errors.Is(err, ErrSnapshotCorrupt) {
					t.Fatalf("offset %d: err %v, want ErrSnapshotCorrupt", pos, err)
				}
				refused++
			}
			_ = os.Remove(p)
		}
	}
	if refused == 0 {
		t.Fatal("no edited body was refused")
	}
	// Lengths that point past the end, or claim huge records.
	c := bytes.Clone(file)
	binary.BigEndian.PutUint64(c[13+hl:], 1<<40)
	rehash(c)
	if _, err := VerifyBackup(bytes.NewReader(c), filepath.Join(dir, "huge")); !errors.Is(err, ErrSnapshotCorrupt) {
		t.Fatalf("huge body length: %v", err)
	}
}

// TestBackupKeepsEveryBucket: buckets this file does not know (added by
// later features), nested ones included, survive a save and restore.
func TestBackupKeepsEveryBucket(t *testing.T) {
	t.Parallel()
	f, secret := backupState(t)
	err := f.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("zz_future"))
		if err != nil {
			return err
		}
		if err := b.Put([]byte("a"), []byte("1")); err != nil {
			return err
		}
		in, err := b.CreateBucket([]byte("inner"))
		if err != nil {
			return err
		}
		if err := b.Put([]byte("z"), []byte("2")); err != nil {
			return err
		}
		return in.Put([]byte("k"), []byte("v"))
	})
	if err != nil {
		t.Fatal(err)
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
		b := tx.Bucket([]byte("zz_future"))
		if b == nil || string(b.Get([]byte("a"))) != "1" || string(b.Get([]byte("z"))) != "2" {
			return errors.New("top-level bucket lost")
		}
		if in := b.Bucket([]byte("inner")); in == nil || string(in.Get([]byte("k"))) != "v" {
			return errors.New("nested bucket lost")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
