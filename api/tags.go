package api

import (
	"fmt"
	"slices"
	"strings"
)

// Classification tags on keys (pii, pci, phi, or any lower-case name).
// Policies can match them ("tag:pii" in a rule's keys) and some tags bring
// stricter defaults; see docs/PII.md.
const (
	// MaxTags bounds the tags on one key.
	MaxTags = 16
	// MaxTagLen bounds one tag.
	MaxTagLen = 32
	// TagPatternPrefix marks a policy key pattern that matches a tag
	// instead of a key name.
	TagPatternPrefix = "tag:"
)

// Well-known tags with built-in stricter defaults.
const (
	TagPII = "pii"
	TagPCI = "pci"
	TagPHI = "phi"
)

// ValidTag reports whether t is a tag: 1 to MaxTagLen characters of
// [a-z0-9_-], starting with a letter or digit.
func ValidTag(t string) bool {
	if len(t) == 0 || len(t) > MaxTagLen || t[0] == '-' || t[0] == '_' {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// NormalizeTags validates tags and returns them sorted without
// duplicates (nil for none). Upper-case input is refused rather than
// folded, so what is stored is what was asked for.
func NormalizeTags(tags []string) ([]string, error) {
	if len(tags) == 0 {
		return nil, nil
	}
	if len(tags) > MaxTags {
		return nil, fmt.Errorf("at most %d tags, got %d", MaxTags, len(tags))
	}
	out := make([]string, 0, len(tags))
	for _, t := range tags {
		if !ValidTag(t) {
			return nil, fmt.Errorf("tag %q: want 1-%d characters of [a-z0-9_-], starting with a letter or digit", truncate(t, 40), MaxTagLen)
		}
		out = append(out, t)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// ParseTagList parses a comma-separated tag list ("pii, pci"), as the CLI
// and query strings take it. Empty items are refused; "" is no tags.
func ParseTagList(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) > MaxTags {
		return nil, fmt.Errorf("at most %d tags, got %d", MaxTags, len(parts))
	}
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
	}
	return NormalizeTags(parts)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
