package server

import (
	"net"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/testutil"
)

// TestResumeCountsLiveLeases: a lease and a granted enqueue record whose
// leases ran out while the session was detached are not held any more,
// even if no sweep has evicted them yet (a renew or a w finds them gone):
// resume answers held 0. Found by internal/lincheck.
func TestResumeCountsLiveLeases(t *testing.T) {
	clk := testutil.NewClock()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := startOn(t, l, Options{}, core.Options{Now: clk.Now}, false) // no Run: nothing is swept
	a := testutil.Dial(t, ts.Addr)
	sid, secret := nameSession(t, a, "30", "30")
	tok := expectGrant(t, a.Do("l", "k", "0 2"), "ok", "2")
	expectGrant(t, a.Do("e", "k2", "2"), "acquired", "2")
	dropConn(a)
	eventually(t, "the session detached", func() bool { return ts.Engine.SessionStats().Detached == 1 })
	clk.Advance(3 * time.Second)
	b := testutil.Dial(t, ts.Addr)
	b.Expect("resume", sid, secret, "ok 0 0")
	b.Expect("n", "k", tok, "error")
	b.Expect("w", "k2", "0", "error_lease_expired")
}
