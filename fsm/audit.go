package fsm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Audit trail state: every node's audit public key and the chain heads
// ("anchors") each node committed, so that no single node's disk can
// rewrite its audit log unnoticed. Both buckets are created on first use.
var (
	bucketAuditKeys    = []byte("audit_keys")    // node id -> AuditKeyRecord
	bucketAuditAnchors = []byte("audit_anchors") // node id | 0 | seq (8, BE) -> AuditAnchorRecord
)

// Audit commands, appended after the other ops.
const (
	OpPutAuditKey    Op = 64 + iota // audit public key of a node (write once)
	OpPutAuditAnchor                // a node's audit chain head
)

// PutAuditKey records a node's audit checkpoint key. A node has one key
// for its life: a different key for a node that has one is refused (a
// node that lost its key rejoins under a new node id).
type PutAuditKey struct {
	Meta
	Node      string `json:"node"`
	PublicKey []byte `json:"pub"`
}

// PutAuditAnchor records a node's audit chain head: Head is the SHA-256 of
// the line with sequence number Seq. Seq must be above the node's last
// anchor.
type PutAuditAnchor struct {
	Meta
	Node string `json:"node"`
	Seq  uint64 `json:"seq"`
	Head []byte `json:"head"`
}

func (*PutAuditKey) op() Op    { return OpPutAuditKey }
func (*PutAuditAnchor) op() Op { return OpPutAuditAnchor }

// AuditKeyRecord is a node's audit public key as stored.
type AuditKeyRecord struct {
	Node      string    `json:"node"`
	PublicKey []byte    `json:"pub"`
	At        time.Time `json:"at"`
}

// AuditAnchorRecord is one stored anchor.
type AuditAnchorRecord struct {
	Seq  uint64    `json:"seq"`
	Head []byte    `json:"head"`
	At   time.Time `json:"at"`
}

func newAuditCommand(op Op) Command {
	switch op {
	case OpPutAuditKey:
		return new(PutAuditKey)
	case OpPutAuditAnchor:
		return new(PutAuditAnchor)
	}
	return nil
}

func validAuditNode(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("%w: audit node id", ErrInvalidCommand)
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 {
			return fmt.Errorf("%w: audit node id", ErrInvalidCommand)
		}
	}
	return nil
}

// Anchor retention. Every anchor younger than AnchorKeepAll (on the
// proposers' clock, so every replica prunes the same) is kept; of older
// ones, the first of each AnchorThinTo period. An anchor pins every record
// up to it (each line holds the hash of the one before), so thinning old
// anchors loses nothing as long as the kept ones predate a compromise: a
// person controlling a node for longer than AnchorKeepAll, with nobody
// verifying meanwhile, could rewrite at most the records of the last
// AnchorThinTo before they took over. Storage per node: about 24 anchors a
// day plus one day at the anchor interval.
const (
	AnchorKeepAll = 24 * time.Hour
	AnchorThinTo  = time.Hour
)

// dispatchAudit applies the audit commands; ok is false for others.
func (a *applier) dispatchAudit(cmd Command) (bool, error) {
	switch c := cmd.(type) {
	case *PutAuditKey:
		return true, a.applyAuditKey(c)
	case *PutAuditAnchor:
		return true, a.applyAuditAnchor(c)
	}
	return false, nil
}

func (a *applier) applyAuditKey(c *PutAuditKey) error {
	return a.putNodeKeyOnce(bucketAuditKeys, "audit", c.Node, c.PublicKey, c.At)
}

// putNodeKeyOnce records node's 32-byte public key of the given kind in
// bucket (created on first use), once for the node's life: the same key
// again changes nothing, another key is ErrConflict. The stored record is
// {node, pub, at} (AuditKeyRecord, DeliveryKeyRecord).
func (a *applier) putNodeKeyOnce(bucket []byte, kind, node string, pub []byte, at time.Time) error {
	if err := validAuditNode(node); err != nil {
		return fmt.Errorf("%w: %s key node id", ErrInvalidCommand, kind)
	}
	if len(pub) != 32 {
		return fmt.Errorf("%w: %s public key is %d bytes", ErrInvalidCommand, kind, len(pub))
	}
	b, err := a.tx.CreateBucketIfNotExists(bucket)
	if err != nil {
		return errStorage{err}
	}
	if v := b.Get([]byte(node)); v != nil {
		var cur AuditKeyRecord
		if err := json.Unmarshal(v, &cur); err == nil && bytes.Equal(cur.PublicKey, pub) {
			return nil
		}
		return fmt.Errorf("%w: node %s already has a different %s key", ErrConflict, node, kind)
	}
	v, err := json.Marshal(&AuditKeyRecord{Node: node, PublicKey: pub, At: at})
	if err != nil {
		return err
	}
	if err := b.Put([]byte(node), v); err != nil {
		return errStorage{err}
	}
	return nil
}

