package core

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// fakeSub is a Subscriber with a bounded push queue and counters.
type fakeSub struct {
	name     string
	q        chan []byte
	attempts atomic.Int32 // Deliver calls
	evicted  atomic.Int32 // Evict calls
	refuse   atomic.Int32 // refuse this many Deliver calls before using q

	entered chan struct{} // if non-nil, Evict signals it (non-blocking)
	release chan struct{} // if non-nil, Evict blocks until it is closed
}

func newFake(name string, capacity int) *fakeSub {
	return &fakeSub{name: name, q: make(chan []byte, capacity)}
}

func (f *fakeSub) Deliver(frame []byte) bool {
	f.attempts.Add(1)
	if f.refuse.Load() > 0 && f.refuse.Add(-1) >= 0 {
		return false
	}
	select {
	case f.q <- frame:
		return true
	default:
		return false
	}
}

func (f *fakeSub) Evict() {
	f.evicted.Add(1)
	if f.entered != nil {
		select {
		case f.entered <- struct{}{}:
		default:
		}
	}
	if f.release != nil {
		<-f.release
	}
}

func (f *fakeSub) String() string { return f.name }

// got returns the payloads queued so far and empties the queue.
func (f *fakeSub) got() []string {
	var out []string
	for {
		select {
		case fr := <-f.q:
			s := strings.TrimSuffix(string(fr), "\n")
			_, s, _ = strings.Cut(s, " ") // "sig"
			_, s, _ = strings.Cut(s, " ") // channel
			out = append(out, s)
		default:
			return out
		}
	}
}

// fill queues frames until f's queue is full.
func (f *fakeSub) fill() {
	for len(f.q) < cap(f.q) {
		f.q <- []byte("sig filler x\n")
	}
}

func sigFrame(channel, payload string) []byte {
	return []byte("sig " + channel + " " + payload + "\n")
}

func mustSubscribe(t testing.TB, e *Engine, s Subscriber, pattern, group string) {
	t.Helper()
	added, err := e.Subscribe(s, pattern, group)
	if err != nil || !added {
		t.Fatalf("Subscribe(%v, %q, %q) = %v, %v; want true, nil", s, pattern, group, added, err)
	}
}

func mustUnsubscribe(t testing.TB, e *Engine, s Subscriber, pattern, group string) {
	t.Helper()
	removed, err := e.Unsubscribe(s, pattern, group)
	if err != nil || !removed {
		t.Fatalf("Unsubscribe(%v, %q, %q) = %v, %v; want true, nil", s, pattern, group, removed, err)
	}
}

func signal(t testing.TB, e *Engine, channel, payload string, want int) {
	t.Helper()
	if n := e.Signal(channel, sigFrame(channel, payload)); n != want {
		t.Fatalf("Signal(%q) = %d receivers, want %d", channel, n, want)
	}
}

// refMatch is the reference matcher: split both strings on '.' and
// compare token by token.
func refMatch(pattern, channel string) bool {
	var rec func(p, c []string) bool
	rec = func(p, c []string) bool {
		if len(p) == 0 {
			return len(c) == 0
		}
		if p[0] == ">" {
			return len(c) >= 1
		}
		if len(c) == 0 || (p[0] != "*" && p[0] != c[0]) {
			return false
		}
		return rec(p[1:], c[1:])
	}
	return rec(strings.Split(pattern, "."), strings.Split(channel, "."))
}

// refValid is the reference pattern validator.
func refValid(pattern string) bool {
	if pattern == "" || strings.ContainsAny(pattern, " \t\r\n") {
		return false
	}
	toks := strings.Split(pattern, ".")
	for i, tok := range toks {
		if strings.ContainsAny(tok, "*>") && tok != "*" && tok != ">" {
			return false
		}
		if tok == ">" && i != len(toks)-1 {
			return false
		}
	}
	return true
}

var matchCases = []struct {
	pattern, channel string
	want             bool
}{
	{">", "a", true},
	{">", "a.b.c", true},
	{">", "a.", true},
	{">", ".", true},
	{"*", "a", true},
	{"*", "a.b", false},
	{"*", ".", false},
	{"a.*", "a.b", true},
	{"a.*", "a", false},
	{"a.*", "a.b.c", false},
	{"a.*", "a.", true},
	{"a.*", "b.a", false},
	{"*.b", "a.b", true},
	{"*.b", ".b", true},
	{"*.b", "a.c", false},
	{"*.b", "b", false},
	{"a.*.c", "a.b.c", true},
	{"a.*.c", "a..c", true},
	{"a.*.c", "a.b.d", false},
	{"a.*.c", "a.c", false},
	{"*.*", "a.b", true},
	{"*.*", "a", false},
	{"*.*", "a.b.c", false},
	{"*.*.*", "..", true},
	{"a.>", "a.b", true},
	{"a.>", "a.b.c", true},
	{"a.>", "a.", true},
	{"a.>", "a", false},
	{"a.>", "ab.c", false},
	{"a.>", "b.a.c", false},
	{"a.*.>", "a.b.c", true},
	{"a.*.>", "a.b.c.d", true},
	{"a.*.>", "a.b", false},
	{"*.>", "a", false},
	{"*.>", "a.b", true},
	{"*.*.>", "a.b", false},
	{"a.b", "a.b", true},
	{"a.b", "a.b.c", false},
	{"a.b", "a", false},
	{"a.b", "a.c", false},
	{"a..b", "a..b", true},
	{"a..b", "a.b", false},
	{"a.", "a.", true},
	{"a.", "a", false},
	{"a..*", "a..x", true},
	{"a..*", "a.x", false},
	{".>", ".x", true},
	{".>", "x", false},
	{".", ".", true},
	{"events", "events", true},
	{"events", "events2", false},
}

