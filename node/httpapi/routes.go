package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/policy"
	"github.com/keyd/keyd/sharex"
)

func (s *Server) routes() []route {
	const small = api.MaxBodyBytes
	const batch = api.MaxBatchBodyBytes
	k := "/v1/keys/{name}"
	type cap = policy.Capability
	keyRoute := func(method, suffix string, capability cap, op string, leader bool, h func(*call) (any, error)) route {
		return route{pattern: method + " " + k + suffix, access: token, maxBody: small, leader: leader, minIndex: !leader,
			capability: capability, keyed: true, op: op, handle: h}
	}
	// cryptoRoute is a crypto call: served from memory, also on a node
	// cut off from the leader.
	cryptoRoute := func(suffix string, capability cap, op string, h func(*call) (any, error)) route {
		rt := keyRoute("POST", suffix, capability, op, false, h)
		rt.staleOK = true
		return rt
	}
	return append(s.transitRoutes(), []route{
		{pattern: "GET " + api.PathHealth, access: open, sealedOK: true, maxBody: 0, handle: s.health},
		{pattern: "GET " + api.PathStatus, access: open, sealedOK: true, maxBody: 0, handle: s.status},
		// Sealed nodes report metrics too (the seal state is one of them).
		{pattern: "GET " + api.PathMetrics, access: open, sealedOK: true, maxBody: 0, handle: s.metrics},
		{pattern: "POST " + api.PathInit, access: open, sealedOK: true, maxBody: small, leader: true, op: "sys.init", handle: s.init},
		{pattern: "POST " + api.PathUnseal, access: open, sealedOK: true, maxBody: small, op: "sys.unseal", handle: s.unseal},
		{pattern: "POST " + api.PathSeal, access: token, sealedOK: true, staleOK: true, maxBody: small, capability: policy.Cluster, op: "sys.seal", handle: s.seal},
		{pattern: "GET " + api.PathCluster, access: token, maxBody: 0, capability: policy.Cluster, op: "sys.cluster", handle: s.cluster},
		{pattern: "POST " + api.PathJoin, access: open, sealedOK: true, maxBody: small, op: "sys.join", handle: s.join},
		{pattern: "POST " + api.PathRemove, access: token, maxBody: small, leader: true, capability: policy.Cluster, op: "sys.remove", handle: s.remove},
		// Root rotation needs custodian shares, never a token.
		{pattern: "GET " + api.PathRotateRoot, access: open, maxBody: 0, leader: true, handle: s.rotateStatus},
		{pattern: "POST " + api.PathRotateRootStart, access: open, maxBody: small, leader: true, op: "sys.rotate_root_start", handle: s.rotateStart},
		{pattern: "POST " + api.PathRotateRootSubmit, access: open, maxBody: small, leader: true, op: "sys.rotate_root_submit", handle: s.rotateSubmit},
		{pattern: "POST " + api.PathRotateRootCancel, access: open, maxBody: small, leader: true, op: "sys.rotate_root_cancel", handle: s.rotateCancel},
		{pattern: "GET " + api.PathWhoAmI, access: token, maxBody: 0, handle: s.whoami},
		{pattern: "GET " + api.PathAuditKey, access: token, maxBody: 0, capability: policy.AuditRead, op: "audit.public_key", handle: s.auditKey},
		{pattern: "GET " + api.PathSnapshot, access: token, maxBody: 0, capability: policy.Snapshot, op: "sys.snapshot_save", handle: s.snapshotSave},
		// Allowed while sealed: a fresh (uninitialised, so sealed) cluster is
		// where a DR restore lands; the handler refuses a live cluster without
		// force and an authorised caller, before it reads the body.
		{pattern: "POST " + api.PathSnapshotRestore, access: open, sealedOK: true, streamBody: true, maxBody: api.MaxSnapshotBytes, op: "sys.snapshot_restore", handle: s.snapshotRestore},
		{pattern: "GET " + api.PathAuditLog, access: token, maxBody: 0, capability: policy.AuditRead, op: "audit.read", handle: s.auditLog},
		{pattern: "GET " + api.PathAuditAnchors, access: token, maxBody: 0, capability: policy.AuditRead, op: "audit.anchors", handle: s.auditAnchors},

		{pattern: "GET " + api.PathPolicies, access: token, maxBody: 0, op: "policy.list", handle: s.listPolicies},
		{pattern: "GET " + api.PathPolicies + "/{policy}", access: token, maxBody: 0, op: "policy.read", handle: s.readPolicy},
		{pattern: "PUT " + api.PathPolicies + "/{policy}", access: token, maxBody: small, leader: true, op: "policy.write", handle: s.writePolicy},
		{pattern: "DELETE " + api.PathPolicies + "/{policy}", access: token, maxBody: 0, leader: true, op: "policy.delete", handle: s.deletePolicy},
		{pattern: "POST " + api.PathTokens, access: token, maxBody: small, leader: true, capability: policy.TokenAdmin, op: "token.create", handle: s.createToken},
		{pattern: "GET " + api.PathTokens, access: token, maxBody: 0, capability: policy.TokenAdmin, op: "token.list", handle: s.listTokens},
		{pattern: "POST " + api.PathTokenRevoke, access: token, maxBody: small, leader: true, capability: policy.TokenAdmin, op: "token.revoke", handle: s.revokeToken},
		{pattern: "POST " + api.PathIdentities, access: token, maxBody: small, leader: true, capability: policy.TokenAdmin, op: "identity.create", handle: s.createIdentity},
		{pattern: "GET " + api.PathIdentities, access: token, maxBody: 0, capability: policy.TokenAdmin, op: "identity.list", handle: s.listIdentities},
		{pattern: "DELETE " + api.PathIdentities + "/{id}", access: token, maxBody: 0, leader: true, capability: policy.TokenAdmin, op: "identity.delete", handle: s.deleteIdentity},

		{pattern: "POST " + api.PathKeys, access: token, maxBody: small, leader: true, op: "key.create", handle: s.createKey},
		{pattern: "GET " + api.PathKeys, access: token, maxBody: 0, minIndex: true, op: "key.list", handle: s.listKeys},
		keyRoute("GET", "", policy.Read, "key.read", false, s.readKey),
		keyRoute("POST", "/rotate", policy.Rotate, "key.rotate", true, s.rotateKey),
		keyRoute("POST", "/enable", policy.Rotate, "key.enable", true, s.enableKey),
		keyRoute("POST", "/disable", policy.Rotate, "key.disable", true, s.disableKey),
		keyRoute("POST", "/config", policy.Rotate, "key.config", true, s.configureKey),
		keyRoute("POST", "/schedule-deletion", policy.Delete, "key.schedule_deletion", true, s.scheduleDeletion),
		keyRoute("POST", "/cancel-deletion", policy.Delete, "key.cancel_deletion", true, s.cancelDeletion),

		cryptoRoute("/encrypt", policy.Encrypt, "key.encrypt", s.guardMaskedOracle(s.encrypt)), // pii.go
		// decrypt or decrypt-masked: decryptPII authorizes (pii.go).
		cryptoRoute("/decrypt", "", "key.decrypt", s.decryptPII),
		cryptoRoute("/reencrypt", policy.Rewrap, "key.reencrypt", s.reencrypt),
		cryptoRoute("/datakey", policy.DataKey, "key.datakey", s.datakey),
		cryptoRoute("/sign", policy.Sign, "key.sign", s.sign),
		cryptoRoute("/verify", policy.Verify, "key.verify", s.verify),
		cryptoRoute("/hmac", policy.HMAC, "key.hmac", s.hmac),
		cryptoRoute("/verify-hmac", policy.Verify, "key.verify_hmac", s.verifyHMAC),
		cryptoRoute("/pseudonym", policy.Pseudonym, "key.pseudonym", s.pseudonym),
		cryptoRoute("/fpe/encrypt", policy.Encrypt, "key.fpe_encrypt", s.fpeEncrypt),
		cryptoRoute("/fpe/decrypt", "", "key.fpe_decrypt", s.fpeDecrypt), // decrypt or decrypt-masked
		{pattern: "POST " + k + "/batch/{op}", access: token, staleOK: true, maxBody: batch, minIndex: true, op: "key.batch", handle: s.guardMaskedOracle(s.batch)},
		// PII batches (pii.go); the handler authorizes.
		{pattern: "POST " + k + "/batch/pseudonym", access: token, staleOK: true, maxBody: batch, minIndex: true, op: "key.batch.pseudonym", handle: s.batchPII("pseudonym")},
		{pattern: "POST " + k + "/batch/fpe-encrypt", access: token, staleOK: true, maxBody: batch, minIndex: true, op: "key.batch.fpe_encrypt", handle: s.batchPII("fpe-encrypt")},
		{pattern: "POST " + k + "/batch/fpe-decrypt", access: token, staleOK: true, maxBody: batch, minIndex: true, op: "key.batch.fpe_decrypt", handle: s.batchPII("fpe-decrypt")},

		{pattern: "POST " + api.PathInternalUnsealShare, access: internal, sealedOK: true, maxBody: small, op: "sys.unseal_relayed", handle: s.relayedShare},
		{pattern: "POST " + api.PathInternalSeal, access: internal, sealedOK: true, maxBody: small, op: "sys.seal_relayed", handle: s.relayedSeal},
		{pattern: "POST " + api.PathInternalNodeShare, access: internal, sealedOK: true, maxBody: small, op: "sys.node_share", handle: s.nodeShare},
		// Not audited: anchors are themselves in the replicated log. Allowed
		// while sealed: records of unseal attempts are anchored at once.
		{pattern: "POST " + api.PathInternalAuditAnchor, access: internal, sealedOK: true, maxBody: small, handle: s.auditAnchor},
		{pattern: "POST " + api.PathInternalShareRequest, access: internal, sealedOK: true, maxBody: sharex.MaxMessageSize, op: "sys.share_request", handle: s.shareRequest},
		// Served by the unsealed leader itself, never forwarded: the
		// caller's certificate names the voter that lacks a share.
		{pattern: "POST " + api.PathInternalDealMeIn, access: internal, maxBody: small, op: "sys.deal_me_in", handle: s.dealMeIn},
		// A public key, asked for by the leader before a voter's first
		// share; sealed nodes answer (a voter is dealt while sealed).
		{pattern: "POST " + api.PathInternalDeliveryKey, access: internal, sealedOK: true, maxBody: small, op: "sys.delivery_key", handle: s.deliveryKey},
	}...)
}

