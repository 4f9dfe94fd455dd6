package core

import (
	"cmp"
	"errors"
	"slices"
	"strings"
)

// Subscriber is one connection's push endpoint for signals. The engine
// compares subscribers with == and uses them as map keys, so
// implementations must be comparable; use pointer types.
type Subscriber interface {
	// Deliver offers one complete frame ("sig <channel> <payload>\n").
	// The frame is shared by every receiver and immutable: Deliver may
	// keep the slice but must not modify it. Deliver must not block; it
	// reports false when the subscriber's push queue is full.
	Deliver(frame []byte) bool
	// Evict disconnects the subscriber as a slow consumer. The engine
	// calls it outside all its locks, possibly more than once (also from
	// concurrent Signal calls); it must be idempotent and must not block
	// for long.
	Evict()
}

// ErrBadPattern: a listen pattern is empty, contains whitespace, or uses
// '*' or '>' other than as a whole token ('>' only as the last token).
var ErrBadPattern = errors.New("core: bad pattern")

// ValidPattern reports whether pattern is a valid listen pattern: non-empty,
// without space, TAB, CR or LF, and with '*' and '>' only as whole
// dot-separated tokens, '>' only as the last token. Empty tokens ("a..b",
// "a.") are allowed. Length limits are the caller's business.
func ValidPattern(pattern string) bool {
	if pattern == "" {
		return false
	}
	last := len(pattern) - 1
	for i := 0; i < len(pattern); i++ {
		switch pattern[i] {
		case ' ', '\t', '\r', '\n':
			return false
		case '>':
			if i != last {
				return false
			}
			fallthrough
		case '*':
			if (i > 0 && pattern[i-1] != '.') || (i < last && pattern[i+1] != '.') {
				return false
			}
		}
	}
	return true
}

// literalPattern reports whether a valid pattern has no wildcard token.
func literalPattern(pattern string) bool { return !strings.ContainsAny(pattern, "*>") }

// Subscribe adds the subscription (s, pattern, group); group "" makes it a
// plain subscription, any other name makes s a member of the queue group
// keyed by (pattern, group). An identical triple is a no-op that returns
// (false, nil); a new one returns (true, nil). An invalid pattern (see
// ValidPattern) returns ErrBadPattern. The engine keeps its own copies of
// pattern and group. s must not be nil.
func (e *Engine) Subscribe(s Subscriber, pattern, group string) (added bool, err error) {
	if s == nil {
		panic("core: Subscribe with nil Subscriber")
	}
	if !ValidPattern(pattern) {
		return false, ErrBadPattern
	}
	if literalPattern(pattern) {
		return e.subs.subscribeExact(s, pattern, group), nil
	}
	return e.subs.subscribeWild(s, pattern, group), nil
}

// Unsubscribe removes exactly the subscription (s, pattern, group): a
// plain subscription is not removed by a grouped Unsubscribe and vice
// versa. It returns (false, nil) when the subscription did not exist and
// ErrBadPattern for an invalid pattern, as Subscribe does.
func (e *Engine) Unsubscribe(s Subscriber, pattern, group string) (removed bool, err error) {
	if !ValidPattern(pattern) {
		return false, ErrBadPattern
	}
	if literalPattern(pattern) {
		return e.subs.unsubscribeExact(s, pattern, group), nil
	}
	return e.subs.unsubscribeWild(s, pattern, group), nil
}

// Signal offers frame to every subscription matching the literal channel
// and returns the number of receivers. The order is:
//
//  1. plain subscriptions whose pattern is the channel itself;
//  2. queue groups on the channel itself, one member each;
//  3. plain wildcard subscriptions that match, skipping subscribers that
//     already accepted the frame in step 1 or earlier in step 3;
//  4. queue groups on matching wildcard patterns, one member each.
//
// A group starts at member (counter mod size), the counter counting the
// signals offered to the group, and moves on to the next members while
// Deliver refuses; if every member refuses, nobody gets the frame and the
// starting member is evicted. A plain subscriber that refuses is evicted
// and not counted; a refusal in step 1 does not mark it served, so step 3
// still tries it. The count is the number of frames accepted: one per
// plain subscriber reached plus one per group that delivered.
//
// channel must be a literal (no '*' or '>' token); the caller validates
// it. Deliver and Evict run with no engine lock held; Evict runs after
// every delivery of this call. frame is shared by all receivers and must
// not change afterwards.
func (e *Engine) Signal(channel string, frame []byte) int {
	return e.subs.signal(channel, frame)
}

// ChannelStat is one entry of stats.signal_channels.
type ChannelStat struct {
	// Pattern is the exact channel or the wildcard pattern.
	Pattern string `json:"pattern"`
	// Group is the queue group; "" (omitted in JSON) for plain listeners.
	Group string `json:"group,omitempty"`
	// Listeners counts the plain subscribers, or the group's members.
	Listeners int `json:"listeners"`
}

// SignalStats returns one entry per exact channel with plain listeners,
// per wildcard pattern with plain listeners, per (channel, group) and per
// (pattern, group), sorted by pattern then group. The result is never
// nil. Each pattern is read under its own lock, so the snapshot is
// consistent per pattern, not across patterns.
func (e *Engine) SignalStats() []ChannelStat {
	out, _ := e.SignalStatsUpTo(nil, -1)
	return out
}

// SignalStatsUpTo is SignalStats listing at most limit entries (limit < 0:
// all); total is the number of entries there are. Past the limit it lists
// an arbitrary subset (sorted), and its cost does not depend on the
// number of subscriptions: the walk stops at the limit and the total is
// kept as subscriptions come and go. When nothing is left out, total is
// len(list). The list reuses dst's storage (its contents are replaced),
// so a caller that keeps it between calls allocates nothing once it has
// grown.
func (e *Engine) SignalStatsUpTo(dst []ChannelStat, limit int) (list []ChannelStat, total int) {
	out, total := e.subs.stats(emptied(dst), limit)
	slices.SortFunc(out, func(a, b ChannelStat) int {
		if c := cmp.Compare(a.Pattern, b.Pattern); c != 0 {
			return c
		}
		return cmp.Compare(a.Group, b.Group)
	})
	return out, total
}
