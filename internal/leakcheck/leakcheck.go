// Package leakcheck runs a package's tests and then fails the run if a
// goroutine outlives them, using go.uber.org/goleak with a patient retry:
// goleak on its own gives up after about half a second, while a QUIC
// connection closing or a session finishing its disconnect clean-up can
// legitimately take a little longer under the race detector on a busy
// machine. It is for TestMain functions only.
package leakcheck

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Patience is how long Main keeps looking for the goroutines of a passed
// run to end before it reports them as leaked.
const Patience = 10 * time.Second

// Main runs m and, if every test passed, checks with goleak (options
// passed through) that no goroutine is left, retrying for up to Patience.
// It returns the exit code for os.Exit:
//
//	func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m)) }
func Main(m *testing.M, opts ...goleak.Option) int {
	code := m.Run()
	if code != 0 {
		return code
	}
	if err := Wait(Patience, opts...); err != nil {
		fmt.Fprintf(os.Stderr, "leakcheck: goroutines left after a passing run: %v\n", err)
		return 1
	}
	return 0
}

// Wait polls goleak.Find until no unexpected goroutine is left, for at
// most limit, and returns goleak's last error if some still are.
func Wait(limit time.Duration, opts ...goleak.Option) error {
	deadline := time.Now().Add(limit)
	for {
		err := goleak.Find(opts...) // itself retries for ~0.5 s
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
