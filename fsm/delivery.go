package fsm

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Delivery keys: each member's delivery public key (sharex), pinned by
// the leader when the member joins. Node shares and relayed custodian
// shares for that member are sealed to the pinned key, whose private half
// only the member's HSM unwraps, so whoever holds its certificate but not
// its HSM (root on its disk) receives nothing usable.
var bucketDeliveryKeys = []byte("delivery_keys") // node id -> DeliveryKeyRecord

// OpPinDeliveryKey pins a member's delivery key (write once).
const OpPinDeliveryKey Op = 101

// PinDeliveryKey pins node's delivery public key. A node has one key for
// its life (as for its audit key): a different key for a node that has one
// is refused, so nobody can re-pin a voter's key to one they hold. A node
// whose HSM or data directory was replaced rejoins under a new node id. A
// DR restore drops every pin (the restored cluster's nodes have new HSMs).
type PinDeliveryKey struct {
	Meta
	Node      string `json:"node"`
	PublicKey []byte `json:"pub"`
}

func (*PinDeliveryKey) op() Op { return OpPinDeliveryKey }

// DeliveryKeyRecord is a pinned delivery key as stored (the same record as
// AuditKeyRecord: putNodeKeyOnce).
type DeliveryKeyRecord struct {
	Node      string    `json:"node"`
	PublicKey []byte    `json:"pub"`
	At        time.Time `json:"at"`
}

// deliveryKeySize is an X25519 public key's size (sharex.DeliveryKeySize;
// fsm does not import sharex).
const deliveryKeySize = 32

func (a *applier) applyPinDeliveryKey(c *PinDeliveryKey) error {
	return a.putNodeKeyOnce(bucketDeliveryKeys, "delivery", c.Node, c.PublicKey, c.At)
}

// DeliveryKey returns node's pinned delivery public key, or nil when none
// is pinned.
func (f *FSM) DeliveryKey(node string) ([]byte, error) {
	rec, err := f.nodeKey(bucketDeliveryKeys, node)
	if err != nil || rec == nil {
		return nil, err
	}
	return rec.PublicKey, nil
}

// DeliveryKeys returns every pinned delivery key, by node id.
func (f *FSM) DeliveryKeys() ([]DeliveryKeyRecord, error) {
	var out []DeliveryKeyRecord
	err := f.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDeliveryKeys)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var rec DeliveryKeyRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("fsm: decode delivery key of %s: %w", k, err)
			}
			out = append(out, rec)
			return nil
		})
	})
	return out, err
}

// replacePins makes pins the only delivery keys in tx.
func replacePins(tx *bolt.Tx, pins []DeliveryKeyRecord) error {
	if tx.Bucket(bucketDeliveryKeys) != nil {
		if err := tx.DeleteBucket(bucketDeliveryKeys); err != nil {
			return err
		}
	}
	if len(pins) == 0 {
		return nil
	}
	b, err := tx.CreateBucket(bucketDeliveryKeys)
	if err != nil {
		return err
	}
	for _, p := range pins {
		if validAuditNode(p.Node) != nil || len(p.PublicKey) != deliveryKeySize {
			return fmt.Errorf("%w: delivery key of %q", ErrInvalidCommand, p.Node)
		}
		v, err := json.Marshal(&p)
		if err != nil {
			return err
		}
		if err := b.Put([]byte(p.Node), v); err != nil {
			return err
		}
	}
	return nil
}
