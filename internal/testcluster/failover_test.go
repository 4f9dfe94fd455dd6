package testcluster

import (
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/internal/testutil"
)

// A named session's `l` that was blocked on a leader that dies keeps its
// place as a two-phase place, as when only its connection drops: after
// `resume` on the new leader, `w` collects it (it used to answer
// error_not_enqueued, the place being still a blocking one that no
// connection waits on, and a client asking again with `l` got a second
// place behind it and a grant it never learned of).
func TestBlockedAcquireOfLeaderKilledIsParked(t *testing.T) {
	c := Start(t, Config{})
	leader := c.Leader(t)
	a := testutil.Dial(t, leader.Addr)
	asess := a.Fields("session", "_", "30")
	tok := a.Token("l", "k", "0 60", "ok")

	b := testutil.Dial(t, leader.Addr)
	bsess := b.Fields("session", "_", "30")
	b.Req("l", "k", "30") // blocks behind a
	deadline := time.Now().Add(5 * time.Second)
	for {
		probe := testutil.Dial(t, leader.Addr)
		if strings.Contains(probe.Do("inspect", "k", ""), `"waiters":[{`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b never queued")
		}
		time.Sleep(20 * time.Millisecond)
	}

	c.Kill(leader.Index)
	l2 := c.NewLeader(t, leader)
	b2 := testutil.Dial(t, l2.Addr)
	b2.Expect("resume", bsess[1], bsess[2], "ok 0 1")
	b2.Req("w", "k", "10")

	a2 := testutil.Dial(t, l2.Addr)
	a2.Expect("resume", asess[1], asess[2], "ok 1 0")
	a2.Expect("r", "k", tok, "ok")
	if got := b2.ReadLine(); !strings.HasPrefix(got, "ok ") {
		t.Fatalf("w after resume on the new leader: %q, want a grant", got)
	}
}
