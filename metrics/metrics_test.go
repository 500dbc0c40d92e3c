package metrics

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keyd/keyd/hsmbridge"
)

// TestDashboardUsesRealMetrics reads docs/grafana-keyd.json and checks
// that every keyd_ metric it queries is one this package exports.
func TestDashboardUsesRealMetrics(t *testing.T) {
	m := New(func() Sample {
		return Sample{RaftState: "Leader", LastContact: 0, Keys: 3, Members: map[string]int{"alive": 3}}
	})
	m.ObserveRequest("key.encrypt", 200, time.Millisecond)
	m.ObserveHSM("wrap", nil, time.Millisecond)
	m.ObserveAudit(errors.New("disk full"), time.Millisecond)
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range fams {
		have[f.GetName()] = true
	}
	data, err := os.ReadFile("../docs/grafana-keyd.json")
	if err != nil {
		t.Fatal(err)
	}
	used := regexp.MustCompile(`keyd_[a-z_]+`).FindAllString(string(data), -1)
	if len(used) == 0 {
		t.Fatal("the dashboard queries no keyd metric")
	}
	for _, name := range used {
		base := name
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			base = strings.TrimSuffix(base, suffix)
		}
		if !have[base] {
			t.Errorf("the dashboard queries %s, which keyd does not export", name)
		}
	}
}

// TestNilMetrics: a node without metrics pays nothing and breaks nothing.
func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.ObserveRequest("x", 200, time.Second)
	m.ObserveHSM("wrap", nil, time.Second)
	m.ObserveAudit(nil, time.Second)
	if m.WrapHSM(nil) != nil || m.Registry() != nil {
		t.Fatal("nil metrics must pass through")
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("nil handler: %d", rec.Code)
	}
}

type fakeHSM struct{ err error }

func (f fakeHSM) EnsureKey(context.Context, string) error { return f.err }
func (f fakeHSM) Wrap(context.Context, string, []byte, []byte) ([]byte, error) {
	return []byte("w"), f.err
}
func (f fakeHSM) Unwrap(context.Context, string, []byte, []byte) ([]byte, error) {
	return []byte("p"), f.err
}
func (f fakeHSM) Health(context.Context) error { return f.err }
func (f fakeHSM) Close() error                 { return nil }

var _ hsmbridge.HSM = fakeHSM{}

func TestWrapHSMTimesCalls(t *testing.T) {
	m := New(func() Sample { return Sample{LastContact: -1, Keys: -1, StateBytes: -1} })
	ok := m.WrapHSM(fakeHSM{})
	bad := m.WrapHSM(fakeHSM{err: errors.New("token gone")})
	ctx := context.Background()
	_, _ = ok.Wrap(ctx, "l", nil, nil)
	_, _ = ok.Unwrap(ctx, "l", nil, nil)
	_, _ = bad.Unwrap(ctx, "l", nil, nil)
	_ = ok.EnsureKey(ctx, "l")
	_ = ok.Health(ctx)
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, f := range fams {
		if f.GetName() != "keyd_hsm_call_duration_seconds" {
			continue
		}
		for _, mt := range f.GetMetric() {
			var call, outcome string
			for _, l := range mt.GetLabel() {
				switch l.GetName() {
				case "call":
					call = l.GetValue()
				case "outcome":
					outcome = l.GetValue()
				}
			}
			got[call+"/"+outcome] = mt.GetHistogram().GetSampleCount()
		}
	}
	for _, k := range []string{"wrap/ok", "unwrap/ok", "unwrap/error", "ensure_key/ok", "health/ok"} {
		if got[k] != 1 {
			t.Errorf("%s: %d observations, want 1 (all: %v)", k, got[k], got)
		}
	}
	// Without gossip, without a key count and before any contact, those
	// gauges are absent rather than zero.
	for _, f := range fams {
		switch f.GetName() {
		case "keyd_gossip_members", "keyd_keys", "keyd_state_bytes", "keyd_raft_last_contact_seconds":
			t.Errorf("%s exported without a value", f.GetName())
		}
	}
}
