package node

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/node/errs"
	"github.com/keyd/keyd/policy"
)

func (n *Node) policyInfo(name string, index uint64) (*api.PolicyInfo, error) {
	if p, ok := policy.Builtin(name); ok {
		doc, err := p.Marshal()
		if err != nil {
			return nil, err
		}
		return &api.PolicyInfo{Name: name, Builtin: true, Document: doc, Index: index}, nil
	}
	recs, err := n.fsm.Policies()
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if r.Name == name {
			return &api.PolicyInfo{Name: name, Document: json.RawMessage(r.Doc), Index: index}, nil
		}
	}
	return nil, &errs.NotFound{What: "policy"}
}

// PolicyCheck authorizes one policy document involved in a change: the
// new and the replaced document of a policy write, the deleted document,
// each policy bound to a new token or identity. It returns the error to
// answer with. A nil PolicyCheck refuses every change.
type PolicyCheck = func(*policy.Policy) error

var errNoPolicyCheck = &api.Error{Code: api.CodeForbidden, Message: "policy change without an authorization check"}

// storedPolicy returns the stored policy called name and its document,
// or nil, nil when none is stored. A stored document that no longer
// parses is returned as the admin policy: only a caller with every right
// may replace or delete it.
func (n *Node) storedPolicy(name string) (*policy.Policy, []byte, error) {
	recs, err := n.fsm.Policies()
	if err != nil {
		return nil, nil, err
	}
	for _, r := range recs {
		if r.Name != name {
			continue
		}
		p, err := policy.Parse(name, r.Doc)
		if err != nil {
			p, _ = policy.Builtin(policy.RoleAdmin)
		}
		return p, r.Doc, nil
	}
	return nil, nil, nil
}

// PutPolicy stores a parsed policy through Raft. check must allow both
// the new document and the one it replaces; the write applies only over
// the document that was checked.
func (n *Node) PutPolicy(ctx context.Context, rid string, p *policy.Policy, check PolicyCheck) (*api.PolicyInfo, error) {
	if check == nil {
		return nil, errNoPolicyCheck
	}
	doc, err := p.Marshal()
	if err != nil {
		return nil, err
	}
	if err := n.notLeaderOrSealed(); err != nil {
		return nil, err
	}
	old, prev, err := n.storedPolicy(p.Name)
	if err != nil {
		return nil, err
	}
	if err := check(p); err != nil {
		return nil, err
	}
	if old != nil {
		if err := check(old); err != nil {
			return nil, err
		}
	}
	res, err := n.propose(ctx, &fsm.PutPolicy{Meta: n.meta(rid), Name: p.Name, Doc: doc, PolicyCAS: fsm.PolicyCAS{Check: true, Prev: prev}})
	if err != nil {
		return nil, err
	}
	return n.policyInfo(p.Name, res.Index)
}

// Policy returns a built-in or stored policy.
func (n *Node) Policy(name string) (*api.PolicyInfo, error) {
	return n.policyInfo(name, n.fsm.AppliedIndex())
}

// ListPolicies names the stored and built-in policies.
func (n *Node) ListPolicies() (*api.PolicyList, error) {
	recs, err := n.fsm.Policies()
	if err != nil {
		return nil, err
	}
	out := &api.PolicyList{Policies: []string{}, Builtin: policy.BuiltinNames()}
	for _, r := range recs {
		out.Policies = append(out.Policies, r.Name)
	}
	sort.Strings(out.Policies)
	return out, nil
}

// DeletePolicy removes a stored policy; built-ins cannot be deleted.
// check must allow the stored document.
func (n *Node) DeletePolicy(ctx context.Context, rid, name string, check PolicyCheck) error {
	if check == nil {
		return errNoPolicyCheck
	}
	if _, ok := policy.Builtin(name); ok {
		return &api.Error{Code: api.CodeBadRequest, Message: "built-in policies cannot be deleted"}
	}
	if _, ok, err := n.retried(ctx, rid); err != nil || ok {
		return err
	}
	old, prev, err := n.storedPolicy(name)
	if err != nil {
		return err
	}
	if old == nil {
		return &errs.NotFound{What: "policy"}
	}
	if err := check(old); err != nil {
		return err
	}
	_, err = n.propose(ctx, &fsm.DeletePolicy{Meta: n.meta(rid), Name: name, PolicyCAS: fsm.PolicyCAS{Check: true, Prev: prev}})
	if errors.Is(err, fsm.ErrNotFound) {
		return &errs.NotFound{What: "policy"}
	}
	return err
}

