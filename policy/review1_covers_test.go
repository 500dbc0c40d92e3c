package policy

import "testing"

// TestCoversKVNeedsSetPolicyOnEverything: secret paths are not key
// names, so set-policy over a key-name prefix never covers a KV grant,
// even when "kv/..." happens to extend that prefix. A delegated admin of
// the keys "k*" (or "kv*") must not be able to grant itself or an app
// kv-read on every secret.
func TestCoversKVNeedsSetPolicyOnEverything(t *testing.T) {
	must := func(doc string) *Policy {
		t.Helper()
		p, err := Parse("p", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	admin, _ := Builtin(RoleAdmin)
	for _, prefix := range []string{"k*", "kv*", "kv?*"} {
		delegate := Compile(must(`{"rules":[{"effect":"allow","capabilities":["set-policy"],"keys":["` + prefix + `"]}]}`))
		for _, pat := range []string{"kv/*", "kv/app2/db", "kv/app2/*"} {
			grab := must(`{"rules":[{"effect":"allow","capabilities":["kv-read"],"keys":["` + pat + `"]}]}`)
			if Covers(delegate, grab) {
				t.Errorf("set-policy on %q covers kv-read on %q", prefix, pat)
			}
		}
		// Its own keys stay covered.
		if !Covers(delegate, must(`{"rules":[{"effect":"allow","capabilities":["encrypt"],"keys":["kvx1"]}]}`)) {
			t.Errorf("set-policy on %q no longer covers its keys", prefix)
		}
	}
	if !Covers(Compile(admin), must(`{"rules":[{"effect":"allow","capabilities":["kv-read","kv-write"],"keys":["kv/app1/*"]}]}`)) {
		t.Error("admin does not cover a KV grant")
	}
}
