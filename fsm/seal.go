package fsm

import (
	"encoding/binary"

	bolt "go.etcd.io/bbolt"
)

// OpSealCluster is the cluster-wide seal, in its own range so that other
// appended ops never collide with it.
const OpSealCluster Op = 100

// SealCluster records an operator's seal in the replicated log. Every node
// that applies it seals, whatever order the seal's node-to-node relays
// reach it in, and a custodian share relayed by a node that had not yet
// applied it (a share given before the seal) is refused by a node that
// has (LastSealIndex).
type SealCluster struct {
	Meta
}

func (*SealCluster) op() Op { return OpSealCluster }

var keyLastSeal = []byte("last_seal") // in meta: index of the last SealCluster

func (a *applier) applySealCluster(*SealCluster) error {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], a.index)
	if err := a.tx.Bucket(bucketMeta).Put(keyLastSeal, buf[:]); err != nil {
		return errStorage{err}
	}
	a.ev.Sealed = true
	return nil
}

// LastSealIndex returns the log index of the last SealCluster applied (0:
// none).
func (f *FSM) LastSealIndex() uint64 {
	var idx uint64
	_ = f.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyLastSeal); len(v) >= 8 {
			idx = binary.BigEndian.Uint64(v[:8])
		}
		return nil
	})
	return idx
}
