package core

import (
	"context"
	"errors"
	"testing"
	"unsafe"
)

func TestInspectUnknownKey(t *testing.T) {
	e, _ := newTestEngine(t, Options{})
	if ki, ok := e.Inspect(KindLock, "nope", -1); ok || ki.Holders != nil {
		t.Fatalf("Inspect(unknown) = %+v, %v", ki, ok)
	}
	// Namespaces are separate: a lock does not show up as a semaphore.
	mustAcquire(t, e, NewOwner(1), KindLock, "k", lockOpt(10*sec))
	if _, ok := e.Inspect(KindSemaphore, "k", -1); ok {
		t.Fatal("lock k visible in the semaphore namespace")
	}
}

func TestInspectLockHolderAndFIFOWaiters(t *testing.T) {
	e, clk := newTestEngine(t, Options{})
	a := NewOwnerWithTag(1, "a")
	l := mustAcquire(t, e, a, KindLock, "k", lockOpt(30*sec))
	clk.Advance(2 * sec)
	b, c, d := NewOwnerWithTag(2, "b"), NewOwnerWithTag(3, "c"), NewOwnerWithTag(4, "d")
	if _, tk, err := e.Acquire(b, KindLock, "k", AcquireOptions{Queue: true}); err != nil || tk == nil {
		t.Fatalf("b: %v %v", tk, err)
	}
	clk.Advance(sec)
	if _, acq, err := e.Enqueue(c, KindLock, "k", lockOpt(0)); err != nil || acq {
		t.Fatalf("c enqueue: %v %v", acq, err)
	}
	clk.Advance(sec)
	_, td, err := e.Acquire(d, KindLock, "k", AcquireOptions{Queue: true})
	if err != nil || td == nil {
		t.Fatal(err)
	}
	ki, ok := e.Inspect(KindLock, "k", -1)
	if !ok || ki.Key != "k" || ki.Kind != KindLock || ki.Limit != 1 || ki.HoldersTotal != 1 || ki.WaitersTotal != 3 || ki.Truncated() {
		t.Fatalf("Inspect = %+v, %v", ki, ok)
	}
	fence, _ := FenceFromToken(l.Token.String())
	h := ki.Holders[0]
	if h.Fence != fence || h.OwnerID != 1 || h.Tag != "a" || h.LeaseLeft != 26*sec || h.HeldFor != 4*sec || h.Enqueued {
		t.Fatalf("holder = %+v (fence want %d)", h, fence)
	}
	want := []WaiterInfo{
		{OwnerID: 2, Tag: "b", Waiting: 2 * sec},
		{OwnerID: 3, Tag: "c", Waiting: sec, Enqueued: true},
		{OwnerID: 4, Tag: "d", Waiting: 0},
	}
	for i, w := range want {
		if ki.Waiters[i] != w {
			t.Fatalf("waiter %d = %+v, want %+v", i, ki.Waiters[i], w)
		}
	}

	// A waiter that leaves drops out; order of the rest is kept.
	if _, err := td.Wait(context.Background(), 0); !errors.Is(err, ErrTimeout) {
		t.Fatalf("d poll = %v", err)
	}
	// Release: b gets the lock (held for 0 s), c is next.
	if err := e.Release(a, KindLock, "k", l.Token.String()); err != nil {
		t.Fatal(err)
	}
	clk.Advance(sec)
	ki, _ = e.Inspect(KindLock, "k", -1)
	if ki.HoldersTotal != 1 || ki.Holders[0].OwnerID != 2 || ki.Holders[0].HeldFor != sec || ki.Holders[0].Fence <= fence {
		t.Fatalf("after release: holders %+v", ki.Holders)
	}
	if ki.WaitersTotal != 1 || len(ki.Waiters) != 1 || ki.Waiters[0].OwnerID != 3 || ki.Waiters[0].Waiting != 2*sec {
		t.Fatalf("after release: waiters %+v", ki.Waiters)
	}
}

