package core

import (
	"context"
	"errors"
	"testing"
)

func ownerMetricsOf(os ...*Owner) OwnerMetrics {
	var m OwnerMetrics
	for _, o := range os {
		o.AddMetricsTo(&m)
	}
	return m
}

// Every way a lease starts and ends is counted once, on the right owner
// or engine-wide, and the gauges match the keys.
func TestMetricsCountGrantsAndLeaseEnds(t *testing.T) {
	e, clk := newTestEngine(t, Options{})
	a, b, c := NewOwner(1), NewOwner(2), NewOwner(3)

	la := mustAcquire(t, e, a, KindLock, "k", lockOpt(10*sec))                       // immediate
	mustAcquire(t, e, a, KindSemaphore, "s", AcquireOptions{Limit: 2, TTL: 5 * sec}) // immediate
	if _, acquired, err := e.Enqueue(a, KindLock, "two", lockOpt(60*sec)); err != nil || !acquired {
		t.Fatalf("enqueue: %v, %v", acquired, err) // immediate, two-phase
	}
	tk := mustQueue(t, e, b, KindLock, "k", lockOpt(60*sec))
	if _, acquired, err := e.Enqueue(c, KindLock, "two", lockOpt(60*sec)); err != nil || acquired {
		t.Fatalf("enqueue: %v, %v", acquired, err) // queued
	}

	m := e.Metrics()
	if g := m.Namespaces[KindLock]; g != (NamespaceMetrics{Keys: 2, Held: 2, Waiters: 2}) {
		t.Fatalf("lock gauges %+v", g)
	}
	if g := m.Namespaces[KindSemaphore]; g != (NamespaceMetrics{Keys: 1, Held: 1}) {
		t.Fatalf("semaphore gauges %+v", g)
	}

	clk.Advance(2 * sec)
	if err := e.Release(a, KindLock, "k", la.Token.String()); err != nil { // release; b waited 2 s
		t.Fatal(err)
	}
	if _, err := tk.Wait(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	clk.Advance(1 * sec)
	e.ReleaseOwner(a) // disconnect: "two" (granted record) and s; c waited 3 s
	if _, err := e.Wait(context.Background(), c, KindLock, "two", 0); err != nil {
		t.Fatal(err)
	}
	clk.Advance(60 * sec)
	if n := e.Sweep(); n != 2 { // b's k and c's two expire
		t.Fatalf("sweep evicted %d; want 2", n)
	}
	lb := mustAcquire(t, e, b, KindLock, "k", lockOpt(sec)) // immediate
	clk.Advance(2 * sec)
	if _, err := e.Renew(KindLock, "k", lb.Token.String(), sec); !errors.Is(err, ErrLeaseExpired) {
		t.Fatalf("renew of an expired lease: %v", err) // expiry
	}

	om := ownerMetricsOf(a, b, c)
	if om.GrantsImmediate != 4 || om.GrantsAfterWait != 2 || om.Released != 1 {
		t.Fatalf("owner counters %+v", om)
	}
	if om.Wait.Count() != 2 || om.Wait.Sum != 5*sec {
		t.Fatalf("wait histogram: %d waits, %v in all; want 2, 5s", om.Wait.Count(), om.Wait.Sum)
	}
	m = e.Metrics()
	if m.Expired != 3 || m.Disconnected != 2 || m.ReleasedUnowned != 0 {
		t.Fatalf("engine counters %+v", m)
	}
	if m.Fence == 0 {
		t.Fatal("fence 0")
	}
}

// A grant that raced a cancelled wait is given back: a disconnect.
func TestMetricsCancelledGrantIsDisconnect(t *testing.T) {
	e, _ := newTestEngine(t, Options{})
	a, b := NewOwner(1), NewOwner(2)
	la := mustAcquire(t, e, a, KindLock, "k", lockOpt(10*sec))
	tk := mustQueue(t, e, b, KindLock, "k", lockOpt(10*sec))
	if err := e.Release(nil, KindLock, "k", la.Token.String()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// The grant is in the channel; a cancelled ctx may win the select.
	if _, err := tk.Wait(ctx, sec); err != nil && !errors.Is(err, ErrCanceled) {
		t.Fatal(err)
	} else if err == nil {
		e.ReleaseOwner(b) // the lease was taken: end it on disconnect
	}
	if m := e.Metrics(); m.Disconnected != 1 || m.ReleasedUnowned != 1 {
		t.Fatalf("engine counters %+v", m)
	}
	if om := ownerMetricsOf(a, b); om.GrantsAfterWait != 1 || om.GrantsImmediate != 1 {
		t.Fatalf("owner counters %+v", om)
	}
}
