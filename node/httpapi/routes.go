package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/sharex"
)

func (s *Server) routes() []route {
	const small = api.MaxBodyBytes
	const batch = api.MaxBatchBodyBytes
	k := "/v1/keys/{name}"
	return []route{
		{pattern: "GET " + api.PathHealth, access: open, maxBody: 0, handle: s.health},
		{pattern: "GET " + api.PathStatus, access: open, maxBody: 0, handle: s.status},
		{pattern: "POST " + api.PathInit, access: open, maxBody: small, leader: true, handle: s.init},
		{pattern: "POST " + api.PathUnseal, access: open, maxBody: small, handle: s.unseal},
		{pattern: "POST " + api.PathSeal, access: token, maxBody: small, handle: s.seal},

		{pattern: "GET " + api.PathCluster, access: token, maxBody: 0, handle: s.cluster},
		{pattern: "POST " + api.PathJoin, access: open, maxBody: small, handle: s.join},
		{pattern: "POST " + api.PathRemove, access: token, maxBody: small, leader: true, handle: s.remove},

		{pattern: "POST " + api.PathKeys, access: token, maxBody: small, leader: true, handle: s.createKey},
		{pattern: "GET " + api.PathKeys, access: token, maxBody: 0, minIndex: true, handle: s.listKeys},
		{pattern: "GET " + k, access: token, maxBody: 0, minIndex: true, handle: s.readKey},
		{pattern: "POST " + k + "/rotate", access: token, maxBody: small, leader: true, handle: s.rotateKey},
		{pattern: "POST " + k + "/enable", access: token, maxBody: small, leader: true, handle: s.enableKey},
		{pattern: "POST " + k + "/disable", access: token, maxBody: small, leader: true, handle: s.disableKey},
		{pattern: "POST " + k + "/config", access: token, maxBody: small, leader: true, handle: s.configureKey},
		{pattern: "POST " + k + "/schedule-deletion", access: token, maxBody: small, leader: true, handle: s.scheduleDeletion},
		{pattern: "POST " + k + "/cancel-deletion", access: token, maxBody: small, leader: true, handle: s.cancelDeletion},

		{pattern: "POST " + k + "/encrypt", access: token, maxBody: small, minIndex: true, handle: s.encrypt},
		{pattern: "POST " + k + "/decrypt", access: token, maxBody: small, minIndex: true, handle: s.decrypt},
		{pattern: "POST " + k + "/reencrypt", access: token, maxBody: small, minIndex: true, handle: s.reencrypt},
		{pattern: "POST " + k + "/datakey", access: token, maxBody: small, minIndex: true, handle: s.datakey},
		{pattern: "POST " + k + "/sign", access: token, maxBody: small, minIndex: true, handle: s.sign},
		{pattern: "POST " + k + "/verify", access: token, maxBody: small, minIndex: true, handle: s.verify},
		{pattern: "POST " + k + "/hmac", access: token, maxBody: small, minIndex: true, handle: s.hmac},
		{pattern: "POST " + k + "/verify-hmac", access: token, maxBody: small, minIndex: true, handle: s.verifyHMAC},
		{pattern: "POST " + k + "/batch/{op}", access: token, maxBody: batch, minIndex: true, handle: s.batch},

		{pattern: "POST /v1/internal/unseal-share", access: internal, maxBody: small, handle: s.relayedShare},
		{pattern: "POST /v1/internal/seal", access: internal, maxBody: small, handle: s.relayedSeal},
		{pattern: "POST /v1/internal/node-share", access: internal, maxBody: small, handle: s.nodeShare},
		{pattern: "POST /v1/internal/share-request", access: internal, maxBody: sharex.MaxMessageSize, handle: s.shareRequest},
	}
}

func (s *Server) health(c *call) (any, error) {
	h := s.cfg.Sys.Health()
	return &h, nil
}

func (s *Server) status(c *call) (any, error) {
	st := s.cfg.Sys.Status()
	return &st, nil
}

func (s *Server) init(c *call) (any, error) {
	var req api.InitRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	return s.cfg.Sys.Init(c.r.Context(), req)
}

func (s *Server) unseal(c *call) (any, error) {
	var req api.UnsealRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	st, err := s.cfg.Sys.SubmitShare(c.r.Context(), req.Share, false)
	if err != nil {
		return nil, err
	}
	return &st, nil
}

func (s *Server) relayedShare(c *call) (any, error) {
	var req api.UnsealRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	st, err := s.cfg.Sys.SubmitShare(c.r.Context(), req.Share, true)
	if err != nil {
		return nil, err
	}
	return &st, nil
}

