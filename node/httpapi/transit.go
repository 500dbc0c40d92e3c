package httpapi

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/policy"
)

// The Vault transit-compatible API (docs/TRANSIT.md). Its routes are
// ordinary routes of the table: the same middleware authenticates them
// (Authorization or X-Vault-Token), checks the same capabilities on the
// same key names, applies the same body limits, forwards writes to the
// leader and writes the same audit records. transitShape then rewrites
// the reply into Vault's envelope ({"data":{...}}) and Vault's error
// body ({"errors":[...]}) with Vault-like HTTP statuses. The crypto runs
// in package keyops, as for keyd's own routes.

// transitStatusHeader carries, from a transit handler to transitShape,
// the status of a reply that has data but is not a success (a batch with
// failed items answers 400, as Vault does). It never leaves the process:
// transitShape deletes it.
const transitStatusHeader = "X-Keyd-Internal-Transit-Status"

func (s *Server) transitRoutes() []route {
	const small = api.MaxBodyBytes
	const batch = api.MaxBatchBodyBytes
	p := api.PathTransit
	type cap = policy.Capability
	// Crypto routes take a single item or a batch_input on one path, so
	// their body limit is the batch limit (as keyd's batch route);
	// keyops still limits each plaintext and message.
	crypto := func(pattern string, capability cap, op string, h func(*call) (any, error)) route {
		return route{pattern: "POST " + p + pattern, access: token, maxBody: batch, minIndex: true, staleOK: true,
			capability: capability, keyed: true, op: op, handle: h, outer: transitShape(http.StatusBadRequest)}
	}
	keyWrite := func(suffix string, capability cap, op string, h func(*call) (any, error)) route {
		return route{pattern: "POST " + p + "/keys/{name}" + suffix, access: token, maxBody: small, leader: true,
			capability: capability, keyed: true, op: op, handle: h, outer: transitShape(http.StatusBadRequest)}
	}
	rts := []route{
		// Guarded as keyd's /encrypt: no deterministic oracle for masked-only callers.
		crypto("/encrypt/{name}", policy.Encrypt, "transit.encrypt", s.guardMaskedOracle(s.transitEncrypt)),
		crypto("/decrypt/{name}", policy.Decrypt, "transit.decrypt", s.transitDecrypt),
		crypto("/rewrap/{name}", policy.Rewrap, "transit.rewrap", s.transitRewrap),
		crypto("/datakey/{kind}/{name}", policy.DataKey, "transit.datakey", s.transitDataKey),
		crypto("/sign/{name}", policy.Sign, "transit.sign", s.transitSign),
		crypto("/sign/{name}/{algorithm}", policy.Sign, "transit.sign", s.transitSign),
		crypto("/verify/{name}", policy.Verify, "transit.verify", s.transitVerify),
		crypto("/verify/{name}/{algorithm}", policy.Verify, "transit.verify", s.transitVerify),
		crypto("/hmac/{name}", policy.HMAC, "transit.hmac", s.transitHMAC),
		crypto("/hmac/{name}/{algorithm}", policy.HMAC, "transit.hmac", s.transitHMAC),

		keyWrite("", policy.Create, "transit.key.create", s.transitCreateKey),
		keyWrite("/rotate", policy.Rotate, "transit.key.rotate", s.transitRotateKey),
		keyWrite("/config", policy.Rotate, "transit.key.config", s.transitConfigKey),
		{pattern: "GET " + p + "/keys/{name}", access: token, maxBody: 0, minIndex: true, capability: policy.Read,
			keyed: true, op: "transit.key.read", handle: s.transitReadKey, outer: transitShape(http.StatusNotFound)},
	}
	// Vault takes writes as POST or PUT (its Go client's Logical().Write
	// sends PUT): every POST route is also a PUT route.
	for _, rt := range rts {
		if rest, ok := strings.CutPrefix(rt.pattern, "POST "); ok {
			put := rt
			put.pattern = "PUT " + rest
			rts = append(rts, put)
		}
	}
	return rts
}

// transitData wraps data in Vault's success envelope.
func transitData(data any) *api.TransitResponse {
	return &api.TransitResponse{Data: data}
}

