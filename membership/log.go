package membership

import (
	"log/slog"
	"strings"

	"github.com/keyd/keyd/internal/logbridge"
)

// memberlistLogRules demote the memberlist records a normal start and
// stop produce. Other memberlist lines keep their level: a failed probe
// is a warning, because it is one.
var memberlistLogRules = []logbridge.Rule{
	{
		Source: "memberlist", From: slog.LevelError, Prefix: "Failed to send", To: slog.LevelDebug,
		When: ownClose,
		Why:  "this node closed its own socket while an ack or gossip was going out: a clean shutdown",
	},
	{
		Source: "memberlist", From: slog.LevelError, Prefix: "Error reading UDP packet", To: slog.LevelDebug,
		When: ownClose,
		Why:  "this node closed its own socket: a clean shutdown",
	},
}

// ownClose matches a message about a socket this process closed.
func ownClose(attr func(string) (string, bool)) bool {
	msg, _ := attr("msg")
	return strings.Contains(msg, "use of closed network connection")
}