// TestMatch_Table checks every pattern against its channel on a fresh
// engine (twice: trie walk, then cache hit) and against refMatch.
func TestMatch_Table(t *testing.T) {
	for _, c := range matchCases {
		t.Run(c.pattern+"~"+c.channel, func(t *testing.T) {
			if got := refMatch(c.pattern, c.channel); got != c.want {
				t.Fatalf("refMatch(%q, %q) = %v, want %v (table or reference is wrong)",
					c.pattern, c.channel, got, c.want)
			}
			e := New(Options{})
			s := newFake("s", 8)
			mustSubscribe(t, e, s, c.pattern, "")
			mustSubscribe(t, e, newFake("decoy", 8), "zz.*.zz", "") // keeps the trie non-empty
			want := 0
			if c.want {
				want = 1
			}
			signal(t, e, c.channel, "1", want)
			signal(t, e, c.channel, "2", want)
			if g := len(s.got()); g != 2*want {
				t.Fatalf("subscriber got %d frames, want %d", g, 2*want)
			}
		})
	}
}

// TestMatch_AllPatternsInOneEngine subscribes every table pattern (one
// subscriber each) in one engine and checks each channel reaches exactly
// the subscribers refMatch predicts.
func TestMatch_AllPatternsInOneEngine(t *testing.T) {
	e := New(Options{})
	subs := map[string]*fakeSub{}
	var channels []string
	for _, c := range matchCases {
		if subs[c.pattern] == nil {
			subs[c.pattern] = newFake(c.pattern, 64)
			mustSubscribe(t, e, subs[c.pattern], c.pattern, "")
		}
		if !slices.Contains(channels, c.channel) {
			channels = append(channels, c.channel)
		}
	}
	for round := 0; round < 2; round++ { // second round from the cache
		for _, ch := range channels {
			want := 0
			for p := range subs {
				if refMatch(p, ch) {
					want++
				}
			}
			signal(t, e, ch, "x", want)
			for p, s := range subs {
				if n, w := len(s.got()), refMatch(p, ch); (n == 1) != w || n > 1 {
					t.Fatalf("round %d: channel %q: pattern %q got %d frames, want match=%v", round, ch, p, n, w)
				}
			}
		}
	}
}

func TestValidPattern(t *testing.T) {
	cases := []struct {
		pattern string
		want    bool
	}{
		{"a", true},
		{"a.b.c", true},
		{"*", true},
		{">", true},
		{"a.*", true},
		{"*.a", true},
		{"a.*.b", true},
		{"a.>", true},
		{"a.*.>", true},
		{"*.*.>", true},
		{"a..b", true},
		{"a.", true},
		{".a", true},
		{".", true},
		{"..", true},
		{"a..*", true},
		{".>", true},
		{"a-b_c:d/e", true},
		{"", false},
		{"a.>.b", false},
		{">.a", false},
		{"a.b*", false},
		{"*a", false},
		{"a*", false},
		{"a.*b", false},
		{"x>", false},
		{">x", false},
		{"a.>>", false},
		{"**", false},
		{"a.**.b", false},
		{">.>", false},
		{"a b", false},
		{"a\tb", false},
		{"a\rb", false},
		{"a\nb", false},
		{" ", false},
		{"a.* ", false},
	}
	for _, c := range cases {
		if got := ValidPattern(c.pattern); got != c.want {
			t.Errorf("ValidPattern(%q) = %v, want %v", c.pattern, got, c.want)
		}
		if got := refValid(c.pattern); got != c.want {
			t.Errorf("refValid(%q) = %v, want %v", c.pattern, got, c.want)
		}
	}
}

