package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keyd/keyd/api"
)

// Cluster asks one node for the cluster topology (GET /v1/sys/cluster,
// which needs a token), retrying other nodes on failure like a read. The
// client learns the nodes and the leader from the reply. The caller owns
// the result. Errors: *api.Error (api.ErrUnauthorized, api.ErrForbidden,
// ...), *ConnError, ErrBadResponse, ErrClosed.
func (c *Client) Cluster(ctx context.Context) (*api.ClusterInfo, error) {
	var ci api.ClusterInfo
	if err := c.do(ctx, call{pol: polStatus, method: http.MethodGet, path: api.PathCluster, out: &ci}); err != nil {
		return nil, err
	}
	return &ci, nil
}

// Topology returns a copy of the last topology the client learned, from
// /v1/sys/cluster or, when the token may not read it, pieced together from
// /v1/sys/status (State api.NodeUnknown, no regions). It is nil before
// any node answered. It never blocks on the network.
func (c *Client) Topology() []api.ClusterNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.topo)
}

// kick asks the background goroutine for a refresh; it never blocks.
func (c *Client) kick() {
	if c.kickC == nil {
		return
	}
	select {
	case c.kickC <- struct{}{}:
	default: // one is already pending
	}
}

// loop is the background goroutine: it learns the topology at once, then
// every interval, and soon after a kick (at most every refreshEvery).
// While no node answers it retries sooner, backing off to maxFailDelay.
func (c *Client) loop(interval time.Duration) {
	defer close(c.done)
	ok := c.discover(c.bgCtx)
	close(c.firstDone)
	failDelay := refreshEvery
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		wait := interval
		if ok {
			failDelay = refreshEvery
		} else {
			wait = min(interval, failDelay)
			failDelay = min(2*failDelay, maxFailDelay)
		}
		t.Reset(wait)
		select {
		case <-c.bgCtx.Done():
			return
		case <-t.C:
		case <-c.kickC:
			t.Stop()
			c.mu.Lock()
			since := time.Since(c.refreshedAt)
			c.mu.Unlock()
			if err := sleep(c.bgCtx, refreshEvery-since); err != nil {
				return
			}
		}
		ok = c.discover(c.bgCtx)
	}
}

// discoverHedge is how long discover waits for one node's topology before
// asking the next one as well: a live node on a LAN answers in
// milliseconds, a dead one may take a whole connect timeout.
const discoverHedge = 300 * time.Millisecond

// discover asks the nodes, leader first, for the topology until one
// answers or ctx ends. It reports whether one answered. A node that has
// not answered within discoverHedge, or failed, gets company: the next
// node is asked too, so a dead first seed does not hold up a new client.
// The first answer wins; the others are cancelled and waited for.
func (c *Client) discover(ctx context.Context) bool {
	c.mu.Lock()
	c.refreshedAt = time.Now()
	order := c.refreshOrderLocked(c.refreshedAt)
	c.mu.Unlock()
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // runs before wg.Wait
	results := make(chan bool, len(order))
	next, pending := 0, 0
	launch := func() {
		if next >= len(order) || ctx.Err() != nil || c.closed.Load() {
			return
		}
		addr := order[next]
		next++
		pending++
		wg.Go(func() { results <- c.fetchTopology(ctx, addr) == nil })
	}
	launch()
	t := time.NewTimer(discoverHedge)
	defer t.Stop()
	for pending > 0 {
		select {
		case ok := <-results:
			pending--
			if ok {
				return true
			}
			launch()
		case <-t.C:
			launch()
			t.Reset(discoverHedge)
		case <-ctx.Done():
			return false
		}
	}
	return false
}

// refresh asks one node (not exclude, when another is known) for the
// topology so that a write finds the leader. Concurrent callers share one
// refresh per refreshEvery. Failures are ignored: the write then goes to
// any node, which forwards it.
func (c *Client) refresh(ctx context.Context, exclude string) {
	c.mu.Lock()
	now := time.Now()
	due := now.Sub(c.refreshedAt) >= refreshEvery
	if due {
		c.refreshedAt = now
	}
	c.mu.Unlock()
	if due {
		c.fetchTopology(ctx, c.pickAny(exclude))
	}
}

