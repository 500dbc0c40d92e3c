package policy

import "strings"

// Set is the compiled, immutable form of one identity's policies. Build
// it once when the identity's policies change (the kes copy-on-write
// pattern: swap a pointer to a new Set) and call [Set.Allowed] per
// request. A Set is safe for concurrent use. The nil *Set denies
// everything.
type Set struct {
	allow, deny [numCaps]matcher
}

// matcher answers "does any pattern match this key" with the cheap cases
// split out: most grants are "*", an exact name or a prefix ("app-*").
type matcher struct {
	any      bool                // "*" (or, for a system capability, granted)
	exact    map[string]struct{} // patterns without wildcards
	prefixes []string            // "abc*" with no other wildcard
	globs    []string            // everything else
	tags     map[string]struct{} // "tag:x" patterns: keys carrying tag x (see tags.go)
}

// Compile builds the evaluation structure for the union of policies.
// Deny rules win over allow rules; a capability no rule allows is
// denied. nil policies are skipped.
//
// Compile trusts its input to come from [Parse], [Builtin] or [AppPolicy].
// It fails closed on anything those would reject: unknown capabilities
// are ignored, an allow of a system capability that names keys grants
// nothing, and a key capability without patterns matches no key. A deny
// of a system capability denies it whatever keys it names.
func Compile(policies ...*Policy) *Set {
	s := &Set{}
	for _, p := range policies {
		if p == nil {
			continue
		}
		for _, r := range p.Rules {
			var into *[numCaps]matcher
			switch r.Effect {
			case Allow:
				into = &s.allow
			case Deny:
				into = &s.deny
			default:
				continue
			}
			for _, c := range r.Capabilities {
				i, ok := c.index()
				if !ok {
					continue
				}
				m := &into[i]
				if i >= numKeyCaps {
					if r.Effect == Deny || len(r.Keys) == 0 {
						m.any = true
					}
					continue
				}
				for _, k := range r.Keys {
					m.add(k)
				}
			}
		}
	}
	return s
}

func (m *matcher) add(pattern string) {
	if m.any || pattern == "" {
		return
	}
	if m.addTag(pattern) {
		return
	}
	wild := strings.IndexAny(pattern, "*?")
	switch {
	case strings.Trim(pattern, "*") == "":
		m.any, m.exact, m.prefixes, m.globs, m.tags = true, nil, nil, nil, nil
	case wild < 0:
		if m.exact == nil {
			m.exact = make(map[string]struct{})
		}
		m.exact[pattern] = struct{}{}
	case wild == len(pattern)-1 && pattern[wild] == '*':
		m.prefixes = append(m.prefixes, pattern[:wild])
	default:
		m.globs = append(m.globs, pattern)
	}
}

func (m *matcher) match(key string) bool {
	if m.any {
		return true
	}
	if _, ok := m.exact[key]; ok {
		return true
	}
	for _, p := range m.prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	for _, g := range m.globs {
		if globMatch(g, key) {
			return true
		}
	}
	return false
}

// Allowed reports whether the set grants capability c on key. For a key
// capability, key is the key name and must be non-empty; for a system
// capability, key must be "". Anything else (an unknown capability, a
// key where none belongs, a missing key) is denied, so a caller's mistake
// fails closed. Allowed does not allocate.
func (s *Set) Allowed(c Capability, key string) bool {
	if s == nil {
		return false
	}
	i, ok := c.index()
	if !ok {
		return false
	}
	if i >= numKeyCaps {
		return key == "" && !s.deny[i].any && s.allow[i].any
	}
	if key == "" {
		return false
	}
	// Without the key's tags a tag deny might apply: fail closed (callers
	// that know the tags use AllowedTags).
	if len(s.deny[i].tags) > 0 {
		return false
	}
	return !s.deny[i].match(key) && s.allow[i].match(key)
}

// AllowedPattern reports whether the set grants key capability c on every
// key name that pattern can match: the check for writing a policy that
// names pattern (c = SetPolicy), so a delegated key-admin cannot grant
// beyond its own patterns. A pattern without wildcards is checked like a
// key name. For a wildcard pattern the answer is conservative: it needs an
// allow of "*" or of a prefix ("team-*") that the pattern's literal start
// extends, and no deny rule at all for c. It does not allocate.
func (s *Set) AllowedPattern(c Capability, pattern string) bool {
	if s == nil || pattern == "" {
		return false
	}
	i, ok := c.index()
	if !ok || i >= numKeyCaps {
		return false
	}
	wild := strings.IndexAny(pattern, "*?")
	if wild < 0 {
		return s.Allowed(c, pattern)
	}
	d := &s.deny[i]
	if d.any || len(d.exact) > 0 || len(d.prefixes) > 0 || len(d.globs) > 0 || len(d.tags) > 0 {
		return false
	}
	a := &s.allow[i]
	if a.any {
		return true
	}
	literal := pattern[:wild]
	for _, p := range a.prefixes {
		if strings.HasPrefix(literal, p) {
			return true
		}
	}
	return false
}
