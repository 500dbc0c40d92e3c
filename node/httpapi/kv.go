package httpapi

import (
	"context"
	"strconv"
	"strings"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/policy"
)

// KV is the versioned-secret side of a node: writes go through Raft on
// the leader, reads come from the node's applied state.
type KV interface {
	KVPut(ctx context.Context, rid, path string, req api.KVWriteRequest) (*api.KVSecret, error)
	KVGet(ctx context.Context, path string, version uint32) (*api.KVSecret, error)
	KVMetadata(ctx context.Context, path string) (*api.KVMetadata, error)
	KVDelete(ctx context.Context, rid, path string, versions []uint32) (*api.WriteResponse, error)
	KVUndelete(ctx context.Context, rid, path string, versions []uint32) (*api.WriteResponse, error)
	KVDestroy(ctx context.Context, rid, path string, versions []uint32) (*api.WriteResponse, error)
	KVConfigure(ctx context.Context, rid, path string, req api.KVMetadataRequest) (*api.WriteResponse, error)
	KVDeleteAll(ctx context.Context, rid, path string) (*api.WriteResponse, error)
	KVList(ctx context.Context, prefix, after string, limit int, visible func(path string) bool) (*api.KVList, error)
}

// Vault is tokenization: tokenize writes through Raft, detokenize reads
// the applied state.
type Vault interface {
	Tokenize(ctx context.Context, rid, name string, req api.TokenizeRequest) (*api.TokenizeResponse, error)
	Detokenize(ctx context.Context, name string, req api.DetokenizeRequest) (*api.DetokenizeResponse, error)
}

// kvBody bounds a KV write: the value limit and room for JSON escaping.
const kvBody = api.MaxKVValueBytes + 16<<10

// kvResource is what KV capabilities are granted on: "kv/" + path.
func kvResource(path string) string { return "kv/" + path }

// kvRoutes are the secret and tokenization routes. The handlers check
// the capability on the path (it is not a key name).
func (s *Server) kvRoutes() []route {
	rt := func(pattern, op string, leader bool, maxBody int64, h func(*call) (any, error)) route {
		return route{pattern: pattern, access: token, maxBody: maxBody, leader: leader, minIndex: !leader, op: op, handle: h}
	}
	kv := "/v1/kv/{path...}"
	return []route{
		rt("PUT "+kv, "kv.write", true, kvBody, s.kvPut),
		rt("POST "+kv, "kv.write", true, kvBody, s.kvPut),
		rt("GET "+kv, "kv.read", false, 0, s.kvGet),
		rt("DELETE "+kv, "kv.delete", true, 0, s.kvDelete),
		rt("POST "+api.PathKVUndelete+"{path...}", "kv.undelete", true, api.MaxBodyBytes, s.kvUndelete),
		rt("POST "+api.PathKVDestroy+"{path...}", "kv.destroy", true, api.MaxBodyBytes, s.kvDestroy),
		rt("GET "+api.PathKVMeta+"{path...}", "kv.metadata_read", false, 0, s.kvMetadata),
		rt("PUT "+api.PathKVMeta+"{path...}", "kv.metadata_write", true, api.MaxBodyBytes, s.kvConfigure),
		rt("POST "+api.PathKVMeta+"{path...}", "kv.metadata_write", true, api.MaxBodyBytes, s.kvConfigure),
		rt("DELETE "+api.PathKVMeta+"{path...}", "kv.delete_all", true, 0, s.kvDeleteAll),
		rt("GET "+api.PathKVList+"{prefix...}", "kv.list", false, 0, s.kvList),
		{pattern: "POST /v1/keys/{name}/tokenize", access: token, maxBody: api.MaxBodyBytes, leader: true,
			capability: policy.Tokenize, keyed: true, op: "key.tokenize", handle: s.tokenize},
		{pattern: "POST /v1/keys/{name}/detokenize", access: token, maxBody: api.MaxBodyBytes, minIndex: true,
			capability: policy.Detokenize, keyed: true, op: "key.detokenize", handle: s.detokenize},
	}
}

// kvPath authorizes cap on the request's secret path and names it in the
// audit record (the path, never a value).
func (c *call) kvPath(cap policy.Capability) (string, error) {
	path := c.r.PathValue("path")
	c.detail.target = "kv:" + path
	if !api.ValidKVPath(path) {
		// Checked before the capability: the path value is decoded, so
		// "app1%2F..%2Fapp2%2Fx" arrives as "app1/../app2/x", which a
		// grant on kv/app1/* matches. Every node method refuses it too.
		return "", &api.Error{Code: api.CodeBadRequest, Message: "secret path must be segments of [A-Za-z0-9._-] separated by '/', none empty, '.' or '..'"}
	}
	if err := c.authorize(cap, kvResource(path)); err != nil {
		return "", err
	}
	return path, nil
}