// checkPolicyNames checks that every named policy exists and that check
// allows binding it.
func (n *Node) checkPolicyNames(names []string, check PolicyCheck) error {
	if check == nil {
		return errNoPolicyCheck
	}
	if len(names) == 0 {
		return &api.Error{Code: api.CodeBadRequest, Message: "at least one policy is required"}
	}
	for _, name := range names {
		p, ok := policy.Builtin(name)
		if !ok {
			var err error
			if p, _, err = n.storedPolicy(name); err != nil {
				return err
			}
			if p == nil {
				return &api.Error{Code: api.CodeBadRequest, Message: "unknown policy " + name}
			}
		}
		if err := check(p); err != nil {
			return err
		}
	}
	return nil
}

// checkBound runs check on every policy a token or identity carries.
// Names with no stored document (deleted since) grant nothing and are
// skipped.
func (n *Node) checkBound(names []string, check PolicyCheck) error {
	for _, name := range names {
		p, ok := policy.Builtin(name)
		if !ok {
			var err error
			if p, _, err = n.storedPolicy(name); err != nil {
				return err
			}
			if p == nil {
				continue
			}
		}
		if err := check(p); err != nil {
			return err
		}
	}
	return nil
}

// CreateToken creates a token bound to policies. The token is returned
// once; only its hash is replicated.
// check must allow every policy the token carries.
func (n *Node) CreateToken(ctx context.Context, rid string, req api.CreateTokenRequest, check PolicyCheck) (*api.TokenInfo, error) {
	if err := n.checkPolicyNames(req.Policies, check); err != nil {
		return nil, err
	}
	if len(req.Name) > 128 {
		return nil, badRequest("token name longer than 128 characters")
	}
	m := n.meta(rid)
	var exp time.Time
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d < time.Minute {
			return nil, badRequest("ttl must be a duration of at least 1m, like 720h")
		}
		exp = m.At.Add(d)
	}
	tok, hash, err := newToken()
	if err != nil {
		return nil, err
	}
	res, err := n.propose(ctx, &fsm.PutToken{Meta: m, Hash: hash[:], Name: req.Name, Policies: req.Policies, ExpiresAt: exp})
	if err != nil {
		return nil, err
	}
	if res.Duplicate {
		// A retry of a create whose reply was lost: the first token
		// cannot be shown again.
		return nil, &errs.Conflict{Reason: "this request id already created a token; its value cannot be shown again"}
	}
	return &api.TokenInfo{Accessor: Accessor(hash[:]), Name: req.Name, Policies: req.Policies, CreatedAt: m.At, ExpiresAt: exp, Token: tok, Index: res.Index}, nil
}

// ListTokens lists tokens by accessor, never the tokens.
func (n *Node) ListTokens() (*api.TokenList, error) {
	recs, err := n.fsm.Tokens()
	if err != nil {
		return nil, err
	}
	out := &api.TokenList{Tokens: []api.TokenInfo{}}
	last := n.principalLastUse()
	for _, r := range recs {
		out.Tokens = append(out.Tokens, api.TokenInfo{Accessor: Accessor(r.Hash), Name: r.Name, Policies: r.Policies, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt,
			LastUsed: lastUsePtr(last, "token:"+Accessor(r.Hash))})
	}
	sort.Slice(out.Tokens, func(i, j int) bool { return out.Tokens[i].CreatedAt.Before(out.Tokens[j].CreatedAt) })
	return out, nil
}

// RevokeToken revokes the token with this accessor. It returns once
// every node of the Raft configuration it can reach has applied the
// revocation (so no reachable node accepts the token any more), within
// revokeWait; the reply names the nodes that had not.
//
// check must allow every policy the token carries: revoking a token
// takes rights away from its holder, so only a caller holding them may.
func (n *Node) RevokeToken(ctx context.Context, rid, accessor string, check PolicyCheck) (*api.WriteResponse, error) {
	if check == nil {
		return nil, errNoPolicyCheck
	}
	if len(accessor) != 16 {
		return nil, badRequest("accessor must be 16 hex digits")
	}
	if idx, ok, err := n.retried(ctx, rid); err != nil {
		return nil, err
	} else if ok {
		return n.revoked(ctx, idx), nil
	}
	recs, err := n.fsm.Tokens()
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if Accessor(r.Hash) == strings.ToLower(accessor) {
			if err := n.checkBound(r.Policies, check); err != nil {
				return nil, err
			}
			res, err := n.propose(ctx, &fsm.RevokeToken{Meta: n.meta(rid), Hash: r.Hash})
			if err != nil {
				return nil, err
			}
			return n.revoked(ctx, res.Index), nil
		}
	}
	return nil, &errs.NotFound{What: "token"}
}

