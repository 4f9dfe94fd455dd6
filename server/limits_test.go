package server

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
)

// Key and queue limits, limits of semaphores, namespaces (§2.3, §7.5;
// edges 6, 21–24).

// §7.5: creating a key past MaxKeys answers error_max_locks for every
// creating command; locks and semaphores count together; existing keys
// keep working.
func TestLimits_MaxLocks(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{MaxKeys: 2})
	c := ts.dial(t)
	ta := expectGrant(t, c.Do("l", "a", "0"), "ok", "33")
	expectGrant(t, c.Do("sl", "b", "0 3"), "ok", "33")
	for _, req := range [][3]string{
		{"l", "c", "0"}, {"l", "c", "5"}, {"e", "c", ""},
		{"sl", "c", "0 2"}, {"se", "c", "2"}, {"sl", "a", "0 2"}, // a exists only as a lock
	} {
		c.Expect(req[0], req[1], req[2], "error_max_locks")
	}
	// Commands that never create keys are unaffected.
	c.Expect("r", "zzz", ta, "error")
	c.Expect("w", "zzz", "0", "error_not_enqueued")
	// Existing keys keep working, also once idle.
	c.Expect("r", "a", ta, "ok")
	ta = expectGrant(t, c.Do("l", "a", "0"), "ok", "33")
	expectGrant(t, c.Do("sl", "b", "0 3"), "ok", "33")
	c.Expect("r", "a", ta, "ok")
	// GC of the idle key frees a slot.
	eventually(t, "a collected", func() bool { ts.Engine.CollectIdle(); return ts.Engine.Keys() == 1 })
	expectGrant(t, c.Do("l", "c", "0"), "ok", "33")
}

// Edge 21: concurrent creation of new keys at the MaxKeys boundary never
// exceeds the cap.
func TestEdge21_ConcurrentCreationRespectsMaxLocks(t *testing.T) {
	t.Parallel()
	const max, clients = 10, 30
	ts := start(t, Options{}, core.Options{MaxKeys: max})
	var (
		mu      sync.Mutex
		answers = map[string]int{}
		fail    errs
		wg      sync.WaitGroup
		ready   sync.WaitGroup
		gate    = make(chan struct{})
		// Connections stay open until every client has its answer: a
		// closed one releases its key, which a later creation may then
		// collect and reuse (issue 11 #7).
		answered sync.WaitGroup
		hold     = make(chan struct{})
	)
	ready.Add(clients)
	answered.Add(clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := dialWire(ts.Addr)
			if err != nil {
				fail.add(err)
				ready.Done()
				answered.Done()
				return
			}
			defer w.close()
			ready.Done()
			<-gate
			defer func() { answered.Done(); <-hold }()
			cmd, arg := "l", "0"
			if i%2 == 1 {
				cmd, arg = "sl", "0 3"
			}
			line, err := w.do(cmd, fmt.Sprintf("key%d", i), arg)
			if err != nil {
				fail.add(err)
				return
			}
			if len(line) > 3 && line[:3] == "ok " {
				line = "ok"
			}
			mu.Lock()
			answers[line]++
			mu.Unlock()
		}()
	}
	ready.Wait()
	close(gate)
	answered.Wait()
	n := ts.Engine.Keys()
	close(hold)
	wg.Wait()
	fail.check(t)
	if answers["ok"] != max || answers["error_max_locks"] != clients-max {
		t.Fatalf("answers = %v; want %d ok and %d error_max_locks", answers, max, clients-max)
	}
	if n != max {
		t.Fatalf("engine had %d keys; want %d", n, max)
	}
}

// Edge 22: on an existing key error_limit_mismatch wins over
// error_max_locks; a new limit is accepted only after GC removed the key.
func TestEdge22_LimitMismatchBeatsMaxLocksAndNeedsGC(t *testing.T) {
	t.Parallel()
	ts, clk := startClock(t, Options{}, core.Options{MaxKeys: 1})
	c := ts.dial(t)
	tok := expectGrant(t, c.Do("sl", "s", "0 3"), "ok", "33")
	c.Expect("sl", "s", "0 4", "error_limit_mismatch")
	c.Expect("se", "s", "4", "error_limit_mismatch")
	c.Expect("sl", "s", "0 1", "error_limit_mismatch")
	c.Expect("sl", "t", "0 4", "error_max_locks")
	c.Expect("sr", "s", tok, "ok")
	c.Expect("sl", "s", "0 4", "error_limit_mismatch") // idle, not collected yet
	clk.Advance(time.Minute)
	if n := ts.Engine.CollectIdle(); n != 1 {
		t.Fatalf("CollectIdle deleted %d; want 1", n)
	}
	expectGrant(t, c.Do("sl", "s", "0 4"), "ok", "33")
	st, _ := wireStats(t, c)
	if s, ok := findSem(st.Semaphores, "s"); !ok || s.Limit != 4 {
		t.Fatalf("semaphore s = %+v; want limit 4", s)
	}
}

