package node_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
	"github.com/keyd/keyd/internal/leakcheck"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		runChildNode()
		return
	}
	leakcheck.VerifyTestMain(m,
		// The HTTP/2 and keep-alive pools of closed clients wind down on
		// their own timers.
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

func testclientRID(ctx context.Context, rid string) context.Context {
	return client.WithRequestID(ctx, rid)
}

func errorsIsSealed(err error) bool { return errors.Is(err, api.ErrSealed) }
