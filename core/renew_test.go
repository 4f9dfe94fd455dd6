package core

import (
	"context"
	"testing"
	"time"
	"unsafe"
)

// Issue 11 #8: renewing to a shorter lease registers the earlier end, so
// a queued waiter is served when the shortened lease runs out, not at the
// next sweep (the clock is driven by hand; Sweep is never called).
func TestRenewShorterLeaseHandsOnPromptly(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind Kind
		opt  AcquireOptions
	}{
		{"lock", KindLock, lockOpt(60 * sec)},
		{"semaphore", KindSemaphore, AcquireOptions{Limit: 1, TTL: 60 * sec}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, clk := newTestEngine(t, Options{})
			l := mustAcquire(t, e, NewOwner(1), tc.kind, "k", tc.opt)
			tk := mustQueue(t, e, NewOwner(2), tc.kind, "k", tc.opt)
			clk.Advance(10 * sec)
			if _, err := e.Renew(tc.kind, "k", l.Token.String(), sec); err != nil {
				t.Fatal(err)
			}
			if next, ok := e.ExpireDue(); !ok || next != int64(11*sec) {
				t.Fatalf("next deadline = %d, %v; want the shortened end %d", next, ok, int64(11*sec))
			}
			clk.Advance(sec - 1)
			e.ExpireDue()
			if granted(t, tk) {
				t.Fatal("granted before the shortened lease ran out")
			}
			clk.Advance(1)
			e.ExpireDue()
			if !granted(t, tk) {
				t.Fatal("waiter not granted when the shortened lease ran out")
			}
			if _, err := tk.Wait(context.Background(), sec); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A renew to a longer lease leaves the registered (earlier) deadline; when
// it fires and finds the lease live, the later end is registered.
func TestRenewLongerLeaseKeepsWaiterQueued(t *testing.T) {
	e, clk := newTestEngine(t, Options{})
	l := mustAcquire(t, e, NewOwner(1), KindLock, "k", lockOpt(2*sec))
	tk := mustQueue(t, e, NewOwner(2), KindLock, "k", lockOpt(0))
	if _, err := e.Renew(KindLock, "k", l.Token.String(), 10*sec); err != nil {
		t.Fatal(err)
	}
	if next, ok := e.ExpireDue(); !ok || next != int64(2*sec) {
		t.Fatalf("next = %d, %v; want the earlier registration kept", next, ok)
	}
	clk.Advance(2 * sec)
	e.ExpireDue()
	if granted(t, tk) {
		t.Fatal("renewed lease handed on early")
	}
	if next, ok := e.ExpireDue(); !ok || next != int64(10*sec) {
		t.Fatalf("next = %d, %v; want re-registered at 10s", next, ok)
	}
}

// A client that keeps shortening its lease cannot grow the deadline heap:
// each key has at most one entry.
func TestRenewShorterRepeatedlyKeepsOneDeadline(t *testing.T) {
	e, clk := newTestEngine(t, Options{})
	l := mustAcquire(t, e, NewOwner(1), KindLock, "k", lockOpt(1000*sec))
	mustQueue(t, e, NewOwner(2), KindLock, "k", lockOpt(0))
	mustAcquire(t, e, NewOwner(3), KindLock, "other", lockOpt(500*sec))
	mustQueue(t, e, NewOwner(4), KindLock, "other", lockOpt(0))
	for ttl := 999; ttl > 1; ttl-- {
		if _, err := e.Renew(KindLock, "k", l.Token.String(), sec*time.Duration(ttl)); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.exp.len(); n != 2 {
		t.Fatalf("deadline heap holds %d entries; want 2 (one per watched key)", n)
	}
	if next, _ := e.ExpireDue(); next != int64(2*sec) {
		t.Fatalf("next = %d; want %d", next, int64(2*sec))
	}
	clk.Advance(2 * sec)
	e.ExpireDue()
	if n := e.exp.len(); n != 1 {
		t.Fatalf("deadline heap holds %d entries after k was handed on; want 1 (other's)", n)
	}
}

// The heap position costs no room: a resource still packs into 112 bytes.
func TestResourceSize(t *testing.T) {
	if n := unsafe.Sizeof(resource{}); n != 112 {
		t.Fatalf("resource is %d bytes; want 112", n)
	}
}
