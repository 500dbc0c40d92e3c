package httpapi

import (
	"context"
	"strings"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/policy"
)

// Usage is key and credential usage tracking and reporting (see
// docs/PII.md). RecordUse is called once per request after it was
// served, so it must be cheap and must not block on I/O: the node
// aggregates in memory and flushes periodically.
type Usage interface {
	RecordUse(identity, key string, versions []uint32)
	KeyUsage(ctx context.Context, name string) (*api.KeyUsage, error)
	KeyReport(ctx context.Context, unusedFor time.Duration, withCredentials bool, visible func(string) bool) (*api.KeyReport, error)
	SubmitUsage(ctx context.Context, from string, b api.UsageBatch) error
}

// maxUsageBody bounds a node's flushed usage batch.
const maxUsageBody = 1 << 20

// MaxUnusedFor bounds the report's unused_for (10 years).
const MaxUnusedFor = 10 * 365 * 24 * time.Hour

func (s *Server) reportRoutes() []route {
	if s.cfg.Usage == nil {
		return nil
	}
	return []route{
		{pattern: "GET " + api.KeyPath("{name}", "usage"), access: token, maxBody: 0, minIndex: true,
			capability: policy.Read, keyed: true, op: "key.usage", handle: s.keyUsage},
		// Key names of every key the caller may read; credentials only
		// for a caller that also holds token-admin.
		{pattern: "GET " + api.PathKeyReport, access: token, maxBody: 0, minIndex: true,
			capability: policy.AuditRead, op: "sys.key_report", handle: s.keyReport},
		// Not audited: a node's periodic flush (its effect is in the
		// replicated state).
		{pattern: "POST " + api.PathInternalUsage, access: internal, maxBody: maxUsageBody, leader: true, handle: s.submitUsage},
	}
}

func (s *Server) keyUsage(c *call) (any, error) {
	return s.cfg.Usage.KeyUsage(c.r.Context(), c.name())
}

// ParseUnusedFor parses the report's unused_for ("720h", "30d" is not
// Go syntax and is refused): a positive duration up to MaxUnusedFor.
// Empty gives api.DefaultUnusedFor.
func ParseUnusedFor(v string) (time.Duration, error) {
	if v == "" {
		return api.DefaultUnusedFor, nil
	}
	if len(v) > 32 {
		return 0, &api.Error{Code: api.CodeBadRequest, Message: "unused_for is too long"}
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d > MaxUnusedFor {
		return 0, &api.Error{Code: api.CodeBadRequest, Message: "unused_for must be a positive duration like 720h, at most " + MaxUnusedFor.String()}
	}
	return d, nil
}

func (s *Server) keyReport(c *call) (any, error) {
	d, err := ParseUnusedFor(c.r.URL.Query().Get("unused_for"))
	if err != nil {
		return nil, err
	}
	withCreds := c.p.Allowed(policy.TokenAdmin, "")
	return s.cfg.Usage.KeyReport(c.r.Context(), d, withCreds, func(name string) bool {
		return c.p.Allowed(policy.Read, name)
	})
}

func (s *Server) submitUsage(c *call) (any, error) {
	from, _ := s.cfg.IsPeer(c.r)
	var b api.UsageBatch
	if err := c.decode(&b); err != nil {
		return nil, err
	}
	if b.Node != from {
		return nil, &api.Error{Code: api.CodeForbidden, Message: "a node may only submit its own usage"}
	}
	if err := s.cfg.Usage.SubmitUsage(c.r.Context(), from, b); err != nil {
		return nil, err
	}
	return &api.WriteResponse{Index: s.cfg.AppliedIndex()}, nil
}

// noteUsage records a served request: the caller's last use always, and
// for a successful use of a key the key and versions it used. A route is
// a crypto call when it is keyed and served from memory on a cut-off
// node (staleOK): the shape every crypto route has. Batches (key.batch
// and the PII batches, which are not keyed routes) and tokenization
// (keyed, but tokenize writes through the leader) use the key too: a key
// used only through them must not look unused in the key report, whose
// never_used section lists candidates for deletion.
func (s *Server) noteUsage(c *call, rt route, resp any, err error) {
	if s.cfg.Usage == nil || c.p == nil {
		return
	}
	key := ""
	var versions []uint32
	if err == nil {
		switch {
		case rt.keyed && (rt.staleOK || rt.op == "key.tokenize" || rt.op == "key.detokenize"):
			key = c.name()
			if v := versionOf(resp); v != 0 {
				versions = []uint32{v}
			} else {
				versions = c.detail.versions // transit: the handler noted them
			}
		case rt.op == "key.batch" || strings.HasPrefix(rt.op, "key.batch."):
			key = c.name()
			versions = c.detail.versions
		}
	}
	s.cfg.Usage.RecordUse(c.p.ID(), key, versions)
}

// authorizeTags checks a write that sets key tags (create with tags, a
// config that changes them). Tagging a key x (or untagging it) changes
// what every policy naming "tag:x" grants or denies on it, so it needs
// what writing such a policy needs: set-policy on every key
// (policy.Covers treats "tag:x" like "*"). Set-policy on the key alone
// would let a delegated admin untag a key to lift a tag deny it could
// not remove, or tag its key into another caller's tag allow.
func (c *call) authorizeTags(name string, setsTags bool) error {
	if !setsTags {
		return nil
	}
	if c.p == nil || !c.p.Allowed(policy.SetPolicy, name) || !c.p.AllowedPattern(policy.SetPolicy, "*") {
		return &api.Error{Code: api.CodeForbidden, Message: "setting key tags needs set-policy on every key (as a policy naming a tag does)"}
	}
	return nil
}

// authorizeRetention checks a write that sets or removes a key's
// retention (create with one, a config naming one): a retention makes
// the cluster schedule the key's deletion on its own, so it is a
// deletion decision and needs delete on the key, on top of create or
// rotate (which never allow a deletion).
func (c *call) authorizeRetention(name string, setsRetention bool) error {
	if !setsRetention {
		return nil
	}
	if c.p == nil || !c.p.Allowed(policy.Delete, name) {
		return &api.Error{Code: api.CodeForbidden, Message: "setting a key retention needs delete on the key"}
	}
	return nil
}
