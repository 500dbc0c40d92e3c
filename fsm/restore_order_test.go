package fsm

import (
	"bytes"
	"io"
	"testing"
)

// TestRestorePublishesIndexAfterObserver: ApplyBatch runs the observer
// (the node's token table, key tags and key cache) before it publishes
// the applied index, so whoever sees the index (X-Keyd-Min-Index, a
// revoke waiting for every node) also sees those views. Restore
// published the restored index first: in between, a request that waited
// for that index was served by the pre-restore views (a cached key the
// snapshot had disabled or deleted, a token it had revoked). The
// observer must see the old index still published.
func TestRestorePublishesIndexAfterObserver(t *testing.T) {
	t.Parallel()
	src := openTest(t, nil)
	d := &driver{t: t, f: src}
	d.apply(initCmd())
	d.apply(&CreateKey{Meta: Meta{At: t0}, Name: "a", Type: "aes256-gcm", First: wv(1)})
	snap := snapshotOf(t, src)

	var dst *FSM
	var seen uint64
	calls := 0
	dst = openTest(t, func(ev Event) {
		if ev.Restored {
			calls++
			seen = dst.AppliedIndex()
		}
	})
	before := dst.AppliedIndex()
	if err := dst.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Fatalf("%d Restored events", calls)
	}
	if seen != before {
		t.Fatalf("the observer ran with index %d already published (before %d): views lagged the index", seen, before)
	}
	if got := dst.AppliedIndex(); got != src.AppliedIndex() {
		t.Fatalf("applied index %d after restore, want %d", got, src.AppliedIndex())
	}
}