func (s *Server) health(c *call) (any, error) {
	h := s.cfg.Sys.Health()
	code, err := healthStatus(c.r.URL.Query(), &h)
	if err != nil {
		return nil, err
	}
	writeJSON(c.w, code, &h)
	return handled, nil
}

// status answers the full view to a caller with the cluster capability
// (or a cluster node) and the public view to anyone else: an invalid or
// missing credential is not an error here, so load balancers and
// custodians need none.
func (s *Server) status(c *call) (any, error) {
	st := s.cfg.Sys.Status()
	if !s.seesTopology(c.r) {
		pub := st.Public()
		if s.cfg.NodeCertID != nil {
			if _, ok := s.cfg.NodeCertID(c.r); ok {
				pub.CallerRemoved = true // a CA node certificate, not a member (seesTopology)
			}
		}
		return pub, nil
	}
	return &st, nil
}

// seesTopology reports whether the caller of r may see addresses, the
// Raft view and HSM detail: a credential with the cluster capability (as
// for GET /v1/sys/cluster) or a cluster node's certificate.
func (s *Server) seesTopology(r *http.Request) bool {
	if r.Header.Get(api.HeaderAuthorization) == "" && r.Header.Get(api.HeaderVaultToken) == "" && (r.TLS == nil || len(r.TLS.PeerCertificates) == 0) {
		return false
	}
	if s.cfg.IsPeer != nil {
		if _, ok := s.cfg.IsPeer(r); ok {
			return true
		}
	}
	p, err := s.cfg.Auth.Authenticate(r)
	return err == nil && p.Allowed(policy.Cluster, "")
}

