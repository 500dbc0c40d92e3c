package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Errors returned by [Parse], [AppPolicy] and [Policy.Marshal]. Every
// validation failure wraps [ErrInvalidPolicy]; an unknown capability
// wraps both [ErrUnknownCapability] and [ErrInvalidPolicy] so a caller
// mapping to API codes needs only the latter.
var (
	ErrInvalidPolicy     = errors.New("policy: invalid policy")
	ErrUnknownCapability = errors.New("policy: unknown capability")
)

// Effects of a [Rule].
const (
	Allow = "allow"
	Deny  = "deny"
)

// Limits on a policy document. They bound the work [Compile] and
// [Set.Allowed] do for one identity, and the size of an FSM entry.
const (
	MaxDocSize       = 64 << 10 // bytes of JSON
	MaxRules         = 256
	MaxKeysPerRule   = 256
	MaxPatternLen    = 256 // longer than a key name (128): '*' may stand for nothing
	maxPolicyNameLen = 64
)

// Rule allows or denies Capabilities on the key names matching any of
// Keys. Keys holds glob patterns over key names: '*' matches any run of
// characters (including none) and '?' exactly one; every other character
// matches itself. Keys is required when Capabilities are key capabilities
// and forbidden when they are system capabilities, so one rule never mixes
// the two kinds.
type Rule struct {
	Effect       string       `json:"effect"` // Allow or Deny
	Capabilities []Capability `json:"capabilities"`
	Keys         []string     `json:"keys,omitempty"`
}

// Policy is a named list of rules. A Policy is a plain value: build it with
// [Parse], [Builtin] or [AppPolicy] (which validate), and evaluate it only
// after [Compile]. Deny rules win over allow rules; anything no rule
// allows is denied.
type Policy struct {
	Name  string `json:"name"`
	Rules []Rule `json:"rules"`
}

// Parse decodes and validates the JSON policy document doc for a user
// policy called name. The document may omit "name"; if it carries one it
// must equal name. Decoding is strict: unknown fields and trailing data
// are rejected. Names must be 1 to 64 characters from [a-z0-9_-] and not
// one of the built-in role names.
//
// Errors wrap [ErrInvalidPolicy]; an unknown capability also wraps
// [ErrUnknownCapability] and names the capability.
func Parse(name string, doc []byte) (*Policy, error) {
	if err := checkName(name, false); err != nil {
		return nil, err
	}
	if len(doc) > MaxDocSize {
		return nil, fmt.Errorf("%w: document is %d bytes, limit %d", ErrInvalidPolicy, len(doc), MaxDocSize)
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.DisallowUnknownFields()
	var p Policy
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidPolicy, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the policy object", ErrInvalidPolicy)
	}
	switch p.Name {
	case "":
		p.Name = name
	case name:
	default:
		return nil, fmt.Errorf("%w: document names policy %q, want %q", ErrInvalidPolicy, p.Name, name)
	}
	for i := range p.Rules {
		if len(p.Rules[i].Keys) == 0 {
			p.Rules[i].Keys = nil // "keys":[] and no keys mean the same; keep one form
		}
	}
	if err := p.validateRules(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Marshal validates p and encodes it as a JSON document that [Parse]
// accepts (built-in roles marshal too, for display, though Parse refuses
// their names). It returns an error wrapping [ErrInvalidPolicy] for a
// policy Parse would reject.
func (p *Policy) Marshal() ([]byte, error) {
	if p == nil {
		return nil, fmt.Errorf("%w: nil policy", ErrInvalidPolicy)
	}
	if err := checkName(p.Name, true); err != nil {
		return nil, err
	}
	if err := p.validateRules(); err != nil {
		return nil, err
	}
	return json.Marshal(p)
}

// checkName enforces the policy name syntax and, unless builtinOK, keeps
// user policies off the built-in role names so a user cannot shadow or
// redefine a role.
func checkName(name string, builtinOK bool) error {
	if len(name) == 0 || len(name) > maxPolicyNameLen {
		return fmt.Errorf("%w: name must be 1 to %d characters", ErrInvalidPolicy, maxPolicyNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%w: name %q: only a-z, 0-9, '-' and '_' are allowed", ErrInvalidPolicy, name)
		}
	}
	if _, reserved := builtins[name]; reserved && !builtinOK {
		return fmt.Errorf("%w: name %q is reserved for a built-in role", ErrInvalidPolicy, name)
	}
	return nil
}

func (p *Policy) validateRules() error {
	if len(p.Rules) == 0 {
		return fmt.Errorf("%w: no rules", ErrInvalidPolicy)
	}
	if len(p.Rules) > MaxRules {
		return fmt.Errorf("%w: %d rules, limit %d", ErrInvalidPolicy, len(p.Rules), MaxRules)
	}
	for i := range p.Rules {
		if err := p.Rules[i].validate(); err != nil {
			return fmt.Errorf("rule %d: %w", i, err)
		}
	}
	return nil
}

func (r *Rule) validate() error {
	if r.Effect != Allow && r.Effect != Deny {
		return fmt.Errorf("%w: effect %q, want %q or %q", ErrInvalidPolicy, r.Effect, Allow, Deny)
	}
	if len(r.Capabilities) == 0 {
		return fmt.Errorf("%w: no capabilities", ErrInvalidPolicy)
	}
	var keyCaps, sysCaps int
	for _, c := range r.Capabilities {
		i, ok := c.index()
		if !ok {
			return fmt.Errorf("%w: %w %q", ErrInvalidPolicy, ErrUnknownCapability, string(c))
		}
		if i < numKeyCaps {
			keyCaps++
		} else {
			sysCaps++
		}
	}
	switch {
	case keyCaps > 0 && sysCaps > 0:
		return fmt.Errorf("%w: a rule cannot mix key and system capabilities", ErrInvalidPolicy)
	case sysCaps > 0 && len(r.Keys) > 0:
		return fmt.Errorf("%w: system capabilities take no keys", ErrInvalidPolicy)
	case keyCaps > 0 && len(r.Keys) == 0:
		return fmt.Errorf("%w: key capabilities need key patterns", ErrInvalidPolicy)
	case len(r.Keys) > MaxKeysPerRule:
		return fmt.Errorf("%w: %d key patterns, limit %d", ErrInvalidPolicy, len(r.Keys), MaxKeysPerRule)
	}
	paths := true
	for _, c := range r.Capabilities {
		paths = paths && c.isKV()
	}
	for _, k := range r.Keys {
		if err := checkPattern(k, paths); err != nil {
			return err
		}
	}
	return nil
}

// checkPattern accepts the key-name alphabet (see api.ValidKeyName:
// [A-Za-z0-9._-]) plus the wildcards, and '/' when paths is set (a rule
// granting only secret capabilities, whose patterns are over "kv/" +
// path). Anything else could never match, so it is a typo worth
// rejecting.
func checkPattern(p string, paths bool) error {
	if len(p) == 0 || len(p) > MaxPatternLen {
		return fmt.Errorf("%w: key pattern must be 1 to %d characters", ErrInvalidPolicy, MaxPatternLen)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '_', c == '-', c == '*', c == '?':
		case c == '/' && paths:
		default:
			return fmt.Errorf("%w: key pattern %q: character %q not allowed", ErrInvalidPolicy, p, c)
		}
	}
	return nil
}
