package client

import (
	"slices"
	"time"

	"github.com/keyd/keyd/api"
)

// node is one known API endpoint, what the topology says about it and its
// health as this client saw it. Guarded by Client.mu.
type node struct {
	addr   string // base URL, "https://host:port"
	id     string // node id, "" until a topology or status names it
	region string // "" until the topology reports it
	// state is the gossip state from the last full topology (api.NodeAlive,
	// ...); "" when no topology mentioned the node.
	state  string
	sealed bool // reported sealed, or answered sealed
	// gen is Client.gen of the last full topology that listed the node.
	gen       uint64
	downUntil time.Time
	// unreachableUntil is set with downUntil when a connection failed (not
	// when the node answered sealed); see Client.Unreachable.
	unreachableUntil time.Time
}

// Ranks order healthy candidates for reads and crypto calls; lower is
// tried first. Nodes on cool-down come after every ranked node.
const (
	rankLocal   = iota // alive, unsealed, in Config.Region
	rankAlive          // alive, unsealed
	rankUnknown        // no news (seeds before any topology), or suspect
	rankAvoid          // sealed, dead or left: may come back, so kept
)

// rankLocked says how good a target n is for a read or crypto call.
func (c *Client) rankLocked(n *node) int {
	switch {
	case n.sealed || n.state == api.NodeDead || n.state == api.NodeLeft:
		return rankAvoid
	case n.state != api.NodeAlive:
		return rankUnknown
	case c.region != "" && n.region == c.region:
		return rankLocal
	default:
		return rankAlive
	}
}

// addNodeLocked records addr (already normalized) and returns its node, or
// nil when the table is full.
func (c *Client) addNodeLocked(addr string) *node {
	if n, ok := c.byAddr[addr]; ok {
		return n
	}
	if len(c.nodes) >= maxNodes {
		return nil
	}
	n := &node{addr: addr}
	c.nodes = append(c.nodes, n)
	c.byAddr[addr] = n
	return n
}

// setLeader records a not_leader hint; it reports whether the hint was
// usable.
func (c *Client) setLeader(hint string) (string, bool) {
	u, err := normalizeAddr(hint)
	if err != nil {
		return "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.addNodeLocked(u)
	if n == nil {
		return "", false
	}
	c.leader = u
	// A leader hint is fresher news than an earlier failure.
	n.downUntil = time.Time{}
	n.unreachableUntil = time.Time{}
	return u, true
}

// forgetLeader drops addr as the known leader, so the next write refreshes.
func (c *Client) forgetLeader(addr string) {
	c.mu.Lock()
	if c.leader == addr {
		c.leader = ""
	}
	c.mu.Unlock()
}

func (c *Client) leaderKnown() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader != ""
}

// markDown puts addr on cool-down and stops preferring it.
func (c *Client) markDown(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.byAddr[addr]; n != nil {
		n.downUntil = time.Now().Add(coolDown)
	}
	if c.preferred == addr {
		c.preferred = ""
	}
}

// markUnreachable is markDown after a connection to addr failed.
func (c *Client) markUnreachable(addr string) {
	c.markDown(addr)
	c.mu.Lock()
	if n := c.byAddr[addr]; n != nil {
		n.unreachableUntil = n.downUntil
	}
	c.mu.Unlock()
}

// Unreachable reports whether a connection to the node at addr
// ("host:port" or "https://host:port") failed within the last few
// seconds with no success since: a caller fanning out to every node (the
// CLI waiting for a write to reach all nodes, a status table) can skip it
// instead of paying a connect timeout again. Unknown addresses are not
// unreachable.
func (c *Client) Unreachable(addr string) bool {
	u, err := normalizeAddr(addr)
	if err != nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.byAddr[u]
	return n != nil && time.Now().Before(n.unreachableUntil)
}

// markSealed records that addr answered sealed: it is skipped for a
// while and ranked last until it serves a crypto call or a topology says
// it is unsealed.
func (c *Client) markSealed(addr string) {
	c.mu.Lock()
	if n := c.byAddr[addr]; n != nil {
		n.sealed = true
	}
	c.mu.Unlock()
	c.markDown(addr)
}