// TestSubscribe_BadPattern: listen and unlisten validate alike (edge 35).
func TestSubscribe_BadPattern(t *testing.T) {
	e := New(Options{})
	s := newFake("s", 1)
	for _, p := range []string{"a.>.b", "a.b*", "x>", "", "a b"} {
		if ok, err := e.Subscribe(s, p, ""); ok || !errors.Is(err, ErrBadPattern) {
			t.Errorf("Subscribe(%q) = %v, %v; want false, ErrBadPattern", p, ok, err)
		}
		if ok, err := e.Unsubscribe(s, p, "w"); ok || !errors.Is(err, ErrBadPattern) {
			t.Errorf("Unsubscribe(%q) = %v, %v; want false, ErrBadPattern", p, ok, err)
		}
	}
	if st := e.SignalStats(); len(st) != 0 {
		t.Fatalf("stats after bad patterns: %v", st)
	}
}

// TestSignal_NoMatchIsZero: ok 0 when nobody matches.
func TestSignal_NoMatchIsZero(t *testing.T) {
	e := New(Options{})
	signal(t, e, "a.b", "x", 0)
	s := newFake("s", 8)
	mustSubscribe(t, e, s, "a.c", "")
	mustSubscribe(t, e, s, "b.*", "")
	mustSubscribe(t, e, s, "a.b.>", "w")
	signal(t, e, "a.b", "x", 0)
	signal(t, e, "a.b", "x", 0)
	if s.attempts.Load() != 0 {
		t.Fatalf("Deliver called %d times", s.attempts.Load())
	}
}

// TestSignal_Edge36_DuplicateSubscribeIdempotent: an identical triple is a
// no-op: one copy, one count.
func TestSignal_Edge36_DuplicateSubscribeIdempotent(t *testing.T) {
	e := New(Options{})
	s := newFake("s", 8)
	for _, p := range []string{"a.b", "x.*"} {
		for _, g := range []string{"", "w"} {
			mustSubscribe(t, e, s, p, g)
			if added, err := e.Subscribe(s, p, g); added || err != nil {
				t.Fatalf("duplicate Subscribe(%q, %q) = %v, %v; want false, nil", p, g, added, err)
			}
		}
	}
	signal(t, e, "a.b", "1", 2) // plain + group w
	signal(t, e, "x.y", "2", 2)
	if got := s.got(); len(got) != 4 {
		t.Fatalf("got %v, want 4 frames", got)
	}
	for _, st := range e.SignalStats() {
		if st.Listeners != 1 {
			t.Fatalf("stats %v: want 1 listener each", e.SignalStats())
		}
	}
}

// TestSignal_Edge37_ExactAndWildcardDedup: a.b + a.* (and a.* + a.>) on
// one subscriber give one copy, counted once.
func TestSignal_Edge37_ExactAndWildcardDedup(t *testing.T) {
	e := New(Options{})
	s := newFake("s", 8)
	mustSubscribe(t, e, s, "a.b", "")
	mustSubscribe(t, e, s, "a.*", "")
	signal(t, e, "a.b", "1", 1)
	if got := s.got(); !slices.Equal(got, []string{"1"}) {
		t.Fatalf("got %v, want [1]", got)
	}

	e = New(Options{})
	mustSubscribe(t, e, s, "a.*", "")
	mustSubscribe(t, e, s, "a.>", "")
	mustSubscribe(t, e, s, ">", "")
	other := newFake("other", 8)
	mustSubscribe(t, e, other, "a.>", "")
	signal(t, e, "a.b", "2", 2)
	if got := s.got(); !slices.Equal(got, []string{"2"}) {
		t.Fatalf("got %v, want [2]", got)
	}
	if got := other.got(); !slices.Equal(got, []string{"2"}) {
		t.Fatalf("other got %v, want [2]", got)
	}
}

// TestSignal_DedupManySubscribers exercises the map-based dedup: many
// subscribers on overlapping patterns each get exactly one copy.
func TestSignal_DedupManySubscribers(t *testing.T) {
	e := New(Options{})
	var all []*fakeSub
	for i := 0; i < 100; i++ {
		s := newFake(fmt.Sprint("both", i), 4)
		all = append(all, s)
		mustSubscribe(t, e, s, "a.b", "")
		mustSubscribe(t, e, s, "a.*", "")
		mustSubscribe(t, e, s, "a.>", "")
	}
	for i := 0; i < 50; i++ {
		s := newFake(fmt.Sprint("wild", i), 4)
		all = append(all, s)
		mustSubscribe(t, e, s, "*.b", "")
	}
	signal(t, e, "a.b", "x", 150)
	for _, s := range all {
		if n := len(s.got()); n != 1 {
			t.Fatalf("%s got %d copies", s.name, n)
		}
	}
}

// TestSignal_Edge38_PlainAndGroupTwoCopies: groups take no part in the
// dedup.
func TestSignal_Edge38_PlainAndGroupTwoCopies(t *testing.T) {
	e := New(Options{})
	s := newFake("s", 8)
	mustSubscribe(t, e, s, "a.b", "")
	mustSubscribe(t, e, s, "a.b", "w")
	signal(t, e, "a.b", "1", 2)
	if got := s.got(); len(got) != 2 {
		t.Fatalf("got %v, want two copies", got)
	}
	// Two groups and a wildcard plain subscription: three copies.
	mustSubscribe(t, e, s, "a.*", "v")
	mustSubscribe(t, e, s, "a.*", "")
	signal(t, e, "a.b", "2", 3) // a.b plain (a.* deduped), group w, group v
	if got := s.got(); len(got) != 3 {
		t.Fatalf("got %v, want three copies", got)
	}
}

