package fsm

import (
	"errors"
	"testing"
	"time"
)

// TestPolicyCAS: a checked policy write or delete applies only over the
// document it was authorized against.
func TestPolicyCAS(t *testing.T) {
	t.Parallel()
	d := &driver{t: t, f: openTest(t, nil)}
	d.apply(initCmd())
	a, b := []byte(`{"a":1}`), []byte(`{"b":2}`)
	steps := []struct {
		name    string
		cmd     Command
		wantErr error
	}{
		{"create expecting none", &PutPolicy{Meta: Meta{At: t0}, Name: "p", Doc: a, PolicyCAS: PolicyCAS{Check: true}}, nil},
		{"create again expecting none", &PutPolicy{Meta: Meta{At: t0}, Name: "p", Doc: b, PolicyCAS: PolicyCAS{Check: true}}, ErrConflict},
		{"replace expecting the wrong doc", &PutPolicy{Meta: Meta{At: t0}, Name: "p", Doc: b, PolicyCAS: PolicyCAS{Check: true, Prev: b}}, ErrConflict},
		{"replace expecting the stored doc", &PutPolicy{Meta: Meta{At: t0}, Name: "p", Doc: b, PolicyCAS: PolicyCAS{Check: true, Prev: a}}, nil},
		{"delete expecting the old doc", &DeletePolicy{Meta: Meta{At: t0}, Name: "p", PolicyCAS: PolicyCAS{Check: true, Prev: a}}, ErrConflict},
		{"delete expecting none", &DeletePolicy{Meta: Meta{At: t0}, Name: "p", PolicyCAS: PolicyCAS{Check: true}}, ErrConflict},
		{"delete expecting the stored doc", &DeletePolicy{Meta: Meta{At: t0}, Name: "p", PolicyCAS: PolicyCAS{Check: true, Prev: b}}, nil},
		{"unchecked write still applies", &PutPolicy{Meta: Meta{At: t0}, Name: "p", Doc: a}, nil},
	}
	for _, s := range steps {
		res := d.apply(s.cmd)
		if !errors.Is(res.Err, s.wantErr) || (s.wantErr == nil && res.Err != nil) {
			t.Fatalf("%s: got %v, want %v", s.name, res.Err, s.wantErr)
		}
	}
	recs, err := d.f.Policies()
	if err != nil || len(recs) != 1 || string(recs[0].Doc) != string(a) {
		t.Fatalf("stored policies %v %v", recs, err)
	}
}

// TestScopedRequestIDs: a scoped request id deduplicates one caller's
// identical request, refuses that caller's id reused for another request,
// leaves other callers' ids alone, and is pruned like a bare id.
func TestScopedRequestIDs(t *testing.T) {
	t.Parallel()
	d := &driver{t: t, f: openTest(t, nil)}
	d.apply(initCmd())
	d.apply(&CreateKey{Meta: Meta{At: t0}, Name: "k1", Type: "aes256-gcm", First: wv(1)})
	d.apply(&CreateKey{Meta: Meta{At: t0}, Name: "k2", Type: "aes256-gcm", First: wv(1)})
	meta := func(scope, digest string, at time.Time) Meta {
		return Meta{RequestID: "r", At: at, Scope: scope, Digest: []byte(digest)}
	}
	first := d.apply(&SetKeyState{Meta: meta("token:a", "d1", t0), Name: "k1"})
	if first.Err != nil || first.Duplicate {
		t.Fatalf("first: %+v", first)
	}
	if res := d.apply(&SetKeyState{Meta: meta("token:a", "d1", t0), Name: "k1"}); !res.Duplicate || res.Index != first.Index {
		t.Fatalf("retry: %+v", res)
	}
	if res := d.apply(&SetKeyState{Meta: meta("token:a", "d2", t0), Name: "k2"}); !errors.Is(res.Err, ErrRequestReused) || !errors.Is(res.Err, ErrConflict) {
		t.Fatalf("reuse: %+v", res)
	}
	if k, _ := d.f.Key("k2"); k.State != StateEnabled {
		t.Fatal("a reused id changed k2")
	}
	if _, _, err := d.f.Request(meta("token:a", "d2", t0)); !errors.Is(err, ErrRequestReused) {
		t.Fatalf("Request of a reuse: %v", err)
	}
	if idx, ok, err := d.f.Request(meta("token:a", "d1", t0)); err != nil || !ok || idx != first.Index {
		t.Fatalf("Request of a retry: %d %v %v", idx, ok, err)
	}
	if res := d.apply(&SetKeyState{Meta: meta("token:b", "d2", t0), Name: "k2"}); res.Err != nil || res.Duplicate {
		t.Fatalf("another caller: %+v", res)
	}
	if k, _ := d.f.Key("k2"); k.State != StateDisabled {
		t.Fatal("another caller's write did nothing")
	}
	// Pruned after RequestRetention like a bare id.
	d.apply(&SetKeyState{Meta: Meta{RequestID: "later", At: t0.Add(RequestRetention + time.Minute)}, Name: "k1", Enabled: true})
	if _, ok, _ := d.f.Request(meta("token:a", "d1", t0)); ok {
		t.Fatal("scoped id not pruned")
	}
}

// TestIndexPublishedAfterObserver: whoever sees AppliedIndex reach an
// entry (WaitApplied, a revoke waiting for every node) also sees what the
// observer built from it (the token table, unwrapped keys).
func TestIndexPublishedAfterObserver(t *testing.T) {
	t.Parallel()
	entered, release := make(chan uint64), make(chan struct{})
	f := openTest(t, func(ev Event) {
		entered <- ev.Index
		<-release
	})
	d := &driver{t: t, f: f}
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.apply(initCmd())
	}()
	idx := <-entered
	if got := f.AppliedIndex(); got >= idx {
		t.Errorf("index %d published while the observer of entry %d still runs", got, idx)
	}
	close(release)
	<-done
	if got := f.AppliedIndex(); got != idx {
		t.Fatalf("applied %d after the observer, want %d", got, idx)
	}
}
