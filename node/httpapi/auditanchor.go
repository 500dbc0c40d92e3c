package httpapi

import (
	"context"

	"github.com/keyd/keyd/api"
)

// AuditTrail is the replicated side of the audit trail: every node's
// audit public key and chain anchors.
type AuditTrail interface {
	// AuditAnchors returns node's key and anchors ("" for this node).
	AuditAnchors(node string) (*api.AuditAnchors, error)
	// SubmitAuditAnchor commits a chain head or public key that node
	// `from` (verified by its certificate) sent to the leader.
	SubmitAuditAnchor(ctx context.Context, from string, req api.AuditAnchorRequest) error
}

func (s *Server) auditAnchors(c *call) (any, error) {
	if s.cfg.AuditTrail == nil {
		return nil, &api.Error{Code: api.CodeResourceNotFound, Message: "audit anchors are not kept by this node"}
	}
	node := c.r.URL.Query().Get("node")
	if len(node) > 128 {
		return nil, &api.Error{Code: api.CodeBadRequest, Message: "node id longer than 128 bytes"}
	}
	return s.cfg.AuditTrail.AuditAnchors(node)
}

// auditAnchor is the internal route a node uses to have the leader commit
// its chain head: only the node itself may anchor its own chain.
func (s *Server) auditAnchor(c *call) (any, error) {
	from, _ := s.cfg.IsPeer(c.r)
	var req api.AuditAnchorRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if req.Node != from {
		return nil, &api.Error{Code: api.CodeForbidden, Message: "a node may only anchor its own audit log"}
	}
	if s.cfg.AuditTrail == nil {
		return nil, &api.Error{Code: api.CodeResourceNotFound, Message: "audit anchors are not kept by this node"}
	}
	if err := s.cfg.AuditTrail.SubmitAuditAnchor(c.r.Context(), from, req); err != nil {
		return nil, err
	}
	return &api.WriteResponse{Index: s.cfg.AppliedIndex()}, nil
}
