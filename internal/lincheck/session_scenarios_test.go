package lincheck

import (
	"fmt"
	"math/rand"
	"net"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/dflockd/dflockd/internal/faultproxy"
)

// Scenarios of named sessions, each checked by porcupine as well.

// nameAs sends `session` with a TTL of ttl seconds and returns the answer.
func (c *client) nameAs(t *testing.T, k keySpec, ttl int) Output {
	t.Helper()
	out, _ := c.doLine(Input{Op: OpSession, Key: k.part(), Limit: k.limit, TTL: time.Duration(ttl) * time.Second}, "session", "_", itoa(ttl))
	if out.Status != "ok" {
		t.Fatalf("session: %+v", out)
	}
	c.sid, c.secret, c.attached = out.SID, out.Secret, true
	return out
}

// resumeAs resumes the client's session on its current connection.
func (c *client) resumeAs(k keySpec) Output {
	out, _ := c.doLine(Input{Op: OpResume, Key: k.part(), Limit: k.limit, SID: c.sid, Secret: c.secret}, "resume", c.sid, c.secret)
	return out
}

// drop closes the client's connection, records its end, and connects
// again (without resuming).
func (c *client) drop(pending *porcupine.Operation) {
	c.cutBy(func(_ faultproxy.ConnInfo, conn net.Conn) { conn.Close() })
	c.ended(pending)
	if err := c.connect(); err != nil {
		c.h.t.Fatalf("reconnect: %v", err)
	}
}

// lockFor runs l/sl with the given timeout and lease (seconds).
func (c *client) lockFor(k keySpec, timeout, lease int) Output {
	in := Input{Op: OpAcquire, Key: k.part(), Limit: k.limit, Timeout: timeout, TTL: time.Duration(lease) * time.Second, Tracked: k.tracked && timeout > 0}
	out, _ := c.do(in, cmdFor(k, "l"), acquireArg(k, timeout, lease))
	return out
}

func itoa(n int) string { return fmt.Sprint(n) }

// TestParkedWaiter: a named client blocked in l is cut. Its place stays
// in the FIFO as an enqueued place: the holder's release grants it ahead
// of the waiter behind, and after resume a w collects it with the lease
// the l asked for.
func TestParkedWaiter(t *testing.T) {
	h := newHarnessFor(t, 3, sessionKeys, true)
	rng := rand.New(rand.NewSource(3))
	holder, a, c, d := h.newClient(0, rng), h.newClient(1, rng), h.newClient(2, rng), h.newClient(3, rng)
	k := sessionKeys[0]
	first := holder.lockFor(k, 0, 30)
	if first.Status != "ok" {
		t.Fatalf("first acquire: %+v", first)
	}
	a.nameAs(t, k, 8)
	op, err := a.send(Input{Op: OpAcquire, Key: k.part(), Limit: 1, Timeout: 30, TTL: 20 * time.Second, Tracked: true}, "l", "30 20")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a to be queued", func() bool { return waiters(h, k) == 1 })
	behind := make(chan Output, 1)
	go func() { behind <- c.lockFor(k, 30, 10) }()
	waitFor(t, "c to be queued", func() bool { return waiters(h, k) == 2 })
	a.drop(op)
	if n := waiters(h, k); n != 2 {
		t.Fatalf("%d waiters after a was cut; want a's place kept", n)
	}
	if out, _ := holder.do(Input{Op: OpRelease, Key: k.part(), Limit: 1, Token: first.Token}, "r", first.Token); out.Status != "ok" {
		t.Fatalf("release: %+v", out)
	}
	if out := d.lockFor(k, 0, 10); out.Status != "timeout" {
		t.Fatalf("try-lock while a's place holds the lock: %+v", out)
	}
	if n := waiters(h, k); n != 1 {
		t.Fatalf("%d waiters after the release; want c still waiting", n)
	}
	if out := a.resumeAs(k); out.Status != "ok" || out.Held != 1 || out.Queued != 0 {
		t.Fatalf("resume: %+v; want ok 1 0", out)
	}
	got, _ := a.wait(k, 0)
	if got.Status != "ok" || got.TTL != 20 {
		t.Fatalf("w after resume: %+v; want ok <token> 20", got)
	}
	if out, _ := a.do(Input{Op: OpRelease, Key: k.part(), Limit: 1, Token: got.Token}, "r", got.Token); out.Status != "ok" {
		t.Fatalf("release of the collected grant: %+v", out)
	}
	if out := <-behind; out.Status != "ok" {
		t.Fatalf("the waiter behind: %+v", out)
	}
	for _, cl := range []*client{holder, a, c, d} {
		cl.finish()
	}
	h.endSessions(9)
	h.check(10 * time.Second)
}

// TestDetachedHolderExpires: a named holder is cut; the lock stays taken
// for the session's TTL, then the session expires and the waiter gets
// it; the session cannot be resumed any more.
func TestDetachedHolderExpires(t *testing.T) {
	h := newHarnessFor(t, 4, sessionKeys, true)
	rng := rand.New(rand.NewSource(4))
	a, b := h.newClient(0, rng), h.newClient(1, rng)
	k := sessionKeys[1] // a semaphore: a takes both slots
	a.nameAs(t, k, 4)
	for range k.limit {
		if out := a.lockFor(k, 0, 30); out.Status != "ok" {
			t.Fatalf("acquire: %+v", out)
		}
	}
	a.drop(nil)
	done := make(chan Output, 1)
	go func() { done <- b.lockFor(k, 30, 10) }()
	waitFor(t, "b to be queued", func() bool { return waiters(h, k) == 1 })
	h.tick(9, 3*time.Second, 1)
	if n := waiters(h, k); n != 1 {
		t.Fatalf("%d waiters within the session's TTL; want b still waiting", n)
	}
	h.tick(9, 2*time.Second, 1)
	if out := <-done; out.Status != "ok" {
		t.Fatalf("waiter after the session expired: %+v", out)
	}
	if out := a.resumeAs(k); out.Status != "error_session" {
		t.Fatalf("resume of the expired session: %+v", out)
	}
	a.finish()
	b.finish()
	h.endSessions(9)
	h.check(10 * time.Second)
}

// TestResumeCountsOnlyLiveLeases: a session's lease and granted
// enqueue record run out while it is detached, and no sweep has evicted
// them yet. They are not held any more (a renew or a wait finds them
// gone), so resume must answer held 0.
func TestResumeCountsOnlyLiveLeases(t *testing.T) {
	h := newHarnessFor(t, 5, sessionKeys, true)
	rng := rand.New(rand.NewSource(5))
	a := h.newClient(0, rng)
	k := sessionKeys[0]
	a.nameAs(t, k, 8)
	tok := a.lockFor(k, 0, 2)
	if tok.Status != "ok" {
		t.Fatalf("acquire: %+v", tok)
	}
	a.drop(nil)
	h.tick(9, 3*time.Second, 0) // past the lease, within the session's TTL; no sweep
	out := a.resumeAs(k)
	if out.Status != "ok" || out.Held != 0 || out.Queued != 0 {
		t.Errorf("resume after the lease ran out: %+v; want ok 0 0 (the lease ended at 2 s, the clock is at 3 s)", out)
	}
	if r, _ := a.do(Input{Op: OpRenew, Key: k.part(), Limit: 1, Token: tok.Token, TTL: defaultTTL}, "n", tok.Token); r.Status != "error" {
		t.Errorf("renew of the lease that ran out: %+v; want error", r)
	}
	a.finish()
	h.endSessions(9)
	h.check(10 * time.Second)
}
