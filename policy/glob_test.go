package policy

import (
	"path"
	"testing"
)

func TestGlobMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"*", "", true},
		{"*", "anything.at-all", true},
		{"abc", "abc", true},
		{"abc", "abd", false},
		{"abc", "abcd", false},
		{"abc", "ab", false},
		{"app-*", "app-", true},
		{"app-*", "app-orders", true},
		{"app-*", "ap", false},
		{"app-*", "xapp-orders", false},
		{"*-prod", "orders-prod", true},
		{"*-prod", "orders-prod-2", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXcYYb", false},
		{"a*b", "abab", true},
		{"a*ab", "aab", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"a?c", "abbc", false},
		{"??", "ab", true},
		{"??", "a", false},
		{"*?", "", false},
		{"*?", "a", true},
		{"**", "x", true},
		{"a**", "a", true},
		{"*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
		{"", "", true},
		{"", "a", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+"|"+tt.name, func(t *testing.T) {
			t.Parallel()
			if got := globMatch(tt.pattern, tt.name); got != tt.want {
				t.Fatalf("globMatch(%q, %q): got %v, want %v", tt.pattern, tt.name, got, tt.want)
			}
		})
	}
}

// toAlphabet maps arbitrary fuzz bytes onto a small alphabet so matches
// are frequent. Neither alphabet holds '/', '[', ']' or '\\', so
// path.Match means exactly our glob semantics on these strings.
func toAlphabet(b []byte, alphabet string) string {
	out := make([]byte, len(b))
	for i, c := range b {
		out[i] = alphabet[int(c)%len(alphabet)]
	}
	return string(out)
}

func FuzzGlobMatch(f *testing.F) {
	f.Add([]byte("a*b"), []byte("aab"))
	f.Add([]byte("??*"), []byte("abc"))
	f.Add([]byte{3, 3, 0, 4}, []byte{0, 1, 0, 1})
	f.Fuzz(func(t *testing.T, pb, nb []byte) {
		if len(pb) > 64 || len(nb) > 64 {
			return
		}
		pattern := toAlphabet(pb, "ab.-*?")
		name := toAlphabet(nb, "ab.-")
		want, err := path.Match(pattern, name)
		if err != nil {
			t.Fatalf("reference rejected %q: %v", pattern, err)
		}
		if got := globMatch(pattern, name); got != want {
			t.Fatalf("globMatch(%q, %q): got %v, want %v (path.Match)", pattern, name, got, want)
		}
		// The compiled matcher's fast paths must agree with the glob.
		var m matcher
		if pattern != "" {
			m.add(pattern)
		}
		if got := m.match(name); pattern != "" && got != want {
			t.Fatalf("matcher(%q).match(%q): got %v, want %v", pattern, name, got, want)
		}
	})
}
