package api

import (
	"slices"
	"strings"
	"testing"
)

func TestParseTagList(t *testing.T) {
	got, err := ParseTagList(" pii, pci ,pii")
	if err != nil || !slices.Equal(got, []string{"pci", "pii"}) {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range []string{"PII", "pii,,pci", "a b", "-x", strings.Repeat("a", MaxTagLen+1), strings.Repeat("a,", MaxTags) + "a"} {
		if _, err := ParseTagList(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if got, err := ParseTagList(""); err != nil || got != nil {
		t.Fatal("empty list")
	}
}

func FuzzParseTagList(f *testing.F) {
	for _, s := range []string{"pii", "pii,pci", " a , b ", "", ",", "PII", "x\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tags, err := ParseTagList(s)
		if err != nil {
			return
		}
		if len(tags) > MaxTags || !slices.IsSorted(tags) {
			t.Fatalf("%q -> %v", s, tags)
		}
		for _, tg := range tags {
			if !ValidTag(tg) {
				t.Fatalf("invalid tag %q from %q", tg, s)
			}
		}
		again, err := NormalizeTags(tags)
		if err != nil || !slices.Equal(again, tags) {
			t.Fatal("not idempotent")
		}
	})
}
