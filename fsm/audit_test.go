package fsm

import (
	"bytes"
	"errors"
	"testing"
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
