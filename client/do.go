package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyd/keyd/api"
)

// maxReplyBytes caps a reply body. The largest legitimate reply is a full
// batch (api.MaxBatchItems items of at most api.MaxPlaintextBytes each,
// base64-encoded), so the cap sits well above it.
const maxReplyBytes = 64 << 20

// policy says where a call goes and what may be retried.
type policy uint8

const (
	// polWrite: the known leader first (any node forwards), one request id
	// for all attempts, retries on connection errors and retryable codes.
	polWrite policy = iota + 1
	// polRead: reads and crypto calls; any healthy node, the last good one
	// first; sends the min-index header; retries like polWrite.
	polRead
	// polStatus: like polRead without the min-index header.
	polStatus
	// polUnseal: the first reachable node. It moves on only when the dial
	// failed, i.e. the share surely never reached a node, because a
	// re-submitted share may count as a duplicate.
	polUnseal
	// polNode: one given node, one attempt.
	polNode
)

// call is one logical API call, possibly made of several attempts.
type call struct {
	pol    policy
	method string
	path   string // path and query
	addr   string // polNode: the node's base URL
	in     any    // request body, JSON-encoded once; nil sends none
	out    any    // reply body target; nil ignores the body
	// emptyOK accepts a 2xx reply without a body (out stays zero), for
	// routes whose reply body the API leaves open.
	emptyOK bool
}

// do runs cl with routing, retries and backoff. It returns nil, an
// *api.Error, a *ConnError, an ErrBadResponse error, or (when ctx ends
// between attempts) an error matching both ctx's error and the last
// attempt's error.
//
// Attempts come in rounds. When a node fails in a way another node may
// not (a connection failure, sealed, unavailable, index not applied), the
// next attempt goes at once to a healthy node not yet tried in this round;
// only when none is left does the call back off and start a new round. So
// a dead leader costs a crypto call one failed connection, not a backoff.
// A write answered unavailable also moves on (a node cut off from the
// leader refuses writes while others reach it) and backs off once every
// node was tried in the round, which means the cluster has no leader.
func (c *Client) do(ctx context.Context, cl call) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	var body []byte
	if cl.in != nil {
		var err error
		if body, err = json.Marshal(cl.in); err != nil {
			return fmt.Errorf("client: encode request: %w", err)
		}
	}
	var reqID string
	if cl.pol == polWrite {
		// One id per logical write, reused by every retry, so a write whose
		// reply was lost is applied once and its retry sees the outcome.
		reqID = requestIDFrom(ctx)
	}
	var minIndex uint64
	if cl.pol == polRead {
		minIndex = c.LastIndex()
	}
	maxRetries := c.maxRetries
	if cl.pol == polNode {
		maxRetries = 0
	}

	var (
		lastErr   error
		prev      string // node of the previous attempt
		hint      string // next node, from a not_leader hint
		refreshed bool   // topology refreshed during this write
		round     int    // rounds backed off so far
		triedBuf  [8]string
		tried     = triedBuf[:0] // nodes tried in this round
		// deadAddrs are nodes no connection could be opened to (dial or
		// TLS handshake failed) during this call. A
		// follower's leader hint naming one is stale (followers name the
		// old leader until their heartbeat times out), so it is not
		// followed at once: that would pay a connect timeout per round.
		deadAddrs []string
	)
	for retry := 0; ; retry++ {
		addr := hint
		hint = ""
		if addr == "" {
			switch cl.pol {
			case polNode:
				addr = cl.addr
			case polWrite:
				if !refreshed && !c.leaderKnown() {
					refreshed = true
					c.refresh(ctx, prev)
				}
				addr = c.pickWrite(tried)
			default:
				addr = c.pickRead(tried)
			}
		}
		tried = append(tried, addr)
		err := c.attempt(ctx, addr, &cl, body, reqID, minIndex)
		if err == nil {
			c.markUp(addr, cl.pol == polRead)
			return nil
		}
		nodeErr := lastErr // the previous attempt's answer, if any
		lastErr, prev = err, addr

		immediate := false   // follow a leader hint at once
		moveOn := false      // the node failed; an untried one may not
		writeMoveOn := false // a write answered unavailable moves on for free
		var ce *ConnError
		var ae *api.Error
		switch {
		case errors.As(err, &ce) && ctx.Err() != nil:
			// The caller's context ended the attempt: not the node's fault.
			// What the nodes said before (sealed, no leader) explains the
			// failure better than the cut connection.
			if nodeErr != nil {
				return fmt.Errorf("client: %w: %w", ctx.Err(), nodeErr)
			}
			return err
		case errors.As(err, &ce):
			if !ce.Temporary() || (cl.pol == polUnseal && !isDialError(ce.Err)) {
				return err
			}
			c.markUnreachable(addr)
			c.kick()
			moveOn = true
			if connectFailed(ce.Err) && !slices.Contains(deadAddrs, addr) {
				deadAddrs = append(deadAddrs, addr)
			}
			if cl.pol == polWrite {
				c.forgetLeader(addr)
				refreshed = false
			}
		case errors.As(err, &ae) && api.Retryable(ae.Code) && cl.pol != polUnseal:
			switch ae.Code {
			case api.CodeNotLeader:
				c.kick()
				if slices.Contains(deadAddrs, hintAddr(ae.Leader)) {
					// A stale hint: the named node refused us during
					// this call. Wait for the election instead.
					c.forgetLeader(hintAddr(ae.Leader))
					refreshed = false
				} else if u, ok := c.setLeader(ae.Leader); ok && u != addr {
					// Follow the hint at once: it names the node to ask.
					hint, immediate = u, true
				} else {
					c.forgetLeader(addr)
					refreshed = false
				}
			case api.CodeSealed:
				c.markSealed(addr)
				moveOn = true
			default: // unavailable, index_not_applied: another node may do better
				c.unprefer(addr)
				moveOn = true
				if cl.pol == polWrite {
					// No working leader answered: the node lost contact with
					// the leader (it refuses writes: it may have missed
					// revocations), could not forward, or lost leadership.
					// Another node may reach the leader; once every node
					// was tried the write backs off (the cluster may be
					// electing).
					c.forgetLeader(addr)
					refreshed = false
					writeMoveOn = true
				}
			}
		default:
			return err
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("client: %w: %w", err, lastErr)
		}
		if retry >= maxRetries && !(writeMoveOn && c.hasUntried(tried)) {
			return lastErr
		}
		if moveOn && cl.pol != polNode && c.hasUntried(tried) {
			immediate = true
			if writeMoveOn {
				// Asking the other nodes of this round is not a retry:
				// the budget counts rounds, which back off, so an
				// election still has MaxRetries backoffs to finish.
				retry--
			}
		}
		var d time.Duration
		if !immediate {
			d = backoff(round)
			round++
			tried = tried[:0]
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
			// Sleeping would outlive the caller; give up now.
			return fmt.Errorf("client: %w before the next retry: %w", context.DeadlineExceeded, lastErr)
		}
		if c.onRetry != nil {
			c.onRetry(lastErr, d)
		}
		if err := sleep(ctx, d); err != nil {
			return fmt.Errorf("client: %w while waiting to retry: %w", err, lastErr)
		}
	}
}

