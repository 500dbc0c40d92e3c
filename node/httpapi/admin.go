package httpapi

import (
	"context"
	"io"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/policy"
)

// Admin is identity, token, policy and audit-log management. Writes go
// through Raft on the leader.
type Admin interface {
	// PutPolicy, DeletePolicy, CreateToken, RevokeToken, CreateIdentity
	// and DeleteIdentity call check on every policy document the change
	// involves (new and replaced, deleted, bound to the token or identity
	// created or removed) and refuse the change with its error.
	PutPolicy(ctx context.Context, rid string, p *policy.Policy, check func(*policy.Policy) error) (*api.PolicyInfo, error)
	Policy(name string) (*api.PolicyInfo, error)
	ListPolicies() (*api.PolicyList, error)
	DeletePolicy(ctx context.Context, rid, name string, check func(*policy.Policy) error) error
	CreateToken(ctx context.Context, rid string, req api.CreateTokenRequest, check func(*policy.Policy) error) (*api.TokenInfo, error)
	ListTokens() (*api.TokenList, error)
	// RevokeToken returns once every reachable node has applied the
	// revocation, naming in NotApplied those that had not.
	RevokeToken(ctx context.Context, rid, accessor string, check func(*policy.Policy) error) (*api.WriteResponse, error)
	CreateIdentity(ctx context.Context, rid string, req api.CreateIdentityRequest, check func(*policy.Policy) error) (*api.IdentityInfo, error)
	ListIdentities() (*api.IdentityList, error)
	DeleteIdentity(ctx context.Context, rid, id string, check func(*policy.Policy) error) error
	AuditPublicKey() *api.AuditKey
	WriteAuditLog(w io.Writer) error
}

func (s *Server) whoami(c *call) (any, error) {
	return &api.WhoAmI{Identity: c.p.ID(), Policies: c.p.Policies()}, nil
}

// listPolicies names the stored policies the caller may read (see
// readPolicy); built-ins are public.
func (s *Server) listPolicies(c *call) (any, error) {
	l, err := s.cfg.Admin.ListPolicies()
	if err != nil {
		return nil, err
	}
	visible := l.Policies[:0:0]
	for _, name := range l.Policies {
		if _, err := s.visiblePolicy(c, name); err == nil {
			visible = append(visible, name)
		}
	}
	l.Policies = visible
	return l, nil
}

func (s *Server) readPolicy(c *call) (any, error) {
	return s.visiblePolicy(c, c.r.PathValue("policy"))
}

// visiblePolicy returns a policy the caller may read: a built-in, one of
// its own, or one it has rights over (policy.Covers, as for a change).
// Any other is not_found, as a missing one: a policy names key patterns,
// and an app token must not learn other applications' key names.
func (s *Server) visiblePolicy(c *call, name string) (*api.PolicyInfo, error) {
	info, err := s.cfg.Admin.Policy(name)
	if err != nil {
		return nil, err
	}
	if info.Builtin {
		return info, nil
	}
	if c.p == nil {
		return nil, &api.Error{Code: api.CodeResourceNotFound, Message: "no such policy"}
	}
	for _, own := range c.p.Policies() {
		if own == name {
			return info, nil
		}
	}
	if p, perr := policy.Parse(name, info.Document); perr == nil && policy.Covers(c.p, p) {
		return info, nil
	}
	return nil, &api.Error{Code: api.CodeResourceNotFound, Message: "no such policy"}
}

// coveredBy returns the check every policy change runs on each document
// it involves: the caller must have rights over the whole document
// (policy.Covers): set-policy on every key pattern it names and, for a
// system capability, token-admin and that capability. A policy write
// checks the new and the replaced document, a delete the deleted one, a
// token or identity every policy it carries, so nobody hands out, takes
// over or removes more than they hold.
func coveredBy(c *call) func(*policy.Policy) error {
	return func(p *policy.Policy) error {
		if c.p == nil || !policy.Covers(c.p, p) {
			return &api.Error{Code: api.CodeForbidden, Message: "the caller's policies do not cover policy " + p.Name + " (set-policy on every key pattern it names; token-admin and each system capability it names)"}
		}
		return nil
	}
}

func (s *Server) writePolicy(c *call) (any, error) {
	name := c.r.PathValue("policy")
	p, err := policy.Parse(name, c.body)
	if err != nil {
		return nil, &api.Error{Code: api.CodeBadRequest, Message: err.Error()}
	}
	return s.cfg.Admin.PutPolicy(c.r.Context(), c.rid, p, coveredBy(c))
}

func (s *Server) deletePolicy(c *call) (any, error) {
	if err := s.cfg.Admin.DeletePolicy(c.r.Context(), c.rid, c.r.PathValue("policy"), coveredBy(c)); err != nil {
		return nil, err
	}
	return &api.WriteResponse{Index: s.cfg.AppliedIndex()}, nil
}

func (s *Server) createToken(c *call) (any, error) {
	var req api.CreateTokenRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	return s.cfg.Admin.CreateToken(c.r.Context(), c.rid, req, coveredBy(c))
}

func (s *Server) listTokens(c *call) (any, error) { return s.cfg.Admin.ListTokens() }

func (s *Server) revokeToken(c *call) (any, error) {
	var req api.RevokeTokenRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	return s.cfg.Admin.RevokeToken(c.r.Context(), c.rid, req.Accessor, coveredBy(c))
}

func (s *Server) createIdentity(c *call) (any, error) {
	var req api.CreateIdentityRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	return s.cfg.Admin.CreateIdentity(c.r.Context(), c.rid, req, coveredBy(c))
}

func (s *Server) listIdentities(c *call) (any, error) { return s.cfg.Admin.ListIdentities() }

func (s *Server) deleteIdentity(c *call) (any, error) {
	if err := s.cfg.Admin.DeleteIdentity(c.r.Context(), c.rid, c.r.PathValue("id"), coveredBy(c)); err != nil {
		return nil, err
	}
	return &api.WriteResponse{Index: s.cfg.AppliedIndex()}, nil
}

// auditKey answers a node's audit public key from the replicated state
// (?node=ID; default this node).
func (s *Server) auditKey(c *call) (any, error) {
	node := c.r.URL.Query().Get("node")
	if node == "" || s.cfg.AuditTrail == nil {
		return s.cfg.Admin.AuditPublicKey(), nil
	}
	a, err := s.auditAnchors(c)
	if err != nil {
		return nil, err
	}
	return &api.AuditKey{Node: a.(*api.AuditAnchors).Node, PublicKey: a.(*api.AuditAnchors).PublicKey}, nil
}

// auditLog streams this node's audit file; the middleware audits the
// read before the stream starts.
func (s *Server) auditLog(c *call) (any, error) {
	return stream{contentType: "application/x-ndjson", write: s.cfg.Admin.WriteAuditLog}, nil
}
