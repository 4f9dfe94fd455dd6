package core

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// statsFixture makes an engine with 10 held locks, 5 held semaphores, 4
// idle locks and 3 idle semaphores.
func statsFixture(t *testing.T) *Engine {
	t.Helper()
	e, _ := newTestEngine(t, Options{})
	o := NewOwner(1)
	for i := range 10 {
		mustAcquire(t, e, o, KindLock, fmt.Sprintf("lock%d", i), lockOpt(time.Minute))
	}
	for i := range 5 {
		mustAcquire(t, e, o, KindSemaphore, fmt.Sprintf("sem%d", i), AcquireOptions{Limit: 3, TTL: time.Minute})
	}
	for i := range 4 {
		key := fmt.Sprintf("idle%d", i)
		l := mustAcquire(t, e, o, KindLock, key, lockOpt(time.Minute))
		if err := e.Release(o, KindLock, key, string(l.Token[:])); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		key := fmt.Sprintf("idlesem%d", i)
		l := mustAcquire(t, e, o, KindSemaphore, key, AcquireOptions{Limit: 2, TTL: time.Minute})
		if err := e.Release(o, KindSemaphore, key, string(l.Token[:])); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// StatsUpTo lists at most limit keys of each kind and counts them all.
func TestStatsUpTo_CapsListsAndCountsAll(t *testing.T) {
	e := statsFixture(t)
	wantTotals := KeyTotals{Locks: 10, Semaphores: 5, IdleLocks: 4, IdleSemaphores: 3}

	all := e.Stats()
	if all.Totals != wantTotals || all.Truncated() {
		t.Fatalf("Stats totals = %+v truncated %v; want %+v, not truncated", all.Totals, all.Truncated(), wantTotals)
	}
	if len(all.Locks) != 10 || len(all.Semaphores) != 5 || len(all.IdleLocks) != 4 || len(all.IdleSemaphores) != 3 {
		t.Fatalf("Stats lists %d/%d/%d/%d keys; want 10/5/4/3",
			len(all.Locks), len(all.Semaphores), len(all.IdleLocks), len(all.IdleSemaphores))
	}

	for _, limit := range []int{0, 1, 3, 4, 10, 11} {
		var st Stats
		e.StatsUpTo(&st, limit)
		if st.Totals != wantTotals {
			t.Fatalf("StatsUpTo(%d) totals = %+v; want %+v", limit, st.Totals, wantTotals)
		}
		lens := []int{len(st.Locks), len(st.Semaphores), len(st.IdleLocks), len(st.IdleSemaphores)}
		totals := []int{10, 5, 4, 3}
		for i := range lens {
			if want := min(limit, totals[i]); lens[i] != want {
				t.Fatalf("StatsUpTo(%d) lists %v; want min(limit, %v)", limit, lens, totals)
			}
		}
		if got, want := st.Truncated(), limit < 10; got != want {
			t.Fatalf("StatsUpTo(%d).Truncated() = %v; want %v", limit, got, want)
		}
		if st.Locks == nil || st.Semaphores == nil || st.IdleLocks == nil || st.IdleSemaphores == nil {
			t.Fatalf("StatsUpTo(%d) has a nil list", limit)
		}
		// Whatever is listed is a true entry.
		for _, l := range st.Locks {
			if !slices.Contains(all.Locks, l) {
				t.Fatalf("StatsUpTo(%d) lists %+v, not in the full snapshot", limit, l)
			}
		}
	}
}

// subscribeRows subscribes n1 subscribers to "c<i>" for i < nExact, one
// wildcard pattern per i < nWild, and a group on the first nGroups
// channels; it returns the subscriber used.
func subscribeRows(t testing.TB, e *Engine, nExact, nWild, nGroups int) *fakeSub {
	s := newFake("s", 1)
	for i := range nExact {
		mustSubscribe(t, e, s, fmt.Sprintf("c%d", i), "")
	}
	for i := range nWild {
		mustSubscribe(t, e, s, fmt.Sprintf("w%d.*", i), "")
	}
	for i := range nGroups {
		mustSubscribe(t, e, s, fmt.Sprintf("c%d", i), "g")
	}
	return s
}

// SignalStatsUpTo lists at most limit rows, with the true total, and
// matches SignalStats when the limit is not reached.
func TestSignalStatsUpTo_CapsAndTotals(t *testing.T) {
	e := New(Options{})
	s := subscribeRows(t, e, 30, 7, 5) // 42 rows
	all := e.SignalStats()
	if len(all) != 42 {
		t.Fatalf("SignalStats has %d rows; want 42", len(all))
	}
	for _, limit := range []int{0, 1, 10, 29, 30, 31, 41, 42, 43, -1} {
		list, total := e.SignalStatsUpTo(nil, limit)
		if total != 42 {
			t.Fatalf("SignalStatsUpTo(%d) total = %d; want 42", limit, total)
		}
		want := 42
		if limit >= 0 {
			want = min(limit, 42)
		}
		if len(list) != want || list == nil {
			t.Fatalf("SignalStatsUpTo(%d) lists %d rows (nil %v); want %d", limit, len(list), list == nil, want)
		}
		if !slices.IsSortedFunc(list, func(a, b ChannelStat) int {
			if a.Pattern != b.Pattern {
				return cmp.Compare(a.Pattern, b.Pattern)
			}
			return cmp.Compare(a.Group, b.Group)
		}) {
			t.Fatalf("SignalStatsUpTo(%d) not sorted: %v", limit, list)
		}
		for _, r := range list {
			if !slices.Contains(all, r) {
				t.Fatalf("SignalStatsUpTo(%d) lists %+v, not in SignalStats", limit, r)
			}
		}
	}
	// The total follows unsubscribes: plain rows, groups, wildcard rows.
	mustUnsubscribe(t, e, s, "c0", "")  // c0 keeps its group row
	mustUnsubscribe(t, e, s, "c1", "g") // c1 keeps its plain row
	mustUnsubscribe(t, e, s, "w0.*", "")
	mustUnsubscribe(t, e, s, "c29", "")
	if _, total := e.SignalStatsUpTo(nil, 3); total != 38 {
		t.Fatalf("total after 4 unsubscribes = %d; want 38", total)
	}
	if n := len(e.SignalStats()); n != 38 {
		t.Fatalf("SignalStats has %d rows; want 38", n)
	}
}

// The rows counter behind the total stays equal to the number of rows
// through random subscribe, join, leave and unsubscribe sequences.
func TestSignalStatsUpTo_TotalTracksChurn(t *testing.T) {
	e := New(Options{})
	rng := rand.New(rand.NewPCG(7, 11))
	subs := []*fakeSub{newFake("a", 1), newFake("b", 1), newFake("c", 1)}
	patterns := []string{"x", "y", "x.*", "x.>", ">"}
	groups := []string{"", "g", "h"}
	held := map[[3]int]bool{}
	for i := range 3000 {
		k := [3]int{rng.IntN(len(subs)), rng.IntN(len(patterns)), rng.IntN(len(groups))}
		s, p, g := subs[k[0]], patterns[k[1]], groups[k[2]]
		if held[k] {
			mustUnsubscribe(t, e, s, p, g)
			delete(held, k)
		} else {
			mustSubscribe(t, e, s, p, g)
			held[k] = true
		}
		list, total := e.SignalStatsUpTo(nil, -1)
		if total != len(list) || int(e.subs.rows.Load()) != len(list) {
			t.Fatalf("step %d: %d rows listed, total %d, counter %d", i, len(list), total, e.subs.rows.Load())
		}
	}
	for k := range held {
		mustUnsubscribe(t, e, subs[k[0]], patterns[k[1]], groups[k[2]])
	}
	checkEmpty(t, e)
}

// A capped SignalStatsUpTo does not walk every subscription: its
// allocations do not grow with the number of channels (a full walk
// collects every entry).
func TestSignalStatsUpTo_CostIndependentOfSubscriptions(t *testing.T) {
	allocs := func(n int) float64 {
		e := New(Options{})
		subscribeRows(t, e, n, 0, 0)
		return testing.AllocsPerRun(20, func() { _, _ = e.SignalStatsUpTo(nil, 10) })
	}
	small, large := allocs(100), allocs(20000)
	if large > small {
		t.Fatalf("SignalStatsUpTo(10) allocates %.0f times with 20000 channels, %.0f with 100; want no growth", large, small)
	}
}

// BenchmarkSignalStatsUpTo measures one capped stats walk over 100,000
// subscriptions (the case): go test -run '^$' -bench SignalStatsUpTo ./core/
func BenchmarkSignalStatsUpTo(b *testing.B) {
	e := New(Options{})
	subscribeRows(b, e, 100000, 0, 0)
	b.ReportAllocs()
	var list []ChannelStat
	for b.Loop() {
		list, _ = e.SignalStatsUpTo(list, 1000)
	}
}

// A Stats kept between calls is reused: once its lists have grown, a
// snapshot allocates nothing for them.
func TestStatsUpTo_ReusesLists(t *testing.T) {
	e := statsFixture(t)
	var st Stats
	e.StatsUpTo(&st, 3)
	if n := testing.AllocsPerRun(20, func() { e.StatsUpTo(&st, 3) }); n > 1 {
		t.Fatalf("StatsUpTo with reused lists allocates %.0f times; want at most 1", n)
	}
	if len(st.Locks) != 3 || st.Totals.Locks != 10 {
		t.Fatalf("reused snapshot lists %d locks of %d", len(st.Locks), st.Totals.Locks)
	}
	var list []ChannelStat
	subscribeRows(t, e, 30, 2, 0)
	list, _ = e.SignalStatsUpTo(list, 5)
	if n := testing.AllocsPerRun(20, func() { list, _ = e.SignalStatsUpTo(list, 5) }); n > 1 {
		t.Fatalf("SignalStatsUpTo with a reused list allocates %.0f times; want at most 1", n)
	}
}