// TestSignal_Edge39_FullExactStillTriesWildcard: a refusal on the exact
// path does not mark the subscriber served.
func TestSignal_Edge39_FullExactStillTriesWildcard(t *testing.T) {
	t.Run("full everywhere", func(t *testing.T) {
		e := New(Options{})
		s := newFake("slow", 1)
		s.fill()
		ok := newFake("ok", 8)
		mustSubscribe(t, e, s, "a.b", "")
		mustSubscribe(t, e, s, "a.*", "")
		mustSubscribe(t, e, ok, "a.b", "")
		signal(t, e, "a.b", "1", 1) // only "ok" counts
		if a := s.attempts.Load(); a != 2 {
			t.Fatalf("slow subscriber: %d Deliver calls, want 2 (exact, then wildcard)", a)
		}
		if ev := s.evicted.Load(); ev != 1 {
			t.Fatalf("slow subscriber evicted %d times, want 1 per Signal", ev)
		}
		if ok.evicted.Load() != 0 {
			t.Fatal("healthy subscriber evicted")
		}
	})
	t.Run("room again on the wildcard path", func(t *testing.T) {
		e := New(Options{})
		s := newFake("s", 8)
		s.refuse.Store(1)
		mustSubscribe(t, e, s, "a.b", "")
		mustSubscribe(t, e, s, "a.*", "")
		signal(t, e, "a.b", "1", 1)
		if got := s.got(); !slices.Equal(got, []string{"1"}) {
			t.Fatalf("got %v, want [1] from the wildcard path", got)
		}
		if s.evicted.Load() != 1 {
			t.Fatalf("evicted %d times, want 1 (it refused once)", s.evicted.Load())
		}
	})
}

// TestSignal_Edge40_GroupSkipsFullMember: a full member is skipped for the
// next; when all are full the starting member is evicted and the group
// contributes 0.
func TestSignal_Edge40_GroupSkipsFullMember(t *testing.T) {
	e := New(Options{})
	m := []*fakeSub{newFake("m0", 1), newFake("m1", 1), newFake("m2", 1)}
	for _, s := range m {
		mustSubscribe(t, e, s, "jobs.>", "w")
	}
	m[0].fill()
	signal(t, e, "jobs.1", "1", 1) // counter 0: m0 full → m1
	if got := m[1].got(); !slices.Equal(got, []string{"1"}) {
		t.Fatalf("m1 got %v, want [1]", got)
	}
	for _, s := range m {
		s.fill()
	}
	signal(t, e, "jobs.1", "2", 0) // counter 1: m1, m2, m0 all full

	wantEvicted := []int32{0, 1, 0}  // the starting member only
	wantAttempts := []int32{2, 2, 1} // m2 was not tried by the first signal
	for i, s := range m {
		if ev := s.evicted.Load(); ev != wantEvicted[i] {
			t.Fatalf("m%d evicted %d times, want %d", i, ev, wantEvicted[i])
		}
		if a := s.attempts.Load(); a != wantAttempts[i] {
			t.Fatalf("m%d: %d Deliver calls, want %d", i, a, wantAttempts[i])
		}
	}
}

// TestSignal_Edge41_RoundRobinAlternates: idle members take turns.
func TestSignal_Edge41_RoundRobinAlternates(t *testing.T) {
	e := New(Options{})
	a, b := newFake("a", 8), newFake("b", 8)
	mustSubscribe(t, e, a, "jobs", "w")
	mustSubscribe(t, e, b, "jobs", "w")
	for i := 1; i <= 4; i++ {
		signal(t, e, "jobs", fmt.Sprint(i), 1)
	}
	if got := a.got(); !slices.Equal(got, []string{"1", "3"}) {
		t.Fatalf("a got %v, want [1 3]", got)
	}
	if got := b.got(); !slices.Equal(got, []string{"2", "4"}) {
		t.Fatalf("b got %v, want [2 4]", got)
	}
}

