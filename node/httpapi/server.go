// Package httpapi is keyd's HTTP layer: a route table, one middleware that
// does authentication, size limits, leader forwarding, read-your-writes
// waits and error writing, and thin handlers over small interfaces. Other
// API shapes (a Vault transit-compatible one is planned) are meant to be
// further small adapters over the same interfaces.
package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/audit"
	"github.com/keyd/keyd/keyring"
	"github.com/keyd/keyd/metrics"
	"github.com/keyd/keyd/policy"
	"github.com/keyd/keyd/sharex"
)

// Sys is the seal and cluster-status side of a node.
type Sys interface {
	Health() api.Health
	Status() api.SealStatus
	Init(ctx context.Context, rid string, req api.InitRequest) (*api.InitResponse, error)
	SubmitShare(ctx context.Context, share string, relayed bool) (api.SealStatus, error)
	// SubmitRelayedShare counts a share peer `from` relayed (in the clear
	// under TLS, or sealed to this node's delivery key), given to it at
	// its applied index req.GivenAt.
	SubmitRelayedShare(ctx context.Context, from string, req api.UnsealRequest) (api.SealStatus, error)
	Seal(ctx context.Context) error
	// SealRelayed seals this node for an operator's seal relayed by a
	// peer, and returns the seal's log index (see node.SealRelayed).
	SealRelayed(ctx context.Context, sealIndex uint64) uint64
	// Sealed reports whether this node is sealed (an uninitialised node
	// is sealed too).
	Sealed() bool
}

// Keys is key lifecycle: writes go through Raft on the leader.
type Keys interface {
	CreateKey(ctx context.Context, rid string, req api.CreateKeyRequest) (*api.KeyInfo, error)
	RotateKey(ctx context.Context, rid, name string) (*api.KeyInfo, error)
	SetKeyEnabled(ctx context.Context, rid, name string, enabled bool) (*api.KeyInfo, error)
	ConfigureKey(ctx context.Context, rid, name string, req api.KeyConfigRequest) (*api.KeyInfo, error)
	ScheduleDeletion(ctx context.Context, rid, name string, window time.Duration) (*api.KeyInfo, error)
	CancelDeletion(ctx context.Context, rid, name string) (*api.KeyInfo, error)
	ReadKey(ctx context.Context, name string, consistent bool) (*api.KeyInfo, error)
	// ListKeys pages through the names visible accepts; hidden names
	// shape neither the page nor its cursor.
	ListKeys(ctx context.Context, after string, limit int, visible func(name string) bool) (*api.KeyList, error)
}

// Crypto hands out unwrapped keys for crypto calls, from memory.
type Crypto interface {
	// AcquireCryptoKey returns a key and a release function the caller
	// calls once it no longer uses the key (its material is zeroed only
	// after the last release).
	AcquireCryptoKey(name string) (*keyring.Key, func(), error)
}

// NodeShares is the node-to-node side of node shares: receiving a dealt
// share from the leader and answering a rejoining peer's share request.
type NodeShares interface {
	ReceiveNodeShare(ctx context.Context, from string, d api.NodeShareDelivery) error
	AnswerShareRequest(ctx context.Context, from string, body []byte) (*sharex.Response, error)
	// DealMeIn asks the leader to deal node shares now, for a voter
	// (from) that holds no share of the current dealing.
	DealMeIn(from string) error
	// DeliveryKey returns this node's delivery public key (the leader
	// pins it before dealing this node its first share).
	DeliveryKey(ctx context.Context) (*api.DeliveryKey, error)
}

// RootRotation is the custodians' root rotation, on the leader.
type RootRotation interface {
	RotateRootStatus() (*api.RotateRootStatus, error)
	StartRootRotation(ctx context.Context, req api.RotateRootStart) (*api.RotateRootStatus, error)
	SubmitRotationShare(ctx context.Context, req api.RotateRootSubmit) (*api.RotateRootStatus, error)
	CancelRootRotation(ctx context.Context, req api.RotateRootCancel) (*api.RotateRootStatus, error)
}

// Membership is the topology and join/remove side of a node.
type Membership interface {
	ClusterInfo() *api.ClusterInfo
	Fresh() bool
	JoinSeeds(ctx context.Context, seeds []string) (*api.JoinResponse, error)
	RemoveNode(ctx context.Context, rid, id string) error
}

