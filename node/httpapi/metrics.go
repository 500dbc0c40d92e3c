package httpapi

import (
	"net/http"
	"time"

	"github.com/keyd/keyd/policy"
)

// statusWriter remembers the status code a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// track starts timing a request of route rt: it replaces *w with a writer
// that remembers the status code and returns the function that records
// the request once it is answered. Without metrics it changes nothing.
// The label is the route's operation name (or pattern), never a key name.
func (s *Server) track(rt route, w *http.ResponseWriter) func() {
	m := s.cfg.Metrics
	if m == nil {
		return func() {}
	}
	op := rt.op
	if op == "" {
		op = rt.pattern
	}
	sw := &statusWriter{ResponseWriter: *w}
	*w = sw
	start := time.Now()
	return func() {
		code := sw.code
		if code == 0 {
			code = http.StatusOK
		}
		m.ObserveRequest(op, code, time.Since(start))
	}
}

// metrics serves GET /v1/sys/metrics: open with UnauthenticatedMetrics,
// else for a token (or certificate identity) with the metrics capability.
func (s *Server) metrics(c *call) (any, error) {
	if !s.cfg.UnauthenticatedMetrics {
		p, err := s.cfg.Auth.Authenticate(c.r)
		if err != nil {
			return nil, err
		}
		if !p.Allowed(policy.Metrics, "") {
			return nil, forbidden(policy.Metrics)
		}
	}
	s.cfg.Metrics.Handler().ServeHTTP(c.w, c.r)
	return handled, nil
}
