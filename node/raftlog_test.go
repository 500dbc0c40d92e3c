package node

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/keyd/keyd/internal/logbridge"
)

// TestRaftLogRules: each demotion rule catches exactly its benign record
// and leaves the look-alike that signals a real failure at its level.
func TestRaftLogRules(t *testing.T) {
	var buf bytes.Buffer
	h := logbridge.NewHCLog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), "raft", raftLogRules)
	cases := []struct {
		log  func()
		want string
	}{
		{func() {
			h.Warn("heartbeat timeout reached, starting election", "last-leader-addr", "", "last-leader-id", "")
		}, "level=INFO"},
		{func() {
			h.Warn("heartbeat timeout reached, starting election", "last-leader-addr", "a:1", "last-leader-id", "n2")
		}, "level=WARN"},
		{func() { h.Warn("rejecting pre-vote request since we have a leader", "from", "a:1") }, "level=INFO"},
		{func() { h.Warn("rejecting vote request since we have a leader", "from", "a:1") }, "level=INFO"},
		{func() { h.Warn("rejecting vote request since our last term is greater", "candidate", "a:1") }, "level=INFO"},
		{func() { h.Error("failed to heartbeat to", "peer", "a:1", "error", errors.New("EOF")) }, "level=INFO"},
		{func() {
			h.Error("failed to heartbeat to", "peer", "a:1", "error", errors.New("dial tcp a:1: connect: connection refused"))
		}, "level=ERROR"},
		{func() { h.Error("failed to appendEntries to", "peer", "a:1", "error", errors.New("EOF")) }, "level=INFO"},
		{func() { h.Error("failed to appendEntries to", "peer", "a:1", "error", errors.New("i/o timeout")) }, "level=ERROR"},
		{func() {
			h.Error("failed to decode incoming command", "error", errors.New("read tcp a->b: use of closed network connection"))
		}, "level=DEBUG"},
		{func() { h.Error("failed to decode incoming command", "error", errors.New("transport shutdown")) }, "level=DEBUG"},
		{func() { h.Error("failed to decode incoming command", "error", errors.New("unknown rpc type 9")) }, "level=ERROR"},
		{func() {
			h.Error("failed to flush response", "error", errors.New("write tcp a->b: use of closed network connection"))
		}, "level=DEBUG"},
		{func() { h.Error("failed to flush response", "error", errors.New("write tcp a->b: broken pipe")) }, "level=ERROR"},
		{func() { h.Warn("failed to contact quorum of nodes, stepping down") }, "level=WARN"},
	}
	for i, tc := range cases {
		buf.Reset()
		tc.log()
		if !strings.Contains(buf.String(), " "+tc.want+" ") {
			t.Errorf("case %d: got %q, want %s", i, buf.String(), tc.want)
		}
	}
}
