package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/transport"
)

// peerClient is the one client for node-to-node calls: forwarding,
// relays, node-share delivery and requests, audit anchors, peer health.
// It speaks mutual TLS with the node's identity and resolves node ids
// through the embedded peer book. A call to a node named by id goes
// through a client pinned to that id: the server must present that
// node's certificate, so a CA-signed node (a removed one, say) that
// advertises another node's id with its own address in gossip receives
// no custodian share, node share or forwarded token meant for that node.
type peerClient struct {
	*peerBook
	identity transport.Identity
	// http accepts any cluster node: for probes by address (status).
	http *http.Client

	mu     sync.Mutex
	pinned map[string]*http.Client // by peer id
	log    *slog.Logger
}

// newPeerClient returns the peer client of node local.
func newPeerClient(local string, peers []Peer, id transport.Identity, log *slog.Logger) *peerClient {
	return &peerClient{
		peerBook: newPeerBook(local, peers),
		identity: id,
		http:     newPeerHTTP(transport.PeerClientConfig(id)),
		pinned:   map[string]*http.Client{},
		log:      log,
	}
}

func newPeerHTTP(tlsConfig *tls.Config) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			TLSClientConfig: tlsConfig,
			// A dead host must cost a forwarded write about a second, not
			// the OS connect timeout. The handshake gets longer: a busy
			// peer is slow rather than gone, and a forward to a frozen
			// leader is cut short by Forward's leader watch anyway.
			DialContext:         (&net.Dialer{Timeout: peerConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout: peerHandshakeTimeout,
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
		},
		Timeout: 30 * time.Second,
	}
}

// to returns the client pinned to node peer.
func (c *peerClient) to(peer string) *http.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.pinned[peer]
	if !ok {
		h = newPeerHTTP(transport.PeerClientConfigFor(c.identity, peer))
		c.pinned[peer] = h
	}
	return h
}

// forget drops the pinned client of a peer that left.
func (c *peerClient) forget(peer string) {
	c.mu.Lock()
	h, ok := c.pinned[peer]
	delete(c.pinned, peer)
	c.mu.Unlock()
	if ok {
		h.CloseIdleConnections()
	}
}

// peerConnectTimeout bounds opening a TCP connection to a peer's API;
// peerHandshakeTimeout the TLS handshake after it.
const (
	peerConnectTimeout   = time.Second
	peerHandshakeTimeout = 5 * time.Second
)

// do sends a prepared request to whichever cluster node answers at its
// address (probes).
func (c *peerClient) do(req *http.Request) (*http.Response, error) { return c.http.Do(req) }

// doPeer sends a prepared request to node peer, which must prove it is.
func (c *peerClient) doPeer(peer string, req *http.Request) (*http.Response, error) {
	return c.to(peer).Do(req)
}

// closeIdle drops pooled connections (on Close).
func (c *peerClient) closeIdle() {
	c.http.CloseIdleConnections()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range c.pinned {
		h.CloseIdleConnections()
	}
}

// postJSON posts to a peer's internal route and decodes its reply.
func (c *peerClient) postJSON(ctx context.Context, id, path string, body []byte, out any) error {
	addr := c.apiAddr(id)
	if addr == "" {
		return fmt.Errorf("node: no API address for %s", id)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.doPeer(id, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		if json.Unmarshal(data, &e) == nil && e.Code != "" {
			return &e
		}
		return fmt.Errorf("node: %s answered %d", id, resp.StatusCode)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// postRetry posts body to a peer with postJSON, retrying briefly while
// the peer is unreachable or failing (5xx); a 4xx answer is final. It
// sends nothing once ctx has ended.
func (c *peerClient) postRetry(ctx context.Context, p Peer, path string, body []byte) {
	backoff := 100 * time.Millisecond
	for attempt := 0; attempt < 5; attempt++ {
		if ctx.Err() != nil {
			return
		}
		err := c.postJSON(ctx, p.ID, path, body, nil)
		var ae *api.Error
		if err == nil || (errors.As(err, &ae) && api.StatusFor(ae.Code) < 500) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff *= 2
	}
	c.log.Warn("peer did not accept relayed call", "peer", p.ID, "path", path)
}
