package core

import (
	"context"
	"testing"
)

func TestBusyAndLeases(t *testing.T) {
	e, clk := newTestEngine(t, Options{})
	a, b, c, d := NewOwner(1), NewOwner(2), NewOwner(3), NewOwner(4)
	for _, o := range []*Owner{a, b, c, d} {
		if e.Busy(o) {
			t.Fatalf("owner %d busy before doing anything", o.ID())
		}
	}
	la := mustAcquire(t, e, a, KindLock, "k", lockOpt(2*sec))
	mustAcquire(t, e, a, KindSemaphore, "s", AcquireOptions{Limit: 3, TTL: 10 * sec})
	if _, acq, err := e.Enqueue(b, KindLock, "k", lockOpt(0)); err != nil || acq {
		t.Fatalf("Enqueue = %v, %v; want queued", acq, err)
	}
	if _, acq, err := e.Enqueue(c, KindSemaphore, "s", AcquireOptions{Limit: 3}); err != nil || !acq {
		t.Fatalf("Enqueue = %v, %v; want acquired", acq, err)
	}
	for _, o := range []*Owner{a, b, c} {
		if !e.Busy(o) {
			t.Fatalf("owner %d not busy", o.ID())
		}
	}
	if e.Busy(d) {
		t.Fatal("an owner that holds nothing is busy")
	}
	if n := e.Leases(); n != 3 {
		t.Fatalf("Leases = %d; want 3", n)
	}
	// a's lock is released by token from another owner: a still holds
	// s, and b's queued record now holds k.
	if err := e.Release(d, KindLock, "k", la.Token.String()); err != nil {
		t.Fatal(err)
	}
	if !e.Busy(a) || !e.Busy(b) {
		t.Fatalf("busy: a %v, b %v; want both", e.Busy(a), e.Busy(b))
	}
	if _, err := e.Wait(context.Background(), c, KindSemaphore, "s", 0); err != nil {
		t.Fatal(err)
	}
	if !e.Busy(c) {
		t.Fatal("c holds s after Wait (its record consumed)")
	}
	clk.Advance(DefaultLeaseTTL) // every lease has run out
	for _, o := range []*Owner{a, b, c} {
		if e.Busy(o) {
			t.Fatalf("owner %d busy after its leases ran out", o.ID())
		}
	}
	if n := e.Leases(); n != 0 {
		t.Fatalf("Leases = %d after every lease ran out; want 0", n)
	}
}
