package core

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentInvariants hammers a few keys with acquires, try-locks,
// timeouts, cancellations, two-phase acquires and disconnects, and checks
// that no lock ever has two holders, no semaphore more than its limit, and
// nothing is left behind.
func TestConcurrentInvariants(t *testing.T) {
	e := New(Options{SweepInterval: 5 * time.Millisecond, GCInterval: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = e.Run(ctx) }()
	defer func() { cancel(); <-runDone }()

	type target struct {
		kind  Kind
		key   string
		limit int
		in    atomic.Int32
	}
	targets := []*target{
		{kind: KindLock, key: "a", limit: 1},
		{kind: KindLock, key: "b", limit: 1},
		{kind: KindSemaphore, key: "a", limit: 3},
	}
	const workers = 16
	const rounds = 300
	var wg sync.WaitGroup
	var violations atomic.Int32
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			o := NewOwner(uint64(g + 1))
			for i := 0; i < rounds; i++ {
				tg := targets[rng.IntN(len(targets))]
				opt := AcquireOptions{Limit: tg.limit, TTL: time.Minute}
				var l Lease
				var err error
				switch rng.IntN(5) {
				case 0: // try-lock
					l, _, err = e.Acquire(o, tg.kind, tg.key, opt)
				case 1: // cancelled while waiting
					cctx, ccancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(300))*time.Microsecond)
					l, err = e.Lock(cctx, o, tg.kind, tg.key, time.Second, opt)
					ccancel()
				case 2: // two-phase
					var acq bool
					l, acq, err = e.Enqueue(o, tg.kind, tg.key, opt)
					if err == nil {
						l, err = e.Wait(context.Background(), o, tg.kind, tg.key, time.Duration(rng.IntN(2))*time.Millisecond)
						_ = acq
					}
				case 3: // disconnect and come back as a new owner
					e.ReleaseOwner(o)
					o = NewOwner(uint64(g + 1))
					continue
				default:
					l, err = e.Lock(context.Background(), o, tg.kind, tg.key, time.Duration(1+rng.IntN(3))*time.Millisecond, opt)
				}
				if err != nil {
					if !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrCanceled) && !errors.Is(err, ErrAlreadyEnqueued) {
						t.Errorf("unexpected error: %v", err)
					}
					continue
				}
				if n := tg.in.Add(1); int(n) > tg.limit {
					violations.Add(1)
				}
				if rng.IntN(4) == 0 {
					time.Sleep(time.Duration(rng.IntN(100)) * time.Microsecond)
				}
				tg.in.Add(-1)
				if rng.IntN(8) == 0 {
					// Leave it to the disconnect instead of releasing.
					e.ReleaseOwner(o)
					o = NewOwner(uint64(g + 1))
					continue
				}
				if err := e.Release(o, tg.kind, tg.key, l.Token.String()); err != nil {
					t.Errorf("release %s %s: %v", tg.kind, tg.key, err)
				}
			}
			e.ReleaseOwner(o)
		}(g)
	}
	wg.Wait()
	if v := violations.Load(); v != 0 {
		t.Fatalf("%d mutual-exclusion violations", v)
	}
	for _, tg := range targets {
		if h, w := holders(e, tg.kind, tg.key), waiters(e, tg.kind, tg.key); h != 0 || w != 0 {
			t.Errorf("%s %s: %d holders, %d waiters left", tg.kind, tg.key, h, w)
		}
	}
}

// TestFIFOUnderConcurrency queues waiters one at a time (so their order is
// known) while releases happen, and checks grants follow queue order.
func TestFIFOUnderConcurrency(t *testing.T) {
	e := New(Options{})
	holder := NewOwner(1)
	l := mustAcquire(t, e, holder, KindLock, "k", lockOpt(time.Minute))
	const n = 20
	order := make(chan int, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		o := NewOwner(uint64(i + 2))
		tk := mustQueue(t, e, o, KindLock, "k", lockOpt(time.Minute))
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			got, err := tk.Wait(context.Background(), 10*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			order <- i
			_ = e.Release(o, KindLock, "k", got.Token.String())
		}(i)
	}
	_ = e.Release(holder, KindLock, "k", l.Token.String())
	wg.Wait()
	close(order)
	want := 0
	for got := range order {
		if got != want {
			t.Fatalf("grant %d went to waiter %d", want, got)
		}
		want++
	}
	if want != n {
		t.Fatalf("%d grants; want %d", want, n)
	}
}

func TestStatsSnapshot(t *testing.T) { // §5
	e, clk := newTestEngine(t, Options{})
	o := NewOwner(7)
	mustAcquire(t, e, o, KindLock, "job", lockOpt(30*sec))
	mustQueue(t, e, NewOwner(8), KindLock, "job", lockOpt(0))
	mustAcquire(t, e, o, KindSemaphore, "pool", AcquireOptions{Limit: 3})
	mustAcquire(t, e, o, KindSemaphore, "one", AcquireOptions{Limit: 1})
	l := mustAcquire(t, e, o, KindLock, "old", lockOpt(0))
	_ = e.Release(o, KindLock, "old", l.Token.String())
	sl := mustAcquire(t, e, o, KindSemaphore, "oldsem", AcquireOptions{Limit: 2})
	_ = e.Release(o, KindSemaphore, "oldsem", sl.Token.String())
	clk.Advance(1500 * time.Millisecond)

	st := e.Stats()
	got := fmt.Sprintf("%+v", st)
	if len(st.Locks) != 2 || len(st.Semaphores) != 1 || len(st.IdleLocks) != 1 || len(st.IdleSemaphores) != 1 {
		t.Fatalf("stats = %s", got)
	}
	for _, ls := range st.Locks {
		switch ls.Key {
		case "job":
			if ls.OwnerConnID != 7 || ls.Waiters != 1 || ls.LeaseExpiresInS != 28.5 {
				t.Errorf("job = %+v", ls)
			}
		case "one": // a limit-1 semaphore is listed as a lock
		default:
			t.Errorf("unexpected lock %+v", ls)
		}
	}
	if s := st.Semaphores[0]; s.Key != "pool" || s.Limit != 3 || s.Holders != 1 || s.Waiters != 0 {
		t.Errorf("pool = %+v", s)
	}
	if st.IdleLocks[0].Key != "old" || st.IdleLocks[0].IdleS != 1.5 {
		t.Errorf("idle = %+v", st.IdleLocks[0])
	}
	empty := New(Options{}).Stats()
	if empty.Locks == nil || empty.Semaphores == nil || empty.IdleLocks == nil || empty.IdleSemaphores == nil {
		t.Fatal("empty stats has nil slices")
	}
}
