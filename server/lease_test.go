package server

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/testutil"
)

// Leases, renewals and expiry (§2.3, §7.3, §7.4). These tests run the
// engine on a fake clock and trigger expiry explicitly, so nothing sleeps
// for a lease to run out.

// §5 + §2.3: the lease starts at the grant; stats shows the remaining
// time exactly on a fake clock.
func TestLease_StatsShowRemainingLease(t *testing.T) {
	t.Parallel()
	ts, clk := startClock(t, Options{}, core.Options{})
	c := ts.dial(t)
	expectGrant(t, c.Do("l", "k", "0 20"), "ok", "20")
	clk.Advance(5500 * time.Millisecond)
	st, _ := wireStats(t, c)
	if l, _ := findLock(st.Locks, "k"); l.LeaseExpiresInS != 14.5 {
		t.Fatalf("lease_expires_in_s = %v; want 14.5", l.LeaseExpiresInS)
	}
}

// Edge 10: `n` without a lease argument resets the lease to the server
// default, not to the TTL used at acquire, and answers `ok <that TTL>`.
func TestEdge10_RenewWithoutLeaseUsesServerDefault(t *testing.T) {
	t.Parallel()
	ts, clk := startClock(t, Options{}, core.Options{DefaultTTL: 40 * time.Second})
	c := ts.dial(t)
	tok := expectGrant(t, c.Do("l", "k", "0 5"), "ok", "5")
	clk.Advance(3 * time.Second)
	c.Expect("n", "k", tok, "ok 40")
	st, _ := wireStats(t, c)
	if l, _ := findLock(st.Locks, "k"); l.LeaseExpiresInS != 40 {
		t.Fatalf("lease_expires_in_s = %v after n; want 40", l.LeaseExpiresInS)
	}
	c.Expect("n", "k", tok+" 7", "ok 7")
	st, _ = wireStats(t, c)
	if l, _ := findLock(st.Locks, "k"); l.LeaseExpiresInS != 7 {
		t.Fatalf("lease_expires_in_s = %v after n 7; want 7", l.LeaseExpiresInS)
	}
	// Same for semaphores; and the default lease of `l` is the server's.
	stok := expectGrant(t, c.Do("sl", "s", "0 3 5"), "ok", "5")
	c.Expect("sn", "s", stok, "ok 40")
	expectGrant(t, c.Do("l", "k2", "0"), "ok", "40")
}

