package server

import (
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
)

// Blocking acquires, FIFO queues and disconnect cleanup (§2.3, §7.2).

// §2.3: a blocked `l` is answered `ok` as soon as the holder releases.
func TestLock_BlockedAnsweredOnRelease(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a, b := ts.dial(t), ts.dial(t)
	tok := expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	ch := bg(b)
	b.Req("l", "k", "10 12")
	eventually(t, "b queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })
	pending(t, ch)
	a.Expect("r", "k", tok, "ok")
	tb := expectGrant(t, recv(t, ch), "ok", "12")
	b.Expect("r", "k", tb, "ok")
}

// Edge 5: `l` with timeout 0 on a held lock answers `timeout` and leaves
// no waiter behind. Locks are not re-entrant: the holder's own try fails.
func TestEdge05_TryLockOnHeldKeyLeavesNoWaiter(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a, b := ts.dial(t), ts.dial(t)
	expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	for range 3 {
		b.Expect("l", "k", "0", "timeout")
		a.Expect("l", "k", "0", "timeout")
	}
	st, _ := wireStats(t, b)
	if l, ok := findLock(st.Locks, "k"); !ok || l.Waiters != 0 {
		t.Fatalf("stats lock k = %+v; want held with 0 waiters", l)
	}
	// With one real waiter queued, tries leave the count at 1.
	c := ts.dial(t)
	c.Req("l", "k", "30")
	eventually(t, "c queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })
	b.Expect("l", "k", "0", "timeout")
	if w := waitersOf(ts.Engine, "k"); w != 1 {
		t.Fatalf("waiters = %d after a try-lock; want 1", w)
	}
}

// §2.3/edge 7: waiters are served strictly FIFO; a newcomer never
// overtakes the queue, even right after a release.
func TestEdge07_FIFOWithThreeClients(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a, b, c, d := ts.dial(t), ts.dial(t), ts.dial(t), ts.dial(t)
	ta := expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	chB := bg(b)
	b.Req("l", "k", "10")
	eventually(t, "b queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })
	chC := bg(c)
	c.Req("l", "k", "10")
	eventually(t, "c queued", func() bool { return waitersOf(ts.Engine, "k") == 2 })

	a.Expect("r", "k", ta, "ok")
	tb := expectGrant(t, recv(t, chB), "ok", "33")
	pending(t, chC)
	// The slot went to b inside the release: a newcomer finds it taken,
	// and c is still queued.
	d.Expect("l", "k", "0", "timeout")
	a.Expect("l", "k", "0", "timeout")
	if w := waitersOf(ts.Engine, "k"); w != 1 {
		t.Fatalf("waiters = %d; want 1 (c)", w)
	}
	b.Expect("r", "k", tb, "ok")
	tc := expectGrant(t, recv(t, chC), "ok", "33")
	c.Expect("r", "k", tc, "ok")
	expectGrant(t, d.Do("l", "k", "0"), "ok", "33")
}

// §2.3: FIFO for semaphores: each freed slot goes to the queue head, and
// the lease echoed is each waiter's own.
func TestSemaphore_FIFOHandOff(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a, b, c := ts.dial(t), ts.dial(t), ts.dial(t)
	t1 := expectGrant(t, a.Do("sl", "s", "0 2"), "ok", "33")
	t2 := expectGrant(t, a.Do("sl", "s", "0 2"), "ok", "33")
	chB := bg(b)
	b.Req("sl", "s", "10 2")
	eventually(t, "b queued", func() bool { return semWaitersOf(ts.Engine, "s") == 1 })
	chC := bg(c)
	c.Req("sl", "s", "10 2 6")
	eventually(t, "c queued", func() bool { return semWaitersOf(ts.Engine, "s") == 2 })
	a.Expect("sr", "s", t1, "ok")
	expectGrant(t, recv(t, chB), "ok", "33")
	pending(t, chC)
	a.Expect("sr", "s", t2, "ok")
	expectGrant(t, recv(t, chC), "ok", "6")
}

// §1/§2.3: blocking commands time out with `timeout` after whole seconds;
// the time spent blocked does not count against the read timeout; the
// connection stays usable and no waiter is left. Covers `l`, `sl` and a
// queued `w` (whose timeout also removes the waiter and the record).
func TestLock_BlockingCommandsTimeOut(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{ReadTimeout: time.Second}, core.Options{})
	h := ts.dial(t)
	expectGrant(t, h.Do("l", "k", "0"), "ok", "33")
	expectGrant(t, h.Do("sl", "s", "0 1"), "ok", "33")
	expectGrant(t, h.Do("l", "k2", "0"), "ok", "33")
	lc, sc, wc := ts.dial(t), ts.dial(t), ts.dial(t)
	wc.Expect("e", "k2", "", "queued")

	start := time.Now()
	chL, chS, chW := bg(lc), bg(sc), bg(wc)
	lc.Req("l", "k", "2")
	sc.Req("sl", "s", "2 1")
	wc.Req("w", "k2", "2")
	// The holder must not hit the read timeout itself: it pings while
	// the others are blocked (for them, blocked time does not count).
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for name, ch := range map[string]<-chan string{"l": chL, "sl": chS, "w": chW} {
	wait:
		for {
			select {
			case got := <-ch:
				if got != "timeout" {
					t.Fatalf("%s answered %q; want timeout", name, got)
				}
				break wait
			case <-tick.C:
				ping(t, h)
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: no answer", name)
			}
		}
	}
	if el := time.Since(start); el < 1900*time.Millisecond {
		t.Fatalf("timeouts after %v; want about 2s", el)
	}
	ping(t, lc)
	ping(t, sc)
	ping(t, wc)
	wc.Expect("w", "k2", "0", "error_not_enqueued")
	if n := waitersOf(ts.Engine, "k") + waitersOf(ts.Engine, "k2") + waitersOf(ts.Engine, "s"); n != 0 {
		t.Fatalf("%d waiters left after timeouts: %+v", n, ts.Engine.Stats())
	}
	ping(t, h)
}

// Edge 19: a client that closes its socket while blocked in `l` loses its
// queue position at once (well before its 30 s timeout), and the lock
// then goes to the next waiter.
func TestEdge19_PeerCloseWhileBlockedRemovesWaiter(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a, b, c := ts.dial(t), ts.dial(t), ts.dial(t)
	ta := expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	b.Req("l", "k", "30")
	eventually(t, "b queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })
	chC := bg(c)
	c.Req("l", "k", "30")
	eventually(t, "c queued", func() bool { return waitersOf(ts.Engine, "k") == 2 })

	closed := time.Now()
	b.Conn.Close()
	eventually(t, "b's waiter removed", func() bool { return waitersOf(ts.Engine, "k") == 1 })
	if el := time.Since(closed); el > time.Second {
		t.Fatalf("waiter removed %v after the close; want well under 1s", el)
	}
	a.Expect("r", "k", ta, "ok")
	expectGrant(t, recv(t, chC), "ok", "33")
	eventually(t, "b's connection gone", func() bool { return ts.Connections() == 2 })
}

// Edge 19 for two-phase: closing while blocked in `w` drops the queued
// waiter too.
func TestEdge19_PeerCloseWhileBlockedInWait(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a, b := ts.dial(t), ts.dial(t)
	ta := expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	b.Expect("e", "k", "", "queued")
	b.Req("w", "k", "30")
	time.Sleep(20 * time.Millisecond) // let the w block (the waiter exists since e)
	b.Conn.Close()
	eventually(t, "b's waiter removed", func() bool { return waitersOf(ts.Engine, "k") == 0 })
	a.Expect("r", "k", ta, "ok")
	if busy(ts.Engine) {
		t.Fatalf("key still busy after release: %+v", ts.Engine.Stats())
	}
}

// Edge 18: with auto-release (the default) a disconnect releases every
// held slot and hands them to waiters in FIFO order; its queued two-phase
// waiters disappear too.
func TestEdge18_DisconnectReleasesInFIFOOrder(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a := ts.dial(t)
	expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	expectGrant(t, a.Do("sl", "s", "0 2"), "ok", "33")
	expectGrant(t, a.Do("sl", "s", "0 2"), "ok", "33")
	expectGrant(t, a.Do("e", "e1", ""), "acquired", "33")

	b, c, d, e := ts.dial(t), ts.dial(t), ts.dial(t), ts.dial(t)
	chB := bg(b)
	b.Req("l", "k", "10")
	eventually(t, "b queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })
	chC := bg(c)
	c.Req("l", "k", "10")
	eventually(t, "c queued", func() bool { return waitersOf(ts.Engine, "k") == 2 })
	chD, chE := bg(d), bg(e)
	d.Req("sl", "s", "10 2")
	e.Req("sl", "s", "10 2")
	eventually(t, "d, e queued", func() bool { return semWaitersOf(ts.Engine, "s") == 2 })
	f := ts.dial(t)
	f.Expect("e", "e1", "", "queued")

	a.Conn.Close()
	tb := expectGrant(t, recv(t, chB), "ok", "33") // head of k's queue
	pending(t, chC)
	expectGrant(t, recv(t, chD), "ok", "33")
	expectGrant(t, recv(t, chE), "ok", "33")
	expectGrant(t, f.Do("w", "e1", "5"), "ok", "33")
	b.Expect("r", "k", tb, "ok")
	expectGrant(t, recv(t, chC), "ok", "33")
}

// Edge 17: with KeepOnDisconnect a disconnect keeps held slots but still
// purges the connection's waiters and enqueue records.
func TestEdge17_KeepOnDisconnectPurgesWaitersAndRecords(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{KeepOnDisconnect: true})
	a, b := ts.dial(t), ts.dial(t)
	ta := expectGrant(t, a.Do("l", "held", "0"), "ok", "33")
	tacq := expectGrant(t, a.Do("e", "acq", ""), "acquired", "33")
	tb := expectGrant(t, b.Do("l", "q", "0"), "ok", "33")
	a.Expect("e", "q", "", "queued")
	tb2 := expectGrant(t, b.Do("l", "q2", "0"), "ok", "33")
	a.Expect("e", "q2", "", "queued")
	b.Expect("r", "q2", tb2, "ok") // a's record on q2 is now granted, unobserved

	a.Conn.Close()
	eventually(t, "a's waiter on q removed", func() bool { return waitersOf(ts.Engine, "q") == 0 })
	eventually(t, "a's connection gone", func() bool { return ts.Connections() == 1 })
	st, _ := wireStats(t, b)
	for _, k := range []string{"held", "acq", "q2"} {
		if l, ok := findLock(st.Locks, k); !ok || l.OwnerConnID != 1 {
			t.Fatalf("key %s after a's disconnect = %+v (ok %v); want still held by conn 1", k, l, ok)
		}
	}
	// The survivor slots stay usable by token from another connection.
	b.Expect("n", "held", ta, "ok 33")
	b.Expect("r", "held", ta, "ok")
	b.Expect("r", "acq", tacq, "ok")
	// Nobody inherits q when b releases: a's waiter is gone.
	b.Expect("r", "q", tb, "ok")
	if l, ok := findLock(ts.Engine.Stats().Locks, "q"); ok {
		t.Fatalf("q = %+v after release; want idle", l)
	}
}

// Edges 14/55: a grant that races with the waiter's peer close is handed
// on (never leaked until lease expiry) and never crashes the server.
func TestEdge14_GrantRacingPeerCloseIsPassedOn(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a, c := ts.dial(t), ts.dial(t)
	for range 20 {
		ta := expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
		b := ts.dial(t)
		b.Req("l", "k", "30")
		eventually(t, "b queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })
		chC := bg(c)
		c.Req("l", "k", "30")
		eventually(t, "c queued", func() bool { return waitersOf(ts.Engine, "k") == 2 })
		done := make(chan struct{})
		go func() { defer close(done); b.Conn.Close() }()
		a.Expect("r", "k", ta, "ok")
		<-done
		tc := expectGrant(t, recv(t, chC), "ok", "33")
		c.Expect("r", "k", tc, "ok")
		eventually(t, "key idle", func() bool { return !busy(ts.Engine) })
	}
}

// Edge 20: the peer-close watcher adds no latency to hand-offs: 100
// contended hand-offs between two clients take well under 50 ms each.
func TestEdge20_HandOffLatency(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a, b := ts.dial(t), ts.dial(t)
	tok := expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	holder, other := a, b
	const rounds = 100
	begin := time.Now()
	for range rounds {
		ch := bg(other)
		other.Req("l", "k", "10")
		eventually(t, "queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })
		holder.Expect("r", "k", tok, "ok")
		tok = expectGrant(t, recv(t, ch), "ok", "33")
		holder, other = other, holder
	}
	if el := time.Since(begin); el > rounds*20*time.Millisecond {
		t.Fatalf("%d hand-offs took %v; want < 20ms each", rounds, el)
	}
}

// Edge 18: a connection that holds one semaphore slot via `sl` and
// releases another one it took via `se` (acquired, never waited on) still
// has its `sl` slot released when it disconnects.
func TestEdge18_DisconnectAfterReleasingEnqueuedSlot(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a, b := ts.dial(t), ts.dial(t)
	expectGrant(t, a.Do("sl", "s", "0 3"), "ok", "33")
	te := expectGrant(t, a.Do("se", "s", "3"), "acquired", "33")
	a.Expect("sr", "s", te, "ok")
	a.Conn.Close()
	eventually(t, "a gone", func() bool { return ts.Connections() == 1 })
	st, _ := wireStats(t, b)
	if s, ok := findSem(st.Semaphores, "s"); ok {
		t.Fatalf("semaphore s = %+v after its only holder disconnected; want no holders", s)
	}

	// A queued two-phase grant, observed with `sw`, then released, while
	// the connection keeps an `sl` slot of the same semaphore.
	c := ts.dial(t)
	tb := expectGrant(t, b.Do("sl", "s2", "0 2"), "ok", "33")
	expectGrant(t, c.Do("sl", "s2", "0 2"), "ok", "33")
	c.Expect("se", "s2", "2", "queued")
	b.Expect("sr", "s2", tb, "ok") // c's record is granted
	tc := expectGrant(t, c.Do("sw", "s2", "0"), "ok", "33")
	c.Expect("sr", "s2", tc, "ok")
	c.Conn.Close()
	eventually(t, "c gone", func() bool { return ts.Connections() == 1 })
	if s, ok := findSem(ts.Engine.Stats().Semaphores, "s2"); ok {
		t.Fatalf("semaphore s2 = %+v after its holder disconnected; want no holders", s)
	}
}