// TestSignal_GroupLeaveShiftsMembers: members are in join order and
// leaving shifts later members down; the counter keeps running.
func TestSignal_GroupLeaveShiftsMembers(t *testing.T) {
	e := New(Options{})
	m := []*fakeSub{newFake("m0", 8), newFake("m1", 8), newFake("m2", 8)}
	for _, s := range m {
		mustSubscribe(t, e, s, "q.*", "w")
	}
	signal(t, e, "q.x", "1", 1) // counter 0 → m0
	signal(t, e, "q.x", "2", 1) // counter 1 → m1
	mustUnsubscribe(t, e, m[0], "q.*", "w")
	signal(t, e, "q.x", "3", 1) // counter 2 mod 2 = 0 → m1 (shifted down)
	signal(t, e, "q.x", "4", 1) // counter 3 mod 2 = 1 → m2
	want := [][]string{{"1"}, {"2", "3"}, {"4"}}
	for i, s := range m {
		if got := s.got(); !slices.Equal(got, want[i]) {
			t.Fatalf("m%d got %v, want %v", i, got, want[i])
		}
	}
	// A rejoining member goes to the end.
	mustSubscribe(t, e, m[0], "q.*", "w")
	signal(t, e, "q.x", "5", 1) // counter 4 mod 3 = 1 → m2
	signal(t, e, "q.x", "6", 1) // counter 5 mod 3 = 2 → m0
	if got := m[2].got(); !slices.Equal(got, []string{"5"}) {
		t.Fatalf("m2 got %v, want [5]", got)
	}
	if got := m[0].got(); !slices.Equal(got, []string{"6"}) {
		t.Fatalf("m0 got %v, want [6]", got)
	}
}

// TestSignal_GroupsKeyedByPatternAndGroup: group w on jobs.> and group w
// on jobs.* are different groups, each delivering its own copy.
func TestSignal_GroupsKeyedByPatternAndGroup(t *testing.T) {
	e := New(Options{})
	a, b := newFake("a", 8), newFake("b", 8)
	mustSubscribe(t, e, a, "jobs.>", "w")
	mustSubscribe(t, e, b, "jobs.*", "w")
	signal(t, e, "jobs.x", "1", 2)
	signal(t, e, "jobs.x.y", "2", 1) // only jobs.>
	if got := a.got(); !slices.Equal(got, []string{"1", "2"}) {
		t.Fatalf("a got %v", got)
	}
	if got := b.got(); !slices.Equal(got, []string{"1"}) {
		t.Fatalf("b got %v", got)
	}
	// Same subscriber in both groups: two copies.
	mustSubscribe(t, e, a, "jobs.*", "w")
	mustUnsubscribe(t, e, b, "jobs.*", "w")
	signal(t, e, "jobs.x", "3", 2)
	if got := a.got(); len(got) != 2 {
		t.Fatalf("a got %v, want two copies", got)
	}
}

// TestUnsubscribe_GroupedAndPlainIndependent: a grouped subscription is
// not removed by an ungrouped Unsubscribe and vice versa.
func TestUnsubscribe_GroupedAndPlainIndependent(t *testing.T) {
	for _, p := range []string{"a.b", "a.*"} {
		e := New(Options{})
		s := newFake("s", 8)
		mustSubscribe(t, e, s, p, "w")
		if ok, err := e.Unsubscribe(s, p, ""); ok || err != nil {
			t.Fatalf("%s: plain Unsubscribe removed the grouped subscription", p)
		}
		if ok, _ := e.Unsubscribe(s, p, "v"); ok {
			t.Fatalf("%s: Unsubscribe of group v removed group w", p)
		}
		signal(t, e, "a.b", "1", 1)
		mustSubscribe(t, e, s, p, "")
		mustUnsubscribe(t, e, s, p, "w")
		signal(t, e, "a.b", "2", 1)
		if ok, _ := e.Unsubscribe(s, p, "w"); ok {
			t.Fatalf("%s: second grouped Unsubscribe reported a removal", p)
		}
		mustUnsubscribe(t, e, s, p, "")
		signal(t, e, "a.b", "3", 0)
		if got := s.got(); !slices.Equal(got, []string{"1", "2"}) {
			t.Fatalf("%s: got %v", p, got)
		}
		if ok, _ := e.Unsubscribe(newFake("stranger", 1), p, ""); ok {
			t.Fatalf("%s: Unsubscribe of a stranger reported a removal", p)
		}
	}
}

// TestSignal_Edge42_EvictDoesNotBlockSubscribe: while a publisher is stuck
// in a slow consumer's Evict, others subscribe, unsubscribe and publish.
func TestSignal_Edge42_EvictDoesNotBlockSubscribe(t *testing.T) {
	e := New(Options{})
	slow := newFake("slow", 1)
	slow.fill()
	slow.entered = make(chan struct{}, 1)
	slow.release = make(chan struct{})
	mustSubscribe(t, e, slow, "a.b", "")
	mustSubscribe(t, e, slow, "a.*", "g")
	other := newFake("other", 64)
	mustSubscribe(t, e, other, "a.b", "")

	published := make(chan int, 1)
	go func() { published <- e.Signal("a.b", sigFrame("a.b", "x")) }()
	select {
	case <-slow.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("Evict was never called")
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		c := newFake("c", 64)
		for _, p := range []string{"a.b", "a.*", "a.>", "z"} {
			for _, g := range []string{"", "g", "h"} {
				mustSubscribe(t, e, c, p, g)
			}
		}
		if n := e.Signal("z", sigFrame("z", "y")); n != 3 { // c: plain, g, h
			t.Errorf("Signal(z) = %d, want 3", n)
		}
		_ = e.SignalStats()
		for _, p := range []string{"a.b", "a.*", "a.>", "z"} {
			for _, g := range []string{"", "g", "h"} {
				mustUnsubscribe(t, e, c, p, g)
			}
		}
		mustUnsubscribe(t, e, other, "a.b", "")
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Subscribe/Unsubscribe blocked behind a slow consumer's Evict")
	}
	select {
	case <-published:
		t.Fatal("publisher returned while its Evict was still blocked")
	default:
	}
	close(slow.release)
	if n := <-published; n != 1 {
		t.Fatalf("first Signal counted %d, want 1 (other only)", n)
	}
}