func (s *Server) kvPut(c *call) (any, error) {
	path, err := c.kvPath(policy.KVWrite)
	if err != nil {
		return nil, err
	}
	var req api.KVWriteRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	out, err := s.cfg.KV.KVPut(c.r.Context(), c.rid, path, req)
	if out != nil {
		c.detail.versions = []uint32{out.Version}
	}
	return out, err
}

func (s *Server) kvGet(c *call) (any, error) {
	path, err := c.kvPath(policy.KVRead)
	if err != nil {
		return nil, err
	}
	var version uint32
	if v := c.r.URL.Query().Get("version"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, &api.Error{Code: api.CodeBadRequest, Message: "version must be an unsigned 32-bit integer"}
		}
		version = uint32(n)
	}
	out, err := s.cfg.KV.KVGet(c.r.Context(), path, version)
	if out != nil {
		c.detail.versions = []uint32{out.Version}
	}
	return out, err
}

// parseVersions reads "1,2,3" (at most 100 numbers).
func parseVersions(s string) ([]uint32, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) > 100 {
		return nil, &api.Error{Code: api.CodeBadRequest, Message: "at most 100 versions"}
	}
	out := make([]uint32, 0, len(parts))
	for _, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil || n == 0 {
			return nil, &api.Error{Code: api.CodeBadRequest, Message: "versions must be positive integers separated by commas"}
		}
		out = append(out, uint32(n))
	}
	return out, nil
}

func (s *Server) kvDelete(c *call) (any, error) {
	path, err := c.kvPath(policy.KVDelete)
	if err != nil {
		return nil, err
	}
	vs, err := parseVersions(c.r.URL.Query().Get("versions"))
	if err != nil {
		return nil, err
	}
	c.detail.versions = vs
	return s.cfg.KV.KVDelete(c.r.Context(), c.rid, path, vs)
}

func (s *Server) kvVersions(c *call, cap policy.Capability) (string, []uint32, error) {
	path, err := c.kvPath(cap)
	if err != nil {
		return "", nil, err
	}
	var req api.KVVersionsRequest
	if err := c.decode(&req); err != nil {
		return "", nil, err
	}
	if len(req.Versions) > 100 {
		return "", nil, &api.Error{Code: api.CodeBadRequest, Message: "at most 100 versions"}
	}
	c.detail.versions = req.Versions
	return path, req.Versions, nil
}

func (s *Server) kvUndelete(c *call) (any, error) {
	path, vs, err := s.kvVersions(c, policy.KVDelete)
	if err != nil {
		return nil, err
	}
	return s.cfg.KV.KVUndelete(c.r.Context(), c.rid, path, vs)
}

func (s *Server) kvDestroy(c *call) (any, error) {
	path, vs, err := s.kvVersions(c, policy.KVDestroy)
	if err != nil {
		return nil, err
	}
	return s.cfg.KV.KVDestroy(c.r.Context(), c.rid, path, vs)
}

func (s *Server) kvMetadata(c *call) (any, error) {
	path, err := c.kvPath(policy.KVRead)
	if err != nil {
		return nil, err
	}
	return s.cfg.KV.KVMetadata(c.r.Context(), path)
}

func (s *Server) kvConfigure(c *call) (any, error) {
	path, err := c.kvPath(policy.KVWrite)
	if err != nil {
		return nil, err
	}
	var req api.KVMetadataRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	return s.cfg.KV.KVConfigure(c.r.Context(), c.rid, path, req)
}

func (s *Server) kvDeleteAll(c *call) (any, error) {
	path, err := c.kvPath(policy.KVDestroy)
	if err != nil {
		return nil, err
	}
	return s.cfg.KV.KVDeleteAll(c.r.Context(), c.rid, path)
}

// kvList lists the paths under the prefix the caller may list or read;
// others shape neither the page nor its cursor. Listing needs no
// capability of its own: a caller with none sees an empty list.
func (s *Server) kvList(c *call) (any, error) {
	q := c.r.URL.Query()
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > api.MaxListLimit {
			return nil, &api.Error{Code: api.CodeBadRequest, Message: "limit must be 1.." + strconv.Itoa(api.MaxListLimit)}
		}
		limit = n
	}
	prefix := c.r.PathValue("prefix")
	if len(prefix) > 256 {
		return nil, &api.Error{Code: api.CodeBadRequest, Message: "prefix longer than 256 bytes"}
	}
	c.detail.target = "kv-prefix:" + prefix
	return s.cfg.KV.KVList(c.r.Context(), prefix, q.Get("after"), limit, func(path string) bool {
		r := kvResource(path)
		return c.p.Allowed(policy.KVList, r) || c.p.Allowed(policy.KVRead, r)
	})
}

func (s *Server) tokenize(c *call) (any, error) {
	var req api.TokenizeRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	return s.cfg.Vault.Tokenize(c.r.Context(), c.rid, c.name(), req)
}

func (s *Server) detokenize(c *call) (any, error) {
	var req api.DetokenizeRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	return s.cfg.Vault.Detokenize(c.r.Context(), c.name(), req)
}
