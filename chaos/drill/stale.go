package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
)

// staleLeaderProbe asks the frozen old leader, directly (no routing, no
// retry), for a rotation and for a consistent read of a shared key, after
// the new leader acknowledged a rotation of it. A stale leader must not
// acknowledge the write (it cannot commit it) and must not answer the
// read with a version older than the acknowledged one. Both calls go into
// the history, so porcupine and the write checks judge them too. A node
// that does not answer at all (SIGSTOP) passes: it served nothing.
func (r *runner) staleLeaderProbe(ctx context.Context, e *Env, old string) {
	n, ok := e.node(old)
	if !ok {
		r.addCheck("stale-leader", false, "frozen node not found")
		return
	}
	key := r.shared[0]
	// A rotation acknowledged by the new leader.
	op := r.hist.begin(-2, kindRotate, key, r.since())
	var acked *api.KeyInfo
	rid := client.WithRequestID(ctx, "drill-stale-ack-"+randHex(8)) // one rotation, however often retried
	err := r.retry(rid, func(c context.Context) error {
		var err error
		acked, err = r.wl.RotateKey(c, key)
		return err
	})
	r.finishWrite(op, acked, err)
	if err != nil {
		r.addCheck("stale-leader", false, fmt.Sprintf("the new leader acknowledged no rotation: %v", err))
		return
	}
	timeout := min(r.cfg.CallTimeout, 3*time.Second)

	// The write, straight to the stale leader.
	wop := r.hist.begin(-2, kindRotate, key, r.since())
	code, body, werr := directCall(ctx, e, http.MethodPost, n.APIAddr, api.KeyPath(key, "rotate"), []byte("{}"), timeout)
	var wk api.KeyInfo
	switch {
	case werr == nil && code == http.StatusOK && json.Unmarshal(body, &wk) == nil:
		r.finishWrite(wop, &wk, nil)
	case werr == nil && code >= 400 && code < 500:
		r.finishWrite(wop, nil, fmt.Errorf("HTTP %d", code)) // unknown: judged by the checks
	default:
		r.finishWrite(wop, nil, fmt.Errorf("HTTP %d: %v", code, werr))
	}
	writeNote := fmt.Sprintf("write: HTTP %d", code)
	if werr != nil {
		writeNote = "write: no answer"
	}

	// The consistent read, straight to the stale leader.
	rop := r.hist.begin(-2, kindRead, key, r.since())
	code, body, rerr := directCall(ctx, e, http.MethodGet, n.APIAddr, api.KeyPath(key)+"?consistent=true", nil, timeout)
	var rk api.KeyInfo
	readNote := "read: no answer"
	if rerr == nil {
		readNote = fmt.Sprintf("read: HTTP %d", code)
	}
	if rerr == nil && code == http.StatusOK && json.Unmarshal(body, &rk) == nil {
		r.finish(rop, rk.LatestVersion, nil)
		readNote = fmt.Sprintf("read: version %d", rk.LatestVersion)
		if rk.LatestVersion < acked.LatestVersion {
			r.addCheck("stale-leader", false, fmt.Sprintf("%s served a stale consistent read: version %d after version %d was acknowledged", old, rk.LatestVersion, acked.LatestVersion))
			return
		}
	} else {
		r.finish(rop, 0, fmt.Errorf("HTTP %d: %v", code, rerr))
	}
	if wop.Status == statusOK {
		// Acknowledged by a node cut off from the majority: if it is not
		// in the final state, no-acked-write-lost fails; say it here too.
		r.addCheck("stale-leader", false, fmt.Sprintf("%s acknowledged a rotation while cut off (version %d)", old, wk.LatestVersion))
		return
	}
	r.addCheck("stale-leader", true, fmt.Sprintf("%s, asked directly while frozen after version %d was acknowledged: %s; %s", old, acked.LatestVersion, writeNote, readNote))
}

// directCall sends one authenticated request to the node at addr only
// and returns the status code and body.
func directCall(ctx context.Context, e *Env, method, addr, path string, body []byte, timeout time.Duration) (int, []byte, error) {
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: e.Config.TLS.Clone()}, Timeout: timeout}
	defer hc.CloseIdleConnections()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+addr+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+e.Config.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(api.HeaderRequestID, "drill-stale-"+randHex(8))
	}
	res, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res.StatusCode, b, err
}