// transitWriter holds a route's reply so transitShape can rewrite it.
// Replies are bounded (the largest is a batch of api.MaxBatchItems).
type transitWriter struct {
	w      http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (t *transitWriter) Header() http.Header { return t.w.Header() }

func (t *transitWriter) WriteHeader(code int) {
	if t.status == 0 {
		t.status = code
	}
}

func (t *transitWriter) Write(b []byte) (int, error) {
	if t.status == 0 {
		t.status = http.StatusOK
	}
	return t.body.Write(b)
}

// transitShape turns keyd's replies into Vault's: an api.Error becomes
// {"errors":["<code>: <message>"]} with the status Vault would use
// (keyNotFound: the status of a missing key, 400 on crypto routes as in
// Vault, 404 on a key read); a success passes through (handlers already
// return Vault's envelope) with the status a handler may have set in
// transitStatusHeader. A reply that is already Vault-shaped (relayed from
// the leader's transit route) passes through unchanged.
// vaultWrapTTLHeader asks Vault for response wrapping.
const vaultWrapTTLHeader = "X-Vault-Wrap-TTL"

func transitShape(keyNotFound int) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get(vaultWrapTTLHeader) != "" {
				// A client asking for response wrapping expects a wrapping
				// token, never the secret itself in the reply: refuse
				// rather than answer unwrapped.
				writeJSON(w, http.StatusBadRequest, &api.TransitErrors{Errors: []string{string(api.CodeBadRequest) + ": response wrapping (" + vaultWrapTTLHeader + ") is not supported by keyd"}})
				return
			}
			tw := &transitWriter{w: w}
			next.ServeHTTP(tw, r)
			status := tw.status
			if status == 0 {
				status = http.StatusOK
			}
			h := w.Header()
			override := h.Get(transitStatusHeader)
			h.Del(transitStatusHeader)
			if status == http.StatusOK {
				if n, err := strconv.Atoi(override); err == nil && n >= 200 && n <= 599 {
					status = n
				}
				w.WriteHeader(status)
				_, _ = w.Write(tw.body.Bytes())
				return
			}
			var e api.Error
			if json.Unmarshal(tw.body.Bytes(), &e) != nil || e.Code == "" {
				// Already Vault's shape, or not JSON: as it is.
				w.WriteHeader(status)
				_, _ = w.Write(tw.body.Bytes())
				return
			}
			msg := transitMessage(&e)
			writeJSON(w, transitStatus(e.Code, status, keyNotFound), &api.TransitErrors{Errors: []string{msg}})
		})
	}
}

// transitMessage is one error line: keyd's stable code, then its message
// with keyd's text form named as the transit API's.
func transitMessage(e *api.Error) string {
	msg := string(e.Code) + ": " + strings.ReplaceAll(e.Message, "keyd:vN:<base64>", "vault:vN:<base64>")
	if e.RequestID != "" {
		msg += " (reference " + e.RequestID + ")"
	}
	if e.Leader != "" {
		msg += " (leader " + e.Leader + ")"
	}
	return msg
}

// transitStatus is Vault's status for a keyd error code: a caller's
// mistake is 400, a missing or unusable token 403 ("permission denied"),
// a missing key keyNotFound; everything else keeps keyd's status.
func transitStatus(code api.Code, status, keyNotFound int) int {
	switch code {
	case api.CodeBadRequest, api.CodeDecrypt, api.CodeUnsupported, api.CodeVersionDisabled,
		api.CodeKeyDisabled, api.CodeKeyPendingDeletion, api.CodeExists, api.CodeConflict:
		return http.StatusBadRequest
	case api.CodeUnauthorized, api.CodeForbidden:
		return http.StatusForbidden
	case api.CodeNotFound:
		return keyNotFound
	case api.CodeSealed, api.CodeNotLeader, api.CodeUnavailable, api.CodeIndexTimeout:
		return http.StatusServiceUnavailable
	}
	return status
}

func transitBad(msg string) error { return &api.Error{Code: api.CodeBadRequest, Message: msg} }