// connectFailed reports whether err happened while opening the
// connection (dial or TLS handshake), so the node never saw the request.
func connectFailed(err error) bool {
	if isDialError(err) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && strings.Contains(err.Error(), "TLS handshake timeout")
}

// hintAddr normalizes a not_leader hint for comparison with node
// addresses; "" when it is unusable.
func hintAddr(hint string) string {
	u, err := normalizeAddr(hint)
	if err != nil {
		return ""
	}
	return u
}

// attempt makes one HTTP request to addr and decodes the reply.
func (c *Client) attempt(ctx context.Context, addr string, cl *call, body []byte, reqID string, minIndex uint64) error {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(actx, cl.method, addr+cl.path, rd)
	if err != nil {
		return fmt.Errorf("client: build request: %w", err)
	}
	// The fixed headers share read-only slices (net/http never writes to
	// request headers), which saves an allocation each per call.
	req.Header["Accept"] = hdrJSON
	req.Header["User-Agent"] = hdrUserAgent
	if body != nil {
		req.Header["Content-Type"] = hdrJSON
	}
	if c.auth != nil {
		req.Header[api.HeaderAuthorization] = c.auth
	}
	if reqID != "" {
		req.Header.Set(api.HeaderRequestID, reqID)
	}
	if minIndex > 0 {
		req.Header.Set(api.HeaderMinIndex, strconv.FormatUint(minIndex, 10))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// *url.Error repeats method and URL; the node address is enough.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return &ConnError{Addr: addr, Err: err}
	}
	defer resp.Body.Close()
	data, err := readBody(resp)
	if err != nil {
		return &ConnError{Addr: addr, Err: err}
	}
	if len(data) > maxReplyBytes {
		return fmt.Errorf("client: reply from %s: %w: larger than %d bytes", addr, ErrBadResponse, maxReplyBytes)
	}
	out := cl.out
	if cl.emptyOK && len(data) == 0 && resp.StatusCode >= 200 && resp.StatusCode < 300 {
		out = nil
	}
	if err := decodeReply(resp.StatusCode, resp.Header.Get("Content-Type"), data, out); err != nil {
		var ae *api.Error
		if errors.As(err, &ae) {
			return ae
		}
		return fmt.Errorf("client: reply from %s: %w", addr, err)
	}
	if cl.pol == polWrite {
		if i, err := strconv.ParseUint(resp.Header.Get(api.HeaderIndex), 10, 64); err == nil {
			c.observeIndex(i)
		}
		c.observeIndex(bodyIndex(cl.out))
	}
	switch v := cl.out.(type) {
	case *api.SealStatus:
		c.learnStatus(addr, v)
	case *api.ClusterInfo:
		c.learnCluster(v)
	}
	return nil
}