func (s *Server) init(c *call) (any, error) {
	var req api.InitRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	return s.cfg.Sys.Init(c.r.Context(), c.rid, req)
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
	if !s.seesTopology(c.r) {
		return st.Public(), nil
	}
	return &st, nil
}

func (s *Server) relayedShare(c *call) (any, error) {
	from, _ := s.cfg.IsPeer(c.r)
	var req api.UnsealRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	st, err := s.cfg.Sys.SubmitRelayedShare(c.r.Context(), from, req)
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
	var req api.SealRelay
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	return &api.WriteResponse{Index: s.cfg.Sys.SealRelayed(c.r.Context(), req.SealIndex)}, nil
}

func (s *Server) createKey(c *call) (any, error) {
	var req api.CreateKeyRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if err := c.authorize(policy.Create, req.Name); err != nil {
		return nil, err
	}
	if err := c.authorizeTags(req.Name, len(req.Tags) > 0); err != nil {
		return nil, err
	}
	if err := c.authorizeRetention(req.Name, req.Retention != ""); err != nil {
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
	// Only names the caller may read are listed, and only they shape the
	// page and its next cursor.
	return s.cfg.Keys.ListKeys(c.r.Context(), q.Get("after"), limit, func(name string) bool {
		return c.p.Allowed(policy.Read, name)
	})
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
	if err := c.authorizeTags(c.name(), req.Tags != nil); err != nil {
		return nil, err
	}
	if err := c.authorizeRetention(c.name(), req.Retention != nil); err != nil {
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

func (s *Server) dealMeIn(c *call) (any, error) {
	from, _ := s.cfg.IsPeer(c.r)
	if err := s.cfg.NodeShares.DealMeIn(from); err != nil {
		return nil, err
	}
	return &api.WriteResponse{}, nil
}

func (s *Server) deliveryKey(c *call) (any, error) {
	return s.cfg.NodeShares.DeliveryKey(c.r.Context())
}

func (s *Server) cluster(c *call) (any, error) {
	return s.cfg.Membership.ClusterInfo(), nil
}

// join needs no token only while the node is fresh: a new machine has no
// tokens yet and learns them by replication once it has joined.
func (s *Server) join(c *call) (any, error) {
	if !s.cfg.Membership.Fresh() {
		// Only a fresh node (always sealed) joins while sealed.
		if s.cfg.Sys.Sealed() {
			return nil, api.ErrSealed
		}
		p, err := s.cfg.Auth.Authenticate(c.r)
		if err != nil {
			return nil, err
		}
		c.p = p
		if err := c.authorize(policy.Cluster, ""); err != nil {
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

func (s *Server) rotateStatus(c *call) (any, error) { return s.cfg.Rotation.RotateRootStatus() }

func (s *Server) rotateStart(c *call) (any, error) {
	var req api.RotateRootStart
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	return s.cfg.Rotation.StartRootRotation(c.r.Context(), req)
}

func (s *Server) rotateSubmit(c *call) (any, error) {
	var req api.RotateRootSubmit
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	return s.cfg.Rotation.SubmitRotationShare(c.r.Context(), req)
}

func (s *Server) rotateCancel(c *call) (any, error) {
	var req api.RotateRootCancel
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	return s.cfg.Rotation.CancelRootRotation(c.r.Context(), req)
}
