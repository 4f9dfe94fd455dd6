package core

import (
	"context"
	"errors"
	"testing"
)

func TestWaitWithoutEnqueueIsNotEnqueued(t *testing.T) { // §11 #1
	e, _ := newTestEngine(t, Options{})
	o := NewOwner(1)
	if _, err := e.Wait(context.Background(), o, KindLock, "k", sec); !errors.Is(err, ErrNotEnqueued) {
		t.Fatalf("Wait without enqueue = %v", err)
	}
	mustAcquire(t, e, o, KindLock, "k", lockOpt(0)) // plain acquire leaves no record
	if _, err := e.Wait(context.Background(), o, KindLock, "k", sec); !errors.Is(err, ErrNotEnqueued) {
		t.Fatalf("Wait after plain acquire = %v", err)
	}
	// A record belongs to its owner: another owner cannot wait on it.
	e2, _ := newTestEngine(t, Options{})
	if _, _, err := e2.Enqueue(NewOwner(1), KindLock, "k", lockOpt(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := e2.Wait(context.Background(), NewOwner(2), KindLock, "k", 0); !errors.Is(err, ErrNotEnqueued) {
		t.Fatalf("Wait from another owner = %v", err)
	}
}

func TestSecondEnqueueIsAlreadyEnqueued(t *testing.T) { // §11 #2
	e, _ := newTestEngine(t, Options{})
	o := NewOwner(1)
	if _, acq, err := e.Enqueue(o, KindLock, "k", lockOpt(0)); err != nil || !acq {
		t.Fatalf("Enqueue = %v, %v; want acquired", acq, err)
	}
	if _, _, err := e.Enqueue(o, KindLock, "k", lockOpt(0)); !errors.Is(err, ErrAlreadyEnqueued) {
		t.Fatalf("second Enqueue (after acquired) = %v", err)
	}
	o2 := NewOwner(2)
	if _, acq, err := e.Enqueue(o2, KindLock, "k", lockOpt(0)); err != nil || acq {
		t.Fatalf("Enqueue = %v, %v; want queued", acq, err)
	}
	if _, _, err := e.Enqueue(o2, KindLock, "k", lockOpt(0)); !errors.Is(err, ErrAlreadyEnqueued) {
		t.Fatalf("second Enqueue (after queued) = %v", err)
	}
}

func TestWaitAfterAcquiredResetsLeaseAtOnce(t *testing.T) { // §11 #3
	e, clk := newTestEngine(t, Options{})
	o := NewOwner(1)
	l, _, err := e.Enqueue(o, KindLock, "k", lockOpt(10*sec))
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(4 * sec)
	got, err := e.Wait(context.Background(), o, KindLock, "k", 0)
	if err != nil {
		t.Fatalf("Wait = %v", err)
	}
	if got.Token != l.Token || got.TTL != 10*sec || !got.Expires.Equal(clk.Now().Add(10*sec)) {
		t.Fatalf("Wait = %+v; want same token, lease reset to now+10s", got)
	}
	if _, err := e.Wait(context.Background(), o, KindLock, "k", 0); !errors.Is(err, ErrNotEnqueued) {
		t.Fatalf("record not consumed: %v", err)
	}
}

func TestWaitZeroOnQueuedIsDestructivePoll(t *testing.T) { // §11 #4
	e, _ := newTestEngine(t, Options{})
	mustAcquire(t, e, NewOwner(1), KindLock, "k", lockOpt(0))
	o := NewOwner(2)
	if _, acq, err := e.Enqueue(o, KindLock, "k", lockOpt(0)); err != nil || acq {
		t.Fatalf("Enqueue = %v %v", acq, err)
	}
	if !o.Queued(KindLock, "k") {
		t.Fatal("Queued = false for a waiting record")
	}
	if _, err := e.Wait(context.Background(), o, KindLock, "k", 0); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Wait 0 = %v; want ErrTimeout", err)
	}
	if waiters(e, KindLock, "k") != 0 {
		t.Fatal("waiter left in queue")
	}
	if _, err := e.Wait(context.Background(), o, KindLock, "k", 0); !errors.Is(err, ErrNotEnqueued) {
		t.Fatalf("record not deleted: %v", err)
	}
}

func TestQueuedEnqueueGrantedThenWaited(t *testing.T) {
	e, clk := newTestEngine(t, Options{})
	o1 := NewOwner(1)
	l := mustAcquire(t, e, o1, KindLock, "k", lockOpt(0))
	o2 := NewOwner(2)
	if _, _, err := e.Enqueue(o2, KindLock, "k", lockOpt(20*sec)); err != nil {
		t.Fatal(err)
	}
	_ = e.Release(o1, KindLock, "k", l.Token.String())
	clk.Advance(5 * sec)
	got, err := e.Wait(context.Background(), o2, KindLock, "k", 0)
	if err != nil {
		t.Fatalf("Wait = %v", err)
	}
	if !got.Expires.Equal(clk.Now().Add(20 * sec)) {
		t.Fatalf("lease not reset at wait: %v", got.Expires)
	}
}

func TestGrantedRecordExpiresAndFreesEnqueue(t *testing.T) { // §11 #15, #16
	e, clk := newTestEngine(t, Options{})
	o1 := NewOwner(1)
	l := mustAcquire(t, e, o1, KindLock, "k", lockOpt(0))
	o2 := NewOwner(2)
	if _, _, err := e.Enqueue(o2, KindLock, "k", lockOpt(2*sec)); err != nil {
		t.Fatal(err)
	}
	_ = e.Release(o1, KindLock, "k", l.Token.String())
	clk.Advance(2 * sec)
	// Before the sweep: the record still exists but its lease is gone.
	o3 := NewOwner(3)
	if _, _, err := e.Enqueue(o3, KindLock, "k", lockOpt(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Wait(context.Background(), o2, KindLock, "k", sec); !errors.Is(err, ErrLeaseExpired) && !errors.Is(err, ErrNotEnqueued) {
		t.Fatalf("Wait on expired grant = %v; want lease expired or not enqueued", err)
	}
	// After the sweep, the record is gone and a new enqueue works.
	o4 := NewOwner(4)
	if _, _, err := e.Enqueue(o4, KindLock, "x", lockOpt(sec)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(sec)
	e.Sweep()
	if _, _, err := e.Enqueue(o4, KindLock, "x", lockOpt(0)); err != nil {
		t.Fatalf("Enqueue after the granted record expired = %v", err)
	}
	if _, err := e.Wait(context.Background(), o4, KindLock, "x", 0); err != nil {
		t.Fatalf("Wait = %v", err)
	}
}

func TestWaitOnAcquiredButExpiredNeverOK(t *testing.T) { // §11 #16
	e, clk := newTestEngine(t, Options{})
	o := NewOwner(1)
	if _, _, err := e.Enqueue(o, KindLock, "k", lockOpt(sec)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(sec)
	if _, err := e.Wait(context.Background(), o, KindLock, "k", sec); !errors.Is(err, ErrLeaseExpired) {
		t.Fatalf("Wait = %v; want ErrLeaseExpired", err)
	}
	if _, _, err := e.Enqueue(o, KindLock, "y", lockOpt(sec)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(sec)
	e.Sweep()
	if _, err := e.Wait(context.Background(), o, KindLock, "y", sec); !errors.Is(err, ErrNotEnqueued) {
		t.Fatalf("Wait after sweep = %v; want ErrNotEnqueued", err)
	}
}

func TestReleaseClearsRecordBoundToToken(t *testing.T) {
	e, _ := newTestEngine(t, Options{})
	o := NewOwner(1)
	l, _, err := e.Enqueue(o, KindLock, "k", lockOpt(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Release(NewOwner(2), KindLock, "k", l.Token.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Wait(context.Background(), o, KindLock, "k", 0); !errors.Is(err, ErrNotEnqueued) {
		t.Fatalf("Wait after release = %v", err)
	}
	if _, _, err := e.Enqueue(o, KindLock, "k", lockOpt(0)); err != nil {
		t.Fatalf("Enqueue after release = %v", err)
	}
}

func TestDisconnectAutoReleaseHandsOnInFIFO(t *testing.T) { // §11 #18
	e, _ := newTestEngine(t, Options{})
	o1 := NewOwner(1)
	mustAcquire(t, e, o1, KindLock, "a", lockOpt(0))
	mustAcquire(t, e, o1, KindSemaphore, "s", AcquireOptions{Limit: 2})
	mustAcquire(t, e, o1, KindSemaphore, "s", AcquireOptions{Limit: 2})
	ta := mustQueue(t, e, NewOwner(2), KindLock, "a", lockOpt(0))
	ta2 := mustQueue(t, e, NewOwner(3), KindLock, "a", lockOpt(0))
	ts1 := mustQueue(t, e, NewOwner(4), KindSemaphore, "s", AcquireOptions{Limit: 2})
	ts2 := mustQueue(t, e, NewOwner(5), KindSemaphore, "s", AcquireOptions{Limit: 2})
	ts3 := mustQueue(t, e, NewOwner(6), KindSemaphore, "s", AcquireOptions{Limit: 2})
	e.ReleaseOwner(o1)
	if !granted(t, ta) || granted(t, ta2) {
		t.Fatal("lock not handed to the queue head only")
	}
	if !granted(t, ts1) || !granted(t, ts2) || granted(t, ts3) {
		t.Fatal("semaphore slots not handed on in FIFO order")
	}
}

func TestDisconnectWithKeepPurgesWaitersKeepsHolds(t *testing.T) { // §11 #17
	e, _ := newTestEngine(t, Options{KeepOnDisconnect: true})
	o1 := NewOwner(1)
	mustAcquire(t, e, o1, KindLock, "held", lockOpt(0))
	mustAcquire(t, e, NewOwner(2), KindLock, "busy", lockOpt(0))
	if _, _, err := e.Enqueue(o1, KindLock, "busy", lockOpt(0)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Enqueue(o1, KindLock, "twophase", lockOpt(0)); err != nil {
		t.Fatal(err)
	}
	e.ReleaseOwner(o1)
	if waiters(e, KindLock, "busy") != 0 {
		t.Fatal("queued enqueue survived the disconnect")
	}
	if holders(e, KindLock, "held") != 1 || holders(e, KindLock, "twophase") != 1 {
		t.Fatal("held slots were released despite KeepOnDisconnect")
	}
}

func TestDisconnectReleasesGrantedButUnwaitedRecord(t *testing.T) {
	e, _ := newTestEngine(t, Options{})
	o1 := NewOwner(1)
	l := mustAcquire(t, e, o1, KindLock, "k", lockOpt(0))
	o2 := NewOwner(2)
	if _, _, err := e.Enqueue(o2, KindLock, "k", lockOpt(0)); err != nil {
		t.Fatal(err)
	}
	t3 := mustQueue(t, e, NewOwner(3), KindLock, "k", lockOpt(0))
	_ = e.Release(o1, KindLock, "k", l.Token.String()) // granted to o2's record
	e.ReleaseOwner(o2)
	if !granted(t, t3) {
		t.Fatal("slot granted to a departed owner's record was not passed on")
	}
}
