package server

import (
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
)

// Issue 11 #8: `n k <tok> 1` on a 60 s lease with a waiter queued hands
// the lock to the waiter when the shortened lease ends. The sweep runs
// once an hour here, so only the re-registered deadline can serve the
// waiter in time; the bound below is generous (the lease alone takes 1 s).
func TestRenewShorterLeaseServesWaiter(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ lock, renew, limit string }{{"l", "n", ""}, {"sl", "sn", " 1"}} {
		ts := start(t, Options{}, core.Options{SweepInterval: time.Hour})
		h, w := ts.dial(t), ts.dial(t)
		tok := expectGrant(t, h.Do(c.lock, "k", "0"+c.limit+" 60"), "ok", "60")
		chW := bg(w)
		w.Req(c.lock, "k", "30"+c.limit+" 5")
		// stats list a limit-1 semaphore among the locks
		eventually(t, "waiter queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })
		renewed := time.Now()
		h.Expect(c.renew, "k", tok+" 1", "ok 1")
		select {
		case got := <-chW:
			if !strings.HasPrefix(got, "ok ") {
				t.Fatalf("%s: waiter got %q; want ok <token> 5", c.lock, got)
			}
			if el := time.Since(renewed); el < 900*time.Millisecond {
				t.Fatalf("%s: waiter served after %v, before the shortened lease ended", c.lock, el)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: waiter not served within 5 s of a renew to a 1 s lease", c.lock)
		}
	}
}
