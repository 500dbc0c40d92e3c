package transport_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine (handshakes, accept loops, raft)
// outlives the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
