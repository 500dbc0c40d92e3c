package node_test

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyd/keyd/internal/testcluster"
)

// lockedBuffer collects the cluster's logs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// count returns how many log lines contain s.
func (l *lockedBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// TestNoDealingWithoutHSMs runs a cluster without HSMs (as the compose
// cluster): the leader must not retry dealing node shares for ever; it
// says once, in status, why node shares are off.
func TestNoDealingWithoutHSMs(t *testing.T) {
	logs := &lockedBuffer{}
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Log: logs})
	c.Init(t, 3, 2)
	c.Unseal(t, 2)
	leader := c.WaitLeader(t)
	n := c.Node(leader)
	ticks0, attempts0 := n.NodeShareCounters()
	lines0 := logs.count("node share")
	// Watch 40 iterations of the leader's node-share loop (4 s at the
	// test interval of 100 ms).
	c.Eventually(t, 60*time.Second, func() error {
		if ticks, _ := n.NodeShareCounters(); ticks < ticks0+40 {
			return fmt.Errorf("%d ticks", ticks-ticks0)
		}
		return nil
	})
	_, attempts := n.NodeShareCounters()
	lines := logs.count("node share") + logs.count("node-share")
	if d := attempts - attempts0; d > 1 {
		t.Errorf("%d dealing attempts over 40 ticks on a cluster without HSMs", d)
	}
	if d := lines - lines0; d > 3 {
		t.Errorf("%d node-share log lines over 40 ticks", d)
	}
	st := n.Status()
	if !strings.HasPrefix(st.NodeShares, "off:") || !strings.Contains(st.NodeShares, "HSM") {
		t.Errorf("leader's node_shares status %q, want off: ... HSM", st.NodeShares)
	}
	for i := 0; i < c.Size(); i++ {
		if st := c.Node(i).Status(); !strings.HasPrefix(st.NodeShares, "off:") {
			t.Errorf("%s node_shares %q", st.NodeID, st.NodeShares)
		}
	}
}
