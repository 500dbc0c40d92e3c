// Package leakcheck runs a package's tests and then fails them if any
// goroutine outlives them, like goleak.VerifyTestMain, but waits longer
// for goroutines that end on their own deadline after their owner closed.
//
// memberlist's probe goroutines (a fallback TCP ping, an indirect-ping
// nack timer) are not joined by memberlist's Shutdown; they end within a
// probe interval, which on a busy 2-core machine can exceed goleak's
// default patience of about two seconds. A real leak still fails: it is
// still there when the deadline passes.
package leakcheck

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Patience is how long VerifyTestMain waits for goroutines to end after
// the tests have finished.
const Patience = 15 * time.Second

// VerifyTestMain runs m and exits with its code, or with 1 when goroutines
// other than those opts ignore are still running Patience after the tests
// ended.
func VerifyTestMain(m *testing.M, opts ...goleak.Option) {
	code := m.Run()
	if code == 0 {
		if err := wait(Patience, opts...); err != nil {
			fmt.Fprintf(os.Stderr, "leakcheck: goroutines still running %s after the tests ended: %v\n", Patience, err)
			code = 1
		}
	}
	os.Exit(code)
}

func wait(d time.Duration, opts ...goleak.Option) error {
	deadline := time.Now().Add(d)
	for {
		err := goleak.Find(opts...)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
