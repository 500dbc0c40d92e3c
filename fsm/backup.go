package fsm

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyd/keyd/shamir"
)

// Operator snapshot ("backup") format, the file `keyd operator snapshot
// save` writes and `restore` reads:
//
//	magic "KEYDBKUP" | format version (1 byte) | header length (4 bytes, BE)
//	| header (JSON, BackupHeader) | body length (8 bytes, BE)
//	| body: a logical export of the database (see backupbody.go)
//	| digest: SHA-256 over every byte before it (32 bytes)
//	| MAC: HMAC-SHA256(K, "keyd snapshot v1\x00" || digest) (32 bytes)
//
// K = HKDF-SHA256(root secret, info "keyd snapshot mac v1"). The body is
// the replicated state: key material wrapped by barrier keys, the barrier
// keyring wrapped by the root key, token hashes, policies. The digest
// detects corruption and truncation without any secret; the MAC binds the
// file to the cluster's root and is checked once custodians unseal the
// restored cluster.
var backupMagic = []byte("KEYDBKUP")

const (
	backupVersion    = 1
	maxBackupHeader  = 64 << 10
	backupMACInfo    = "keyd snapshot mac v1"
	backupMACContext = "keyd snapshot v1\x00"
	// BackupMACSize is the size of the trailing MAC.
	BackupMACSize = sha256.Size
)

// ErrBackupMAC reports a snapshot whose MAC does not verify with the
// cluster's root: it was not written by this cluster, or was altered.
var ErrBackupMAC = errors.New("fsm: snapshot MAC does not verify with this cluster's root")

var keyRestored = []byte("restored")

// BackupCounts are the numbers of records in a snapshot.
type BackupCounts struct {
	Keys       int `json:"keys"`
	Versions   int `json:"versions"`
	Policies   int `json:"policies"`
	Tokens     int `json:"tokens"`
	Identities int `json:"identities"`
	// Secrets counts KV secrets, SecretVersions their versions that
	// still hold a value, VaultTokens the tokenization vault's tokens.
	Secrets        int `json:"secrets,omitempty"`
	SecretVersions int `json:"secret_versions,omitempty"`
	VaultTokens    int `json:"vault_tokens,omitempty"`
}

// BackupHeader describes an operator snapshot; it is public.
type BackupHeader struct {
	Format int `json:"format"`
	// Cluster is the fingerprint of the custodian commitments in the
	// snapshot: the dealing whose shares unseal a restore.
	Cluster string       `json:"cluster"`
	Index   uint64       `json:"index"`
	Time    time.Time    `json:"time"`
	Node    string       `json:"node,omitempty"`
	Counts  BackupCounts `json:"counts"`
}

// Backup is a verified snapshot file's public parts.
type Backup struct {
	Header BackupHeader
	Digest [sha256.Size]byte
	MAC    [BackupMACSize]byte
}

// BackupMACKey derives the snapshot MAC key from the root secret.
func BackupMACKey(secret []byte) ([]byte, error) {
	if len(secret) < 16 {
		return nil, errors.New("fsm: snapshot MAC key: secret too short")
	}
	return hkdf.Key(sha256.New, secret, nil, backupMACInfo, 32)
}

func backupMAC(key []byte, digest []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(backupMACContext))
	m.Write(digest)
	return m.Sum(nil)
}

// VerifyMAC reports whether the snapshot's MAC verifies with macKey, in
// constant time.
func (b *Backup) VerifyMAC(macKey []byte) bool {
	return hmac.Equal(backupMAC(macKey, b.Digest[:]), b.MAC[:])
}

// BackupOptions are what WriteBackup needs besides the state.
type BackupOptions struct {
	// MACKey is BackupMACKey of the cluster's root secret.
	MACKey []byte
	// Node names the node that wrote the snapshot.
	Node string
	Now  time.Time
}