func (s *Server) seal(c *call) (any, error) {
	if err := s.cfg.Sys.Seal(c.r.Context()); err != nil {
		return nil, err
	}
	return &api.WriteResponse{Index: s.cfg.AppliedIndex()}, nil
}

func (s *Server) relayedSeal(c *call) (any, error) {
	s.cfg.Sys.SealLocal()
	return &api.WriteResponse{}, nil
}

func (s *Server) createKey(c *call) (any, error) {
	var req api.CreateKeyRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	return s.cfg.Keys.CreateKey(c.r.Context(), c.rid, req)
}

func (s *Server) listKeys(c *call) (any, error) {
	q := c.r.URL.Query()
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > api.MaxListLimit {
			return nil, &api.Error{Code: api.CodeBadRequest, Message: "limit must be 1.." + strconv.Itoa(api.MaxListLimit)}
		}
		limit = n
	}
	return s.cfg.Keys.ListKeys(c.r.Context(), q.Get("after"), limit)
}

func (s *Server) readKey(c *call) (any, error) {
	consistent := false
	if v := c.r.URL.Query().Get("consistent"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, &api.Error{Code: api.CodeBadRequest, Message: "consistent must be true or false"}
		}
		consistent = b
	}
	if consistent && !s.cfg.IsLeader() {
		if c.r.Header.Get(api.HeaderForwarded) != "" {
			return nil, api.ErrNotLeader
		}
		if err := s.cfg.Forward(c.w, c.r, c.body); err != nil {
			return nil, err
		}
		return handled, nil
	}
	return s.cfg.Keys.ReadKey(c.r.Context(), c.name(), consistent)
}

func (s *Server) rotateKey(c *call) (any, error) {
	return s.cfg.Keys.RotateKey(c.r.Context(), c.rid, c.name())
}

func (s *Server) enableKey(c *call) (any, error) {
	return s.cfg.Keys.SetKeyEnabled(c.r.Context(), c.rid, c.name(), true)
}

func (s *Server) disableKey(c *call) (any, error) {
	return s.cfg.Keys.SetKeyEnabled(c.r.Context(), c.rid, c.name(), false)
}

func (s *Server) configureKey(c *call) (any, error) {
	var req api.KeyConfigRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	return s.cfg.Keys.ConfigureKey(c.r.Context(), c.rid, c.name(), req)
}

func (s *Server) scheduleDeletion(c *call) (any, error) {
	var req api.ScheduleDeletionRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	var window time.Duration
	if req.PendingWindow != "" {
		d, err := time.ParseDuration(req.PendingWindow)
		if err != nil {
			return nil, &api.Error{Code: api.CodeBadRequest, Message: "pending_window must be a duration like 168h"}
		}
		window = d
	}
	return s.cfg.Keys.ScheduleDeletion(c.r.Context(), c.rid, c.name(), window)
}

func (s *Server) cancelDeletion(c *call) (any, error) {
	return s.cfg.Keys.CancelDeletion(c.r.Context(), c.rid, c.name())
}

// handledT tells the middleware that the handler already wrote the reply.
type handledT struct{}

var handled = &handledT{}

var _ http.Handler = (*Server)(nil)

func (s *Server) nodeShare(c *call) (any, error) {
	from, _ := s.cfg.IsPeer(c.r)
	var d api.NodeShareDelivery
	if err := c.decode(&d); err != nil {
		return nil, err
	}
	if err := s.cfg.NodeShares.ReceiveNodeShare(c.r.Context(), from, d); err != nil {
		return nil, err
	}
	return &api.WriteResponse{}, nil
}

func (s *Server) shareRequest(c *call) (any, error) {
	from, _ := s.cfg.IsPeer(c.r)
	return s.cfg.NodeShares.AnswerShareRequest(c.r.Context(), from, c.body)
}

func (s *Server) cluster(c *call) (any, error) {
	return s.cfg.Membership.ClusterInfo(), nil
}

// join needs no token only while the node is fresh: a new machine has no
// tokens yet and learns them by replication once it has joined.
func (s *Server) join(c *call) (any, error) {
	if !s.cfg.Membership.Fresh() {
		if err := s.cfg.Auth.Authenticate(c.r.Header.Get(api.HeaderAuthorization)); err != nil {
			return nil, err
		}
	}
	var req api.JoinRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	return s.cfg.Membership.JoinSeeds(c.r.Context(), req.Seeds)
}

func (s *Server) remove(c *call) (any, error) {
	var req api.RemoveRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if err := s.cfg.Membership.RemoveNode(c.r.Context(), c.rid, req.NodeID); err != nil {
		return nil, err
	}
	return &api.WriteResponse{Index: s.cfg.AppliedIndex()}, nil
}
