package httpapi

import (
	"testing"
	"time"
)

func TestParseUnusedFor(t *testing.T) {
	t.Parallel()
	if d, err := ParseUnusedFor(""); err != nil || d != 720*time.Hour {
		t.Fatalf("default: %v %v", d, err)
	}
	for _, bad := range []string{"0", "0s", "-1h", "30d", "87601h", "1e9h", "abc"} {
		if _, err := ParseUnusedFor(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseUnusedFor(f *testing.F) {
	for _, s := range []string{"720h", "", "1ns", "87600h", "-1h", "1h30m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseUnusedFor(s)
		if err == nil && (d <= 0 || d > MaxUnusedFor) {
			t.Fatalf("%q gave %v", s, d)
		}
	})
}