// WriteBackup writes a consistent operator snapshot of the state to w. It
// streams the body from one read transaction (two passes: its length,
// then its records).
func (f *FSM) WriteBackup(w io.Writer, o BackupOptions) (*Backup, error) {
	if len(o.MACKey) == 0 {
		return nil, errors.New("fsm: snapshot needs a MAC key")
	}
	var out *Backup
	err := f.view(func(tx *bolt.Tx) error {
		hdr, err := backupHeaderOf(tx)
		if err != nil {
			return err
		}
		hdr.Node = o.Node
		hdr.Time = o.Now.UTC()
		hj, err := json.Marshal(hdr)
		if err != nil {
			return err
		}
		h := sha256.New()
		mw := io.MultiWriter(w, h)
		pre := make([]byte, 0, 8+1+4+len(hj)+8)
		pre = append(pre, backupMagic...)
		pre = append(pre, backupVersion)
		pre = binary.BigEndian.AppendUint32(pre, uint32(len(hj)))
		pre = append(pre, hj...)
		size, err := bodySize(tx)
		if err != nil {
			return err
		}
		pre = binary.BigEndian.AppendUint64(pre, size)
		if _, err := mw.Write(pre); err != nil {
			return fmt.Errorf("fsm: write snapshot header: %w", err)
		}
		if err := writeBody(mw, tx); err != nil {
			return err
		}
		b := &Backup{Header: *hdr}
		copy(b.Digest[:], h.Sum(nil))
		copy(b.MAC[:], backupMAC(o.MACKey, b.Digest[:]))
		if _, err := w.Write(b.Digest[:]); err != nil {
			return fmt.Errorf("fsm: write snapshot digest: %w", err)
		}
		if _, err := w.Write(b.MAC[:]); err != nil {
			return fmt.Errorf("fsm: write snapshot MAC: %w", err)
		}
		out = b
		return nil
	})
	return out, err
}

// backupHeaderOf counts the records seen by tx and reads the cluster's
// commitments fingerprint and applied index.
func backupHeaderOf(tx *bolt.Tx) (*BackupHeader, error) {
	meta := tx.Bucket(bucketMeta)
	v := meta.Get(keyInit)
	if v == nil {
		return nil, ErrNotInitialized
	}
	var rec InitRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, fmt.Errorf("%w: init record: %v", ErrSnapshotCorrupt, err)
	}
	c, err := shamir.UnmarshalCommitments(rec.Commitments)
	if err != nil {
		return nil, fmt.Errorf("%w: commitments: %v", ErrSnapshotCorrupt, err)
	}
	hdr := &BackupHeader{Format: backupVersion, Cluster: c.Fingerprint()}
	if a := meta.Get(keyApplied); len(a) >= 8 {
		hdr.Index = binary.BigEndian.Uint64(a[:8])
	}
	err = tx.Bucket(bucketKeys).ForEach(func(_, v []byte) error {
		var k KeyRecord
		if err := json.Unmarshal(v, &k); err != nil {
			return fmt.Errorf("%w: key record: %v", ErrSnapshotCorrupt, err)
		}
		hdr.Counts.Keys++
		hdr.Counts.Versions += len(k.Versions)
		return nil
	})
	if err != nil {
		return nil, err
	}
	hdr.Counts.Policies = tx.Bucket(bucketPolicies).Stats().KeyN
	hdr.Counts.Tokens = tx.Bucket(bucketTokens).Stats().KeyN
	hdr.Counts.Identities = tx.Bucket(bucketIdentities).Stats().KeyN
	if hdr.Counts.Secrets, hdr.Counts.SecretVersions, err = kvCounts(tx); err != nil {
		return nil, err
	}
	hdr.Counts.VaultTokens = vaultCount(tx)
	return hdr, nil
}

