package fsm

import (
	"errors"
	"testing"
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