// TestSignal_Edge43_UnsubscribeRemovesEverywhere: an unsubscribed
// subscription is gone from delivery and from SignalStats.
func TestSignal_Edge43_UnsubscribeRemovesEverywhere(t *testing.T) {
	e := New(Options{})
	s, stay := newFake("s", 64), newFake("stay", 64)
	subs := [][2]string{{"a.b", ""}, {"a.b", "w"}, {"a.*", ""}, {"a.>", "w"}, {">", ""}}
	for _, sub := range subs {
		mustSubscribe(t, e, s, sub[0], sub[1])
	}
	mustSubscribe(t, e, stay, "a.b", "")
	signal(t, e, "a.b", "1", 4) // s: plain once, group w on a.b, group w on a.>; stay: 1
	// What a disconnect does: remove every subscription of s.
	for _, sub := range subs {
		mustUnsubscribe(t, e, s, sub[0], sub[1])
	}
	s.got()
	signal(t, e, "a.b", "2", 1)
	if got := s.got(); len(got) != 0 {
		t.Fatalf("unsubscribed subscriber got %v", got)
	}
	want := []ChannelStat{{Pattern: "a.b", Listeners: 1}}
	if st := e.SignalStats(); !slices.Equal(st, want) {
		t.Fatalf("stats = %v, want %v", st, want)
	}
	mustUnsubscribe(t, e, stay, "a.b", "")
	if st := e.SignalStats(); st == nil || len(st) != 0 {
		t.Fatalf("stats = %#v, want empty non-nil", st)
	}
}

// TestSignal_Edge45_PublisherReceivesOwn: at this layer the publisher is
// just another subscriber.
func TestSignal_Edge45_PublisherReceivesOwn(t *testing.T) {
	e := New(Options{})
	me := newFake("me", 8)
	mustSubscribe(t, e, me, "chat.*", "")
	signal(t, e, "chat.room", "hello", 1)
	if got := me.got(); !slices.Equal(got, []string{"hello"}) {
		t.Fatalf("got %v", got)
	}
}

// TestSignal_FrameIsShared: every receiver gets the caller's slice.
func TestSignal_FrameIsShared(t *testing.T) {
	e := New(Options{})
	a, b := newFake("a", 1), newFake("b", 1)
	mustSubscribe(t, e, a, "c", "")
	mustSubscribe(t, e, b, "c", "g")
	fr := sigFrame("c", "p")
	if n := e.Signal("c", fr); n != 2 {
		t.Fatalf("count %d, want 2", n)
	}
	if x, y := <-a.q, <-b.q; &x[0] != &fr[0] || &y[0] != &fr[0] {
		t.Fatal("frame was copied")
	}
}

func TestSignalStats(t *testing.T) {
	e := New(Options{})
	st := e.SignalStats()
	if st == nil || len(st) != 0 {
		t.Fatalf("empty engine: stats = %#v, want empty non-nil", st)
	}
	if b, _ := json.Marshal(st); string(b) != "[]" {
		t.Fatalf("empty stats marshal to %s", b)
	}
	s := []*fakeSub{newFake("0", 1), newFake("1", 1), newFake("2", 1)}
	mustSubscribe(t, e, s[0], "a.b", "")
	mustSubscribe(t, e, s[1], "a.b", "")
	mustSubscribe(t, e, s[0], "a.b", "w")
	mustSubscribe(t, e, s[2], "a.b", "w")
	mustSubscribe(t, e, s[1], "a.*", "")
	mustSubscribe(t, e, s[0], "jobs.>", "workers")
	mustSubscribe(t, e, s[1], "jobs.>", "workers")
	mustSubscribe(t, e, s[2], "jobs.>", "workers")
	mustSubscribe(t, e, s[2], "jobs.>", "other")
	mustSubscribe(t, e, s[0], "grouponly", "g")
	want := []ChannelStat{
		{Pattern: "a.*", Listeners: 1},
		{Pattern: "a.b", Listeners: 2},
		{Pattern: "a.b", Group: "w", Listeners: 2},
		{Pattern: "grouponly", Group: "g", Listeners: 1},
		{Pattern: "jobs.>", Group: "other", Listeners: 1},
		{Pattern: "jobs.>", Group: "workers", Listeners: 3},
	}
	if got := e.SignalStats(); !slices.Equal(got, want) {
		t.Fatalf("stats =\n%v\nwant\n%v", got, want)
	}
	b, err := json.Marshal(e.SignalStats()[:3])
	if err != nil {
		t.Fatal(err)
	}
	const wantJSON = `[{"pattern":"a.*","listeners":1},{"pattern":"a.b","listeners":2},` +
		`{"pattern":"a.b","group":"w","listeners":2}]`
	if string(b) != wantJSON {
		t.Fatalf("json = %s\nwant   %s", b, wantJSON)
	}
}

