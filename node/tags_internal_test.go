package node

import (
	"testing"
	"time"
)

func TestStrictestTagRules(t *testing.T) {
	t.Parallel()
	rules := map[string]TagRule{
		"pci":  {MaxRotationPeriod: 90 * 24 * time.Hour},
		"fast": {MaxRotationPeriod: 24 * time.Hour, MinDeletionWindow: 48 * time.Hour},
		"pii":  {MinDeletionWindow: 7 * 24 * time.Hour},
	}
	r, rot, del := strictest(rules, []string{"fast", "pci", "pii", "other"})
	if r.MaxRotationPeriod != 24*time.Hour || rot != "fast" || r.MinDeletionWindow != 7*24*time.Hour || del != "pii" {
		t.Fatalf("got %+v %s %s", r, rot, del)
	}
}

func FuzzParseRetention(f *testing.F) {
	for _, s := range []string{"8760h", "", "0", "24h", "23h59m", "-1h", "1e3h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseRetention(s)
		if err == nil && d != 0 && d < MinRetention {
			t.Fatalf("%q gave %v, below the minimum", s, d)
		}
		if err == nil && d < 0 {
			t.Fatalf("%q gave a negative retention", s)
		}
	})
}
