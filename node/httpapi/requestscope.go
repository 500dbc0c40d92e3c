package httpapi

import (
	"context"
	"crypto/sha256"
	"net/http"
)

// RequestScope scopes an idempotency key (the X-Keyd-Request-Id header)
// to one caller and one request: the node deduplicates on (Identity,
// request id) and refuses the same caller's id reused with another
// Digest.
type RequestScope struct {
	// Identity is the caller's principal id ("token:<accessor>",
	// "cert:<prefix>").
	Identity string
	// Digest fingerprints the operation, its target and its body.
	Digest [32]byte
}

type requestScopeKey struct{}

// WithRequestScope returns ctx carrying s.
func WithRequestScope(ctx context.Context, s RequestScope) context.Context {
	return context.WithValue(ctx, requestScopeKey{}, s)
}

// RequestScopeFrom returns the scope of the request ctx belongs to, if the
// request carried an id and an authenticated caller.
func RequestScopeFrom(ctx context.Context) (RequestScope, bool) {
	s, ok := ctx.Value(requestScopeKey{}).(RequestScope)
	return s, ok
}

// requestDigest fingerprints a request for idempotency: the route's
// operation, method and path (which name the target) and the body bytes,
// each length-prefixed so no two requests share an encoding.
func requestDigest(op string, r *http.Request, body []byte) [32]byte {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(op), []byte(r.Method), []byte(r.URL.EscapedPath()), []byte(r.URL.RawQuery), body} {
		var n [8]byte
		l := len(part)
		for i := range n {
			n[i] = byte(l >> (8 * (7 - i)))
		}
		h.Write(n[:])
		h.Write(part)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}
