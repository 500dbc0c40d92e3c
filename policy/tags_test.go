package policy

import (
	"errors"
	"testing"
)

// analyst may decrypt every key tagged pseudo and no key tagged pci.
const analystDoc = `{"rules":[
 {"effect":"allow","capabilities":["decrypt","read"],"keys":["tag:pseudo"]},
 {"effect":"deny","capabilities":["decrypt"],"keys":["tag:pci"]}]}`

func TestTagRulesAttacker(t *testing.T) {
	t.Parallel()
	p, err := Parse("analyst", []byte(analystDoc))
	if err != nil {
		t.Fatal(err)
	}
	s := Compile(p)
	// The tags a check uses are the key's stored tags; a caller that
	// names a key it has no tag rights on gets nothing, whatever it
	// claims: with the key's real tags (none, or pci) the answer is no.
	if s.AllowedTags(Decrypt, "cards", []string{"pci"}) {
		t.Fatal("decrypt allowed on a pci key")
	}
	if s.AllowedTags(Decrypt, "cards", []string{"pci", "pseudo"}) {
		t.Fatal("pseudo tag overrode the pci deny")
	}
	if s.AllowedTags(Decrypt, "plain", nil) {
		t.Fatal("decrypt allowed on an untagged key")
	}
	// Without tags, a set with a tag deny fails closed.
	if s.Allowed(Decrypt, "users-pseudo") {
		t.Fatal("Allowed without tags ignored a tag deny")
	}
	if !s.AllowedTags(Decrypt, "users-pseudo", []string{"pii", "pseudo"}) {
		t.Fatal("decrypt refused on a pseudo key")
	}
	if !s.AllowedTags(Read, "users-pseudo", []string{"pseudo"}) || s.AllowedTags(Encrypt, "users-pseudo", []string{"pseudo"}) {
		t.Fatal("capabilities beyond the rule")
	}
	// A wildcard pattern over keys is never covered by a tag allow.
	if s.AllowedPattern(Decrypt, "users-*") {
		t.Fatal("AllowedPattern widened by a tag rule")
	}
}

func TestTagPatternsValidated(t *testing.T) {
	t.Parallel()
	for _, pat := range []string{"tag:", "tag:PII", "tag:pi*", "tag:a b", "tag:-x"} {
		doc := `{"rules":[{"effect":"allow","capabilities":["decrypt"],"keys":["` + pat + `"]}]}`
		if _, err := Parse("p", []byte(doc)); !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("%q: got %v", pat, err)
		}
	}
}

// A tag can be put on any key, so only a grantor with set-policy on
// every key may write a policy naming one.
func TestCoversTagNeedsEverything(t *testing.T) {
	t.Parallel()
	p, _ := Parse("analyst", []byte(analystDoc))
	teamAdmin := Compile(&Policy{Name: "ta", Rules: []Rule{{Effect: Allow, Capabilities: []Capability{SetPolicy}, Keys: []string{"team-*"}}}})
	if Covers(teamAdmin, p) {
		t.Fatal("a team admin could grant by tag")
	}
	keyAdmin, _ := Builtin(RoleKeyAdmin)
	if !Covers(Compile(keyAdmin), p) {
		t.Fatal("key-admin cannot write a tag policy")
	}
}

func FuzzTagPattern(f *testing.F) {
	for _, s := range []string{"tag:pii", "tag:", "tag:PCI", "pii", "tag:a-b_c", "tag:tag:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pat string) {
		err := checkPattern(pat, false)
		m := &matcher{}
		m.add(pat)
		if tag, ok := TagOf(pat); ok && err == nil {
			if !m.matchTags([]string{tag}) {
				t.Fatalf("valid tag pattern %q does not match its tag", pat)
			}
		}
	})
}

func TestAllowedTagsDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	p, _ := Parse("analyst", []byte(analystDoc))
	s := Compile(p)
	tags := []string{"pii", "pseudo"}
	allocs := testing.AllocsPerRun(100, func() {
		s.AllowedTags(Decrypt, "users", tags)
		s.AllowedTags(Decrypt, "cards", []string{"pci"}[:1])
	})
	if allocs != 0 {
		t.Fatalf("got %v allocations per run, want 0", allocs)
	}
}