var (
	hdrJSON      = []string{"application/json"}
	hdrUserAgent = []string{"keyd-client/1"}
)

// readBody reads at most maxReplyBytes+1 bytes of the reply, in one
// allocation when the length is announced (the transport enforces it).
func readBody(resp *http.Response) ([]byte, error) {
	if n := resp.ContentLength; n > 0 && n <= maxReplyBytes {
		data := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, data); err != nil {
			return nil, err
		}
		return data, nil
	}
	return io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes+1))
}

// bodyIndex returns the Raft index a write reply carries in its body.
func bodyIndex(out any) uint64 {
	switch v := out.(type) {
	case *api.KeyInfo:
		return v.Index
	case *api.InitResponse:
		return v.Index
	case *api.WriteResponse:
		return v.Index
	case *api.KVSecret:
		return v.Index
	case *api.TokenizeResponse:
		return v.Index
	}
	return 0
}

// statusErr is an ErrBadResponse error for an error status without an
// api.Error body; it keeps the status so the topology fallback can tell a
// missing route (404) from other failures.
type statusErr struct{ status int }

func (e *statusErr) Error() string {
	return ErrBadResponse.Error() + ": HTTP " + strconv.Itoa(e.status) + " without an error body"
}

func (e *statusErr) Is(target error) bool { return target == ErrBadResponse }

// decodeReply turns one reply into out (2xx) or an error: the server's
// *api.Error, an *api.Error synthesized from a gateway status, or an
// ErrBadResponse error. It never echoes the body.
func decodeReply(status int, contentType string, data []byte, out any) error {
	// The common spellings skip mime.ParseMediaType, which allocates.
	isJSON := contentType == "application/json" || contentType == "application/json; charset=utf-8"
	if !isJSON {
		if mt, _, err := mime.ParseMediaType(contentType); err == nil && mt == "application/json" {
			isJSON = true
		}
	}
	if status >= 200 && status < 300 {
		if out == nil || (status == http.StatusNoContent && len(data) == 0) {
			return nil
		}
		if !isJSON {
			// The header is not echoed: the error must carry nothing the
			// server sent.
			return fmt.Errorf("%w: HTTP %d with a Content-Type other than application/json", ErrBadResponse, status)
		}
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%w: decode JSON: %w", ErrBadResponse, err)
		}
		return nil
	}
	if isJSON {
		var e api.Error
		if json.Unmarshal(data, &e) == nil && e.Code != "" {
			e.Status = status
			return &e
		}
	}
	return statusError(status)
}

// statusError maps an error status without an api.Error body (a proxy or
// load balancer answered) to the closest code, so retries still work.
func statusError(status int) error {
	var code api.Code
	switch status {
	case http.StatusMisdirectedRequest:
		code = api.CodeNotLeader
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusTooManyRequests:
		code = api.CodeUnavailable
	case http.StatusUnauthorized:
		code = api.CodeUnauthorized
	case http.StatusForbidden:
		code = api.CodeForbidden
	case http.StatusRequestEntityTooLarge:
		code = api.CodeTooLarge
	default:
		return &statusErr{status: status}
	}
	return &api.Error{Code: code, Message: "HTTP " + strconv.Itoa(status) + " without an error body", Status: status}
}

// backoff returns the sleep before retry number retry+1: full jitter over
// an exponential ceiling, base 50ms, cap 1s.
func backoff(retry int) time.Duration {
	ceil := backoffCap
	if retry < 20 {
		ceil = min(backoffCap, backoffBase<<retry)
	}
	var b [8]byte
	rand.Read(b[:])
	return time.Duration(binary.LittleEndian.Uint64(b[:]) % uint64(ceil))
}

// sleep waits d or until ctx ends, whichever is first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// newRequestID returns 16 random bytes, hex-encoded.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
