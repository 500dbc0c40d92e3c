package fsm

import "errors"

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
func (f *FSM) Check(c Command) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed.Load() {
		return ErrClosed
	}
	tx, err := f.db.Begin(true)
	if err != nil {
		return err
	}
	// The transaction only ever rolls back.
	defer func() { _ = tx.Rollback() }()
	a := applier{tx: tx, changed: map[string]*KeyRecord{}, ev: &Event{}}
	err = a.dispatch(c)
	var se errStorage
	if errors.As(err, &se) {
		return se.err
	}
	return err
}
