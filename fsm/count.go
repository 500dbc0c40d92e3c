package fsm

import bolt "go.etcd.io/bbolt"

// KeyCount returns the number of key records without decoding any, for
// metrics.
func (f *FSM) KeyCount() (int, error) {
	var n int
	err := f.view(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketKeys).Stats().KeyN
		return nil
	})
	return n, err
}