// Cluster is what the middleware needs of Raft.
type Cluster interface {
	IsLeader() bool
	// Forward relays the request to the leader and writes its reply; it
	// returns an error, unwritten, when no leader can be reached.
	Forward(w http.ResponseWriter, r *http.Request, body []byte) error
	WaitApplied(ctx context.Context, index uint64) error
	AppliedIndex() uint64
}

// Principal is an authenticated caller and what its policies allow.
type Principal interface {
	// ID names the caller in the audit log ("token:<accessor>",
	// "cert:<identity prefix>"); never a secret.
	ID() string
	Policies() []string
	Allowed(c policy.Capability, key string) bool
	AllowedPattern(c policy.Capability, pattern string) bool
}

// Authenticator resolves the caller of a request (bearer token or client
// certificate) without allocating.
type Authenticator interface {
	Authenticate(r *http.Request) (Principal, error)
}

// Auditor writes audit records. Log returns only once the record is
// durable; Healthy reports whether the sink still writes, so key
// operations can be refused before they run rather than served unaudited.
type Auditor interface {
	Log(ctx context.Context, r audit.Record) error
	HMAC(value []byte) string
	Healthy() bool
}

// PeerCheck reports whether a request comes from a cluster node (a
// verified node certificate) and which.
type PeerCheck func(r *http.Request) (nodeID string, ok bool)

// Config wires a Server.
type Config struct {
	Sys    Sys
	Keys   Keys
	Crypto Crypto
	Cluster
	NodeShares NodeShares
	Membership Membership
	Rotation   RootRotation
	Auth       Authenticator
	IsPeer     PeerCheck
	// Audit records every request that touches a key or the system; nil
	// turns auditing off (tests of the HTTP layer only).
	Audit Auditor
	// Admin serves identity, token, policy and audit-log management.
	Admin  Admin
	Logger *slog.Logger
	// Metrics, when set, counts and times every request and is served at
	// GET /v1/sys/metrics; UnauthenticatedMetrics serves it without a token.
	Metrics                *metrics.Metrics
	UnauthenticatedMetrics bool
	// Rand is the randomness for nonces and data keys (crypto/rand by default).
	Rand io.Reader

	// AuditTrail serves the audit anchors and keys of every node.
	AuditTrail AuditTrail
	// Snapshots serves operator snapshot save and restore.
	Snapshots Snapshots
	// Usage tracks key and credential use and serves the usage report
	// (report.go); nil: not tracked.
	Usage Usage
	// LeaderContactLost reports whether this node has been cut off from
	// the leader for longer than its lease, so its token table may miss
	// revocations. Such a node refuses token requests on every route but
	// crypto calls and seal. nil: never.
	LeaderContactLost func() bool
	// NodeCertID returns the node id of a request's client certificate
	// when it chains to the cluster CA, whether or not that node is still
	// a member (IsPeer answers for members only). nil: none.
	NodeCertID func(*http.Request) (string, bool)
	// KV and Vault serve versioned secrets and tokenization (kv.go);
	// nil: their routes are not served.
	KV    KV
	Vault Vault
}

// Server is the HTTP handler of one node.
type Server struct {
	cfg Config
	mux *http.ServeMux
}

// New builds the handler.
func New(cfg Config) *Server {
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux()}
	for _, rt := range append(s.routes(), s.reportRoutes()...) {
		h := s.wrap(rt)
		if rt.outer != nil {
			h = rt.outer(h)
		}
		s.mux.Handle(rt.pattern, h)
	}
	if cfg.KV != nil && cfg.Vault != nil {
		for _, rt := range s.kvRoutes() {
			s.mux.Handle(rt.pattern, s.wrap(rt))
		}
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &api.Error{Code: api.CodeResourceNotFound, Message: "no such endpoint", Status: http.StatusNotFound}, "", cfg.Logger)
	})
	return s
}

// sealed reports whether the node is sealed. A Server without Sys (tests
// of the HTTP layer alone) has no seal.
func (s *Server) sealed() bool { return s.cfg.Sys != nil && s.cfg.Sys.Sealed() }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// access classes of routes.
type access int

const (
	open     access = iota // no token (health, status, init, unseal)
	token                  // bearer token
	internal               // cluster node certificate
)

