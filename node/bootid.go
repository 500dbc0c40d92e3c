package node

import "github.com/keyd/keyd/fsm"

// bootID is the running kernel's boot id, which guards the state
// database's unsynced commits (fsm/unsynced.go).
func bootID() string { return fsm.BootID() }