// readBackup parses a snapshot file from r, builds the database it
// carries into the empty db, and checks the file's digest. It reads
// nothing past the MAC and requires r to end there.
func readBackup(r io.Reader, db *bolt.DB) (*Backup, error) {
	h := sha256.New()
	tr := io.TeeReader(r, h)
	var pre [8 + 1 + 4]byte
	if _, err := io.ReadFull(tr, pre[:]); err != nil {
		return nil, fmt.Errorf("%w: truncated in the header", ErrSnapshotCorrupt)
	}
	if !bytes.Equal(pre[:8], backupMagic) {
		return nil, fmt.Errorf("%w: not a keyd snapshot (bad magic)", ErrSnapshotCorrupt)
	}
	if pre[8] != backupVersion {
		return nil, fmt.Errorf("%w: unknown snapshot format version %d", ErrSnapshotCorrupt, pre[8])
	}
	hl := binary.BigEndian.Uint32(pre[9:])
	if hl == 0 || hl > maxBackupHeader {
		return nil, fmt.Errorf("%w: header length %d", ErrSnapshotCorrupt, hl)
	}
	hj := make([]byte, hl)
	if _, err := io.ReadFull(tr, hj); err != nil {
		return nil, fmt.Errorf("%w: truncated in the header", ErrSnapshotCorrupt)
	}
	var b Backup
	d := json.NewDecoder(bytes.NewReader(hj))
	d.DisallowUnknownFields()
	if err := d.Decode(&b.Header); err != nil || b.Header.Format != backupVersion {
		return nil, fmt.Errorf("%w: unreadable header", ErrSnapshotCorrupt)
	}
	var bl [8]byte
	if _, err := io.ReadFull(tr, bl[:]); err != nil {
		return nil, fmt.Errorf("%w: truncated before the body", ErrSnapshotCorrupt)
	}
	bodyLen := binary.BigEndian.Uint64(bl[:])
	if bodyLen == 0 || bodyLen > maxSnapshotDB {
		return nil, fmt.Errorf("%w: body length %d", ErrSnapshotCorrupt, bodyLen)
	}
	if err := buildFromBody(tr, bodyLen, db); err != nil {
		return nil, err
	}
	want := h.Sum(nil)
	if _, err := io.ReadFull(r, b.Digest[:]); err != nil {
		return nil, fmt.Errorf("%w: truncated: digest missing", ErrSnapshotCorrupt)
	}
	if !bytes.Equal(want, b.Digest[:]) {
		return nil, fmt.Errorf("%w: digest mismatch (the file was altered or damaged)", ErrSnapshotCorrupt)
	}
	if _, err := io.ReadFull(r, b.MAC[:]); err != nil {
		return nil, fmt.Errorf("%w: truncated: MAC missing", ErrSnapshotCorrupt)
	}
	var extra [1]byte
	if n, _ := r.Read(extra[:]); n != 0 {
		return nil, fmt.Errorf("%w: trailing bytes after the MAC", ErrSnapshotCorrupt)
	}
	return &b, nil
}

// VerifyBackup reads a whole snapshot file from r, builds the database it
// describes at dbPath (created, 0600) and checks everything that needs no
// secret: the body's encoding, the digest, the buckets, and that the
// header's cluster fingerprint, index and counts match the content. On
// error dbPath is removed.
func VerifyBackup(r io.Reader, dbPath string) (*Backup, error) {
	b, err := verifyBackup(r, dbPath)
	if err != nil {
		_ = os.Remove(dbPath)
	}
	return b, err
}

func verifyBackup(r io.Reader, dbPath string) (*Backup, error) {
	f, err := os.OpenFile(dbPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("fsm: snapshot: %w", err)
	}
	_ = f.Close()
	db, err := openBuildDB(dbPath)
	if err != nil {
		return nil, err
	}
	b, err := readBackup(r, db)
	if err == nil {
		err = db.Sync()
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := checkBackupDB(dbPath, &b.Header); err != nil {
		return nil, err
	}
	return b, nil
}

// checkBackupDB opens the database a restore built and compares it with
// the header. The database was written by this package, but its records
// came from the caller: decoding failures are errors, and any panic is
// turned into one rather than crash the node.
func checkBackupDB(dbPath string, hdr *BackupHeader) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: damaged database", ErrSnapshotCorrupt)
		}
	}()
	db, err := bolt.Open(dbPath, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("%w: database: %v", ErrSnapshotCorrupt, err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketKeys, bucketTokens, bucketPolicies, bucketIdentities} {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("%w: missing bucket %s", ErrSnapshotCorrupt, name)
			}
		}
		got, err := backupHeaderOf(tx)
		if errors.Is(err, ErrNotInitialized) {
			return fmt.Errorf("%w: the snapshot holds no initialised cluster", ErrSnapshotCorrupt)
		}
		if err != nil {
			return err
		}
		if got.Cluster != hdr.Cluster || got.Index != hdr.Index || got.Counts != hdr.Counts {
			return fmt.Errorf("%w: header does not match the state it describes", ErrSnapshotCorrupt)
		}
		return nil
	})
}

