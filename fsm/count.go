package fsm

import bolt "go.etcd.io/bbolt"

// Size returns the size in bytes of the state database as of one read
// transaction (the metric keyd_state_bytes).
func (f *FSM) Size() (int64, error) {
	var n int64
	err := f.view(func(tx *bolt.Tx) error {
		n = tx.Size()
		return nil
	})
	return n, err
}