// Key types: Vault's names and keyd's.
var (
	vaultToKeydType = map[string]string{
		"aes256-gcm96":      "aes256-gcm",
		"chacha20-poly1305": "xchacha20-poly1305",
		"ed25519":           "ed25519",
		"ecdsa-p256":        "ecdsa-p256",
		"hmac":              "hmac-sha256",
	}
	keydToVaultType = map[string]string{
		"aes256-gcm":         "aes256-gcm96",
		"xchacha20-poly1305": "chacha20-poly1305",
		"ed25519":            "ed25519",
		"ecdsa-p256":         "ecdsa-p256",
		"hmac-sha256":        "hmac",
	}
)

// parseRotatePeriod reads Vault's auto_rotate_period: a duration string
// ("720h", "30m") or a number of seconds. It returns keyd's rotation
// period ("" for none), and whether the field was present.
func parseRotatePeriod(v any) (string, bool, error) {
	const maxSeconds = 100 * 365 * 24 * 3600
	var d time.Duration
	switch x := v.(type) {
	case nil:
		return "", false, nil
	case float64:
		if x < 0 || x > maxSeconds || x != float64(int64(x)) {
			return "", true, transitBad("auto_rotate_period must be a whole number of seconds or a duration like 720h")
		}
		d = time.Duration(x) * time.Second
	case string:
		if n, err := strconv.ParseInt(x, 10, 64); err == nil {
			// Checked before multiplying: n seconds would wrap around.
			if n < 0 {
				return "", true, transitBad("auto_rotate_period must not be negative")
			}
			if n > maxSeconds {
				return "", true, transitBad("auto_rotate_period must be a whole number of seconds or a duration like 720h")
			}
			d = time.Duration(n) * time.Second
		} else if d, err = time.ParseDuration(x); err != nil {
			return "", true, transitBad("auto_rotate_period must be a whole number of seconds or a duration like 720h")
		}
		if d < 0 {
			return "", true, transitBad("auto_rotate_period must not be negative")
		}
	default:
		return "", true, transitBad("auto_rotate_period must be a whole number of seconds or a duration like 720h")
	}
	if d == 0 {
		return "0", true, nil
	}
	return d.String(), true, nil
}

func (s *Server) transitCreateKey(c *call) (any, error) {
	var req api.TransitCreateKeyRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	typ := req.Type
	if typ == "" {
		typ = "aes256-gcm96"
	}
	kt, ok := vaultToKeydType[typ]
	if !ok {
		return nil, transitBad("key type " + strconv.Quote(typ) + " is not supported by keyd; supported: aes256-gcm96, chacha20-poly1305, ed25519, ecdsa-p256, hmac")
	}
	switch {
	case req.Derived || req.ConvergentEncryption:
		return nil, transitBad("derived keys and convergent encryption are not supported by keyd")
	case req.Exportable || req.AllowPlaintextBackup:
		return nil, transitBad("keyd never exports key material: exportable and allow_plaintext_backup are not supported")
	case req.ManagedKeyName != "" || req.ManagedKeyID != "":
		return nil, transitBad("managed keys are not supported by keyd")
	case req.KeySize != 0 && !(typ == "hmac" && req.KeySize == 32):
		return nil, transitBad("key_size is not supported (keyd's hmac keys are 32 bytes)")
	}
	period, _, err := parseRotatePeriod(req.AutoRotatePeriod)
	if err != nil {
		return nil, err
	}
	if period == "0" {
		period = ""
	}
	info, err := s.cfg.Keys.CreateKey(c.r.Context(), c.rid, api.CreateKeyRequest{Name: c.name(), Type: kt, RotationPeriod: period})
	if err != nil {
		if errorFor(err).Code != api.CodeExists {
			return nil, err
		}
		// Vault answers a create of an existing key with that key,
		// whatever the options; so does keyd, on the leader's state, to a
		// caller that may read it. A create-only caller gets keyd's
		// key_exists (Vault would want update on the path): the
		// metadata is read's.
		if c.p == nil || !c.p.Allowed(policy.Read, c.name()) {
			return nil, err
		}
		if info, err = s.cfg.Keys.ReadKey(c.r.Context(), c.name(), false); err != nil {
			return nil, err
		}
	}
	return s.transitKeyReply(info)
}

