package httpapi

import (
	"encoding/json"
	"slices"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/audit"
)

// auditDetail is what a handler adds to its request's audit record
// beyond what the middleware knows.
type auditDetail struct {
	op       string // replaces the route's op (batch: "key.batch.encrypt")
	target   string
	items    int
	failed   int
	versions []uint32
	longRID  string // a request id refused as too long: recorded as an HMAC
}

// addDetail names what the request acted on: the handler's detail, the
// path's policy or identity, the created token or identity, the revoked
// token, the removed node; else the path. Nothing secret: token
// accessors and identity hashes are public names.
func (s *Server) addDetail(c *call, rec *audit.Record, resp any) {
	d := &c.detail
	if d.op != "" {
		rec.Op = d.op
	}
	rec.Target, rec.Items, rec.Failed, rec.Versions = d.target, d.items, d.failed, d.versions
	if d.longRID != "" {
		if rec.Hashed == nil {
			rec.Hashed = map[string]string{}
		}
		rec.Hashed["request_id"] = s.cfg.Audit.HMAC([]byte(d.longRID))
	}
	if rec.Target != "" {
		return
	}
	switch v := resp.(type) {
	case *api.TokenInfo:
		if v != nil {
			rec.Target = "token:" + v.Accessor
			return
		}
	case *api.IdentityInfo:
		if v != nil {
			rec.Target = "identity:" + v.ID
			return
		}
	case *api.KeyInfo:
		if v != nil && rec.Key == "" {
			rec.Key = v.Name
		}
	}
	switch {
	case c.r.PathValue("policy") != "":
		rec.Target = "policy:" + c.r.PathValue("policy")
	case c.r.PathValue("id") != "":
		rec.Target = "identity:" + c.r.PathValue("id")
	case rec.Op == "token.revoke":
		var req api.RevokeTokenRequest
		if json.Unmarshal(c.body, &req) == nil && req.Accessor != "" && len(req.Accessor) <= 64 {
			rec.Target = "token:" + req.Accessor
		}
	case rec.Op == "sys.remove":
		var req api.RemoveRequest
		if json.Unmarshal(c.body, &req) == nil && req.NodeID != "" && len(req.NodeID) <= 128 {
			rec.Target = "node:" + req.NodeID
		}
	case rec.Op == "key.create" && rec.Key == "":
		var req api.CreateKeyRequest
		if json.Unmarshal(c.body, &req) == nil && api.ValidKeyName(req.Name) {
			rec.Key = req.Name
		}
	}
	if rec.Target == "" && rec.Key == "" {
		rec.Target = c.r.URL.Path
	}
}

// batchStats counts a batch reply's items, failures and versions used.
func batchStats(resp any) (items, failed int, versions []uint32) {
	add := func(err *api.BatchItemError, v uint32) {
		items++
		if err != nil {
			failed++
		} else if v != 0 && !slices.Contains(versions, v) {
			versions = append(versions, v)
		}
	}
	switch r := resp.(type) {
	case *api.BatchEncryptResponse:
		for _, it := range r.Results {
			add(it.Error, it.Version)
		}
	case *api.BatchDecryptResponse:
		for _, it := range r.Results {
			add(it.Error, it.Version)
		}
	case *api.BatchDataKeyResponse:
		for _, it := range r.Results {
			add(it.Error, it.Version)
		}
	case *api.BatchSignResponse:
		for _, it := range r.Results {
			add(it.Error, it.Version)
		}
	case *api.BatchVerifyResponse:
		for _, it := range r.Results {
			add(it.Error, 0)
		}
	}
	slices.Sort(versions)
	return items, failed, versions
}
