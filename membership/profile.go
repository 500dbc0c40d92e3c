package membership

import (
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
)

// Profile selects gossip timing. The figures below are what each profile
// changes from memberlist's defaults; everything else is left as memberlist
// ships it.
type Profile string

const (
	// ProfileLAN is for nodes in one data centre (the default). Based on
	// memberlist.DefaultLANConfig with:
	//
	//	ProbeInterval            1 s    -> 200 ms
	//	ProbeTimeout             500 ms -> 100 ms
	//	SuspicionMult            4      -> 3
	//	SuspicionMaxTimeoutMult  6      -> 4
	//	GossipInterval           200 ms -> 100 ms
	//	TCPTimeout               10 s   -> 5 s
	//	DeadNodeReclaimTime      never  -> 30 s (= GossipToTheDeadTime)
	//
	// For clusters under 10 nodes the suspicion timeout is
	// SuspicionMult*ProbeInterval = 600 ms once one other node confirms the
	// suspicion, and at most 4x that without confirmation. A node that stops
	// answering is declared dead by everyone in roughly 1–1.5 s on loopback
	// (membership tests log the measured figure); the default config takes
	// 5–6 s. The price is 5x the probe traffic: one small UDP ping per node
	// every 200 ms.
	ProfileLAN Profile = "lan"
	// ProfileWAN is for nodes spread across regions: memberlist's
	// DefaultWANConfig unchanged (ProbeInterval 5 s, ProbeTimeout 3 s,
	// SuspicionMult 6, GossipInterval 500 ms, GossipNodes 4,
	// PushPullInterval 60 s, GossipToTheDeadTime 60 s) except that a dead
	// node's name can be reclaimed after 60 s. Expect dead detection in
	// about 30 s.
	ProfileWAN Profile = "wan"
	// ProfileLocal is for tests on one host: the LAN timing on top of
	// memberlist.DefaultLocalConfig, with shorter TCP timeout (1 s),
	// push/pull (5 s) and dead-node memory (5 s) so restarted test nodes
	// can reuse their id quickly.
	ProfileLocal Profile = "local"
)

// memberlistConfig returns a fresh memberlist config for p. An empty p means
// ProfileLAN.
func memberlistConfig(p Profile) (*memberlist.Config, error) {
	var c *memberlist.Config
	switch p {
	case ProfileLAN, "":
		c = memberlist.DefaultLANConfig()
		tuneFast(c)
		c.TCPTimeout = 5 * time.Second
	case ProfileLocal:
		c = memberlist.DefaultLocalConfig()
		tuneFast(c)
		c.TCPTimeout = time.Second
		c.PushPullInterval = 5 * time.Second
		c.GossipToTheDeadTime = 5 * time.Second
	case ProfileWAN:
		c = memberlist.DefaultWANConfig()
	default:
		return nil, fmt.Errorf("%w: unknown profile %q", ErrInvalidConfig, p)
	}
	// Once peers stop gossiping about a dead node, let a restarted node with
	// the same id but a new address take the name back instead of being
	// rejected as a conflict forever.
	c.DeadNodeReclaimTime = c.GossipToTheDeadTime
	return c, nil
}

// tuneFast applies the probe and gossip figures documented on ProfileLAN.
func tuneFast(c *memberlist.Config) {
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 100 * time.Millisecond
	c.SuspicionMult = 3
	c.SuspicionMaxTimeoutMult = 4
	c.GossipInterval = 100 * time.Millisecond
	c.IndirectChecks = 3
	c.RetransmitMult = 4
}