// Edge 23: lock and semaphore keys live in separate namespaces: `l k` and
// `sl k <t> 3` both succeed, do not interact, and stats shows `k` in both
// arrays without prefixes. Both count toward MaxKeys.
func TestEdge23_SeparateNamespaces(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{MaxKeys: 2})
	c := ts.dial(t)
	tl := expectGrant(t, c.Do("l", "k", "0"), "ok", "33")
	ts1 := expectGrant(t, c.Do("sl", "k", "0 3"), "ok", "33")
	expectGrant(t, c.Do("sl", "k", "0 3"), "ok", "33")
	c.Expect("l", "k", "0", "timeout") // the lock is still held
	// Two-phase in one namespace does not see the other.
	c.Expect("e", "k", "", "queued")
	expectGrant(t, c.Do("se", "k", "3"), "acquired", "33")
	st, _ := wireStats(t, c)
	if l, ok := findLock(st.Locks, "k"); !ok || l.Waiters != 1 {
		t.Fatalf("locks = %+v; want k with 1 waiter", st.Locks)
	}
	if s, ok := findSem(st.Semaphores, "k"); !ok || s.Holders != 3 || s.Limit != 3 {
		t.Fatalf("semaphores = %+v; want k with 3 holders", st.Semaphores)
	}
	c.Expect("l", "other", "0", "error_max_locks")
	c.Expect("r", "k", ts1, "error")
	c.Expect("sr", "k", tl, "error")
}

// §5: a semaphore of limit 1 is listed under "locks".
func TestStats_LimitOneSemaphoreListedAsLock(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	c := ts.dial(t)
	tok := expectGrant(t, c.Do("sl", "one", "0 1"), "ok", "33")
	st, _ := wireStats(t, c)
	if _, ok := findLock(st.Locks, "one"); !ok || len(st.Semaphores) != 0 {
		t.Fatalf("stats = %+v; want the limit-1 semaphore under locks", st)
	}
	c.Expect("sr", "one", tok, "ok")
	st, _ = wireStats(t, c)
	if _, ok := findIdle(st.IdleLocks, "one"); !ok || len(st.IdleSemaphores) != 0 {
		t.Fatalf("stats = %+v; want the idle limit-1 semaphore under idle_locks", st)
	}
}

// §2.3 step 3 / edge 6: with MaxWaiters, a full queue answers
// error_max_waiters, also for timeout 0 (not `timeout`), for `e`, and for
// semaphores; other keys are unaffected.
func TestEdge06_MaxWaiters(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{MaxWaiters: 1})
	a, b, c := ts.dial(t), ts.dial(t), ts.dial(t)
	ta := expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	ch := bg(b)
	b.Req("l", "k", "10")
	eventually(t, "b queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })
	c.Expect("l", "k", "0", "error_max_waiters")
	c.Expect("l", "k", "5", "error_max_waiters")
	c.Expect("e", "k", "", "error_max_waiters")
	c.Expect("e", "k", "", "error_max_waiters") // no record was left behind
	expectGrant(t, c.Do("l", "k2", "0"), "ok", "33")
	a.Expect("r", "k", ta, "ok")
	tb := expectGrant(t, recv(t, ch), "ok", "33")
	c.Expect("e", "k", "", "queued") // room again
	c.Expect("l", "k", "0", "error_max_waiters")
	b.Expect("r", "k", tb, "ok")
	expectGrant(t, c.Do("w", "k", "1"), "ok", "33")

	expectGrant(t, a.Do("sl", "s", "0 2"), "ok", "33")
	expectGrant(t, a.Do("sl", "s", "0 2"), "ok", "33")
	b.Expect("se", "s", "2", "queued")
	c.Expect("sl", "s", "0 2", "error_max_waiters")
	c.Expect("se", "s", "2", "error_max_waiters")
}

// Edge 24: a semaphore limit of 0 or below answers `error` and keeps the
// connection open (also in framing_test.go's table); the key is not
// created.
func TestEdge24_SemaphoreLimitNotPositive(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	c := ts.dial(t)
	for _, req := range [][3]string{{"sl", "s", "0 0"}, {"sl", "s", "5 -2"}, {"se", "s", "0"}, {"se", "s", "-1 10"}} {
		c.Expect(req[0], req[1], req[2], "error")
		ping(t, c)
	}
	if n := ts.Engine.Keys(); n != 0 {
		t.Fatalf("%d keys created", n)
	}
}

// Edge 25: lease 0, a negative timeout and `abc` answer `error` and keep
// the connection open (also in framing_test.go's table).
func TestEdge25_BadNumbersKeepConnectionOpen(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	c := ts.dial(t)
	for _, arg := range []string{"0 0", "-1", "abc", "5 abc", "-5 10"} {
		c.Expect("l", "k", arg, "error")
		ping(t, c)
	}
	expectGrant(t, c.Do("l", "k", "0"), "ok", "33")
}

// Edge 21 (second half): GC running concurrently with re-creation of a
// key at the MaxKeys boundary never causes a spurious error_max_locks.
func TestEdge21_GCNeverCausesSpuriousMaxLocks(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{MaxKeys: 1}) // GCMaxIdle 0: idle keys go at once
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				ts.Engine.CollectIdle()
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	c := ts.dial(t)
	for i := range 300 {
		key := "a"
		if i%2 == 1 {
			key = "b" // a different key needs a's slot freed by GC first
			eventually(t, "a collected", func() bool { return ts.Engine.Keys() == 0 })
		}
		line := c.Do("l", key, "0")
		tok := expectGrant(t, line, "ok", "33")
		c.Expect("r", key, tok, "ok")
		if i%2 == 1 {
			eventually(t, "b collected", func() bool { return ts.Engine.Keys() == 0 })
		}
	}
}
