package node

import (
	"sync"
	"time"
)

// clockJumpTolerance is how far the wall clock may move away from the
// node's steady clock (the wall clock at the last agreement plus the
// monotonic time since) and still be followed. NTP slews and steps of a
// few seconds are followed; a larger jump is ignored until the wall clock
// comes back within it (or the node restarts).
const clockJumpTolerance = time.Minute

// clock is the node's time for decisions that must survive a wall-clock
// jump while the node runs: token expiry, the scheduler's deletion and
// rotation windows, and the timestamps the leader stamps on writes. Each
// call follows the wall clock (Config.Now) while it agrees with the steady
// clock within clockJumpTolerance, and re-anchors there; past that it
// answers the steady clock and warns once per jump.
//
// Decision: a jump in either direction is ignored, rather than trusting
// whichever direction is safe, so a token neither expires early nor
// lives late, and a key is neither deleted early nor kept past its window
// by more than the tolerance. The wall clock at start is trusted.
type clock struct {
	wall func() time.Time
	warn func(skew time.Duration)

	mu         sync.Mutex
	anchorWall time.Time // wall clock at the last agreement, no monotonic reading
	anchorMono time.Time // time.Now() then, with its monotonic reading
	jumped     bool      // a warning was given for the current jump
}

func newClock(wall func() time.Time, warn func(time.Duration)) *clock {
	if wall == nil {
		wall = time.Now
	}
	return &clock{wall: wall, warn: warn, anchorWall: wall().Round(0), anchorMono: time.Now()}
}

// now returns the node's time.
func (c *clock) now() time.Time {
	w := c.wall().Round(0)
	c.mu.Lock()
	defer c.mu.Unlock()
	steady := c.anchorWall.Add(time.Since(c.anchorMono))
	skew := w.Sub(steady)
	if skew.Abs() <= clockJumpTolerance {
		c.anchorWall, c.anchorMono, c.jumped = w, time.Now(), false
		return w
	}
	if !c.jumped {
		c.jumped = true
		if c.warn != nil {
			c.warn(skew)
		}
	}
	return steady
}