func (s *Server) transitReadKey(c *call) (any, error) {
	info, err := s.cfg.Keys.ReadKey(c.r.Context(), c.name(), false)
	if err != nil {
		return nil, err
	}
	return s.transitKeyReply(info)
}

func (s *Server) transitRotateKey(c *call) (any, error) {
	var req struct{}
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	info, err := s.cfg.Keys.RotateKey(c.r.Context(), c.rid, c.name())
	if err != nil {
		return nil, err
	}
	return s.transitKeyReply(info)
}

func (s *Server) transitConfigKey(c *call) (any, error) {
	var req api.TransitKeyConfigRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	var out api.KeyConfigRequest
	switch {
	case req.MinEncryptionVersion != nil && *req.MinEncryptionVersion != 0:
		return nil, transitBad("min_encryption_version is not supported: keyd always encrypts with the latest version")
	case req.DeletionAllowed != nil && *req.DeletionAllowed:
		return nil, transitBad("deletion_allowed is not supported: delete keys with keyd's schedule-deletion")
	case req.Exportable != nil && *req.Exportable, req.AllowPlaintextBackup != nil && *req.AllowPlaintextBackup:
		return nil, transitBad("keyd never exports key material: exportable and allow_plaintext_backup are not supported")
	}
	if v := req.MinDecryptionVersion; v != nil {
		if *v < 0 || int64(*v) > int64(^uint32(0)) {
			return nil, transitBad("min_decryption_version is out of range")
		}
		m := uint32(*v)
		out.MinDecryptionVersion = &m
	}
	period, present, err := parseRotatePeriod(req.AutoRotatePeriod)
	if err != nil {
		return nil, err
	}
	if present {
		out.RotationPeriod = &period
	}
	var info *api.KeyInfo
	if out.MinDecryptionVersion == nil && out.RotationPeriod == nil {
		info, err = s.cfg.Keys.ReadKey(c.r.Context(), c.name(), false)
	} else {
		info, err = s.cfg.Keys.ConfigureKey(c.r.Context(), c.rid, c.name(), out)
	}
	if err != nil {
		return nil, err
	}
	return s.transitKeyReply(info)
}

// transitKeyReply renders keyd's key metadata as Vault's key read.
func (s *Server) transitKeyReply(info *api.KeyInfo) (any, error) {
	vt, ok := keydToVaultType[info.Type]
	if !ok {
		vt = info.Type
	}
	out := &api.TransitKeyInfo{
		Name: info.Name, Type: vt, Keys: make(map[string]any, len(info.Versions)),
		LatestVersion: info.LatestVersion, MinDecryptionVersion: info.MinDecryptionVersion,
		KeydState: info.State,
	}
	if info.RotationPeriod != "" {
		if d, err := time.ParseDuration(info.RotationPeriod); err == nil {
			out.AutoRotatePeriod = int64(d / time.Second)
		}
	}
	switch vt {
	case "aes256-gcm96", "chacha20-poly1305":
		out.SupportsEncryption, out.SupportsDecryption = true, true
	case "ed25519", "ecdsa-p256":
		out.SupportsSigning = true
	}
	for _, v := range info.Versions {
		key := strconv.FormatUint(uint64(v.Version), 10)
		if len(v.PublicKey) == 0 {
			out.Keys[key] = v.CreatedAt.Unix()
			continue
		}
		pk, err := transitPublicKey(v.PublicKey)
		if err != nil {
			return nil, err
		}
		out.Keys[key] = &api.TransitPublicKey{Name: vt, PublicKey: pk, CreationTime: v.CreatedAt.UTC().Format(time.RFC3339Nano)}
	}
	return transitData(out), nil
}

// transitPublicKey renders a PKIX DER public key as Vault does: Ed25519
// as the base64 of its 32 bytes, ECDSA as PEM.
func transitPublicKey(der []byte) (string, error) {
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return "", err
	}
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return base64.StdEncoding.EncodeToString(k), nil
	case *ecdsa.PublicKey:
		return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
	}
	return "", errors.New("httpapi: transit: unexpected public key type")
}