// route declares one endpoint: who may call it and with which
// capability, how large its body may be, whether it must run on the
// leader, whether it honours a minimum index, and its audit name.
type route struct {
	pattern  string
	access   access
	maxBody  int64
	leader   bool // forwarded to the leader when received by a follower
	minIndex bool
	// capability checked by the middleware: on the {name} key when keyed,
	// as a system capability otherwise. Empty: the handler checks.
	capability policy.Capability
	keyed      bool
	// sealedOK routes are served while this node is sealed: health,
	// status, init, unseal, seal, a fresh node's join and the node-to-node
	// routes that unsealing and warm rejoin use. Every other route answers
	// `sealed` and does nothing.
	sealedOK bool
	// streamBody routes get the body as a size-limited reader
	// (call.bodyReader) instead of a buffer: the handler checks who may
	// send it before a byte of it is read (snapshot restore: up to
	// api.MaxSnapshotBytes).
	streamBody bool
	// staleOK token routes are served on a node cut off from the leader
	// (crypto calls, from the applied state; seal). See
	// Config.LeaderContactLost.
	staleOK bool
	// op names the request in the audit log; empty: not audited.
	op     string
	handle func(c *call) (any, error)
	// outer, when set, wraps the whole route, middleware included: another
	// API shape's envelope and error format (transit.go).
	outer func(http.Handler) http.Handler
}

// call is one request as handlers see it.
type call struct {
	r    *http.Request
	w    http.ResponseWriter
	body []byte
	// bodyReader is the unread body of a streamBody route.
	bodyReader io.Reader
	rid        string
	p          Principal // nil on open and internal routes
	// detail is what the handler adds to the audit record.
	detail auditDetail
}

// authorize checks a capability the middleware could not (a key name in
// the body, a batch operation).
func (c *call) authorize(cap policy.Capability, key string) error {
	if c.p == nil || !c.p.Allowed(cap, key) {
		return forbidden(cap)
	}
	return nil
}

func forbidden(cap policy.Capability) error {
	return &api.Error{Code: api.CodeForbidden, Message: "the caller's policies do not grant " + string(cap)}
}

func (c *call) name() string { return c.r.PathValue("name") }

// decode parses the JSON body strictly into v. An empty body decodes as {}.
func (c *call) decode(v any) error { return decodeBody(c.body, v) }

func decodeBody(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if fastDecode(body, v) { // the hot batch bodies; fastjson.go
		return nil
	}
	return decodeJSON(body, v)
}

// decodeJSON is decode with encoding/json alone.
func decodeJSON(body []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return jsonError(err)
	}
	if d.More() {
		return &api.Error{Code: api.CodeBadRequest, Message: "request body holds more than one JSON value"}
	}
	return nil
}

