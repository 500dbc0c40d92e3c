package policy

import (
	"fmt"
	"strings"

	"github.com/keyd/keyd/api"
)

// Tag patterns. A rule's keys may name "tag:<tag>" next to key-name
// patterns: the rule then also applies to every key carrying that
// classification tag (api.ValidTag). Tags come from the replicated key
// record, never from the request: [Set.AllowedTags] takes them from the
// caller of the check (the node's view of the key), and [Set.Allowed],
// which has no tags, refuses a capability that any tag rule denies.
//
// Because any key can be tagged, a policy naming a tag grants or denies
// on keys the writer cannot enumerate: [Covers] treats "tag:x" like "*".

// TagOf returns the tag named by a "tag:x" pattern.
func TagOf(pattern string) (string, bool) {
	return strings.CutPrefix(pattern, api.TagPatternPrefix)
}

func checkTagPattern(p, tag string) error {
	if !api.ValidTag(tag) {
		return fmt.Errorf("%w: key pattern %q: a tag is 1-%d characters of [a-z0-9_-] (no wildcards)", ErrInvalidPolicy, p, api.MaxTagLen)
	}
	return nil
}

// addTag records a "tag:x" pattern; it reports whether pattern was one.
func (m *matcher) addTag(pattern string) bool {
	tag, ok := TagOf(pattern)
	if !ok {
		return false
	}
	if !api.ValidTag(tag) {
		return true // fails closed: matches nothing (Parse refuses it)
	}
	if m.tags == nil {
		m.tags = make(map[string]struct{})
	}
	m.tags[tag] = struct{}{}
	return true
}

func (m *matcher) matchTags(tags []string) bool {
	if len(m.tags) == 0 {
		return false
	}
	for _, t := range tags {
		if _, ok := m.tags[t]; ok {
			return true
		}
	}
	return false
}

// AllowedTags is [Set.Allowed] for a key carrying tags (as stored in
// the replicated key record): a deny rule applies when it matches the
// name or any tag, an allow rule when it matches the name or any tag. It
// does not allocate.
func (s *Set) AllowedTags(c Capability, key string, tags []string) bool {
	if s == nil {
		return false
	}
	i, ok := c.index()
	if !ok {
		return false
	}
	if i >= numKeyCaps {
		return s.Allowed(c, key)
	}
	if key == "" {
		return false
	}
	d, a := &s.deny[i], &s.allow[i]
	if d.match(key) || d.matchTags(tags) {
		return false
	}
	return a.match(key) || a.matchTags(tags)
}