func TestInspectEnqueuedHolder(t *testing.T) {
	e, _ := newTestEngine(t, Options{})
	o := NewOwner(7)
	if _, acq, err := e.Enqueue(o, KindLock, "k", lockOpt(0)); err != nil || !acq {
		t.Fatalf("Enqueue = %v %v", acq, err)
	}
	ki, _ := e.Inspect(KindLock, "k", -1)
	if len(ki.Holders) != 1 || !ki.Holders[0].Enqueued || ki.Holders[0].OwnerID != 7 || ki.Holders[0].Tag != nil {
		t.Fatalf("holders %+v", ki.Holders)
	}
	if _, err := e.Wait(context.Background(), o, KindLock, "k", 0); err != nil {
		t.Fatal(err)
	}
	ki, _ = e.Inspect(KindLock, "k", -1)
	if ki.Holders[0].Enqueued {
		t.Fatalf("claimed slot still marked enqueued: %+v", ki.Holders)
	}
}

func TestInspectSemaphoreAndTruncation(t *testing.T) {
	e, clk := newTestEngine(t, Options{})
	opt := AcquireOptions{Limit: 3, TTL: 10 * sec}
	for i := range 3 {
		mustAcquire(t, e, NewOwner(uint64(i+1)), KindSemaphore, "pool", opt)
	}
	opt.Queue = true
	for i := range 5 {
		if _, tk, err := e.Acquire(NewOwner(uint64(10+i)), KindSemaphore, "pool", opt); err != nil || tk == nil {
			t.Fatal(err)
		}
	}
	ki, ok := e.Inspect(KindSemaphore, "pool", 2)
	if !ok || ki.Kind != KindSemaphore || ki.Limit != 3 || ki.HoldersTotal != 3 || ki.WaitersTotal != 5 ||
		len(ki.Holders) != 2 || len(ki.Waiters) != 2 || !ki.Truncated() {
		t.Fatalf("Inspect(max 2) = %+v", ki)
	}
	if ki.Waiters[0].OwnerID != 10 || ki.Waiters[1].OwnerID != 11 {
		t.Fatalf("truncated waiters are not the head of the queue: %+v", ki.Waiters)
	}
	if ki, _ := e.Inspect(KindSemaphore, "pool", 0); len(ki.Holders) != 0 || len(ki.Waiters) != 0 || ki.Holders == nil || ki.WaitersTotal != 5 {
		t.Fatalf("Inspect(max 0) = %+v", ki)
	}
	// Leases past their end are not listed, even before they are swept.
	clk.Advance(11 * sec)
	if ki, _ := e.Inspect(KindSemaphore, "pool", -1); ki.HoldersTotal != 0 || len(ki.Holders) != 0 || ki.WaitersTotal != 5 {
		t.Fatalf("after expiry: %+v", ki)
	}
}

// Inspect never lists a huge queue in full: with max it allocates only
// the listed entries, however long the queue.
func TestInspectBoundedWithLongQueue(t *testing.T) {
	e, _ := newTestEngine(t, Options{})
	mustAcquire(t, e, NewOwner(1), KindLock, "k", lockOpt(10*sec))
	o := NewOwner(2)
	for range 10000 {
		if _, _, err := e.Acquire(o, KindLock, "k", AcquireOptions{Queue: true}); err != nil {
			t.Fatal(err)
		}
	}
	var ki KeyInfo
	allocs := testing.AllocsPerRun(10, func() { ki, _ = e.Inspect(KindLock, "k", 5) })
	if len(ki.Waiters) != 5 || ki.WaitersTotal != 10000 || allocs > 3 {
		t.Fatalf("listed %d of %d waiters with %v allocations", len(ki.Waiters), ki.WaitersTotal, allocs)
	}
}

// Recording start times costs no size class: a lock with its holder is
// still one 176-byte allocation, a waiter fits in 96 bytes.
func TestInspectBookkeepingSizes(t *testing.T) {
	if n := unsafe.Sizeof(lockResource{}); n != 176 {
		t.Fatalf("lockResource is %d bytes; want 176", n)
	}
	if n := unsafe.Sizeof(waiter{}); n > 96 {
		t.Fatalf("waiter is %d bytes; want at most 96", n)
	}
}