// fetchTopology asks addr for the topology, from /v1/sys/cluster or, when
// that is refused (no token, a token without the right, an older node),
// from /v1/sys/status. attempt learns from the reply. A connection
// failure puts addr on cool-down.
func (c *Client) fetchTopology(ctx context.Context, addr string) error {
	var err error
	if c.token != "" {
		var ci api.ClusterInfo
		err = c.attempt(ctx, addr, &call{pol: polStatus, method: http.MethodGet, path: api.PathCluster, out: &ci}, nil, "", 0)
		if err != nil && routeRefused(err) {
			err = nil // ask for the status below
		} else if err == nil {
			c.markUp(addr, false)
			return nil
		}
	}
	if err == nil {
		var st api.SealStatus
		if err = c.attempt(ctx, addr, &call{pol: polStatus, method: http.MethodGet, path: api.PathStatus, out: &st}, nil, "", 0); err == nil {
			c.markUp(addr, false)
			return nil
		}
	}
	var ce *ConnError
	if errors.As(err, &ce) && ctx.Err() == nil {
		c.markUnreachable(addr)
	}
	return err
}

// routeRefused reports whether a /v1/sys/cluster failure means "not for
// you": 401, 403, a sealed node (which serves only its status), or a node
// that does not know the route (404, 405).
func routeRefused(err error) bool {
	var ae *api.Error
	if errors.As(err, &ae) {
		switch ae.Status {
		case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed:
			return true
		}
		// A sealed node serves no topology, but its status answers.
		return errors.Is(ae, api.ErrUnauthorized) || errors.Is(ae, api.ErrForbidden) || errors.Is(ae, api.ErrSealed)
	}
	var se *statusErr
	return errors.As(err, &se) && (se.status == http.StatusNotFound || se.status == http.StatusMethodNotAllowed)
}

// learnCluster records a full topology: every node with a usable API
// address joins the table with its region, state and seal state; the
// leader is taken from the reply when it names one. Nodes absent from it
// stay, ranked as unknown: a removed node's address may be reused.
func (c *Client) learnCluster(ci *api.ClusterInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	leader := ""
	for _, cn := range ci.Nodes {
		u, err := normalizeAddr(cn.APIAddr)
		if err != nil {
			continue
		}
		n := c.addNodeLocked(u)
		if n == nil {
			continue
		}
		n.id, n.region, n.sealed, n.gen = cn.ID, cn.Region, cn.Sealed, c.gen
		n.state = cn.State
		if n.state == "" {
			n.state = api.NodeUnknown
		}
		if cn.Leader && cn.State != api.NodeDead && cn.State != api.NodeLeft {
			leader = u
		}
	}
	for _, n := range c.nodes {
		if n.gen != c.gen && n.state != "" {
			n.state = api.NodeUnknown
		}
	}
	if u, err := normalizeAddr(ci.Leader); err == nil && c.addNodeLocked(u) != nil {
		leader = u
	}
	if leader != "" {
		// A reply without a leader (an election, or a node cut off) keeps
		// the last one: a write there is answered with a hint or fails
		// over.
		c.leader = leader
	}
	c.topo = slices.Clone(ci.Nodes)
	c.topoFull = true
}

// learnStatus records what a status reply from addr tells: the peers' API
// addresses, the leader, and the answering node's seal state. It builds a
// topology from it only while no full one was learned.
func (c *Client) learnStatus(addr string, st *api.SealStatus) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range st.Peers {
		if u, err := normalizeAddr(p.APIAddr); err == nil {
			c.addNodeLocked(u)
		}
	}
	if u, err := normalizeAddr(st.Leader); err == nil && c.addNodeLocked(u) != nil {
		c.leader = u
	}
	if n := c.byAddr[addr]; n != nil {
		n.sealed = st.Sealed
		if st.NodeID != "" {
			n.id = st.NodeID
		}
	}
	if c.topoFull {
		return
	}
	self := api.ClusterNode{ID: st.NodeID, APIAddr: strings.TrimPrefix(addr, "https://"), Sealed: st.Sealed,
		State: api.NodeUnknown, Applied: st.Applied, HSMOK: st.HSM == "ok"}
	topo := make([]api.ClusterNode, 0, len(st.Peers)+1)
	found := false
	for _, p := range st.Peers {
		cn := api.ClusterNode{ID: p.ID, APIAddr: p.APIAddr, RaftAddr: p.RaftAddr, Voter: p.Voter,
			NonVoter: !p.Voter, Leader: p.Leader, State: api.NodeUnknown}
		if p.ID != "" && p.ID == st.NodeID {
			found = true
			cn.Sealed, cn.Applied, cn.HSMOK = self.Sealed, self.Applied, self.HSMOK
			if cn.APIAddr == "" {
				cn.APIAddr = self.APIAddr
			}
		}
		topo = append(topo, cn)
	}
	if !found {
		topo = append(topo, self)
	}
	c.topo = topo
}

// isDialError reports whether err happened before a connection existed, so
// the request cannot have reached a node.
func isDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}