func anchorKey(node string, seq uint64) []byte {
	k := make([]byte, 0, len(node)+9)
	k = append(k, node...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

func lastAnchor(b *bolt.Bucket, node string) (uint64, bool) {
	if b == nil {
		return 0, false
	}
	c := b.Cursor()
	k, _ := c.Seek(anchorKey(node, ^uint64(0)))
	if k == nil {
		k, _ = c.Last()
	} else if !bytes.Equal(k, anchorKey(node, ^uint64(0))) {
		k, _ = c.Prev()
	}
	prefix := append([]byte(node), 0)
	if len(k) != len(prefix)+8 || !bytes.HasPrefix(k, prefix) {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[len(prefix):]), true
}

func (a *applier) applyAuditAnchor(c *PutAuditAnchor) error {
	if err := validAuditNode(c.Node); err != nil {
		return err
	}
	if c.Seq == 0 || len(c.Head) != 32 {
		return fmt.Errorf("%w: anchor needs a seq and a 32-byte head", ErrInvalidCommand)
	}
	b, err := a.tx.CreateBucketIfNotExists(bucketAuditAnchors)
	if err != nil {
		return errStorage{err}
	}
	if last, ok := lastAnchor(b, c.Node); ok && c.Seq <= last {
		return fmt.Errorf("%w: node %s is anchored at seq %d, not below %d", ErrConflict, c.Node, last, c.Seq)
	}
	v, err := json.Marshal(&AuditAnchorRecord{Seq: c.Seq, Head: c.Head, At: c.At})
	if err != nil {
		return err
	}
	if err := b.Put(anchorKey(c.Node, c.Seq), v); err != nil {
		return errStorage{err}
	}
	return thinAnchors(b, c.Node, c.At.Add(-AnchorKeepAll))
}

// thinKey holds a node's thinning progress: the seq of the last anchor
// examined and the period of the last one kept. It sorts after the
// node's anchors (0x01 > 0x00; node ids hold no control characters).
func thinKey(node string) []byte { return append([]byte(node), 1) }

// thinAnchors deletes anchors older than cutoff that are not the first of
// their AnchorThinTo period, examining each anchor once.
func thinAnchors(b *bolt.Bucket, node string, cutoff time.Time) error {
	var doneSeq uint64
	var keptPeriod int64 = -1
	if v := b.Get(thinKey(node)); len(v) == 16 {
		doneSeq = binary.BigEndian.Uint64(v[:8])
		keptPeriod = int64(binary.BigEndian.Uint64(v[8:]))
	}
	prefix := append([]byte(node), 0)
	c := b.Cursor()
	var del [][]byte
	moved := false
	for k, v := c.Seek(anchorKey(node, doneSeq+1)); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8; k, v = c.Next() {
		var rec AuditAnchorRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("fsm: decode audit anchor: %w", err)
		}
		if !rec.At.Before(cutoff) {
			break
		}
		period := rec.At.UnixNano() / int64(AnchorThinTo)
		if period == keptPeriod {
			del = append(del, append([]byte(nil), k...))
		} else {
			keptPeriod = period
		}
		doneSeq, moved = rec.Seq, true
	}
	for _, k := range del {
		if err := b.Delete(k); err != nil {
			return errStorage{err}
		}
	}
	if !moved {
		return nil
	}
	var v [16]byte
	binary.BigEndian.PutUint64(v[:8], doneSeq)
	binary.BigEndian.PutUint64(v[8:], uint64(keptPeriod))
	if err := b.Put(thinKey(node), v[:]); err != nil {
		return errStorage{err}
	}
	return nil
}

// AuditKey returns a node's audit public key, or nil when none is
// recorded.
func (f *FSM) AuditKey(node string) (*AuditKeyRecord, error) {
	return f.nodeKey(bucketAuditKeys, node)
}

// nodeKey reads node's record of a write-once key bucket
// (putNodeKeyOnce), or nil when it has none.
func (f *FSM) nodeKey(bucket []byte, node string) (*AuditKeyRecord, error) {
	var rec *AuditKeyRecord
	err := f.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if b == nil {
			return nil
		}
		v := b.Get([]byte(node))
		if v == nil {
			return nil
		}
		rec = new(AuditKeyRecord)
		if err := json.Unmarshal(v, rec); err != nil {
			return fmt.Errorf("fsm: decode %s record of %s: %w", bucket, node, err)
		}
		return nil
	})
	return rec, err
}

// AuditAnchors returns a node's anchors in seq order.
func (f *FSM) AuditAnchors(node string) ([]AuditAnchorRecord, error) {
	var out []AuditAnchorRecord
	err := f.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAuditAnchors)
		if b == nil {
			return nil
		}
		prefix := append([]byte(node), 0)
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8; k, v = c.Next() {
			var rec AuditAnchorRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("fsm: decode audit anchor: %w", err)
			}
			out = append(out, rec)
		}
		return nil
	})
	return out, err
}

// LastAuditAnchor returns the seq of a node's last anchor (0: none).
func (f *FSM) LastAuditAnchor(node string) uint64 {
	var seq uint64
	_ = f.view(func(tx *bolt.Tx) error {
		seq, _ = lastAnchor(tx.Bucket(bucketAuditAnchors), node)
		return nil
	})
	return seq
}

// dumpAudit adds the audit buckets to Dump.
func dumpAudit(tx *bolt.Tx, w io.Writer) error {
	for _, name := range [][]byte{bucketAuditKeys, bucketAuditAnchors, bucketDeliveryKeys, bucketKV, bucketVault, bucketVaultExp, bucketVaultIdx, bucketVaultDet} {
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
