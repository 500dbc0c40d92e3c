package policy

import "fmt"

// Names of the built-in roles. [Parse] refuses them as user policy names.
const (
	RoleAdmin    = "admin"
	RoleKeyAdmin = "key-admin"
	RoleOperator = "operator"
	RoleAuditor  = "auditor"
)

// cryptoCaps is what an application does with a key: use it, never manage it.
var cryptoCaps = []Capability{Encrypt, Decrypt, Rewrap, DataKey, Sign, Verify, HMAC, Pseudonym}

// builtins are the design's separation of duties. None of them can
// unseal or rotate the root: those need custodian shares, not a token.
var builtins = map[string]Policy{
	// admin can do everything a token can do; the bootstrap token from
	// init carries it and should be revoked once real identities exist.
	RoleAdmin: {Name: RoleAdmin, Rules: []Rule{
		{Effect: Allow, Capabilities: allCaps[:numKeyCaps], Keys: []string{"*"}},
		{Effect: Allow, Capabilities: allCaps[numKeyCaps:]},
	}},
	// key-admin manages key lifecycle and policies but never uses a key:
	// it cannot see plaintext, and (being without token-admin) cannot
	// mint itself a token that could.
	RoleKeyAdmin: {Name: RoleKeyAdmin, Rules: []Rule{
		{Effect: Allow, Capabilities: []Capability{Create, Rotate, Read, Delete, SetPolicy}, Keys: []string{"*"}},
	}},
	// operator runs the cluster; it has no key capability at all.
	RoleOperator: {Name: RoleOperator, Rules: []Rule{
		{Effect: Allow, Capabilities: []Capability{Cluster, Snapshot}},
		{Effect: Allow, Capabilities: []Capability{Metrics}},
	}},
	// auditor reads and verifies the audit trail, nothing else.
	RoleAuditor: {Name: RoleAuditor, Rules: []Rule{
		{Effect: Allow, Capabilities: []Capability{AuditRead}},
	}},
}

// Builtin returns a fresh copy of the built-in role name ("admin",
// "key-admin", "operator" or "auditor") and true, or nil and false for
// any other name. The caller owns the copy.
func Builtin(name string) (*Policy, bool) {
	p, ok := builtins[name]
	if !ok {
		return nil, false
	}
	return p.clone(), true
}

// BuiltinNames lists the built-in role names in a fixed order.
func BuiltinNames() []string {
	return []string{RoleAdmin, RoleKeyAdmin, RoleOperator, RoleAuditor}
}

// AppPolicy returns a user policy called name for an application: the
// crypto capabilities (encrypt, decrypt, rewrap, datakey, sign, verify,
// hmac, pseudonym) and read, on the keys matching keyPatterns only. It creates,
// rotates and deletes nothing. Errors wrap [ErrInvalidPolicy] (bad or
// reserved name, no or bad pattern).
func AppPolicy(name string, keyPatterns ...string) (*Policy, error) {
	if err := checkName(name, false); err != nil {
		return nil, err
	}
	if len(keyPatterns) == 0 {
		return nil, fmt.Errorf("%w: an app policy needs at least one key pattern", ErrInvalidPolicy)
	}
	caps := append(append([]Capability(nil), cryptoCaps...), Read)
	p := &Policy{Name: name, Rules: []Rule{
		{Effect: Allow, Capabilities: caps, Keys: append([]string(nil), keyPatterns...)},
	}}
	if err := p.validateRules(); err != nil {
		return nil, err
	}
	return p, nil
}

// clone copies p deeply so callers cannot alter the built-in table.
func (p *Policy) clone() *Policy {
	c := &Policy{Name: p.Name, Rules: make([]Rule, len(p.Rules))}
	for i, r := range p.Rules {
		c.Rules[i] = Rule{
			Effect:       r.Effect,
			Capabilities: append([]Capability(nil), r.Capabilities...),
			Keys:         append([]string(nil), r.Keys...),
		}
	}
	return c
}
