package node

import (
	"context"
	"fmt"

	"github.com/hashicorp/raft"

	"github.com/keyd/keyd/api"
)

// RemoveServer removes a node from the Raft configuration. It runs on the
// leader. The leader then re-deals node shares for the remaining voters,
// so the removed node's share stops verifying against the new dealing.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	if !n.IsLeader() {
		return n.notLeader()
	}
	if id == n.cfg.NodeID {
		return &api.Error{Code: api.CodeBadRequest, Message: "the leader cannot remove itself; transfer leadership first"}
	}
	timeout, err := n.raftTimeout(ctx)
	if err != nil {
		return err
	}
	if err := n.raft.raft.RemoveServer(raft.ServerID(id), 0, timeout).Error(); err != nil {
		return fmt.Errorf("node: remove %s: %w", id, err)
	}
	n.log.Info("server removed", "id", id)
	select {
	case n.dealNow <- struct{}{}:
	default:
	}
	return nil
}
