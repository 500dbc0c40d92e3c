package fsm

import (
	"errors"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// MetaOf returns c's Meta, for a proposer that fills in the request
// scope.
func MetaOf(c Command) *Meta { return c.meta() }

// Check runs c against the current state without changing it and returns
// the error Apply would return now (nil: c would apply). Request-id
// deduplication is not part of it (see Request). The leader calls Check
// before proposing, so a command the state already refuses (a duplicate
// create carrying fresh wrapped material, a bad configuration, a delete of
// something missing) never enters the log; Apply checks again, since the
// state may change before the command commits.
//
// The key-record commands (create, rotate, state and configuration
// changes, deletion scheduling) are checked in a read-only transaction:
// each of them checks every precondition before its only write, the key
// record, so reaching that write (refused by the read-only transaction)
// means the command would apply. bbolt has one writer at a time, and the
// FSM's writer holds it through its commit and fsync: a writable check
// would queue every proposal behind the commit of the previous batch (and
// the FSM's next batch behind the checks). The other commands, rare and
// some with more than one write, keep the writable transaction that is
// only ever rolled back.
func (f *FSM) Check(c Command) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed.Load() {
		return ErrClosed
	}
	readOnly := checkReadOnly(c)
	tx, err := f.db.Begin(!readOnly)
	if err != nil {
		return err
	}
	// The transaction only ever rolls back.
	defer func() { _ = tx.Rollback() }()
	return checkIn(tx, c, readOnly)
}

// checkIn dispatches c in tx (rolled back by the caller). In a read-only
// tx, the refused first write means every precondition passed.
func checkIn(tx *bolt.Tx, c Command, readOnly bool) error {
	a := applier{tx: tx, changed: map[string]*KeyRecord{}, ev: &Event{}}
	err := a.dispatch(c)
	var se errStorage
	if errors.As(err, &se) {
		if readOnly && errors.Is(se.err, berrors.ErrTxNotWritable) {
			return nil
		}
		return se.err
	}
	return err
}

// checkReadOnly reports whether c's apply checks every precondition
// before its first write, which must be its last step (putKey), so that a
// read-only transaction checks it completely.
func checkReadOnly(c Command) bool {
	switch c.(type) {
	case *CreateKey, *RotateKey, *SetKeyState, *ConfigureKey, *ScheduleDeletion, *CancelDeletion:
		return true
	}
	return false
}
