package core

import (
	"strings"
	"testing"
)

// FuzzValidPattern checks ValidPattern against the reference validator
// and that every valid pattern can be subscribed and unsubscribed.
func FuzzValidPattern(f *testing.F) {
	seeds := []string{
		"a", ">", "*", "a.*.>", "a.>.b", "a.b*", "x>", "*a", ">.a", "", "a b", "a\tb", "a..b", "a.", ".>",
	}
	for _, p := range seeds {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, pattern string) {
		valid := ValidPattern(pattern)
		if want := refValid(pattern); valid != want {
			t.Fatalf("ValidPattern(%q) = %v, reference says %v", pattern, valid, want)
		}
		e := New(Options{})
		s := newFake("s", 1)
		added, err := e.Subscribe(s, pattern, "")
		if valid != (err == nil) || added != valid {
			t.Fatalf("Subscribe(%q) = %v, %v; valid=%v", pattern, added, err, valid)
		}
		if !valid {
			return
		}
		if removed, err := e.Unsubscribe(s, pattern, ""); !removed || err != nil {
			t.Fatalf("Unsubscribe(%q) = %v, %v", pattern, removed, err)
		}
		checkEmpty(t, e)
	})
}

// FuzzMatch checks delivery against the reference matcher for any valid
// pattern and literal channel, with a fixed set of other patterns sharing
// the trie.
func FuzzMatch(f *testing.F) {
	for _, c := range matchCases {
		f.Add(c.pattern, c.channel)
	}
	others := []string{">", "*", "a.*", "a.>", "*.b", "a.b", "*.*.>"}
	f.Fuzz(func(t *testing.T, pattern, channel string) {
		if !ValidPattern(pattern) || !validChannel(channel) {
			return
		}
		e := New(Options{})
		base := 0 // copies for the other subscribers
		for _, p := range others {
			mustSubscribe(t, e, newFake(p, 4), p, "")
			if refMatch(p, channel) {
				base++
			}
		}
		s := newFake("s", 4)
		mustSubscribe(t, e, s, pattern, "")
		mustSubscribe(t, e, s, pattern, "g") // its own group: a second copy
		mine := 0
		if refMatch(pattern, channel) {
			mine = 2
		}
		for round := 0; round < 2; round++ { // trie walk, then cache hit
			if n := e.Signal(channel, sigFrame(channel, "x")); n != base+mine {
				t.Fatalf("round %d: Signal(%q) with %q = %d, want %d", round, channel, pattern, n, base+mine)
			}
			if got := len(s.got()); got != mine {
				t.Fatalf("round %d: subscriber of %q got %d frames on %q, want %d", round, pattern, got, channel, mine)
			}
		}
		mustUnsubscribe(t, e, s, pattern, "")
		mustUnsubscribe(t, e, s, pattern, "g")
		if n := e.Signal(channel, sigFrame(channel, "x")); n != base {
			t.Fatalf("after Unsubscribe: Signal(%q) = %d, want %d", channel, n, base)
		}
	})
}

// validChannel is what the server accepts for signal: a non-empty string
// without whitespace and without '*' or '>'.
func validChannel(c string) bool {
	return c != "" && !strings.ContainsAny(c, " \t\r\n*>")
}