// jsonError describes a decoding failure without echoing request bytes,
// which may be secret.
func jsonError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return &api.Error{Code: api.CodeBadRequest, Message: "malformed JSON at offset " + strconv.FormatInt(se.Offset, 10)}
	case errors.As(err, &te):
		return &api.Error{Code: api.CodeBadRequest, Message: "field " + strconv.Quote(te.Field) + " must be " + te.Type.String()}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &api.Error{Code: api.CodeBadRequest, Message: "truncated JSON"}
	}
	var msg = err.Error()
	if len(msg) > 21 && msg[:20] == "json: unknown field " {
		return &api.Error{Code: api.CodeBadRequest, Message: "unknown field " + msg[20:]}
	}
	return &api.Error{Code: api.CodeBadRequest, Message: "malformed JSON (binary fields are base64)"}
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (s *Server) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer s.track(rt, &w)()
		rid := r.Header.Get(api.HeaderRequestID)
		if len(rid) > 128 {
			c := &call{r: r, w: w, detail: auditDetail{longRID: rid}}
			s.finish(c, rt, nil, &api.Error{Code: api.CodeBadRequest, Message: "request id longer than 128 bytes"})
			return
		}
		c := &call{r: r, w: w, rid: rid}
		if !rt.sealedOK && s.sealed() {
			// Refused before authentication, forwarding or any work: a
			// sealed node proposes nothing and serves nothing but the
			// seal routes. Not audited: the audit sink may itself be
			// sealed, and the reply must stay the stable `sealed`.
			writeError(w, api.ErrSealed, rid, s.cfg.Logger)
			return
		}
		switch rt.access {
		case token:
			p, err := s.cfg.Auth.Authenticate(r)
			if err != nil {
				s.finish(c, rt, nil, err)
				return
			}
			c.p = p
			if rt.capability != "" {
				key := ""
				if rt.keyed {
					key = r.PathValue("name")
				}
				if !p.Allowed(rt.capability, key) {
					s.finish(c, rt, nil, forbidden(rt.capability))
					return
				}
			}
			if !rt.staleOK && s.cfg.LeaderContactLost != nil && s.cfg.LeaderContactLost() {
				s.finish(c, rt, nil, errCutOff)
				return
			}
		case internal:
			if _, ok := s.cfg.IsPeer(r); !ok {
				s.finish(c, rt, nil, &api.Error{Code: api.CodeForbidden, Message: "node certificate required"})
				return
			}
		}
		if rt.op != "" && s.cfg.Audit != nil && !s.cfg.Audit.Healthy() {
			// Refuse rather than serve unaudited.
			writeError(w, errAuditDown, rid, s.cfg.Logger)
			return
		}
		if rt.streamBody {
			c.bodyReader = http.MaxBytesReader(w, r.Body, rt.maxBody)
		} else {
			buf := bufPool.Get().(*bytes.Buffer)
			buf.Reset()
			defer bufPool.Put(buf)
			if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, rt.maxBody)); err != nil {
				s.finish(c, rt, nil, bodyReadError(err, rt.maxBody))
				return
			}
			c.body = buf.Bytes()
		}
		if rt.leader && !s.cfg.IsLeader() {
			if r.Header.Get(api.HeaderForwarded) != "" {
				writeError(w, api.ErrNotLeader, rid, s.cfg.Logger)
				return
			}
			// The leader authenticates, authorizes and audits the write.
			if err := s.cfg.Forward(w, r, c.body); err != nil {
				writeError(w, err, rid, s.cfg.Logger)
			}
			return
		}
		if rt.minIndex {
			if v := r.Header.Get(api.HeaderMinIndex); v != "" {
				idx, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					s.finish(c, rt, nil, &api.Error{Code: api.CodeBadRequest, Message: api.HeaderMinIndex + " must be an unsigned integer"})
					return
				}
				if err := s.cfg.WaitApplied(r.Context(), idx); err != nil {
					s.finish(c, rt, nil, err)
					return
				}
			}
		}
		if rid != "" && c.p != nil {
			// The id deduplicates this caller's retries of this request
			// only; see RequestScope.
			c.r = r.WithContext(WithRequestScope(r.Context(), RequestScope{Identity: c.p.ID(), Digest: requestDigest(rt.op, r, c.body)}))
		}
		resp, err := rt.handle(c)
		s.finish(c, rt, resp, err)
	})
}

// bodyReadError turns a failed body read into the caller's error.
func bodyReadError(err error, limit int64) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &api.Error{Code: api.CodeTooLarge, Message: "request body exceeds " + strconv.FormatInt(limit, 10) + " bytes"}
	}
	return &api.Error{Code: api.CodeBadRequest, Message: "could not read request body"}
}

// stream is a reply body a handler cannot hold in memory (the audit
// file); finish writes it after the request is audited.
type stream struct {
	contentType string
	write       func(io.Writer) error
}

var errCutOff = &api.Error{Code: api.CodeUnavailable, Message: "this node has lost contact with the leader and may have missed token revocations; only crypto calls are served here, use another node"}

var errAuditDown = &api.Error{Code: api.CodeUnavailable, Message: "audit log cannot be written; key operations are refused"}

// finish audits the request (before anything is sent) and writes the
// reply. If the audit record cannot be written the caller gets an error
// instead of the result.
func (s *Server) finish(c *call, rt route, resp any, err error) {
	s.noteUsage(c, rt, resp, err)
	if _, ok := resp.(*handledT); ok && err == nil {
		return
	}
	if rt.op != "" && s.cfg.Audit != nil {
		if aerr := s.audit(c, rt, resp, err); aerr != nil {
			if s.cfg.Logger != nil {
				s.cfg.Logger.Error("audit write failed; refusing the reply", "op", rt.op, "err", aerr)
			}
			writeError(c.w, errAuditDown, c.rid, s.cfg.Logger)
			return
		}
	}
	if err != nil {
		writeError(c.w, err, c.rid, s.cfg.Logger)
		return
	}
	if st, ok := resp.(stream); ok {
		c.w.Header().Set("Content-Type", st.contentType)
		c.w.WriteHeader(http.StatusOK)
		if err := st.write(c.w); err != nil && s.cfg.Logger != nil {
			s.cfg.Logger.Warn("stream ended early", "op", rt.op, "err", err)
		}
		return
	}
	if info, ok := resp.(*api.KeyInfo); ok {
		c.w.Header().Set(api.HeaderIndex, strconv.FormatUint(info.Index, 10))
	}
	writeJSON(c.w, http.StatusOK, resp)
}

