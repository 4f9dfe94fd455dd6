package core

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fillKeys creates n lock keys "fill-<i>" for o and, unless hold, releases
// each at once (leaving it idle).
func fillKeys(t *testing.T, e *Engine, o *Owner, n int, hold bool) {
	t.Helper()
	for i := range n {
		key := fmt.Sprintf("fill-%d", i)
		l := mustAcquire(t, e, o, KindLock, key, lockOpt(0))
		if !hold {
			if err := e.Release(o, KindLock, key, l.Token.String()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Issue 11 #7: one client takes and releases MaxKeys keys; another
// client's new key is served at once (the idle keys are collected on the
// spot) instead of being refused until the next GC, here an hour away.
func TestMaxKeysCollectsIdleKeysOnTheSpot(t *testing.T) {
	e, _ := newTestEngine(t, Options{MaxKeys: 1024, GCMaxIdle: time.Hour})
	fillKeys(t, e, NewOwner(1), 1024, false)
	mustAcquire(t, e, NewOwner(2), KindLock, "new", lockOpt(0))
	mustAcquire(t, e, NewOwner(2), KindSemaphore, "new", AcquireOptions{Limit: 3})
	if n := e.Keys(); n != 2 {
		t.Fatalf("Keys = %d; want 2 (the idle keys collected, the new ones live)", n)
	}
}

// Keys with a holder, a waiter or an enqueue record are in use: at the
// cap a new key is refused and nothing is collected.
func TestMaxKeysRefusesWhenKeysInUse(t *testing.T) {
	e, _ := newTestEngine(t, Options{MaxKeys: 4})
	o := NewOwner(1)
	fillKeys(t, e, o, 2, true)
	if _, acq, err := e.Enqueue(NewOwner(2), KindSemaphore, "two-phase", AcquireOptions{Limit: 2}); err != nil || !acq {
		t.Fatalf("Enqueue = %v, %v", acq, err)
	}
	l := mustAcquire(t, e, o, KindLock, "queued", lockOpt(0))
	mustQueue(t, e, NewOwner(3), KindLock, "queued", lockOpt(0))
	if err := e.Release(o, KindLock, "queued", l.Token.String()); err != nil {
		t.Fatal(err) // the waiter now holds it
	}
	_, _, err := e.Acquire(NewOwner(4), KindLock, "new", lockOpt(0))
	if !errors.Is(err, ErrMaxKeys) {
		t.Fatalf("new key with all keys in use = %v; want ErrMaxKeys", err)
	}
	if n := e.Keys(); n != 4 {
		t.Fatalf("Keys = %d; want 4", n)
	}
	for _, key := range []string{"fill-0", "fill-1", "queued"} {
		if holders(e, KindLock, key) != 1 {
			t.Fatalf("key %q lost its holder", key)
		}
	}
}

// A refusal storm against a map full of live keys runs one collection,
// not one per request; the next runs only after a gap.
func TestMaxKeysCollectionIsBounded(t *testing.T) {
	e, clk := newTestEngine(t, Options{MaxKeys: 8})
	o := NewOwner(1)
	fillKeys(t, e, o, 8, true)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				if _, _, err := e.Acquire(NewOwner(2), KindLock, fmt.Sprintf("n-%d-%d", g, i), lockOpt(0)); !errors.Is(err, ErrMaxKeys) {
					t.Errorf("got %v; want ErrMaxKeys", err)
				}
			}
		}()
	}
	wg.Wait()
	if n := e.rc.gen.Load(); n != 1 {
		t.Fatalf("%d collections for 320 refusals at one instant; want 1", n)
	}
	// A key that goes idle within the gap is collected only after it.
	r, _ := e.ns[KindLock].Load("fill-0")
	if err := e.Release(o, KindLock, "fill-0", r.holders[0].token.String()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Acquire(o, KindLock, "late", lockOpt(0)); !errors.Is(err, ErrMaxKeys) {
		t.Fatalf("within the gap: %v; want ErrMaxKeys", err)
	}
	clk.Advance(time.Duration(reclaimMinGap))
	mustAcquire(t, e, o, KindLock, "late", lockOpt(0))
	if n := e.rc.gen.Load(); n != 2 {
		t.Fatalf("%d collections; want 2", n)
	}
}

// The first refusal in a minute comes as a *MaxKeysError (the server logs
// it at WARN), counting the refusals since the previous report; the
// others are plain ErrMaxKeys.
func TestMaxKeysRefusalReportedOncePerMinute(t *testing.T) {
	e, clk := newTestEngine(t, Options{MaxKeys: 1})
	mustAcquire(t, e, NewOwner(1), KindLock, "held", lockOpt(time.Hour))
	refuse := func() error {
		t.Helper()
		_, _, err := e.Acquire(NewOwner(2), KindLock, "new", lockOpt(0))
		if !errors.Is(err, ErrMaxKeys) {
			t.Fatalf("got %v; want ErrMaxKeys", err)
		}
		return err
	}
	reported := func(err error) (uint64, bool) {
		var mk *MaxKeysError
		if errors.As(err, &mk) {
			if mk.Max != 1 {
				t.Fatalf("MaxKeysError.Max = %d; want 1", mk.Max)
			}
			return mk.Refused, true
		}
		return 0, false
	}
	if n, ok := reported(refuse()); !ok || n != 1 {
		t.Fatalf("first refusal: reported %v, count %d; want reported, 1", ok, n)
	}
	for range 3 {
		clk.Advance(15 * time.Second)
		if _, ok := reported(refuse()); ok {
			t.Fatal("refusal reported again within a minute")
		}
	}
	clk.Advance(15*time.Second - 1)
	if _, ok := reported(refuse()); ok {
		t.Fatal("refusal reported again 1 ns before the minute was up")
	}
	clk.Advance(1)
	if n, ok := reported(refuse()); !ok || n != 5 {
		t.Fatalf("refusal a minute later: reported %v, count %d; want reported, 5", ok, n)
	}
}

// On-the-spot collection racing acquires of the keys it collects: pairs
// of workers share keys and check that no key ever has two holders (a
// collected resource must never keep granting beside its replacement),
// while churners create fresh keys at the cap so that collections run
// all the time.
func TestMaxKeysCollectionRacesAcquire(t *testing.T) {
	const shared, maxKeys = 4, 8
	// Every clock reading moves time on by 10 µs, so the gap between
	// collections (at least 1 ms) passes every hundred or so readings.
	var ticks atomic.Int64
	base := time.Now()
	now := func() time.Time { return base.Add(time.Duration(ticks.Add(1)) * 10 * time.Microsecond) }
	e := New(Options{MaxKeys: maxKeys, GCMaxIdle: time.Hour, Now: now})
	inside := make([]atomic.Int32, shared)
	var violations, grants, created atomic.Int64
	var wg sync.WaitGroup
	// Beside the collections the churners trigger (rate-limited), one
	// more collector deletes every idle key in a loop.
	stop := make(chan struct{})
	var swept atomic.Int64
	collectorDone := make(chan struct{})
	go func() {
		defer close(collectorDone)
		for {
			select {
			case <-stop:
				return
			default:
				swept.Add(int64(e.collect(1 << 62)))
			}
		}
	}()
	for g := range 2 * shared {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := NewOwner(uint64(g + 1))
			k := g % shared
			key := fmt.Sprintf("shared-%d", k)
			for range 1500 {
				l, _, err := e.Acquire(o, KindLock, key, lockOpt(time.Minute))
				if err != nil {
					if !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrMaxKeys) {
						t.Errorf("shared acquire: %v", err)
						return
					}
					continue
				}
				if inside[k].Add(1) != 1 {
					violations.Add(1)
				}
				grants.Add(1)
				inside[k].Add(-1)
				if err := e.Release(o, KindLock, key, l.Token.String()); err != nil {
					t.Errorf("release of a held key: %v", err)
					return
				}
				runtime.Gosched() // leave the key idle for a moment
			}
		}()
	}
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := NewOwner(uint64(100 + g))
			for i := range 1500 {
				key := fmt.Sprintf("churn-%d-%d", g, i)
				l, _, err := e.Acquire(o, KindSemaphore, key, AcquireOptions{Limit: 2})
				if err != nil {
					if !errors.Is(err, ErrMaxKeys) {
						t.Errorf("churn acquire: %v", err)
						return
					}
					continue
				}
				created.Add(1)
				if err := e.Release(o, KindSemaphore, key, l.Token.String()); err != nil {
					t.Errorf("churn release: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-collectorDone
	t.Logf("on-the-spot collections: %d, keys swept by the loop: %d, shared grants %d, churn keys %d",
		e.rc.gen.Load(), swept.Load(), grants.Load(), created.Load())
	if v := violations.Load(); v != 0 {
		t.Fatalf("%d times a shared key had two holders", v)
	}
	if grants.Load() == 0 || created.Load() < maxKeys || e.rc.gen.Load() == 0 {
		t.Fatalf("%d shared grants, %d churn keys created: the race was not exercised", grants.Load(), created.Load())
	}
	live := 0
	for _, m := range e.ns {
		m.Range(func(string, *resource) bool { live++; return true })
	}
	if n := e.Keys(); n != live || n > maxKeys {
		t.Fatalf("key count %d, map holds %d, cap %d", n, live, maxKeys)
	}
	if busyKeys := e.collect(1 << 62); e.Keys() != 0 {
		t.Fatalf("after collecting %d idle keys, %d remain", busyKeys, e.Keys())
	}
}
