package fsm

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// TestAuditAnchorsAndKeys: anchors only move forward per node (a node
// cannot replace what it anchored), other nodes' anchors are separate,
// and a node's audit key cannot be replaced.
func TestAuditAnchorsAndKeys(t *testing.T) {
	t.Parallel()
	f := openTest(t, nil)
	d := &driver{t: t, f: f}
	h := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	steps := []struct {
		cmd  Command
		want error
	}{
		{&PutAuditAnchor{Node: "n1", Seq: 5, Head: h(1)}, nil},
		{&PutAuditAnchor{Node: "n1", Seq: 5, Head: h(2)}, ErrConflict},
		{&PutAuditAnchor{Node: "n1", Seq: 3, Head: h(2)}, ErrConflict},
		{&PutAuditAnchor{Node: "n1", Seq: 9, Head: h(3)}, nil},
		{&PutAuditAnchor{Node: "n", Seq: 1, Head: h(4)}, nil}, // a prefix of n1
		{&PutAuditAnchor{Node: "n10", Seq: 2, Head: h(5)}, nil},
		{&PutAuditAnchor{Node: "n1", Seq: 0, Head: h(3)}, ErrInvalidCommand},
		{&PutAuditAnchor{Node: "n1", Seq: 10, Head: h(3)[:5]}, ErrInvalidCommand},
		{&PutAuditAnchor{Node: "", Seq: 10, Head: h(3)}, ErrInvalidCommand},
		{&PutAuditKey{Node: "n1", PublicKey: h(7)}, nil},
		{&PutAuditKey{Node: "n1", PublicKey: h(7)}, nil},
		{&PutAuditKey{Node: "n1", PublicKey: h(8)}, ErrConflict},
		{&PutAuditKey{Node: "n1", PublicKey: h(8)[:4]}, ErrInvalidCommand},
	}
	for i, s := range steps {
		res := d.apply(s.cmd)
		if !errors.Is(res.Err, s.want) || s.want == nil && res.Err != nil {
			t.Fatalf("step %d: got %v, want %v", i, res.Err, s.want)
		}
	}
	as, err := f.AuditAnchors("n1")
	if err != nil || len(as) != 2 || as[0].Seq != 5 || as[1].Seq != 9 || !bytes.Equal(as[1].Head, h(3)) {
		t.Fatalf("anchors of n1: %+v, %v", as, err)
	}
	if got := f.LastAuditAnchor("n1"); got != 9 {
		t.Fatalf("last anchor of n1: %d", got)
	}
	if got := f.LastAuditAnchor("n"); got != 1 {
		t.Fatalf("last anchor of n: %d", got)
	}
	if got := f.LastAuditAnchor("n2"); got != 0 {
		t.Fatalf("last anchor of n2: %d", got)
	}
	k, err := f.AuditKey("n1")
	if err != nil || k == nil || !bytes.Equal(k.PublicKey, h(7)) {
		t.Fatalf("key of n1: %+v, %v", k, err)
	}
	if k, _ := f.AuditKey("n2"); k != nil {
		t.Fatalf("key of n2: %+v", k)
	}
	var dump bytes.Buffer
	if err := f.Dump(&dump); err != nil || !bytes.Contains(dump.Bytes(), []byte("audit_anchors/")) {
		t.Fatalf("dump: %v %q", err, dump.String())
	}
}

// TestAuditAnchorThinning: anchors older than AnchorKeepAll are thinned to
// the first of each AnchorThinTo period; younger ones are all kept, and
// the last anchor of every node is never lost.
func TestAuditAnchorThinning(t *testing.T) {
	t.Parallel()
	f := openTest(t, nil)
	d := &driver{t: t, f: f}
	h := bytes.Repeat([]byte{9}, 32)
	start := t0
	// Three days of anchors every 20 minutes: 3 per hour.
	var seq uint64
	for at := start; at.Before(start.Add(72 * time.Hour)); at = at.Add(20 * time.Minute) {
		seq += 10
		if res := d.apply(&PutAuditAnchor{Meta: Meta{At: at}, Node: "n1", Seq: seq, Head: h}); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	// Another node's anchors are untouched.
	if res := d.apply(&PutAuditAnchor{Meta: Meta{At: start}, Node: "n1x", Seq: 1, Head: h}); res.Err != nil {
		t.Fatal(res.Err)
	}
	as, err := f.AuditAnchors("n1")
	if err != nil {
		t.Fatal(err)
	}
	last := as[len(as)-1]
	if last.Seq != seq {
		t.Fatalf("last anchor %d, want %d", last.Seq, seq)
	}
	cutoff := last.At.Add(-AnchorKeepAll)
	perHour := map[int64]int{}
	young := 0
	for i, a := range as {
		if i > 0 && a.Seq <= as[i-1].Seq {
			t.Fatal("anchors out of order")
		}
		if a.At.Before(cutoff) {
			perHour[a.At.UnixNano()/int64(AnchorThinTo)]++
		} else {
			young++
		}
	}
	for hr, n := range perHour {
		if n != 1 {
			t.Fatalf("hour %d keeps %d anchors, want 1", hr, n)
		}
	}
	if len(perHour) != 48 || young != 3*24+1 { // the anchor exactly AnchorKeepAll old is kept
		t.Fatalf("kept %d old hours and %d young anchors", len(perHour), young)
	}
	if got := f.LastAuditAnchor("n1"); got != seq {
		t.Fatalf("last anchor %d, want %d", got, seq)
	}
	if res := d.apply(&PutAuditAnchor{Meta: Meta{At: last.At}, Node: "n1", Seq: seq, Head: h}); !errors.Is(res.Err, ErrConflict) {
		t.Fatalf("re-anchoring the last seq: %v", res.Err)
	}
	if as, _ := f.AuditAnchors("n1x"); len(as) != 1 {
		t.Fatalf("n1x anchors: %+v", as)
	}
	if res := d.apply(&PutAuditAnchor{Node: "n\x01", Seq: 1, Head: h}); !errors.Is(res.Err, ErrInvalidCommand) {
		t.Fatalf("control character in node id: %v", res.Err)
	}
}
