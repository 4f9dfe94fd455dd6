package bench

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/cluster"
	"github.com/dflockd/dflockd/internal/testcluster"
)

// A reproduction of what the failover runs found (reported, not fixed
// here): docs/protocol.md says an `l` blocked when a named session's
// connection drops keeps its place and becomes an enqueued place, to be
// collected with `w` after `resume`. When the connection dropped because
// the leader died, that does not happen: the old leader could not
// propose Park, and the new leader keeps the place as a plain `l` place.
// After `resume` (answered "ok 0 1"), `w` answers error_not_enqueued, and
// when the place is granted the grant goes to the session with a token
// its client never learns, held until its lease ends (or bye).
//
// It fails today; run it with DFLOCKD_REPRO_PARK=1.
func TestReproBlockedAcquireAfterLeaderKill(t *testing.T) {
	if os.Getenv("DFLOCKD_REPRO_PARK") == "" {
		t.Skip("reproduces a cluster bug (set DFLOCKD_REPRO_PARK=1)")
	}
	c := testcluster.Start(t, testcluster.Config{})
	l1 := c.Leader(t)
	type cl struct {
		c net.Conn
		r *bufio.Reader
	}
	dial := func(addr string) *cl {
		nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
		return &cl{nc, bufio.NewReader(nc)}
	}
	send := func(x *cl, cmd, key, arg string) {
		if _, err := fmt.Fprintf(x.c, "%s\n%s\n%s\n", cmd, key, arg); err != nil {
			t.Fatal(err)
		}
	}
	read := func(x *cl) string {
		line, err := x.r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSuffix(line, "\n")
	}
	do := func(x *cl, cmd, key, arg string) string { send(x, cmd, key, arg); return read(x) }

	a := dial(l1.Addr)
	fa := strings.Fields(do(a, "session", "_", "60"))
	tok := strings.Fields(do(a, "l", "k", "10 60"))[1]
	b := dial(l1.Addr)
	fb := strings.Fields(do(b, "session", "_", "60"))
	send(b, "l", "k", "30 60") // blocks behind a
	var sid cluster.SessionID
	raw, _ := hex.DecodeString(fb[1])
	copy(sid[:], raw)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if si, ok := l1.Replica().State().Session(sid); ok && si.Queued == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b's l never queued")
		}
		time.Sleep(10 * time.Millisecond)
	}

	c.Kill(l1.Index)
	l2 := c.NewLeader(t, l1)
	b2 := dial(l2.Addr)
	if got := do(b2, "resume", fb[1], fb[2]); got != "ok 0 1" {
		t.Fatalf("b resume = %q, want ok 0 1", got)
	}
	a2 := dial(l2.Addr)
	if got := do(a2, "resume", fa[1], fa[2]); got != "ok 1 0" {
		t.Fatalf("a resume = %q, want ok 1 0", got)
	}
	send(b2, "w", "k", "10")
	if got := do(a2, "r", "k", tok); got != "ok" {
		t.Fatalf("a release = %q", got)
	}
	// As documented: b's place was parked, and w collects its grant.
	if got := read(b2); !strings.HasPrefix(got, "ok ") {
		t.Fatalf("b's w after the failover = %q, want ok <token> <lease> (its blocked l should have become an enqueued place)", got)
	}
}