// revoked waits until every node has applied a revocation at index and
// says which have not.
func (n *Node) revoked(ctx context.Context, index uint64) *api.WriteResponse {
	return &api.WriteResponse{Index: index, NotApplied: n.waitAppliedEverywhere(ctx, index)}
}

// CreateIdentity binds a client certificate's public key to policies.
// check must allow every policy the identity carries.
func (n *Node) CreateIdentity(ctx context.Context, rid string, req api.CreateIdentityRequest, check PolicyCheck) (*api.IdentityInfo, error) {
	if err := n.checkPolicyNames(req.Policies, check); err != nil {
		return nil, err
	}
	id := strings.ToLower(req.ID)
	if req.Certificate != "" {
		blk, _ := pem.Decode([]byte(req.Certificate))
		if blk == nil || blk.Type != "CERTIFICATE" {
			return nil, badRequest("certificate must be a PEM CERTIFICATE")
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, badRequest("certificate cannot be parsed")
		}
		h := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
		id = hex.EncodeToString(h[:])
	}
	if b, err := hex.DecodeString(id); err != nil || len(b) != 32 {
		return nil, badRequest("give a certificate or a 64-hex-digit public-key hash as id")
	}
	// Creating an existing id replaces its policies: that takes the old
	// ones away, which needs rights over them as a delete does.
	recs, err := n.fsm.Identities()
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if r.ID == id {
			if err := n.checkBound(r.Policies, check); err != nil {
				return nil, err
			}
		}
	}
	m := n.meta(rid)
	res, err := n.propose(ctx, &fsm.PutIdentity{Meta: m, ID: id, Name: req.Name, Policies: req.Policies})
	if err != nil {
		return nil, err
	}
	return &api.IdentityInfo{ID: id, Name: req.Name, Policies: req.Policies, CreatedAt: m.At, Index: res.Index}, nil
}

// ListIdentities lists certificate identities.
func (n *Node) ListIdentities() (*api.IdentityList, error) {
	recs, err := n.fsm.Identities()
	if err != nil {
		return nil, err
	}
	out := &api.IdentityList{Identities: []api.IdentityInfo{}}
	last := n.principalLastUse()
	for _, r := range recs {
		info := api.IdentityInfo{ID: r.ID, Name: r.Name, Policies: r.Policies, CreatedAt: r.CreatedAt}
		if len(r.ID) >= 16 {
			info.LastUsed = lastUsePtr(last, "cert:"+r.ID[:16])
		}
		out.Identities = append(out.Identities, info)
	}
	return out, nil
}

// retried reports, on the leader, whether this caller's request id
// already applied this request (its index), or the conflict of the id
// reused for another request. Writes whose preconditions a successful
// first attempt changes (deletes, revocations) call it before checking
// them, so a retry gets the first answer rather than not_found.
func (n *Node) retried(ctx context.Context, rid string) (uint64, bool, error) {
	if err := n.notLeaderOrSealed(); err != nil {
		return 0, false, err
	}
	return n.fsm.Request(n.scopedMeta(ctx, rid))
}

// DeleteIdentity removes a certificate identity.
// check must allow every policy the identity carries.
func (n *Node) DeleteIdentity(ctx context.Context, rid, id string, check PolicyCheck) error {
	if check == nil {
		return errNoPolicyCheck
	}
	id = strings.ToLower(id)
	if _, ok, err := n.retried(ctx, rid); err != nil || ok {
		return err
	}
	recs, err := n.fsm.Identities()
	if err != nil {
		return err
	}
	for _, r := range recs {
		if r.ID == id {
			if err := n.checkBound(r.Policies, check); err != nil {
				return err
			}
		}
	}
	_, err = n.propose(ctx, &fsm.DeleteIdentity{Meta: n.meta(rid), ID: id})
	if errors.Is(err, fsm.ErrNotFound) {
		return &errs.NotFound{What: "identity"}
	}
	return err
}
