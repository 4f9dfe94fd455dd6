package core

import (
	"fmt"
	"slices"
	"testing"
)

// checkEmpty asserts that the subscription table holds nothing: no
// literal entry, no wildcard entry and no trie node left behind.
func checkEmpty(t testing.TB, e *Engine) {
	t.Helper()
	l := &e.subs
	if n := l.exact.Size(); n != 0 {
		t.Fatalf("%d literal entries left", n)
	}
	if n := l.nwild.Load(); n != 0 {
		t.Fatalf("nwild = %d, want 0", n)
	}
	if n := l.rows.Load(); n != 0 {
		t.Fatalf("rows = %d, want 0", n)
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if !l.root.empty() {
		t.Fatalf("trie not pruned: root = %+v", *l.root)
	}
}

func TestNextToken(t *testing.T) {
	cases := []struct {
		s    string
		want []string
	}{
		{"a", []string{"a"}},
		{"a.b.c", []string{"a", "b", "c"}},
		{"a.", []string{"a", ""}},
		{".a", []string{"", "a"}},
		{"a..b", []string{"a", "", "b"}},
		{".", []string{"", ""}},
		{"", []string{""}},
	}
	for _, c := range cases {
		var got []string
		for i := 0; i <= len(c.s); {
			tok, next := nextToken(c.s, i)
			got = append(got, tok)
			i = next
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("tokens of %q = %q, want %q", c.s, got, c.want)
		}
	}
}

// TestSublist_PrunesTrie: removing the last subscription of every pattern
// leaves no node, and literal and wildcard patterns sharing prefixes do
// not disturb each other.
func TestSublist_PrunesTrie(t *testing.T) {
	e := New(Options{})
	s := newFake("s", 1)
	patterns := []string{
		">", "*", "a", "a.b", "a.*", "a.>", "a.*.>", "a.*.c", "a.b.>", "*.b",
		"*.*.*", "a..*", ".>", "x.y.z.*", "x.y.>", "x.*.z",
	}
	for _, g := range []string{"", "w"} {
		for _, p := range patterns {
			mustSubscribe(t, e, s, p, g)
		}
	}
	if n := e.subs.nwild.Load(); n != int64(len(patterns)-2) {
		t.Fatalf("nwild = %d, want %d", n, len(patterns)-2)
	}
	// Remove in a different order than added, plain first.
	for _, g := range []string{"", "w"} {
		for i := len(patterns) - 1; i >= 0; i-- {
			mustUnsubscribe(t, e, s, patterns[(i*7)%len(patterns)], g)
		}
	}
	checkEmpty(t, e)
	if st := e.SignalStats(); len(st) != 0 {
		t.Fatalf("stats %v", st)
	}
}

// TestSublist_PartialRemovalKeepsSiblings: pruning one pattern keeps the
// nodes other patterns still need.
func TestSublist_PartialRemovalKeepsSiblings(t *testing.T) {
	e := New(Options{})
	a, b := newFake("a", 8), newFake("b", 8)
	mustSubscribe(t, e, a, "x.*.z", "")
	mustSubscribe(t, e, b, "x.*.>", "")
	mustSubscribe(t, e, b, "x.*", "")
	mustUnsubscribe(t, e, b, "x.*", "")
	signal(t, e, "x.y.z", "1", 2)
	mustUnsubscribe(t, e, b, "x.*.>", "")
	signal(t, e, "x.y.z", "2", 1)
	signal(t, e, "x.y.z.w", "3", 0)
	mustUnsubscribe(t, e, a, "x.*.z", "")
	checkEmpty(t, e)
}

// TestMatchCache_Bounded: the cache never holds more than cacheSlots
// lines, and evicted or stale lines are refilled correctly.
func TestMatchCache_Bounded(t *testing.T) {
	e := New(Options{})
	s := newFake("s", 1<<14)
	mustSubscribe(t, e, s, "c.*", "")
	for i := 0; i < 4*cacheSlots; i++ {
		ch := fmt.Sprintf("c.%d", i)
		signal(t, e, ch, "x", 1)
		signal(t, e, "d."+ch, "x", 0)
		s.got()
	}
	lines := 0
	for i := range e.subs.cache {
		if e.subs.cache[i].Load() != nil {
			lines++
		}
	}
	if lines > cacheSlots {
		t.Fatalf("%d cache lines", lines)
	}
	// Every channel still resolves correctly, cached or not.
	for i := 0; i < 4*cacheSlots; i += 97 {
		signal(t, e, fmt.Sprintf("c.%d", i), "x", 1)
	}
}

// TestMatchCache_HitUsesLine: a repeated channel is served by its cache
// line; a wildcard change makes it stale.
func TestMatchCache_HitUsesLine(t *testing.T) {
	e := New(Options{})
	s := newFake("s", 64)
	mustSubscribe(t, e, s, "k.*", "")
	signal(t, e, "k.v", "1", 1)
	gen := e.subs.gen.Load()
	line := findLine(e, "k.v")
	if line == nil || line.gen != gen || len(line.ents) != 1 {
		t.Fatalf("no valid cache line after a miss: %+v", line)
	}
	signal(t, e, "k.v", "2", 1)
	if findLine(e, "k.v") != line {
		t.Fatal("a hit replaced the cache line")
	}
	mustSubscribe(t, e, s, "k.>", "")
	if e.subs.gen.Load() == gen {
		t.Fatal("a new wildcard pattern did not bump the generation")
	}
	signal(t, e, "k.v", "3", 1) // deduped: one copy
	if l := findLine(e, "k.v"); l == nil || len(l.ents) != 2 {
		t.Fatalf("line after refill: %+v", l)
	}
	g2 := e.subs.gen.Load()
	mustSubscribe(t, e, newFake("t", 8), "k.>", "w") // existing entry
	if e.subs.gen.Load() != g2 {
		t.Fatal("membership change of an existing pattern bumped the generation")
	}
}

func findLine(e *Engine, channel string) *cacheLine {
	for i := range e.subs.cache {
		if l := e.subs.cache[i].Load(); l != nil && l.channel == channel && l.gen == e.subs.gen.Load() {
			return l
		}
	}
	return nil
}

// TestSubscriberSet covers the linear and the indexed modes.
func TestSubscriberSet(t *testing.T) {
	var set subscriberSet
	subs := make([]*fakeSub, 3*indexAt)
	for i := range subs {
		subs[i] = newFake(fmt.Sprint(i), 1)
		if !set.add(subs[i]) || set.add(subs[i]) {
			t.Fatalf("add %d", i)
		}
		if (set.idx != nil) != (len(set.list) > indexAt) {
			t.Fatalf("index present=%v at size %d", set.idx != nil, len(set.list))
		}
	}
	for i := 0; i < len(subs); i += 3 {
		if !set.remove(subs[i]) || set.remove(subs[i]) {
			t.Fatalf("remove %d", i)
		}
	}
	for i, s := range subs {
		if got, want := set.find(s) >= 0, i%3 != 0; got != want {
			t.Fatalf("find %d = %v, want %v", i, got, want)
		}
	}
	for i, s := range set.list {
		if set.idx[s] != i {
			t.Fatalf("index of %v = %d, want %d", s, set.idx[s], i)
		}
	}
	for _, s := range subs {
		set.remove(s)
	}
	if set.list != nil || set.idx != nil {
		t.Fatal("empty set keeps storage")
	}
}

// TestSeenSet covers the linear and the map modes and reset.
func TestSeenSet(t *testing.T) {
	var set seenSet
	for round := 0; round < 2; round++ {
		subs := make([]*fakeSub, 2*seenLinear)
		for i := range subs {
			subs[i] = newFake(fmt.Sprint(i), 1)
			if !set.add(subs[i]) || set.add(subs[i]) || !set.has(subs[i]) {
				t.Fatalf("round %d: add %d", round, i)
			}
		}
		if set.has(newFake("x", 1)) {
			t.Fatal("has a stranger")
		}
		set.reset()
		if set.has(subs[0]) || len(set.list) != 0 {
			t.Fatal("reset kept members")
		}
	}
}
