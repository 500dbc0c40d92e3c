package node

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/node/httpapi"
	"github.com/keyd/keyd/policy"
)

// HeaderCertIdentity carries, from a follower to the leader, the
// certificate identity of a forwarded request. The leader honours it only
// on requests from a verified cluster node.
const HeaderCertIdentity = "X-Keyd-Cert-Identity"

// principal is an authenticated caller: a token or a certificate
// identity, with its compiled policies. Principals are immutable and
// shared by every request of that caller.
type principal struct {
	id        string
	policies  []string
	set       *policy.Set
	expiresAt time.Time
}

func (p *principal) ID() string         { return p.id }
func (p *principal) Policies() []string { return p.policies }
func (p *principal) Allowed(c policy.Capability, key string) bool {
	return p.set.Allowed(c, key)
}
func (p *principal) AllowedPattern(c policy.Capability, pattern string) bool {
	return p.set.AllowedPattern(c, pattern)
}

var _ httpapi.Principal = (*principal)(nil)

// principals is an immutable lookup table swapped whole when tokens,
// identities or policies change, so the per-request check takes no lock.
type principals struct {
	byToken map[[32]byte]*principal
	byCert  map[[32]byte]*principal
}

type authenticator struct {
	set atomic.Pointer[principals]
	// isPeer verifies a cluster node certificate (for forwarded
	// certificate identities).
	isPeer func(r *http.Request) (string, bool)
}

// resolvePolicies compiles named policies: built-in roles first, then the
// stored documents. Unknown names grant nothing.
func resolvePolicies(names []string, stored map[string]*policy.Policy) *policy.Set {
	var ps []*policy.Policy
	for _, name := range names {
		if p, ok := policy.Builtin(name); ok {
			ps = append(ps, p)
		} else if p, ok := stored[name]; ok {
			ps = append(ps, p)
		}
	}
	return policy.Compile(ps...)
}

// storedPolicies parses every stored policy document.
func storedPolicies(f *fsm.FSM) (map[string]*policy.Policy, error) {
	recs, err := f.Policies()
	if err != nil {
		return nil, err
	}
	out := make(map[string]*policy.Policy, len(recs))
	for _, r := range recs {
		p, err := policy.Parse(r.Name, r.Doc)
		if err != nil {
			continue // validated on write; a bad document grants nothing
		}
		out[r.Name] = p
	}
	return out, nil
}

func (a *authenticator) reload(f *fsm.FSM) error {
	stored, err := storedPolicies(f)
	if err != nil {
		return err
	}
	toks, err := f.Tokens()
	if err != nil {
		return err
	}
	ids, err := f.Identities()
	if err != nil {
		return err
	}
	s := &principals{byToken: make(map[[32]byte]*principal, len(toks)), byCert: make(map[[32]byte]*principal, len(ids))}
	for _, r := range toks {
		if len(r.Hash) != 32 {
			continue
		}
		s.byToken[[32]byte(r.Hash)] = &principal{
			id: "token:" + Accessor(r.Hash), policies: r.Policies,
			set: resolvePolicies(r.Policies, stored), expiresAt: r.ExpiresAt,
		}
	}
	for _, r := range ids {
		h, err := hex.DecodeString(r.ID)
		if err != nil || len(h) != 32 {
			continue
		}
		s.byCert[[32]byte(h)] = &principal{id: "cert:" + r.ID[:16], policies: r.Policies, set: resolvePolicies(r.Policies, stored)}
	}
	a.set.Store(s)
	return nil
}

// Accessor names a token by the first 16 hex digits of its hash.
func Accessor(hash []byte) string { return hex.EncodeToString(hash)[:16] }

// CertIdentity is the identity of a client certificate: the SHA-256 of
// its SubjectPublicKeyInfo. The TLS handshake proves the client holds the
// private key; the certificate need not chain to any CA (as in MinIO KES).
func CertIdentity(c *x509.Certificate) [32]byte { return sha256.Sum256(c.RawSubjectPublicKeyInfo) }

// maxTokenLen bounds what is hashed; real tokens are 46 bytes.
const maxTokenLen = 256

// Authenticate resolves the caller from a bearer token or, without one,
// from a client certificate. Token lookup is by the hash of the presented
// token, computed in a stack buffer, so the check neither allocates nor
// compares secret bytes.
//
// A token is taken from "Authorization: Bearer <token>" or, as Vault's
// clients send it, from "X-Vault-Token: <token>" (docs/TRANSIT.md). A
// request carrying both must carry the same token in each: two different
// ones (say, a proxy adding one while the caller sent the other) are
// refused rather than one of them silently chosen.
func (a *authenticator) Authenticate(r *http.Request) (httpapi.Principal, error) {
	h, vt := r.Header.Get(api.HeaderAuthorization), r.Header.Get(api.HeaderVaultToken)
	if vt != "" {
		if h != "" {
			tok, ok := strings.CutPrefix(h, "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(vt)) != 1 {
				return nil, errTwoTokens
			}
		}
		return a.lookupToken(vt)
	}
	if h != "" {
		return a.authenticateToken(h)
	}
	s := a.set.Load()
	if s == nil {
		return nil, api.ErrUnauthorized
	}
	if v := r.Header.Get(HeaderCertIdentity); v != "" && a.isPeer != nil {
		if _, ok := a.isPeer(r); ok {
			h, err := hex.DecodeString(v)
			if err == nil && len(h) == 32 {
				if p, ok := s.byCert[[32]byte(h)]; ok {
					return p, nil
				}
			}
		}
		return nil, api.ErrUnauthorized
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		if p, ok := s.byCert[CertIdentity(r.TLS.PeerCertificates[0])]; ok {
			return p, nil
		}
	}
	return nil, api.ErrUnauthorized
}

func (a *authenticator) authenticateToken(header string) (*principal, error) {
	tok, ok := strings.CutPrefix(header, "Bearer ")
	if !ok {
		return nil, api.ErrUnauthorized
	}
	return a.lookupToken(tok)
}

// errTwoTokens refuses a request whose Authorization and X-Vault-Token
// headers name different tokens.
var errTwoTokens = &api.Error{Code: api.CodeUnauthorized, Message: "the Authorization and X-Vault-Token headers carry different tokens; send one"}

// lookupToken resolves a presented token (without any "Bearer " prefix).
func (a *authenticator) lookupToken(tok string) (*principal, error) {
	if len(tok) == 0 || len(tok) > maxTokenLen {
		return nil, api.ErrUnauthorized
	}
	var buf [maxTokenLen]byte
	n := copy(buf[:], tok)
	h := sha256.Sum256(buf[:n])
	clear(buf[:n])
	s := a.set.Load()
	if s == nil {
		return nil, api.ErrUnauthorized
	}
	p, ok := s.byToken[h]
	if !ok {
		return nil, api.ErrUnauthorized
	}
	if !p.expiresAt.IsZero() && time.Now().After(p.expiresAt) {
		return nil, api.ErrUnauthorized
	}
	return p, nil
}
