package core

import (
	"context"
	"errors"
	"testing"
	"time"
	"unsafe"
)

const (
	sid1    = "0123456789abcdef"
	secret1 = "00112233445566778899aabbccddeeff"
)

func mustName(t *testing.T, e *Engine, o *Owner, id string, ttl time.Duration) *Session {
	t.Helper()
	s, err := e.NameSession(o, id, secret1, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustResume(t *testing.T, e *Engine, id string) *Session {
	t.Helper()
	s, err := e.ResumeSession(id, secret1, nil)
	if err != nil {
		t.Fatalf("ResumeSession(%s) = %v", id, err)
	}
	return s
}

// cancelled returns a context that has already ended.
func cancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// park blocks tk in a wait whose context ends at once, as the server does
// when a named session's connection drops while its l is blocked.
func park(t *testing.T, tk *Ticket) {
	t.Helper()
	if _, err := tk.WaitOrPark(cancelled(), time.Hour); !errors.Is(err, ErrParked) || !errors.Is(err, ErrCanceled) {
		t.Fatalf("WaitOrPark = %v; want ErrParked and ErrCanceled", err)
	}
}

func TestSessionDetachResumeKeepsHoldsAndPlaces(t *testing.T) {
	e, clk := newTestEngine(t, Options{})
	o := NewOwner(1)
	s := mustName(t, e, o, sid1, 15*sec)
	held := mustAcquire(t, e, o, KindLock, "a", lockOpt(60*sec))
	other := NewOwner(2)
	mustAcquire(t, e, other, KindLock, "b", lockOpt(time.Hour))
	if _, acq, err := e.Enqueue(o, KindLock, "b", lockOpt(60*sec)); err != nil || acq {
		t.Fatalf("Enqueue = %v, %v; want queued", acq, err)
	}
	e.DetachSession(s)
	if st := e.SessionStats(); st.Attached != 0 || st.Detached != 1 {
		t.Fatalf("stats after detach = %+v", st)
	}
	clk.Advance(14 * sec)
	if _, ok := e.ExpireSessions(); !ok {
		t.Fatal("ExpireSessions reports no pending deadline for a detached session")
	}
	got := mustResume(t, e, sid1)
	if got != s || got.Owner() != o {
		t.Fatal("resumed a different session or owner")
	}
	if h, q := e.OwnerCounts(o); h != 1 || q != 1 {
		t.Fatalf("OwnerCounts = %d held, %d queued; want 1, 1", h, q)
	}
	if st := e.SessionStats(); st.Attached != 1 || st.Detached != 0 || st.Resumed != 1 {
		t.Fatalf("stats after resume = %+v", st)
	}
	// Long past the TTL: the session is attached, nothing expires.
	clk.Advance(time.Minute)
	e.ExpireSessions()
	if holders(e, KindLock, "a") != 0 { // the 60 s lease itself ran out
		e.Sweep()
	}
	if _, err := e.Renew(KindLock, "a", held.Token.String(), 0); err == nil {
		t.Fatal("a lease renewed after it ran out") // leases are independent of sessions
	}
	if waiters(e, KindLock, "b") != 1 {
		t.Fatal("the queue place was dropped while attached")
	}
}

func TestSessionResumeRefusalsAreOneError(t *testing.T) {
	e, clk := newTestEngine(t, Options{})
	s := mustName(t, e, NewOwner(1), sid1, 2*sec)
	e.DetachSession(s)
	for _, tc := range []struct{ name, id, secret string }{
		{"wrong secret", sid1, "ffffffffffffffffffffffffffffffff"},
		{"short secret", sid1, "00"},
		{"empty secret", sid1, ""},
		{"unknown id", "fedcba9876543210", secret1},
	} {
		if _, err := e.ResumeSession(tc.id, tc.secret, nil); err != ErrSession {
			t.Errorf("%s: ResumeSession = %v; want ErrSession", tc.name, err)
		}
	}
	clk.Advance(2 * sec)
	e.ExpireSessions()
	if _, err := e.ResumeSession(sid1, secret1, nil); err != ErrSession {
		t.Errorf("expired: ResumeSession = %v; want ErrSession", err)
	}
	if st := e.SessionStats(); st.Detached != 0 || st.Expired != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestSessionTTLExpiryReleasesAndPromotes(t *testing.T) {
	e, clk := newTestEngine(t, Options{})
	o := NewOwner(1)
	s := mustName(t, e, o, sid1, 5*sec)
	mustAcquire(t, e, o, KindLock, "k", lockOpt(time.Hour))
	next := mustQueue(t, e, NewOwner(2), KindLock, "k", lockOpt(0))
	e.DetachSession(s)
	clk.Advance(5*sec - 1)
	e.ExpireSessions()
	if granted(t, next) {
		t.Fatal("next waiter granted before the session TTL ended")
	}
	clk.Advance(1)
	if _, ok := e.ExpireSessions(); ok {
		t.Fatal("a deadline is still pending after the only session expired")
	}
	if !granted(t, next) {
		t.Fatal("next waiter not granted when the session expired")
	}
	if _, err := e.ResumeSession(sid1, secret1, nil); err != ErrSession {
		t.Fatalf("resume after expiry = %v", err)
	}
}

func TestSessionExpiryRespectsKeepOnDisconnect(t *testing.T) {
	e, clk := newTestEngine(t, Options{KeepOnDisconnect: true})
	o := NewOwner(1)
	s := mustName(t, e, o, sid1, sec)
	mustAcquire(t, e, o, KindLock, "k", lockOpt(10*sec))
	e.DetachSession(s)
	clk.Advance(sec)
	e.ExpireSessions()
	if holders(e, KindLock, "k") != 1 {
		t.Fatal("the slot was released although KeepOnDisconnect is set")
	}
}

func TestParkedWaiterGrantedWhileDetached(t *testing.T) {
	e, clk := newTestEngine(t, Options{})
	first := NewOwner(1)
	l1 := mustAcquire(t, e, first, KindLock, "k", lockOpt(time.Hour))
	o := NewOwner(2)
	s := mustName(t, e, o, sid1, time.Minute)
	park(t, mustQueue(t, e, o, KindLock, "k", lockOpt(10*sec)))
	behind := mustQueue(t, e, NewOwner(3), KindLock, "k", lockOpt(0))
	e.DetachSession(s)
	if err := e.Release(first, KindLock, "k", l1.Token.String()); err != nil {
		t.Fatal(err)
	}
	if granted(t, behind) {
		t.Fatal("the waiter behind the parked place overtook it")
	}
	clk.Advance(3 * sec) // the grant's lease runs while detached
	mustResume(t, e, sid1)
	if h, q := e.OwnerCounts(o); h != 1 || q != 0 {
		t.Fatalf("OwnerCounts = %d held, %d queued; want 1, 0", h, q)
	}
	l, err := e.Wait(context.Background(), o, KindLock, "k", 0)
	if err != nil {
		t.Fatalf("Wait after resume = %v", err)
	}
	if !l.Expires.Equal(clk.Now().Add(10 * sec)) {
		t.Fatalf("lease ends %v; want reset by the wait to now+10s", l.Expires)
	}
	if err := e.Release(o, KindLock, "k", l.Token.String()); err != nil {
		t.Fatal(err)
	}
	if !granted(t, behind) {
		t.Fatal("release after resume did not hand the lock on")
	}
}

func TestParkedWaiterWhoseLeaseRanOutIsGone(t *testing.T) {
	e, clk := newTestEngine(t, Options{})
	first := NewOwner(1)
	l1 := mustAcquire(t, e, first, KindLock, "k", lockOpt(time.Hour))
	o := NewOwner(2)
	s := mustName(t, e, o, sid1, time.Minute)
	park(t, mustQueue(t, e, o, KindLock, "k", lockOpt(5*sec)))
	behind := mustQueue(t, e, NewOwner(3), KindLock, "k", lockOpt(0))
	e.DetachSession(s)
	if err := e.Release(first, KindLock, "k", l1.Token.String()); err != nil {
		t.Fatal(err)
	}
	clk.Advance(5 * sec)
	e.ExpireDue()
	if !granted(t, behind) {
		t.Fatal("the next waiter did not get the lock when the detached grant's lease ran out")
	}
	mustResume(t, e, sid1)
	if h, q := e.OwnerCounts(o); h != 0 || q != 0 {
		t.Fatalf("OwnerCounts = %d held, %d queued; want 0, 0", h, q)
	}
	if _, err := e.Wait(context.Background(), o, KindLock, "k", 0); !errors.Is(err, ErrNotEnqueued) {
		t.Fatalf("Wait after resume = %v; want ErrNotEnqueued", err)
	}
}

func TestParkAfterGrantKeepsTheGrant(t *testing.T) {
	e, _ := newTestEngine(t, Options{})
	first := NewOwner(1)
	l1 := mustAcquire(t, e, first, KindSemaphore, "k", AcquireOptions{Limit: 1})
	o := NewOwner(2)
	mustName(t, e, o, sid1, time.Minute)
	tk := mustQueue(t, e, o, KindSemaphore, "k", AcquireOptions{Limit: 1})
	if err := e.Release(first, KindSemaphore, "k", l1.Token.String()); err != nil {
		t.Fatal(err)
	}
	// Granted before the wait saw its context end (in Wait, select
	// would pick either way: take the park branch directly).
	if _, err := e.park(tk.w, context.Canceled); !errors.Is(err, ErrParked) {
		t.Fatalf("park = %v", err)
	}
	if h, _ := e.OwnerCounts(o); h != 1 {
		t.Fatalf("held = %d; want the raced grant kept", h)
	}
	if _, err := e.Wait(context.Background(), o, KindSemaphore, "k", 0); err != nil {
		t.Fatalf("Wait = %v", err)
	}
}

func TestParkedTwoPhaseWaitKeepsItsRecord(t *testing.T) {
	e, _ := newTestEngine(t, Options{})
	first := NewOwner(1)
	l1 := mustAcquire(t, e, first, KindLock, "k", lockOpt(0))
	o := NewOwner(2)
	if _, acq, err := e.Enqueue(o, KindLock, "k", lockOpt(0)); err != nil || acq {
		t.Fatalf("Enqueue = %v, %v", acq, err)
	}
	if _, err := e.WaitOrPark(cancelled(), o, KindLock, "k", time.Hour); !errors.Is(err, ErrParked) {
		t.Fatalf("WaitOrPark = %v; want ErrParked", err)
	}
	if !o.Queued(KindLock, "k") || waiters(e, KindLock, "k") != 1 {
		t.Fatal("the record or the place was lost")
	}
	if err := e.Release(first, KindLock, "k", l1.Token.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Wait(context.Background(), o, KindLock, "k", 0); err != nil {
		t.Fatalf("Wait = %v", err)
	}
}

func TestParkWithARecordForTheKeyCancels(t *testing.T) {
	e, _ := newTestEngine(t, Options{})
	mustAcquire(t, e, NewOwner(1), KindLock, "k", lockOpt(0))
	o := NewOwner(2)
	if _, _, err := e.Enqueue(o, KindLock, "k", lockOpt(0)); err != nil {
		t.Fatal(err)
	}
	tk := mustQueue(t, e, o, KindLock, "k", lockOpt(0)) // a plain l behind its own e
	if _, err := tk.WaitOrPark(cancelled(), time.Hour); !errors.Is(err, ErrCanceled) || errors.Is(err, ErrParked) {
		t.Fatalf("WaitOrPark = %v; want a plain cancel", err)
	}
	if waiters(e, KindLock, "k") != 1 {
		t.Fatalf("waiters = %d; want only the enqueued place", waiters(e, KindLock, "k"))
	}
}

func TestEndSessionReleasesAtOnce(t *testing.T) {
	e, _ := newTestEngine(t, Options{})
	o := NewOwner(1)
	s := mustName(t, e, o, sid1, time.Minute)
	mustAcquire(t, e, o, KindLock, "k", lockOpt(time.Hour))
	next := mustQueue(t, e, NewOwner(2), KindLock, "k", lockOpt(0))
	e.EndSession(s)
	if !granted(t, next) {
		t.Fatal("EndSession did not hand the lock on")
	}
	if _, err := e.ResumeSession(sid1, secret1, nil); err != ErrSession {
		t.Fatalf("resume after EndSession = %v", err)
	}
	if st := e.SessionStats(); st.Attached != 0 || st.Detached != 0 {
		t.Fatalf("stats = %+v", st)
	}
	e.EndSession(s) // idempotent
}

func TestResumeAttachedSessionSaysAttached(t *testing.T) {
	e, _ := newTestEngine(t, Options{})
	s := mustName(t, e, NewOwner(1), sid1, time.Minute)
	detached := e.Detached(s)
	if got, err := e.ResumeSession(sid1, secret1, nil); err != ErrSessionAttached || got != s {
		t.Fatalf("ResumeSession on an attached session = %v, %v", got, err)
	}
	select {
	case <-detached:
		t.Fatal("Detached closed before the detach")
	default:
	}
	e.DetachSession(s)
	select {
	case <-detached:
	default:
		t.Fatal("Detached not closed by the detach")
	}
	mustResume(t, e, sid1)
	if _, err := e.NameSession(NewOwner(3), sid1, secret1, sec); err == nil {
		t.Fatal("a second session took a live id")
	}
}

func TestRunExpiresDetachedSessions(t *testing.T) {
	e := New(Options{SweepInterval: time.Hour}) // real clock; the sweep never fires
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	o := NewOwner(1)
	s, err := e.NameSession(o, sid1, secret1, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	mustAcquire(t, e, o, KindLock, "k", lockOpt(time.Hour))
	e.DetachSession(s)
	deadline := time.Now().Add(10 * time.Second)
	for holders(e, KindLock, "k") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("Run did not end the detached session")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkNameSession names a session and ends it (bye): one allocation,
// the Session itself, however many connections do it.
func BenchmarkNameSession(b *testing.B) {
	e := New(Options{})
	o := NewOwner(1)
	id := []byte(sid1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		id[0] = "0123456789abcdef"[i%16] // a new id each time, no allocation
		s, err := e.NameSession(o, unsafe.String(&id[0], len(id)), secret1, sec)
		if err != nil {
			b.Fatal(err)
		}
		e.EndSession(s)
	}
}

func TestResumeAllowCheck(t *testing.T) {
	e, _ := newTestEngine(t, Options{})
	s := mustName(t, e, NewOwner(1), sid1, time.Minute)
	e.DetachSession(s)
	if _, err := e.ResumeSession(sid1, secret1, func(*Session) bool { return false }); err != ErrSession {
		t.Fatalf("refused by allow: %v; want ErrSession", err)
	}
	if st := e.SessionStats(); st.Detached != 1 {
		t.Fatalf("a refused resume changed the session: %+v", st)
	}
	if _, err := e.ResumeSession(sid1, secret1, func(got *Session) bool { return got == s }); err != nil {
		t.Fatalf("allowed resume: %v", err)
	}
}

func TestMaxSessions(t *testing.T) {
	e, _ := newTestEngine(t, Options{MaxSessions: 2})
	a := mustName(t, e, NewOwner(1), "a1", time.Minute)
	b := mustName(t, e, NewOwner(2), "b2", time.Minute)
	e.DetachSession(b) // detached sessions count
	if _, err := e.NameSession(NewOwner(3), "c3", secret1, time.Minute); err != ErrMaxSessions {
		t.Fatalf("third session: %v; want ErrMaxSessions", err)
	}
	e.EndSession(a)
	mustName(t, e, NewOwner(3), "c3", time.Minute)
}

// A lease that ran out is not counted as held, evicted or not.
func TestOwnerCountsSkipExpiredLeases(t *testing.T) {
	e, clk := newTestEngine(t, Options{})
	o := NewOwner(1)
	mustAcquire(t, e, o, KindLock, "short", lockOpt(sec))
	mustAcquire(t, e, o, KindLock, "long", lockOpt(time.Hour))
	if _, acq, err := e.Enqueue(o, KindLock, "rec", lockOpt(sec)); err != nil || !acq {
		t.Fatalf("Enqueue = %v, %v", acq, err)
	}
	clk.Advance(sec) // short and rec ran out; nothing evicted them
	if h, q := e.OwnerCounts(o); h != 1 || q != 0 {
		t.Fatalf("OwnerCounts = %d held, %d queued; want 1, 0", h, q)
	}
}
