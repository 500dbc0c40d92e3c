package drill

import (
	"math"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
)

func op(kind, key string, call, ret int, status, out string, v uint32) Op {
	o := Op{Kind: kind, Key: key, Call: time.Duration(call), Return: time.Duration(ret), Status: status, Out: out, Version: v}
	if status == statusUnknown {
		o.Return = math.MaxInt64
	}
	return o
}

func TestModelAcceptsLinearizableHistory(t *testing.T) {
	h := []Op{
		op(kindCreate, "k", 0, 10, statusOK, outOK, 1),
		op(kindRotate, "k", 20, 30, statusOK, outOK, 2),
		op(kindRead, "k", 25, 35, statusOK, outOK, 2),
		// Unknown rotation: applied or not, later reads may see either.
		op(kindRotate, "k", 40, 0, statusUnknown, "", 0),
		op(kindRead, "k", 50, 60, statusOK, outOK, 3),
		op(kindRotate, "k", 70, 80, statusOK, outOK, 4),
		op(kindCreate, "k", 90, 95, statusFailed, outExists, 0),
		op(kindRead, "other", 1, 2, statusFailed, outNotFound, 0),
	}
	if v, _ := checkLinearizable(h, 10*time.Second); v != "ok" {
		t.Fatalf("verdict %s, want ok", v)
	}
	// The unknown rotation may also not have been applied.
	h2 := append([]Op(nil), h[:4]...)
	h2 = append(h2, op(kindRead, "k", 50, 60, statusOK, outOK, 2))
	if v, _ := checkLinearizable(h2, 10*time.Second); v != "ok" {
		t.Fatalf("verdict %s for an unapplied unknown rotation, want ok", v)
	}
}

func TestModelRejectsStaleRead(t *testing.T) {
	h := []Op{
		op(kindCreate, "k", 0, 10, statusOK, outOK, 1),
		op(kindRotate, "k", 20, 30, statusOK, outOK, 2),
		// Starts after the rotation returned, yet sees version 1: a stale
		// leader served it.
		op(kindRead, "k", 40, 50, statusOK, outOK, 1),
	}
	if v, _ := checkLinearizable(h, 10*time.Second); v != "illegal" {
		t.Fatalf("verdict %s for a stale read, want illegal", v)
	}
}

func TestModelRejectsDoubleApply(t *testing.T) {
	h := []Op{
		op(kindCreate, "k", 0, 10, statusOK, outOK, 1),
		// One acknowledged rotation, but the next read sees two versions
		// added: a retry was applied twice.
		op(kindRotate, "k", 20, 30, statusOK, outOK, 2),
		op(kindRead, "k", 40, 50, statusOK, outOK, 3),
	}
	if v, _ := checkLinearizable(h, 10*time.Second); v != "illegal" {
		t.Fatalf("verdict %s for a double apply, want illegal", v)
	}
	// Two acknowledged rotations with the same version.
	h = []Op{
		op(kindCreate, "k", 0, 10, statusOK, outOK, 1),
		op(kindRotate, "k", 20, 30, statusOK, outOK, 2),
		op(kindRotate, "k", 40, 50, statusOK, outOK, 2),
	}
	if v, _ := checkLinearizable(h, 10*time.Second); v != "illegal" {
		t.Fatalf("verdict %s for two rotations replying one version, want illegal", v)
	}
}

func TestModelRejectsLostCreate(t *testing.T) {
	h := []Op{
		op(kindCreate, "k", 0, 10, statusOK, outOK, 1),
		op(kindRead, "k", 20, 30, statusFailed, outNotFound, 0),
	}
	if v, _ := checkLinearizable(h, 10*time.Second); v != "illegal" {
		t.Fatalf("verdict %s for a lost create, want illegal", v)
	}
}

func TestLongestGap(t *testing.T) {
	ts := []time.Duration{5, 7, 30, 31}
	if g := longestGap(ts, 0, 40); g != 23 {
		t.Fatalf("gap %d, want 23", g)
	}
	if g := longestGap(nil, 0, 40); g != 40 {
		t.Fatalf("gap %d with no event, want the whole window", g)
	}
	if g := longestGap([]time.Duration{1, 2}, 0, 100); g != 98 {
		t.Fatalf("gap %d, want the tail 98", g)
	}
}

func TestLeaderSamples(t *testing.T) {
	l := newLeaderSamples()
	l.add(statusOf("n1", "Leader", 3))
	l.add(statusOf("n2", "Follower", 3))
	l.add(statusOf("n2", "Leader", 4))
	if ok, d := l.verdict(); !ok {
		t.Fatalf("one leader per term judged bad: %s", d)
	}
	l.add(statusOf("n3", "Leader", 4))
	if ok, _ := l.verdict(); ok {
		t.Fatal("two leaders in term 4 not reported")
	}
}

func statusOf(id, state string, term uint64) *api.SealStatus {
	return &api.SealStatus{NodeID: id, RaftState: state, Term: term}
}
