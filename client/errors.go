package client

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
)

// Sentinel errors of the client. Server-side failures are *api.Error values
// instead, matched with errors.Is against the api sentinels.
var (
	// ErrInvalidConfig is returned by New for an unusable Config.
	ErrInvalidConfig = errors.New("client: invalid config")
	// ErrInvalidAddr is returned for an address that is not "host:port" or
	// "https://host:port".
	ErrInvalidAddr = errors.New("client: invalid address")
	// ErrClosed is returned by every call made after Close.
	ErrClosed = errors.New("client: closed")
	// ErrBadResponse is returned when a node's reply cannot be understood:
	// wrong Content-Type, malformed JSON, oversized body, or a batch reply
	// whose result count does not match the request.
	ErrBadResponse = errors.New("client: bad response")
)

// ConnError reports that a request could not be completed at the transport
// level: dial failure, TLS failure, a dropped connection or a per-attempt
// timeout. Addr is the node's base URL. Err is the underlying cause and never
// holds request data. ConnError implements [net.Error].
type ConnError struct {
	Addr string
	Err  error
}

var _ net.Error = (*ConnError)(nil)

func (e *ConnError) Error() string {
	return "client: connection to " + e.Addr + " failed: " + e.Err.Error()
}

// Unwrap returns the cause, so errors.Is(err, context.DeadlineExceeded) and
// errors.As(err, **net.OpError) work.
func (e *ConnError) Unwrap() error { return e.Err }

// Timeout reports whether the failure was a timeout (the per-attempt
// timeout, the caller's deadline or a network timeout).
func (e *ConnError) Timeout() bool {
	var ne net.Error
	if errors.As(e.Err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(e.Err, context.DeadlineExceeded)
}

// Temporary reports whether retrying, here or on another node, may help.
// Certificate verification failures are permanent: a wrong CA does not fix
// itself; everything else at the connection level is treated as transient.
func (e *ConnError) Temporary() bool {
	var cv *tls.CertificateVerificationError
	return !errors.As(e.Err, &cv)
}
