package testcluster

import (
	"os"
	"strings"
	"testing"

	"github.com/dflockd/dflockd/internal/leakcheck"
	"github.com/dflockd/dflockd/internal/testutil"
)

func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m, IgnoreStrandedFutures)) }

// A lock taken through a follower (relayed) survives the leader's kill,
// a partition that cuts the next leader off, and a restart of every node.
func TestClusterKillPartitionRestart(t *testing.T) {
	c := Start(t, Config{})
	leader := c.Leader(t)
	a := testutil.Dial(t, c.Followers()[0].Addr)
	tok := a.Token("l", "k", "0 60", "ok")

	c.Kill(leader.Index)
	l2 := c.NewLeader(t, leader)
	testutil.Dial(t, l2.Addr).Expect("l", "k", "0", "timeout")

	c.Restart(leader.Index)
	c.Isolate(l2.Index) // the two others elect
	l3 := c.NewLeader(t, l2)
	testutil.Dial(t, l3.Addr).Expect("l", "k", "0", "timeout")
	c.Heal()

	for i := range c.Nodes {
		c.Kill(i)
	}
	for i := range c.Nodes {
		c.Restart(i)
	}
	e := testutil.Dial(t, c.Leader(t).Addr)
	e.Expect("l", "k", "0", "timeout")
	if got := e.Do("r", "k", tok); !strings.HasPrefix(got, "ok") {
		t.Fatalf("release of the surviving lock: %q", got)
	}
	e.Token("l", "k", "0", "ok")
}