// markUp records a success at addr. served says addr served a key
// operation, so it is unsealed and becomes the first choice for later
// reads and crypto calls.
func (c *Client) markUp(addr string, served bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.byAddr[addr]
	if n == nil {
		return
	}
	n.downUntil = time.Time{}
	n.unreachableUntil = time.Time{}
	if served {
		n.sealed = false
		c.preferred = addr
	}
}

// unprefer stops preferring addr without putting it on cool-down.
func (c *Client) unprefer(addr string) {
	c.mu.Lock()
	if c.preferred == addr {
		c.preferred = ""
	}
	c.mu.Unlock()
}

// pickWrite returns the node for a write: the known leader when it is
// healthy and not yet tried in this round, else the best other node
// (every node forwards writes to the leader).
func (c *Client) pickWrite(tried []string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.byAddr[c.leader]; n != nil && time.Now().After(n.downUntil) && !slices.Contains(tried, n.addr) {
		return n.addr
	}
	return c.pickLocked(time.Now(), tried)
}

// pickRead returns the node for a read or crypto call: the best-ranked
// healthy node not tried in this round (the last node that answered, when
// it ranks best, else the next in rotation), else the node whose cool-down
// ends first.
func (c *Client) pickRead(tried []string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pickLocked(time.Now(), tried)
}

// pickAny is pickRead avoiding one node.
func (c *Client) pickAny(exclude string) string {
	return c.pickRead([]string{exclude})
}

func (c *Client) pickLocked(now time.Time, tried []string) string {
	if a := c.bestLocked(now, tried); a != "" {
		return a
	}
	// Nothing healthy and untried: the untried node back soonest, else
	// any node back soonest (a round can only end by trying something).
	var best *node
	for _, n := range c.nodes {
		if !slices.Contains(tried, n.addr) && (best == nil || n.downUntil.Before(best.downUntil)) {
			best = n
		}
	}
	if best == nil {
		for _, n := range c.nodes {
			if best == nil || n.downUntil.Before(best.downUntil) {
				best = n
			}
		}
	}
	return best.addr
}

// bestLocked returns the best-ranked healthy node not in tried, or "".
func (c *Client) bestLocked(now time.Time, tried []string) string {
	bestRank := -1
	for _, n := range c.nodes {
		if now.After(n.downUntil) && !slices.Contains(tried, n.addr) {
			if r := c.rankLocked(n); bestRank < 0 || r < bestRank {
				bestRank = r
			}
		}
	}
	if bestRank < 0 {
		return ""
	}
	ok := func(n *node) bool {
		return now.After(n.downUntil) && !slices.Contains(tried, n.addr) && c.rankLocked(n) == bestRank
	}
	// Stick to the node that answered last while it ranks best: it has a
	// warm connection.
	if n := c.byAddr[c.preferred]; n != nil && ok(n) {
		return n.addr
	}
	for i := range len(c.nodes) {
		j := (c.next + i) % len(c.nodes)
		if n := c.nodes[j]; ok(n) {
			c.next = j + 1
			return n.addr
		}
	}
	return "" // unreachable: bestRank came from a node that satisfies ok
}

// hasUntried reports whether a healthy node outside tried is worth an
// immediate attempt: one not known to be sealed, dead or left.
func (c *Client) hasUntried(tried []string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for _, n := range c.nodes {
		if now.After(n.downUntil) && !slices.Contains(tried, n.addr) && c.rankLocked(n) < rankAvoid {
			return true
		}
	}
	return false
}

// refreshOrderLocked lists the nodes to ask for the topology: the leader
// first (its view is authoritative and a lagging node's is not), then the
// healthy nodes by rank, then the ones cooling down.
func (c *Client) refreshOrderLocked(now time.Time) []string {
	out := make([]string, 0, len(c.nodes))
	if c.leader != "" {
		if n := c.byAddr[c.leader]; n != nil && now.After(n.downUntil) {
			out = append(out, n.addr)
		}
	}
	for r := rankLocal; r <= rankAvoid; r++ {
		for _, n := range c.nodes {
			if now.After(n.downUntil) && c.rankLocked(n) == r && n.addr != c.leader {
				out = append(out, n.addr)
			}
		}
	}
	for _, n := range c.nodes {
		if !now.After(n.downUntil) && !slices.Contains(out, n.addr) {
			out = append(out, n.addr)
		}
	}
	return out
}
