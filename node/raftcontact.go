package node

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// contactTransport is Raft's network transport that remembers when an
// AppendEntries call (a heartbeat or a replication batch) to each peer
// last succeeded: the leader's last contact with each follower, which
// raft keeps unexported. Every other method, and the optional transport
// interfaces raft looks for (close, pre-vote, peers), are the embedded
// transport's.
type contactTransport struct {
	*raft.NetworkTransport
	mu   sync.Mutex
	last map[raft.ServerID]time.Time
}

func newContactTransport(t *raft.NetworkTransport) *contactTransport {
	return &contactTransport{NetworkTransport: t, last: map[raft.ServerID]time.Time{}}
}

// AppendEntries sends the RPC and records a success.
func (t *contactTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	err := t.NetworkTransport.AppendEntries(id, target, args, resp)
	if err == nil {
		now := time.Now()
		t.mu.Lock()
		t.last[id] = now
		t.mu.Unlock()
	}
	return err
}

// peerLastContact returns, for each server of r's configuration but
// self, the time since this node last reached it with AppendEntries.
// It returns nil unless this node is the leader (only a leader sends
// them); a peer never reached is absent.
func (t *contactTransport) peerLastContact(r *raft.Raft, self raft.ServerID) map[string]time.Duration {
	if r.State() != raft.Leader {
		return nil
	}
	f := r.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	out := map[string]time.Duration{}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range f.Configuration().Servers {
		if s.ID == self {
			continue
		}
		if at, ok := t.last[s.ID]; ok {
			out[string(s.ID)] = now.Sub(at)
		}
	}
	return out
}
