package policy

import (
	"testing"
)

func mustParse(t testing.TB, name, doc string) *Policy {
	t.Helper()
	p, err := Parse(name, []byte(doc))
	if err != nil {
		t.Fatalf("Parse(%q): %v", name, err)
	}
	return p
}

func mustBuiltin(t testing.TB, name string) *Policy {
	t.Helper()
	p, ok := Builtin(name)
	if !ok {
		t.Fatalf("Builtin(%q) missing", name)
	}
	return p
}

func mustApp(t testing.TB, name string, patterns ...string) *Policy {
	t.Helper()
	p, err := AppPolicy(name, patterns...)
	if err != nil {
		t.Fatalf("AppPolicy(%q): %v", name, err)
	}
	return p
}

type check struct {
	c    Capability
	key  string
	want bool
}

func TestAllowed(t *testing.T) {
	t.Parallel()
	patterns := mustParse(t, "patterns", `{"rules":[
		{"effect":"allow","capabilities":["encrypt"],"keys":["exact","pre-*","*-suf","a?c","x*y*z"]}]}`)
	denyWins := mustParse(t, "deny-wins", `{"rules":[
		{"effect":"allow","capabilities":["encrypt","decrypt"],"keys":["*"]},
		{"effect":"deny","capabilities":["decrypt"],"keys":["secret-*"]}]}`)
	denyOtherPolicy := mustParse(t, "deny-other", `{"rules":[
		{"effect":"deny","capabilities":["encrypt"],"keys":["orders"]},
		{"effect":"deny","capabilities":["cluster"]}]}`)
	system := mustParse(t, "system", `{"rules":[{"effect":"allow","capabilities":["snapshot","cluster"]}]}`)

	tests := []struct {
		name   string
		set    *Set
		checks []check
	}{
		{name: "nil set denies", set: nil, checks: []check{{Encrypt, "k", false}, {Cluster, "", false}}},
		{name: "empty set denies", set: Compile(), checks: []check{{Encrypt, "k", false}, {Cluster, "", false}}},
		{name: "patterns", set: Compile(patterns), checks: []check{
			{Encrypt, "exact", true},
			{Encrypt, "exact2", false},
			{Encrypt, "pre-", true},
			{Encrypt, "pre-x", true},
			{Encrypt, "xpre-x", false},
			{Encrypt, "a-suf", true},
			{Encrypt, "a-sufx", false},
			{Encrypt, "abc", true},
			{Encrypt, "abbc", false},
			{Encrypt, "x1y2z", true},
			{Encrypt, "xyz", true},
			{Encrypt, "x1z2y", false},
			{Decrypt, "exact", false}, // other capability
		}},
		{name: "deny wins", set: Compile(denyWins), checks: []check{
			{Decrypt, "orders", true},
			{Decrypt, "secret-1", false},
			{Encrypt, "secret-1", true},
		}},
		{name: "deny wins across policies", set: Compile(mustBuiltin(t, RoleAdmin), denyOtherPolicy), checks: []check{
			{Encrypt, "orders", false},
			{Encrypt, "orders2", true},
			{Decrypt, "orders", true},
			{Cluster, "", false},
			{Snapshot, "", true},
		}},
		{name: "system capabilities", set: Compile(system), checks: []check{
			{Snapshot, "", true},
			{Cluster, "", true},
			{Snapshot, "k", false}, // a key where none belongs fails closed
			{TokenAdmin, "", false},
			{Read, "k", false},
		}},
		{name: "unknown capability denied", set: Compile(mustBuiltin(t, RoleAdmin)), checks: []check{
			{"launch", "", false},
			{"launch", "k", false},
			{"ENCRYPT", "k", false},
		}},
		{name: "key capability needs a key", set: Compile(mustBuiltin(t, RoleAdmin)), checks: []check{
			{Encrypt, "", false},
			{Encrypt, "k", true},
		}},
		{name: "nil policy skipped", set: Compile(nil, system), checks: []check{{Snapshot, "", true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, ch := range tt.checks {
				if got := tt.set.Allowed(ch.c, ch.key); got != ch.want {
					t.Errorf("Allowed(%q, %q): got %v, want %v", ch.c, ch.key, got, ch.want)
				}
			}
		})
	}
}

// TestRoles tries every capability against each built-in role and an app
// policy, on the role's own keys and someone else's.
func TestRoles(t *testing.T) {
	t.Parallel()
	crypto := map[Capability]bool{Encrypt: true, Decrypt: true, Rewrap: true, DataKey: true, Sign: true, Verify: true, HMAC: true, Pseudonym: true}
	lifecycle := map[Capability]bool{Create: true, Rotate: true, Read: true, Delete: true, SetPolicy: true}
	tests := []struct {
		name string
		set  *Set
		// want reports whether the role may use c on key ("" for system).
		want func(c Capability, key string) bool
	}{
		{name: "admin", set: Compile(mustBuiltin(t, RoleAdmin)), want: func(Capability, string) bool { return true }},
		{name: "key-admin", set: Compile(mustBuiltin(t, RoleKeyAdmin)), want: func(c Capability, _ string) bool { return lifecycle[c] }},
		{name: "operator", set: Compile(mustBuiltin(t, RoleOperator)), want: func(c Capability, _ string) bool { return c == Cluster || c == Snapshot || c == Metrics }},
		{name: "auditor", set: Compile(mustBuiltin(t, RoleAuditor)), want: func(c Capability, _ string) bool { return c == AuditRead }},
		{name: "app", set: Compile(mustApp(t, "orders", "orders-*")), want: func(c Capability, key string) bool {
			return (crypto[c] || c == Read) && len(key) > 7 && key[:7] == "orders-"
		}},
		{name: "two apps", set: Compile(mustApp(t, "orders", "orders-*"), mustApp(t, "billing", "billing")), want: func(c Capability, key string) bool {
			return (crypto[c] || c == Read) && (len(key) > 7 && key[:7] == "orders-" || key == "billing")
		}},
	}
	keys := []string{"orders-1", "billing", "billing-1", "other", "orders"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range allCaps {
				if c.IsSystem() {
					if got, want := tt.set.Allowed(c, ""), tt.want(c, ""); got != want {
						t.Errorf("Allowed(%q): got %v, want %v", c, got, want)
					}
					continue
				}
				for _, k := range keys {
					if got, want := tt.set.Allowed(c, k), tt.want(c, k); got != want {
						t.Errorf("Allowed(%q, %q): got %v, want %v", c, k, got, want)
					}
				}
			}
		})
	}
}

