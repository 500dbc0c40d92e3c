package api

import (
	"net/url"
	"strings"
	"testing"
)

func TestValidKVPath(t *testing.T) {
	t.Parallel()
	for p, want := range map[string]bool{
		"app1/db": true, "a": true, "a.b/c-d/e_f": true, "x/..y": true,
		"": false, "/a": false, "a/": false, "a//b": false, "a/../b": false, "./a": false,
		"a b": false, "a?b": false, "a%2fb": false, "a#b": false, strings.Repeat("a", MaxKVPathLen+1): false,
	} {
		if got := ValidKVPath(p); got != want {
			t.Errorf("ValidKVPath(%q) = %v, want %v", p, got, want)
		}
	}
}

// FuzzKVPath checks that a path ValidKVPath accepts goes into a URL
// unchanged and cannot climb out of /v1/kv/.
func FuzzKVPath(f *testing.F) {
	for _, s := range []string{"app1/db", "a/../b", "a//b", "%2e%2e", "a/./b", "ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if !ValidKVPath(p) {
			return
		}
		u, err := url.Parse("https://h" + PathKV + p)
		if err != nil || u.Path != PathKV+p || u.RawQuery != "" || u.Fragment != "" {
			t.Fatalf("%q changes the URL: %v %+v", p, err, u)
		}
		for seg := range strings.SplitSeq(p, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("%q has segment %q", p, seg)
			}
		}
	})
}
