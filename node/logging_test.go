package node_test

import (
	"bufio"
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/node"
)

// lockedBuf is a bytes.Buffer for concurrent writers.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// loud returns the lines of out at WARN or above, and the lines that did
// not come from the slog handler at all (a library writing on its own).
// With node set, only that node's lines count.
func loud(out, node string) []string {
	var bad []string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "time=") {
			bad = append(bad, "not from the slog handler: "+line)
			continue
		}
		if node != "" && !strings.Contains(line, " node="+node+" ") {
			continue
		}
		if strings.Contains(line, " level=WARN ") || strings.Contains(line, " level=ERROR ") {
			bad = append(bad, line)
		}
	}
	return bad
}

// TestQuietStartAndStop starts a 3-node cluster with gossip, initialises
// and unseals it and creates a key, capturing every record of every node
// (Raft's and memberlist's included, which reach the node's slog handler):
// the start logs nothing at WARN or above, and neither does each node
// while it stops. (Its peers may warn that it went away: from where they
// stand that is a failure.) No library line bypasses the handler.
func TestQuietStartAndStop(t *testing.T) {
	var logs lockedBuf
	// The WAN timings (Raft and gossip) keep a CPU-starved CI machine from
	// producing real warnings (a leader that misses its followers for a few
	// hundred milliseconds steps down, and says so): the records a normal
	// start and stop produce are the same under either profile.
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Gossip: true, HSM: testcluster.HSMSoft, Log: &logs,
		Configure: func(_ int, cfg *node.Config) { cfg.Timing = node.TimingWAN }})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	if _, err := c.Client(t).CreateKey(ctxT(t), api.CreateKeyRequest{Name: "k"}); err != nil {
		t.Fatal(err)
	}
	c.WaitLeader(t)
	out := logs.String()
	if bad := loud(out, ""); len(bad) > 0 {
		t.Errorf("a normal start logged %d lines at WARN or above, or outside the handler:\n%s", len(bad), strings.Join(bad, "\n"))
	}
	if !strings.Contains(out, " lib=raft") || !strings.Contains(out, " lib=memberlist") {
		t.Errorf("want both raft and memberlist records routed through slog, got:\n%s", out)
	}
	// Stop the followers first, then the leader, as a rolling shutdown
	// would; each node's own records while it stops must be quiet, except
	// records about the nodes stopped before it (they name them) and, on
	// the last node, the loss of quorum those stops cause: from where it
	// stands, those are failures.
	leader := c.WaitLeader(t)
	order := []int{(leader + 1) % 3, (leader + 2) % 3, leader}
	var gone []string // "ID:n2", "server-id=n2", raft addresses of stopped nodes
	for k, i := range order {
		id := c.Slot(i).ID
		from := len(logs.String())
		c.Stop(t, i)
		var bad []string
		for _, line := range loud(logs.String()[from:], id) {
			if namesAny(line, gone) || (k == len(order)-1 && strings.Contains(line, "quorum")) {
				continue
			}
			bad = append(bad, line)
		}
		if len(bad) > 0 {
			t.Errorf("%s logged %d lines at WARN or above while stopping:\n%s", id, len(bad), strings.Join(bad, "\n"))
		}
		gone = append(gone, "ID:"+id+" ", "server-id="+id, c.Slot(i).RaftAddr)
	}
}

func namesAny(line string, names []string) bool {
	for _, n := range names {
		if strings.Contains(line, n) {
			return true
		}
	}
	return false
}