func (s *Server) audit(c *call, rt route, resp any, err error) error {
	rec := audit.Record{
		Op: rt.op, Key: c.r.PathValue("name"), Outcome: "ok",
		RequestID: c.rid, Source: c.r.RemoteAddr,
	}
	if err != nil {
		rec.Outcome = string(errorFor(err).Code)
	} else {
		rec.Version = versionOf(resp)
	}
	if c.p != nil {
		rec.Identity = c.p.ID()
	} else if id, ok := s.cfg.IsPeer(c.r); ok {
		rec.Identity = "node:" + id
	} else {
		rec.Identity = "anonymous"
	}
	if f := c.r.Header.Get(api.HeaderForwarded); f != "" {
		rec.Source += " via " + f
	}
	if len(c.body) > 0 {
		// The body may hold plaintext, ciphertext, context or a share:
		// only its keyed HMAC is recorded.
		rec.Hashed = map[string]string{"request": s.cfg.Audit.HMAC(c.body)}
	}
	if rt.op == "sys.init" && c.rid != "" {
		// An init's request id is the credential of its retry (which
		// answers with the init's secrets): only its keyed HMAC.
		rec.RequestID = ""
		if rec.Hashed == nil {
			rec.Hashed = map[string]string{}
		}
		rec.Hashed["request_id"] = s.cfg.Audit.HMAC([]byte(c.rid))
	}
	s.addDetail(c, &rec, resp)
	// The record is written even when the client hung up: the operation
	// may have run.
	return s.cfg.Audit.Log(context.WithoutCancel(c.r.Context()), rec)
}

func versionOf(resp any) uint32 {
	switch v := resp.(type) {
	case *api.EncryptResponse:
		if v != nil {
			return v.Version
		}
	case *api.DecryptResponse:
		if v != nil {
			return v.Version
		}
	case *api.SignResponse:
		if v != nil {
			return v.Version
		}
	case *api.DataKeyResponse:
		if v != nil {
			return v.Version
		}
	case *api.KeyInfo:
		if v != nil {
			return v.LatestVersion
		}
	case *api.PseudonymResponse:
		if v != nil {
			return v.Version
		}
	case *api.FPEResponse:
		if v != nil {
			return v.Version
		}
	}
	return 0
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	bp := encPool.Get().(*[]byte)
	if b, ok := fastEncode((*bp)[:0], v); ok { // the batch replies; fastjson.go
		// The same bytes as below; with their length known the reply
		// needs no chunked framing (one write fewer).
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(status)
		_, _ = w.Write(b)
		if cap(b) <= maxPooledEncoding {
			*bp = b
		}
		encPool.Put(bp)
		return
	}
	encPool.Put(bp)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// encPool holds fastEncode's buffers; one over maxPooledEncoding is left
// to the collector.
var encPool = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledEncoding = 1 << 20

// writeError sends err as an api.Error. Errors without a code become a
// generic internal error; the detail goes to the log with a reference id,
// never to the caller.
func writeError(w http.ResponseWriter, err error, rid string, log *slog.Logger) {
	e := errorFor(err)
	if e.Code == api.CodeInternal {
		ref := rid
		if ref == "" {
			var b [8]byte
			_, _ = rand.Read(b[:])
			ref = hex.EncodeToString(b[:])
		}
		if log != nil {
			log.Error("internal error", "ref", ref, "err", err)
		}
		e = &api.Error{Code: api.CodeInternal, Message: "internal error", RequestID: ref}
	}
	status := e.Status
	if status == 0 {
		status = api.StatusFor(e.Code)
	}
	writeJSON(w, status, e)
}
