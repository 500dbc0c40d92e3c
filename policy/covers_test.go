package policy

import "testing"

func TestCovers(t *testing.T) {
	must := func(doc string) *Policy {
		t.Helper()
		p, err := Parse("p", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	admin, _ := Builtin(RoleAdmin)
	keyAdmin, _ := Builtin(RoleKeyAdmin)
	auditor, _ := Builtin(RoleAuditor)
	delegate := Compile(must(`{"rules":[{"effect":"allow","capabilities":["set-policy"],"keys":["app1-*"]}]}`))
	minter := Compile(must(`{"rules":[{"effect":"allow","capabilities":["token-admin"]},{"effect":"allow","capabilities":["set-policy"],"keys":["app1-*"]}]}`))
	app1 := must(`{"rules":[{"effect":"allow","capabilities":["encrypt","decrypt"],"keys":["app1-*","app1-x"]}]}`)
	app2 := must(`{"rules":[{"effect":"allow","capabilities":["encrypt"],"keys":["app2-*"]}]}`)
	denyAll := must(`{"rules":[{"effect":"deny","capabilities":["decrypt"],"keys":["*"]}]}`)

	tests := []struct {
		name string
		g    Grantor
		p    *Policy
		want bool
	}{
		{"admin covers admin", Compile(admin), admin, true},
		{"admin covers an app", Compile(admin), app2, true},
		{"key-admin covers an app", Compile(keyAdmin), app2, true},
		{"key-admin does not cover a system capability", Compile(keyAdmin), auditor, false},
		{"delegate covers its own patterns", delegate, app1, true},
		{"delegate does not cover another app", delegate, app2, false},
		{"delegate does not cover a deny on *", delegate, denyAll, false},
		{"token-admin without audit-read does not cover auditor", minter, auditor, false},
		{"token-admin without set-policy on * does not cover admin", minter, admin, false},
		{"nothing stored is covered", delegate, nil, true},
		{"a nil grantor covers no rule", nil, app1, false},
		{"a nil set covers no rule", (*Set)(nil), app1, false},
	}
	for _, tt := range tests {
		if got := Covers(tt.g, tt.p); got != tt.want {
			t.Errorf("%s: got %v", tt.name, got)
		}
	}
}