// Edge 8: a lease that expires while its holder is idle goes to the queue
// head at the next expiry pass, and an `l`/`e` on the key evicts it at
// once instead of queueing behind it.
func TestEdge08_ExpiredLeaseGoesToQueueHeadAndIsEvictedByAcquire(t *testing.T) {
	t.Parallel()
	ts, clk := startClock(t, Options{}, core.Options{})
	a, b := ts.dial(t), ts.dial(t)
	ta := expectGrant(t, a.Do("l", "k", "0 5"), "ok", "5")
	ch := bg(b)
	b.Req("l", "k", "30")
	eventually(t, "b queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })
	clk.Advance(6 * time.Second)
	ts.Engine.ExpireDue()
	tb := expectGrant(t, recv(t, ch), "ok", "33")
	a.Expect("r", "k", ta, "error") // the expired token is dead
	a.Expect("n", "k", ta, "error")

	// Opportunistic eviction: no sweep runs, yet the newcomer gets it.
	b.Expect("n", "k", tb+" 5", "ok 5")
	clk.Advance(5 * time.Second)
	expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	b.Expect("r", "k", tb, "error")
	// ... and `e` likewise.
	tc := expectGrant(t, b.Do("l", "k3", "0 1"), "ok", "1")
	clk.Advance(time.Second)
	expectGrant(t, a.Do("e", "k3", ""), "acquired", "33")
	b.Expect("n", "k3", tc, "error")
	// ... and `sl`.
	expectGrant(t, b.Do("sl", "s", "0 1 1"), "ok", "1")
	clk.Advance(time.Second)
	expectGrant(t, a.Do("sl", "s", "0 1"), "ok", "33")
}

// §7.3: the periodic sweep evicts expired holders of keys nobody waits
// for too; their tokens are then dead.
func TestLease_SweepEvictsIdleHolders(t *testing.T) {
	t.Parallel()
	ts, clk := startClock(t, Options{}, core.Options{})
	c := ts.dial(t)
	tok := expectGrant(t, c.Do("l", "k", "0 5"), "ok", "5")
	stok := expectGrant(t, c.Do("sl", "s", "0 2 5"), "ok", "5")
	clk.Advance(5 * time.Second)
	if n := ts.Engine.Sweep(); n != 2 {
		t.Fatalf("Sweep evicted %d; want 2", n)
	}
	st, _ := wireStats(t, c)
	if len(st.Locks)+len(st.Semaphores) != 0 || len(st.IdleLocks) != 1 || len(st.IdleSemaphores) != 1 {
		t.Fatalf("stats after sweep = %+v; want both keys idle", st)
	}
	c.Expect("n", "k", tok, "error")
	c.Expect("sr", "s", stok, "error")
}

// Edge 9: `n` on a lease that expired but was not swept answers `error`,
// evicts the holder and grants the next waiter (no resurrection).
func TestEdge09_RenewOfExpiredLeaseIsErrorAndHandsOn(t *testing.T) {
	t.Parallel()
	ts, clk := startClock(t, Options{}, core.Options{})
	a, b := ts.dial(t), ts.dial(t)
	ta := expectGrant(t, a.Do("l", "k", "0 5"), "ok", "5")
	ch := bg(b)
	b.Req("l", "k", "30")
	eventually(t, "b queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })
	clk.Advance(5 * time.Second) // now == expiry: expired
	a.Expect("n", "k", ta, "error")
	tb := expectGrant(t, recv(t, ch), "ok", "33")
	a.Expect("n", "k", ta, "error")
	b.Expect("n", "k", tb, "ok 33")

	// Without a waiter the expired holder is evicted too.
	ts2 := expectGrant(t, a.Do("sl", "s", "0 2 5"), "ok", "5")
	clk.Advance(6 * time.Second)
	a.Expect("sn", "s", ts2, "error")
	st, _ := wireStats(t, a)
	if _, ok := findIdle(st.IdleSemaphores, "s"); !ok {
		t.Fatalf("semaphore s not idle after an expired renew: %+v", st)
	}
}

// Edge 11: `r`/`n` with a token from another key, the other namespace or
// a stale grant answer `error` and change nothing.
func TestEdge11_ForeignOrStaleTokensChangeNothing(t *testing.T) {
	t.Parallel()
	ts, clk := startClock(t, Options{}, core.Options{})
	c := ts.dial(t)
	tk := expectGrant(t, c.Do("l", "k", "0 20"), "ok", "20")
	tj := expectGrant(t, c.Do("l", "j", "0 20"), "ok", "20")
	ts1 := expectGrant(t, c.Do("sl", "k", "0 2 20"), "ok", "20")
	stale := expectGrant(t, c.Do("l", "old", "0"), "ok", "33")
	c.Expect("r", "old", stale, "ok")
	clk.Advance(10 * time.Second)

	for _, req := range [][3]string{
		{"r", "k", tj}, {"n", "k", tj}, // another key
		{"r", "k", ts1}, {"n", "k", ts1}, // semaphore token on the lock key
		{"sr", "k", tk}, {"sn", "k", tk}, // lock token on the semaphore key
		{"r", "k", stale}, {"n", "k", stale}, {"r", "old", stale}, {"n", "old", stale},
		{"r", "k", tk + "x"}, {"r", "k", tk + " " + tk}, // inner spaces are kept
		{"n", "k", tk[:31]},
	} {
		c.Expect(req[0], req[1], req[2], "error")
	}
	st, _ := wireStats(t, c)
	for _, key := range []string{"k", "j"} {
		if l, ok := findLock(st.Locks, key); !ok || l.LeaseExpiresInS != 10 {
			t.Fatalf("lock %s = %+v; want held with 10s left (untouched)", key, l)
		}
	}
	if s, ok := findSem(st.Semaphores, "k"); !ok || s.Holders != 1 {
		t.Fatalf("semaphore k = %+v; want 1 holder", s)
	}
	c.Expect("r", "k", tk, "ok")
	c.Expect("r", "j", tj, "ok")
	c.Expect("sr", "k", ts1, "ok")
}

// Edge 12: `r`/`n` with a valid token succeed from another connection.
func TestEdge12_TokenWorksFromAnotherConnection(t *testing.T) {
	t.Parallel()
	ts, _ := startClock(t, Options{}, core.Options{})
	a, b := ts.dial(t), ts.dial(t)
	ta := expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	b.Expect("n", "k", ta+" 50", "ok 50")
	b.Expect("r", "k", ta, "ok")
	expectGrant(t, b.Do("l", "k", "0"), "ok", "33")
	sa := expectGrant(t, a.Do("sl", "s", "0 2"), "ok", "33")
	b.Expect("sn", "s", sa, "ok 33")
	b.Expect("sr", "s", sa, "ok")
	// a released nothing itself; its disconnect must not disturb b's key.
	a.Conn.Close()
	eventually(t, "a gone", func() bool { return ts.Connections() == 1 })
	st, _ := wireStats(t, b)
	if l, ok := findLock(st.Locks, "k"); !ok || l.OwnerConnID != 2 {
		t.Fatalf("lock k = %+v; want held by conn 2", l)
	}
}

// Edge 13: a flood of `r`/`n` with bogus tokens does not refresh an idle
// key's last activity, so GC still collects it on time.
func TestEdge13_BogusTokensDoNotKeepIdleKeyAlive(t *testing.T) {
	t.Parallel()
	ts, clk := startClock(t, Options{}, core.Options{GCMaxIdle: 10 * time.Second})
	c := ts.dial(t)
	tok := expectGrant(t, c.Do("l", "k", "0"), "ok", "33")
	stok := expectGrant(t, c.Do("sl", "s", "0 3"), "ok", "33")
	c.Expect("r", "k", tok, "ok")
	c.Expect("sr", "s", stok, "ok")
	clk.Advance(6 * time.Second)
	for range 50 {
		c.Expect("r", "k", "bogus", "error")
		c.Expect("n", "k", "bogus", "error")
		c.Expect("sr", "s", "bogus", "error")
		c.Expect("sn", "s", "bogus 5", "error")
	}
	st, _ := wireStats(t, c)
	if i, _ := findIdle(st.IdleLocks, "k"); i.IdleS != 6 {
		t.Fatalf("idle_s = %v; want 6 (bogus tokens must not touch it)", i.IdleS)
	}
	clk.Advance(4 * time.Second)
	if n := ts.Engine.CollectIdle(); n != 2 {
		t.Fatalf("CollectIdle deleted %d keys; want 2", n)
	}
	st, _ = wireStats(t, c)
	if len(st.IdleLocks)+len(st.IdleSemaphores) != 0 {
		t.Fatalf("idle keys left after GC: %+v", st)
	}
}

// Edge 3 (lease part): `w` after `e` → acquired resets the lease to
// now + TTL.
func TestEdge03_WaitResetsAcquiredLease(t *testing.T) {
	t.Parallel()
	ts, clk := startClock(t, Options{}, core.Options{})
	c := ts.dial(t)
	tok := expectGrant(t, c.Do("e", "k", "10"), "acquired", "10")
	clk.Advance(7 * time.Second)
	if got := expectGrant(t, c.Do("w", "k", "0"), "ok", "10"); got != tok {
		t.Fatalf("w token %s; want %s", got, tok)
	}
	st, _ := wireStats(t, c)
	if l, _ := findLock(st.Locks, "k"); l.LeaseExpiresInS != 10 {
		t.Fatalf("lease_expires_in_s = %v after w; want 10 (reset)", l.LeaseExpiresInS)
	}
	// A queued record granted earlier is reset by `w` too.
	a := ts.dial(t)
	ta := expectGrant(t, a.Do("l", "k2", "0"), "ok", "33")
	c.Expect("e", "k2", "10", "queued")
	a.Expect("r", "k2", ta, "ok") // c's record is granted now
	clk.Advance(4 * time.Second)
	expectGrant(t, c.Do("w", "k2", "5"), "ok", "10")
	st, _ = wireStats(t, c)
	if l, _ := findLock(st.Locks, "k2"); l.LeaseExpiresInS != 10 {
		t.Fatalf("lease_expires_in_s = %v after w on a granted record; want 10", l.LeaseExpiresInS)
	}
}

// Edge 15: a queued two-phase waiter that is granted but never calls `w`
// loses its record once its lease expires, so a later `e` succeeds.
func TestEdge15_UnobservedGrantExpiresAndFreesRecord(t *testing.T) {
	t.Parallel()
	ts, clk := startClock(t, Options{}, core.Options{})
	a, b := ts.dial(t), ts.dial(t)
	ta := expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	b.Expect("e", "k", "5", "queued")
	a.Expect("r", "k", ta, "ok") // b's record is granted now
	b.Expect("e", "k", "", "error_already_enqueued")
	clk.Advance(6 * time.Second)
	if n := ts.Engine.Sweep(); n != 1 {
		t.Fatalf("Sweep evicted %d; want 1", n)
	}
	tb := expectGrant(t, b.Do("e", "k", ""), "acquired", "33")
	if got := expectGrant(t, b.Do("w", "k", "0"), "ok", "33"); got != tb {
		t.Fatalf("w token %s; want %s", got, tb)
	}
}

// Edge 16: `w` after the granted or acquired lease expired never answers
// `ok`: error_lease_expired before the sweep, error_not_enqueued after.
func TestEdge16_WaitAfterLeaseExpiredNeverOK(t *testing.T) {
	t.Parallel()
	ts, clk := startClock(t, Options{}, core.Options{})
	a, b := ts.dial(t), ts.dial(t)

	// Acquired at enqueue, expired, not swept.
	expectGrant(t, a.Do("e", "k1", "5"), "acquired", "5")
	clk.Advance(5 * time.Second)
	a.Expect("w", "k1", "10", "error_lease_expired")
	a.Expect("w", "k1", "10", "error_not_enqueued")
	expectGrant(t, b.Do("l", "k1", "0"), "ok", "33") // the slot was freed

	// Acquired at enqueue, expired, swept.
	expectGrant(t, a.Do("e", "k2", "5"), "acquired", "5")
	clk.Advance(6 * time.Second)
	ts.Engine.Sweep()
	a.Expect("w", "k2", "10", "error_not_enqueued")

	// Queued, granted later, expired before `w` (timeout > 0 and 0).
	for _, timeout := range []string{"10", "0"} {
		key := "q" + timeout
		tb := expectGrant(t, b.Do("l", key, "0"), "ok", "33")
		a.Expect("e", key, "5", "queued")
		b.Expect("r", key, tb, "ok")
		clk.Advance(5 * time.Second)
		a.Expect("w", key, timeout, "error_lease_expired")
		expectGrant(t, b.Do("l", key, "0"), "ok", "33")
	}
	// Same, but swept first.
	tb := expectGrant(t, b.Do("l", "q", "0"), "ok", "33")
	a.Expect("e", "q", "5", "queued")
	b.Expect("r", "q", tb, "ok")
	clk.Advance(5 * time.Second)
	ts.Engine.Sweep()
	a.Expect("w", "q", "10", "error_not_enqueued")
}

// jumpClock is a fake clock that jumps forward right after the next
// reading once armed, so a grant and its observation see different times.
type jumpClock struct {
	mu   sync.Mutex
	t    time.Time
	jump time.Duration
}

func (c *jumpClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	if c.jump != 0 {
		c.t, c.jump = c.t.Add(c.jump), 0
	}
	return t
}

func (c *jumpClock) arm(d time.Duration) {
	c.mu.Lock()
	c.jump = d
	c.mu.Unlock()
}

// §2.3: a blocked `l` whose grant expired before the handler observed it
// answers error_lease_expired, and the slot goes on to the next waiter.
// The engine's Run loop is not started, so the only clock readings are
// those of the requests: the release reads the clock (grant time), then
// the clock jumps past the short lease before the waiter observes it.
func TestLock_GrantExpiredBeforeObservedIsLeaseExpired(t *testing.T) {
	t.Parallel()
	clk := &jumpClock{t: testutil.NewClock().Now()}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := startOn(t, l, Options{Engine: core.New(core.Options{Now: clk.Now})}, core.Options{}, false)
	a, b, c := ts.dial(t), ts.dial(t), ts.dial(t)
	ta := expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	chB := bg(b)
	b.Req("l", "k", "30 5")
	eventually(t, "b queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })
	chC := bg(c)
	c.Req("l", "k", "30")
	eventually(t, "c queued", func() bool { return waitersOf(ts.Engine, "k") == 2 })
	clk.arm(10 * time.Second)
	a.Expect("r", "k", ta, "ok")
	if got := recv(t, chB); got != "error_lease_expired" {
		t.Fatalf("b answered %q; want error_lease_expired", got)
	}
	tc := expectGrant(t, recv(t, chC), "ok", "33")
	ping(t, b)
	a.Expect("r", "k", tc, "ok")
}
