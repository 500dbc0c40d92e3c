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
	PutPolicy(ctx context.Context, rid string, p *policy.Policy) (*api.PolicyInfo, error)
	Policy(name string) (*api.PolicyInfo, error)
	ListPolicies() (*api.PolicyList, error)
	DeletePolicy(ctx context.Context, rid, name string) error
	CreateToken(ctx context.Context, rid string, req api.CreateTokenRequest) (*api.TokenInfo, error)
	ListTokens() (*api.TokenList, error)
	RevokeToken(ctx context.Context, rid, accessor string) error
	CreateIdentity(ctx context.Context, rid string, req api.CreateIdentityRequest) (*api.IdentityInfo, error)
	ListIdentities() (*api.IdentityList, error)
	DeleteIdentity(ctx context.Context, rid, id string) error
	AuditPublicKey() *api.AuditKey
	WriteAuditLog(w io.Writer) error
}

func (s *Server) whoami(c *call) (any, error) {
	return &api.WhoAmI{Identity: c.p.ID(), Policies: c.p.Policies()}, nil
}

func (s *Server) listPolicies(c *call) (any, error) { return s.cfg.Admin.ListPolicies() }

func (s *Server) readPolicy(c *call) (any, error) {
	return s.cfg.Admin.Policy(c.r.PathValue("policy"))
}

// writePolicy lets a token-admin write any policy, and a caller holding
// set-policy write a policy whose every key pattern its own set-policy
// grant covers (and no system capability), so nobody grants more than
// they hold.
func (s *Server) writePolicy(c *call) (any, error) {
	name := c.r.PathValue("policy")
	p, err := policy.Parse(name, c.body)
	if err != nil {
		return nil, &api.Error{Code: api.CodeBadRequest, Message: err.Error()}
	}
	if !c.p.Allowed(policy.TokenAdmin, "") {
		for _, r := range p.Rules {
			for _, capability := range r.Capabilities {
				if capability.IsSystem() {
					return nil, forbidden(policy.TokenAdmin)
				}
			}
			for _, pat := range r.Keys {
				if !c.p.AllowedPattern(policy.SetPolicy, pat) {
					return nil, forbidden(policy.SetPolicy)
				}
			}
		}
	}
	return s.cfg.Admin.PutPolicy(c.r.Context(), c.rid, p)
}

func (s *Server) deletePolicy(c *call) (any, error) {
	if err := s.cfg.Admin.DeletePolicy(c.r.Context(), c.rid, c.r.PathValue("policy")); err != nil {
		return nil, err
	}
	return &api.WriteResponse{Index: s.cfg.AppliedIndex()}, nil
}

func (s *Server) createToken(c *call) (any, error) {
	var req api.CreateTokenRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	return s.cfg.Admin.CreateToken(c.r.Context(), c.rid, req)
}

func (s *Server) listTokens(c *call) (any, error) { return s.cfg.Admin.ListTokens() }

func (s *Server) revokeToken(c *call) (any, error) {
	var req api.RevokeTokenRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if err := s.cfg.Admin.RevokeToken(c.r.Context(), c.rid, req.Accessor); err != nil {
		return nil, err
	}
	return &api.WriteResponse{Index: s.cfg.AppliedIndex()}, nil
}

func (s *Server) createIdentity(c *call) (any, error) {
	var req api.CreateIdentityRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	return s.cfg.Admin.CreateIdentity(c.r.Context(), c.rid, req)
}

func (s *Server) listIdentities(c *call) (any, error) { return s.cfg.Admin.ListIdentities() }

func (s *Server) deleteIdentity(c *call) (any, error) {
	if err := s.cfg.Admin.DeleteIdentity(c.r.Context(), c.rid, c.r.PathValue("id")); err != nil {
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