// TestMatchCache_Invalidation: a cached miss or hit is dropped when a
// wildcard subscription is added or removed, and membership changes of a
// cached pattern are seen at once.
func TestMatchCache_Invalidation(t *testing.T) {
	e := New(Options{})
	mustSubscribe(t, e, newFake("decoy", 1), "zz.*", "") // the trie is in use
	signal(t, e, "a.b", "1", 0)                          // cached miss
	signal(t, e, "a.b", "1", 0)
	s1 := newFake("s1", 64)
	mustSubscribe(t, e, s1, "a.*", "")
	signal(t, e, "a.b", "2", 1) // miss invalidated
	signal(t, e, "a.b", "3", 1) // cached hit
	s2 := newFake("s2", 64)
	mustSubscribe(t, e, s2, "a.>", "")
	signal(t, e, "a.b", "4", 2) // hit invalidated by a new pattern
	s3 := newFake("s3", 64)
	mustSubscribe(t, e, s3, "a.*", "") // existing pattern: no new entry
	signal(t, e, "a.b", "5", 3)
	mustSubscribe(t, e, s3, "a.*", "g")
	signal(t, e, "a.b", "6", 4)
	mustUnsubscribe(t, e, s2, "a.>", "")
	signal(t, e, "a.b", "7", 3) // hit invalidated by a removed pattern
	mustUnsubscribe(t, e, s1, "a.*", "")
	mustUnsubscribe(t, e, s3, "a.*", "")
	mustUnsubscribe(t, e, s3, "a.*", "g")
	signal(t, e, "a.b", "8", 0)
	mustSubscribe(t, e, s1, "a.*", "") // the same pattern, a new entry
	signal(t, e, "a.b", "9", 1)
	if got := s1.got(); !slices.Equal(got, []string{"2", "3", "4", "5", "6", "7", "9"}) {
		t.Fatalf("s1 got %v", got)
	}
}

// TestSubscribe_KeepsOwnCopies: patterns, group names and channels may
// alias buffers the caller reuses.
func TestSubscribe_KeepsOwnCopies(t *testing.T) {
	e := New(Options{})
	s := newFake("s", 64)
	buf := []byte("abc.def")
	gbuf := []byte("grp")
	alias := func(b []byte) string { return unsafe.String(&b[0], len(b)) }
	mustSubscribe(t, e, s, alias(buf), "")
	mustSubscribe(t, e, s, alias(buf), alias(gbuf))
	copy(buf, "abc.*  ")
	buf = buf[:5]
	mustSubscribe(t, e, s, alias(buf), "")
	ch := []byte("abc.xyz")
	signal(t, e, alias(ch), "1", 1) // miss: caches the channel
	copy(ch, "abc.def")
	copy(buf, "zzzzz")
	copy(gbuf, "zzz")
	signal(t, e, "abc.def", "2", 2) // abc.def plain (abc.* deduped), group
	signal(t, e, "abc.xyz", "3", 1)
	want := []ChannelStat{
		{Pattern: "abc.*", Listeners: 1},
		{Pattern: "abc.def", Listeners: 1},
		{Pattern: "abc.def", Group: "grp", Listeners: 1},
	}
	if got := e.SignalStats(); !slices.Equal(got, want) {
		t.Fatalf("stats = %v, want %v", got, want)
	}
}

// TestSignal_ManySubscribersOneChannel exercises the indexed subscriber
// set: add, remove from the middle, re-add.
func TestSignal_ManySubscribersOneChannel(t *testing.T) {
	for _, p := range []string{"big", "big.*"} {
		e := New(Options{})
		subs := make([]*fakeSub, 200)
		for i := range subs {
			subs[i] = newFake(fmt.Sprint(i), 4)
			mustSubscribe(t, e, subs[i], p, "")
		}
		for i := 0; i < len(subs); i += 2 {
			mustUnsubscribe(t, e, subs[i], p, "")
		}
		if ok, _ := e.Unsubscribe(subs[0], p, ""); ok {
			t.Fatal("double Unsubscribe reported a removal")
		}
		ch := "big"
		if !literalPattern(p) {
			ch = "big.x"
		}
		signal(t, e, ch, "1", 100)
		for i, s := range subs {
			if n := len(s.got()); n != i%2 {
				t.Fatalf("%s: sub %d got %d frames", p, i, n)
			}
		}
		if st := e.SignalStats(); len(st) != 1 || st[0].Listeners != 100 {
			t.Fatalf("%s: stats %v", p, st)
		}
		for i := 1; i < len(subs); i += 2 {
			mustUnsubscribe(t, e, subs[i], p, "")
		}
		if st := e.SignalStats(); len(st) != 0 {
			t.Fatalf("%s: stats %v after removing all", p, st)
		}
	}
}

