package node

import (
	"context"

	"github.com/keyd/keyd/fsm"
)

// KeyCached reports whether name's unwrapped key is in the node's cache.
func (n *Node) KeyCached(name string) bool { return n.keys.cache.contains(name) }

// DestroyKeyNow applies the deletion the scheduler applies once a key's
// pending window has passed, with the proposer's clock at the deletion
// time (the window is at least a day).
func (n *Node) DestroyKeyNow(ctx context.Context, name string) error {
	rec, err := n.fsm.Key(name)
	if err != nil {
		return err
	}
	_, err = n.apply(ctx, &fsm.DeleteKey{Meta: fsm.Meta{At: rec.DeletionAt}, Name: name, DeleteAt: rec.DeletionAt})
	return err
}

// RaftTerm returns the node's current Raft term.
func (n *Node) RaftTerm() uint64 { return n.raft.raft.CurrentTerm() }

// KeyUnwraps returns how many keys the node has unwrapped since it started.
func (n *Node) KeyUnwraps() uint64 { return n.keys.cache.loads.Load() }