// RestoreMarker is recorded in a restored state: the restored file's
// digest and MAC, checked with the root once custodians unseal.
type RestoreMarker struct {
	Cluster    string    `json:"cluster"`
	Index      uint64    `json:"index"`
	Time       time.Time `json:"time"`
	Digest     []byte    `json:"digest"`
	MAC        []byte    `json:"mac"`
	RestoredAt time.Time `json:"restored_at"`
}

// Verify reports whether the marker's MAC verifies with macKey.
func (m *RestoreMarker) Verify(macKey []byte) bool {
	return hmac.Equal(backupMAC(macKey, m.Digest), m.MAC)
}

// Local is what a cluster restoring a snapshot keeps of its own state:
// it describes the cluster's machines, not the snapshot's. A forced
// restore onto the same nodes keeps their delivery-key pins (the cold
// unseal that follows relays shares sealed to them) and its removed-node
// tombstones (a node removed before the restore must not be added back by
// reconciliation); a fresh cluster has none of either.
type Local struct {
	Pins    []DeliveryKeyRecord
	Removed map[string][]byte // node id -> stored removal record
}

// Local returns this state's Local part.
func (f *FSM) Local() (*Local, error) {
	pins, err := f.DeliveryKeys()
	if err != nil {
		return nil, err
	}
	l := &Local{Pins: pins, Removed: map[string][]byte{}}
	err = f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRemoved).ForEach(func(k, v []byte) error {
			l.Removed[string(k)] = append([]byte(nil), v...)
			return nil
		})
	})
	return l, err
}

// PrepareRestore turns a verified snapshot database (from VerifyBackup)
// into the state a restored cluster starts from: it drops what belongs to
// the old cluster's hardware and topology (the node-share dealing, whose
// shares sit in the old nodes' HSMs, the removed-node list and the
// delivery-key pins), puts in their place the restoring cluster's own
// (local, nil for none) and records the restore marker. The state counts as applied at index
// applied: the Raft index the restore will have, so a read that waits for
// any index the cluster acknowledged before does not wait for a write.
// It then writes the state in the FSM snapshot format to snapPath and
// returns its size.
func PrepareRestore(dbPath, snapPath string, b *Backup, now time.Time, applied uint64, local *Local) (int64, error) {
	if local == nil {
		local = &Local{}
	}
	db, err := bolt.Open(dbPath, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return 0, fmt.Errorf("fsm: prepare restore: %w", err)
	}
	defer db.Close()
	m, err := json.Marshal(&RestoreMarker{
		Cluster: b.Header.Cluster, Index: b.Header.Index, Time: b.Header.Time,
		Digest: b.Digest[:], MAC: b.MAC[:], RestoredAt: now.UTC(),
	})
	if err != nil {
		return 0, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if err := meta.Delete(keyNodeShares); err != nil {
			return err
		}
		if err := replacePins(tx, local.Pins); err != nil {
			return err
		}
		if tx.Bucket(bucketRemoved) != nil {
			if err := tx.DeleteBucket(bucketRemoved); err != nil {
				return err
			}
		}
		removed, err := tx.CreateBucket(bucketRemoved)
		if err != nil {
			return err
		}
		for id, v := range local.Removed {
			if err := removed.Put([]byte(id), v); err != nil {
				return err
			}
		}
		for _, name := range [][]byte{bucketRequests, bucketReqByTime} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		var buf [16]byte
		binary.BigEndian.PutUint64(buf[:8], applied)
		if err := meta.Put(keyApplied, buf[:]); err != nil {
			return err
		}
		return meta.Put(keyRestored, m)
	})
	if err != nil {
		return 0, fmt.Errorf("fsm: prepare restore: %w", err)
	}
	out, err := os.OpenFile(snapPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, fmt.Errorf("fsm: prepare restore: %w", err)
	}
	var size int64
	err = db.View(func(tx *bolt.Tx) error {
		size = snapHeaderLen + tx.Size() + sha256.Size
		return WriteSnapshot(out, tx)
	})
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(snapPath)
		return 0, fmt.Errorf("fsm: prepare restore: %w", err)
	}
	return size, nil
}

// RestoreMarker returns the marker of the restore the state came from, or
// nil when it was not restored from an operator snapshot.
func (f *FSM) RestoreMarker() (*RestoreMarker, error) {
	var m *RestoreMarker
	err := f.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keyRestored)
		if v == nil {
			return nil
		}
		m = new(RestoreMarker)
		return json.Unmarshal(v, m)
	})
	return m, err
}