func benchSet(tb testing.TB) *Set {
	return Compile(
		mustApp(tb, "orders", "orders-*", "shared-?", "legacy"),
		mustApp(tb, "reports", "*-reporting-*"),
		mustParse(tb, "guard", `{"rules":[{"effect":"deny","capabilities":["decrypt"],"keys":["orders-archive-*"]}]}`),
	)
}

var benchChecks = []struct {
	c   Capability
	key string
}{
	{Encrypt, "orders-2024"},          // prefix
	{Decrypt, "legacy"},               // exact
	{Decrypt, "eu-reporting-daily"},   // glob
	{Decrypt, "orders-archive-2019"},  // denied
	{Sign, "unrelated-key-name-here"}, // no match
	{Cluster, ""},
}

func TestAllowedDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	s := benchSet(t)
	allocs := testing.AllocsPerRun(100, func() {
		for _, ch := range benchChecks {
			s.Allowed(ch.c, ch.key)
		}
	})
	if allocs != 0 {
		t.Fatalf("got %v allocations per run, want 0", allocs)
	}
}

func BenchmarkAllowed(b *testing.B) {
	s := benchSet(b)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ch := benchChecks[i%len(benchChecks)]
		s.Allowed(ch.c, ch.key)
	}
}

func TestAllowedPattern(t *testing.T) {
	t.Parallel()
	team := Compile(mustParse(t, "team-admin", `{"rules":[
		{"effect":"allow","capabilities":["set-policy"],"keys":["team-*","shared"]}]}`))
	guarded := Compile(mustBuiltin(t, RoleKeyAdmin), mustParse(t, "guard", `{"rules":[
		{"effect":"deny","capabilities":["set-policy"],"keys":["root-*"]}]}`))
	tests := []struct {
		name    string
		set     *Set
		c       Capability
		pattern string
		want    bool
	}{
		{"literal inside", team, SetPolicy, "team-a", true},
		{"literal exact", team, SetPolicy, "shared", true},
		{"literal outside", team, SetPolicy, "other", false},
		{"prefix inside", team, SetPolicy, "team-*", true},
		{"longer prefix inside", team, SetPolicy, "team-app-*", true},
		{"question inside", team, SetPolicy, "team-?", true},
		{"broader prefix", team, SetPolicy, "tea*", false},
		{"everything", team, SetPolicy, "*", false},
		{"wildcard over an exact grant", team, SetPolicy, "shar?", false},
		{"other capability", team, Decrypt, "team-a", false},
		{"system capability", team, Cluster, "*", false},
		{"empty", team, SetPolicy, "", false},
		{"admin everything", Compile(mustBuiltin(t, RoleAdmin)), SetPolicy, "*", true},
		{"any deny blocks wildcards", guarded, SetPolicy, "team-*", false},
		{"deny still applies to literals", guarded, SetPolicy, "root-1", false},
		{"literal beside a deny", guarded, SetPolicy, "team-1", true},
		{"nil set", nil, SetPolicy, "x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.set.AllowedPattern(tt.c, tt.pattern); got != tt.want {
				t.Fatalf("AllowedPattern(%q, %q): got %v, want %v", tt.c, tt.pattern, got, tt.want)
			}
		})
	}
}
