package policy

// Grantor is the part of a caller's compiled rights that [Covers] asks
// about; *[Set] implements it.
type Grantor interface {
	Allowed(c Capability, key string) bool
	AllowedPattern(c Capability, pattern string) bool
}

var _ Grantor = (*Set)(nil)

// Covers reports whether g has rights over every grant of p, so that
// writing p, replacing p, deleting p or binding p to a token or identity
// gives nobody more than g could give anyway:
//
//   - a key capability on a pattern (in an allow or a deny rule) needs
//     set-policy on every key the pattern matches ([Set.AllowedPattern]);
//     a KV capability (over secret paths, not key names) and a tag
//     pattern need set-policy on "*";
//   - a system capability (in an allow or a deny rule) needs token-admin
//     and that capability itself.
//
// Deny rules count like allow rules: removing a deny (by overwriting or
// deleting its policy) widens what the policy's holders may do. A nil
// policy (nothing stored under the name) is covered.
func Covers(g Grantor, p *Policy) bool {
	if p == nil {
		return true
	}
	if g == nil {
		return false
	}
	for _, r := range p.Rules {
		for _, c := range r.Capabilities {
			if !c.Known() {
				return false
			}
			if c.IsSystem() {
				if !g.Allowed(TokenAdmin, "") || !g.Allowed(c, "") {
					return false
				}
				continue
			}
			for _, pat := range r.Keys {
				if _, isTag := TagOf(pat); isTag {
					// A tag can be put on any key: only a grantor with
					// set-policy on every key may name one.
					pat = "*"
				}
				if c.isKV() {
					// Secret paths are not key names: set-policy on a
					// key prefix ("k*") that "kv/..." happens to extend
					// covers no secret. Only set-policy on every key
					// may grant KV capabilities.
					pat = "*"
				}
				if !g.AllowedPattern(SetPolicy, pat) {
					return false
				}
			}
		}
	}
	return true
}