// TestSignal_NoMatchDoesNotAllocate: publishing to a channel nobody
// listens on allocates nothing once its cache line exists.
func TestSignal_NoMatchDoesNotAllocate(t *testing.T) {
	e := New(Options{})
	for i := 0; i < 100; i++ {
		mustSubscribe(t, e, newFake("s", 1), fmt.Sprintf("svc.%d.*", i), "")
		mustSubscribe(t, e, newFake("s", 1), fmt.Sprintf("svc.%d", i), "w")
	}
	fr := sigFrame("nobody.home", "x")
	e.Signal("nobody.home", fr)
	if a := testing.AllocsPerRun(1000, func() { e.Signal("nobody.home", fr) }); a != 0 {
		t.Fatalf("no-match Signal: %v allocs/op", a)
	}
}

// countSub accepts everything and counts, or refuses when full is set.
type countSub struct {
	n       atomic.Int64
	evicted atomic.Int64
	full    atomic.Bool
}

func (c *countSub) Deliver([]byte) bool {
	if c.full.Load() {
		return false
	}
	c.n.Add(1)
	return true
}

func (c *countSub) Evict() { c.evicted.Add(1) }

// TestPubSub_Concurrent: subscribers join and leave while publishers run.
// A subscriber that stays subscribed throughout sees every signal; counts
// never exceed what is possible; everything is gone at the end.
func TestPubSub_Concurrent(t *testing.T) {
	e := New(Options{})
	patterns := []string{"a", "a.b", "a.*", "a.>", "*.b", ">", "a.b.c", "a.*.c", "b.*"}
	groups := []string{"", "", "w", "v"}
	channels := []string{"a", "a.b", "a.b.c", "b.b", "a.x", "c"}

	stable := &countSub{}
	mustSubscribe(t, e, stable, ">", "")

	const churners, publishers, rounds = 8, 4, 2000
	var wg sync.WaitGroup
	var sent atomic.Int64
	var bad atomic.Value
	// Upper bound per signal: every churner plainly once (dedup) plus
	// one per group (patterns × named groups), plus the stable one.
	maxCount := churners + len(patterns)*2 + 1
	for p := 0; p < publishers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(p), 1))
			for i := 0; i < rounds; i++ {
				ch := channels[rng.IntN(len(channels))]
				n := e.Signal(ch, sigFrame(ch, "x"))
				sent.Add(1)
				if n < 1 || n > maxCount {
					bad.Store(fmt.Sprintf("Signal(%q) = %d, want 1..%d", ch, n, maxCount))
				}
				if i%100 == 0 {
					_ = e.SignalStats()
				}
			}
		}(p)
	}
	churn := make([]*countSub, churners)
	for c := range churn {
		churn[c] = &countSub{}
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			s := churn[c]
			rng := rand.New(rand.NewPCG(uint64(c), 2))
			held := map[[2]string]bool{}
			for i := 0; i < rounds; i++ {
				s.full.Store(rng.IntN(10) == 0)
				k := [2]string{patterns[rng.IntN(len(patterns))], groups[rng.IntN(len(groups))]}
				if held[k] {
					ok, err := e.Unsubscribe(s, k[0], k[1])
					if !ok || err != nil {
						bad.Store(fmt.Sprintf("Unsubscribe %v = %v, %v", k, ok, err))
					}
					delete(held, k)
				} else {
					ok, err := e.Subscribe(s, k[0], k[1])
					if !ok || err != nil {
						bad.Store(fmt.Sprintf("Subscribe %v = %v, %v", k, ok, err))
					}
					held[k] = true
				}
			}
			for k := range held {
				if ok, _ := e.Unsubscribe(s, k[0], k[1]); !ok {
					bad.Store(fmt.Sprintf("final Unsubscribe %v failed", k))
				}
			}
		}(c)
	}
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	if got, want := stable.n.Load(), sent.Load(); got != want {
		t.Fatalf("stable subscriber got %d signals, want %d", got, want)
	}
	mustUnsubscribe(t, e, stable, ">", "")
	if st := e.SignalStats(); len(st) != 0 {
		t.Fatalf("stats after everyone left: %v", st)
	}
	for _, ch := range channels {
		signal(t, e, ch, "x", 0)
	}
	checkEmpty(t, e)
}
