package server

import (
	"testing"

	"github.com/dflockd/dflockd/core"
)

// Two-phase acquire over the wire (§2.3 enqueue/wait; edges 1–4). The
// lease-dependent edges 15 and 16 are in lease_test.go.

// Edge 1: `w` without a live enqueue record answers error_not_enqueued:
// never enqueued, after a plain `l`, from another connection, after a
// successful `w`, after a `w` timeout.
func TestEdge01_WaitWithoutEnqueueIsNotEnqueued(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a, b := ts.dial(t), ts.dial(t)
	a.Expect("w", "k", "0", "error_not_enqueued")
	a.Expect("w", "k", "5", "error_not_enqueued")
	a.Expect("sw", "k", "5", "error_not_enqueued")

	tok := expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	a.Expect("w", "k", "5", "error_not_enqueued")
	a.Expect("r", "k", tok, "ok")

	tok = expectGrant(t, a.Do("e", "k", ""), "acquired", "33")
	b.Expect("w", "k", "5", "error_not_enqueued")  // the connection binds the phases
	a.Expect("sw", "k", "0", "error_not_enqueued") // the namespace too
	expectGrant(t, a.Do("w", "k", "5"), "ok", "33")
	a.Expect("w", "k", "5", "error_not_enqueued") // consumed

	b.Expect("e", "k", "", "queued")
	b.Expect("w", "k", "0", "timeout")
	b.Expect("w", "k", "0", "error_not_enqueued") // a timeout consumes the record
	a.Expect("r", "k", tok, "ok")
}

// Edge 2: a second `e` on the same key and connection before the record
// is consumed is error_already_enqueued, whether the first acquired or
// queued; the record ends with `w`, with `r` of its token, or a timeout.
func TestEdge02_SecondEnqueueIsAlreadyEnqueued(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a, b := ts.dial(t), ts.dial(t)
	tok := expectGrant(t, a.Do("e", "k", ""), "acquired", "33")
	a.Expect("e", "k", "", "error_already_enqueued")
	a.Expect("e", "k", "10", "error_already_enqueued")
	expectGrant(t, a.Do("e", "other", ""), "acquired", "33") // per key
	expectGrant(t, a.Do("se", "k", "2"), "acquired", "33")   // per namespace

	b.Expect("e", "k", "", "queued")
	b.Expect("e", "k", "", "error_already_enqueued")
	if w := waitersOf(ts.Engine, "k"); w != 1 {
		t.Fatalf("waiters = %d; want 1 (the refused e must not queue)", w)
	}
	b.Expect("se", "k", "1", "error_limit_mismatch")
	expectGrant(t, b.Do("se", "k", "2"), "acquired", "33")

	// Once `w` consumed the record, `e` is accepted again (and queues
	// behind b: locks are not re-entrant).
	if got := expectGrant(t, a.Do("w", "k", "0"), "ok", "33"); got != tok {
		t.Fatalf("w token %s; want %s", got, tok)
	}
	a.Expect("e", "k", "", "queued")
}

// Edge 3: `w` after `e` → acquired answers `ok` with the same token at
// once, whatever its timeout (the lease reset is checked in
// lease_test.go).
func TestEdge03_WaitAfterAcquiredAnswersAtOnce(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a := ts.dial(t)
	for i, timeout := range []string{"0", "1", "30", "9223372036"} {
		key := "k" + timeout
		tok := expectGrant(t, a.Do("e", key, "44"), "acquired", "44")
		if got := expectGrant(t, a.Do("w", key, timeout), "ok", "44"); got != tok {
			t.Fatalf("case %d: w token %s; want %s", i, got, tok)
		}
		a.Expect("r", key, tok, "ok")
	}
}

// Edge 4: `w` with timeout 0 on a still-queued record answers `timeout`,
// drops the waiter from the queue and deletes the record.
func TestEdge04_WaitZeroOnQueuedIsDestructivePoll(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a, b, c := ts.dial(t), ts.dial(t), ts.dial(t)
	tok := expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	b.Expect("e", "k", "", "queued")
	c.Expect("e", "k", "", "queued")
	if w := waitersOf(ts.Engine, "k"); w != 2 {
		t.Fatalf("waiters = %d; want 2", w)
	}
	b.Expect("w", "k", "0", "timeout")
	if w := waitersOf(ts.Engine, "k"); w != 1 {
		t.Fatalf("waiters = %d after w 0; want 1", w)
	}
	b.Expect("w", "k", "0", "error_not_enqueued")
	// b's place is gone: the release goes to c.
	a.Expect("r", "k", tok, "ok")
	tc := expectGrant(t, c.Do("w", "k", "0"), "ok", "33")
	b.Expect("e", "k", "", "queued") // b may enqueue again
	c.Expect("r", "k", tc, "ok")
	expectGrant(t, b.Do("w", "k", "5"), "ok", "33")
}

// §2.3: a queued two-phase waiter blocked in `w` is granted when the
// holder releases; `r` of a still-unobserved granted record's token ends
// the record.
func TestTwoPhase_BlockedWaitGrantedAndReleaseEndsRecord(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a, b := ts.dial(t), ts.dial(t)
	tok := expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	b.Expect("e", "k", "15", "queued")
	ch := bg(b)
	b.Req("w", "k", "10")
	a.Expect("r", "k", tok, "ok")
	tb := expectGrant(t, recv(t, ch), "ok", "15")

	// Enqueue acquired, then release by token before `w`: the record is
	// gone, so `w` is not_enqueued and `e` works again.
	b.Expect("r", "k", tb, "ok")
	te := expectGrant(t, b.Do("e", "k", ""), "acquired", "33")
	b.Expect("r", "k", te, "ok")
	b.Expect("w", "k", "0", "error_not_enqueued")
	expectGrant(t, b.Do("e", "k", ""), "acquired", "33")
}
