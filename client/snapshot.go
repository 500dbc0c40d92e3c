package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/keyd/keyd/api"
)

// SnapshotSave streams an operator snapshot of the cluster's state from
// the leader into w (needs the snapshot capability). The file holds only
// wrapped material; verify it offline with fsm.VerifyBackup (`keyd
// operator snapshot inspect`). On an error after the copy started, w
// holds a prefix, which the file's digest reveals as truncated.
func (c *Client) SnapshotSave(ctx context.Context, w io.Writer) error {
	return c.leaderStream(ctx, http.MethodGet, api.PathSnapshot, nil, func(addr string, resp *http.Response) error {
		if _, err := io.Copy(w, &connReader{r: resp.Body, addr: addr}); err != nil {
			var ce *ConnError
			if errors.As(err, &ce) {
				return ce
			}
			return fmt.Errorf("client: write snapshot: %w", err)
		}
		return nil
	})
}

// SnapshotRestore uploads a snapshot file to the leader, which verifies
// it and restores it into the cluster. On an initialised cluster it needs
// force and the snapshot capability; on an uninitialised one it is open.
// The cluster is sealed afterwards.
func (c *Client) SnapshotRestore(ctx context.Context, file []byte, force bool) (*api.SnapshotRestoreResponse, error) {
	path := api.PathSnapshotRestore
	if force {
		path += "?force=true"
	}
	var out api.SnapshotRestoreResponse
	err := c.leaderStream(ctx, http.MethodPost, path, file, func(addr string, resp *http.Response) error {
		data, err := readBody(resp)
		if err != nil {
			return &ConnError{Addr: addr, Err: err}
		}
		return decodeReply(resp.StatusCode, resp.Header.Get("Content-Type"), data, &out)
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// leaderStream makes one request to the leader, following not_leader
// hints and moving past unreachable nodes, but never retrying once the
// leader answered 2xx: handle then owns the reply. Only the wait for the
// reply's headers is bounded by Config.Timeout.
func (c *Client) leaderStream(ctx context.Context, method, path string, body []byte, handle func(addr string, resp *http.Response) error) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	var (
		tried   []string
		hint    string
		lastErr error
	)
	for attempt := 0; attempt <= c.maxRetries+maxNodes && attempt < 32; attempt++ {
		addr := hint
		hint = ""
		if addr == "" {
			if !c.leaderKnown() {
				c.refresh(ctx, "")
			}
			addr = c.pickWrite(tried)
		}
		if addr == "" {
			break
		}
		tried = append(tried, addr)
		started, err := c.streamOnce(ctx, addr, method, path, body, handle)
		if err == nil || started {
			return err
		}
		lastErr = err
		var ae *api.Error
		var ce *ConnError
		switch {
		case errors.As(err, &ae) && ae.Code == api.CodeNotLeader:
			if u, ok := c.setLeader(ae.Leader); ok && u != addr {
				hint = u
				continue
			}
			c.forgetLeader(addr)
		case errors.As(err, &ce) && ctx.Err() == nil:
			c.markDown(addr)
			c.forgetLeader(addr)
		default:
			return err
		}
		if !c.hasUntried(tried) {
			tried = tried[:0]
			if err := sleep(ctx, backoff(attempt)); err != nil {
				return fmt.Errorf("client: %w while waiting to retry: %w", err, lastErr)
			}
		}
	}
	if lastErr == nil {
		lastErr = errors.New("client: no node to ask")
	}
	return lastErr
}

// streamOnce reports started once handle ran: the call is then over,
// whatever its outcome.
func (c *Client) streamOnce(ctx context.Context, addr, method, path string, body []byte, handle func(string, *http.Response) error) (started bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, addr+path, rd)
	if err != nil {
		return false, fmt.Errorf("client: build request: %w", err)
	}
	req.Header["User-Agent"] = hdrUserAgent
	req.Header.Set("Accept", api.ContentTypeSnapshot+", application/json")
	if body != nil {
		req.Header.Set("Content-Type", api.ContentTypeSnapshot)
	}
	if c.auth != nil {
		req.Header[api.HeaderAuthorization] = c.auth
	}
	// An upload and the leader's verification take time; the wait for
	// the headers is bounded by the timeout plus a second per MiB sent.
	wait := c.timeout + time.Duration(len(body)>>20)*time.Second
	headerTimer := time.AfterFunc(wait, cancel)
	resp, err := c.hc.Do(req)
	stopped := headerTimer.Stop()
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if !stopped && errors.Is(err, context.Canceled) {
			err = fmt.Errorf("no reply headers within %s: %w", wait, context.DeadlineExceeded)
		}
		return false, &ConnError{Addr: addr, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		if err != nil {
			return false, &ConnError{Addr: addr, Err: err}
		}
		if err := decodeReply(resp.StatusCode, resp.Header.Get("Content-Type"), data, nil); err != nil {
			var ae *api.Error
			if errors.As(err, &ae) {
				return false, ae
			}
			return false, fmt.Errorf("client: reply from %s: %w", addr, err)
		}
		return false, fmt.Errorf("client: reply from %s: %w: status %d", addr, ErrBadResponse, resp.StatusCode)
	}
	return true, handle(addr, resp)
}
