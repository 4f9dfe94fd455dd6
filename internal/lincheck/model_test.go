package lincheck

import (
	"fmt"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// tok builds a token with the given fence.
func tok(fence uint64) string { return fmt.Sprintf("%016x%016x", fence, 0xabcdef) }

// hist builds hand-made histories: each op gets [call, ret].
type hist []porcupine.Operation

func (h *hist) add(client int, call, ret int64, in Input, out Output) {
	*h = append(*h, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
}

var lk = Namespace(false, "k")

func acq(conn, timeout int, ttl time.Duration) Input {
	return Input{Op: OpAcquire, Key: lk, Limit: 1, Conn: conn, Timeout: timeout, TTL: ttl}
}

func okTok(t string, ttl int64) Output { return Output{Status: "ok", Token: t, TTL: ttl} }

func check(t *testing.T, h hist) porcupine.CheckResult {
	t.Helper()
	return porcupine.CheckOperationsTimeout(Model(), h, 10*time.Second)
}

// TestCheckerRejects feeds histories that no correct server can produce
// and requires porcupine to reject each: the checker is not vacuous.
func TestCheckerRejects(t *testing.T) {
	s := 10 * time.Second
	cases := map[string]func(h *hist){
		"two overlapping grants of one lock": func(h *hist) {
			h.add(0, 0, 10, acq(1, 0, s), okTok(tok(1), 10))
			h.add(1, 20, 30, acq(2, 5, s), okTok(tok(2), 10))
		},
		"three holders of a two-slot semaphore": func(h *hist) {
			for i := range 3 {
				h.add(i, int64(10*i), int64(10*i+5), Input{Op: OpAcquire, Key: Namespace(true, "k"), Limit: 2, Conn: i + 1, TTL: s}, okTok(tok(uint64(i+1)), 10))
			}
		},
		"release of a token after its lease was swept": func(h *hist) {
			h.add(0, 0, 10, acq(1, 0, 2*time.Second), okTok(tok(1), 2))
			h.add(9, 20, 21, Input{Op: OpAdvance, D: 3 * time.Second}, Output{Status: "ok"})
			h.add(9, 22, 23, Input{Op: OpSweep}, Output{Status: "ok"})
			h.add(0, 30, 40, Input{Op: OpRelease, Key: lk, Conn: 1, Token: tok(1)}, Output{Status: "ok"})
		},
		"renew that revives an expired lease": func(h *hist) {
			h.add(0, 0, 10, acq(1, 0, 2*time.Second), okTok(tok(1), 2))
			h.add(9, 20, 21, Input{Op: OpAdvance, D: 2 * time.Second}, Output{Status: "ok"})
			h.add(0, 30, 40, Input{Op: OpRenew, Key: lk, Conn: 1, Token: tok(1), TTL: s}, Output{Status: "ok", TTL: 10})
		},
		"try-lock that times out on a free lock": func(h *hist) {
			h.add(0, 0, 10, acq(1, 0, s), Output{Status: "timeout"})
		},
		"fence going backwards": func(h *hist) {
			h.add(0, 0, 10, acq(1, 0, s), okTok(tok(5), 10))
			h.add(0, 20, 30, Input{Op: OpRelease, Key: lk, Conn: 1, Token: tok(5)}, Output{Status: "ok"})
			h.add(1, 40, 50, acq(2, 0, s), okTok(tok(4), 10))
		},
		"wrong lease echoed": func(h *hist) {
			h.add(0, 0, 10, acq(1, 0, s), okTok(tok(1), 33))
		},
		"a disconnected holder's lock stays taken": func(h *hist) {
			h.add(0, 0, 10, acq(1, 0, s), okTok(tok(1), 10))
			h.add(0, 20, 30, Input{Op: OpDisconnect, Conn: 1}, Output{Status: "ok"})
			h.add(1, 40, 50, acq(2, 0, s), Output{Status: "timeout"})
		},
		"a vanished waiter is granted after the disconnect": func(h *hist) {
			h.add(0, 0, 10, acq(1, 0, s), okTok(tok(1), 10))
			h.add(1, 15, 60, acq(2, 5, s), Output{Status: StatusLost})
			h.add(1, 20, 60, Input{Op: OpDisconnect, Conn: 2}, Output{Status: "ok"})
			h.add(0, 70, 80, Input{Op: OpRelease, Key: lk, Conn: 1, Token: tok(1)}, Output{Status: "ok"})
			h.add(2, 90, 100, acq(3, 0, s), Output{Status: "timeout"})
		},
		"wait without enqueue succeeds": func(h *hist) {
			h.add(0, 0, 10, Input{Op: OpWait, Key: lk, Limit: 1, Conn: 1, Timeout: 1}, okTok(tok(1), 10))
		},
		"second enqueue not refused": func(h *hist) {
			h.add(0, 0, 10, Input{Op: OpEnqueue, Key: lk, Limit: 1, Conn: 1, TTL: s}, Output{Status: "acquired", Token: tok(1), TTL: 10})
			h.add(0, 20, 30, Input{Op: OpEnqueue, Key: lk, Limit: 1, Conn: 1, TTL: s}, Output{Status: "queued"})
		},
		"queued record skipped by a newcomer": func(h *hist) {
			h.add(0, 0, 10, acq(1, 0, s), okTok(tok(1), 10))
			h.add(1, 20, 30, Input{Op: OpEnqueue, Key: lk, Limit: 1, Conn: 2, TTL: s}, Output{Status: "queued"})
			h.add(0, 40, 50, Input{Op: OpRelease, Key: lk, Conn: 1, Token: tok(1)}, Output{Status: "ok"})
			h.add(2, 60, 70, acq(3, 0, s), okTok(tok(3), 10))
		},
		"wait answers ok after the granted record expired": func(h *hist) {
			h.add(0, 0, 10, acq(1, 0, s), okTok(tok(1), 10))
			h.add(1, 20, 30, Input{Op: OpEnqueue, Key: lk, Limit: 1, Conn: 2, TTL: 2 * time.Second}, Output{Status: "queued"})
			h.add(0, 40, 50, Input{Op: OpRelease, Key: lk, Conn: 1, Token: tok(1)}, Output{Status: "ok"})
			h.add(9, 60, 61, Input{Op: OpAdvance, D: 3 * time.Second}, Output{Status: "ok"})
			h.add(1, 70, 80, Input{Op: OpWait, Key: lk, Limit: 1, Conn: 2, Timeout: 1}, okTok(tok(2), 2))
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			var h hist
			build(&h)
			if res := check(t, h); res != porcupine.Illegal {
				t.Fatalf("porcupine said %s; want Illegal", res)
			}
		})
	}
}

// TestCheckerAccepts is the control group: legal histories close to the
// rejected ones above.
func TestCheckerAccepts(t *testing.T) {
	s := 10 * time.Second
	cases := map[string]func(h *hist){
		"overlapping acquires, one gets it": func(h *hist) {
			h.add(0, 0, 10, acq(1, 0, s), okTok(tok(1), 10))
			h.add(1, 5, 30, acq(2, 1, s), Output{Status: "timeout"})
			h.add(2, 5, 30, acq(3, 0, s), Output{Status: "timeout"})
		},
		"grant after the holder's lease expired": func(h *hist) {
			h.add(0, 0, 10, acq(1, 0, 2*time.Second), okTok(tok(1), 2))
			h.add(9, 20, 21, Input{Op: OpAdvance, D: 3 * time.Second}, Output{Status: "ok"})
			h.add(1, 30, 40, acq(2, 0, s), okTok(tok(2), 10))
			h.add(0, 50, 60, Input{Op: OpRelease, Key: lk, Conn: 1, Token: tok(1)}, Output{Status: "error"})
			h.add(0, 70, 80, Input{Op: OpRenew, Key: lk, Conn: 1, Token: tok(1), TTL: s}, Output{Status: "error"})
		},
		"release of an expired but unswept lease": func(h *hist) {
			h.add(0, 0, 10, acq(1, 0, 2*time.Second), okTok(tok(1), 2))
			h.add(9, 20, 21, Input{Op: OpAdvance, D: 3 * time.Second}, Output{Status: "ok"})
			h.add(0, 30, 40, Input{Op: OpRelease, Key: lk, Conn: 1, Token: tok(1)}, Output{Status: "ok"})
		},
		"disconnect hands the lock on": func(h *hist) {
			h.add(0, 0, 10, acq(1, 0, s), okTok(tok(1), 10))
			h.add(1, 5, 60, acq(2, 5, s), okTok(tok(2), 10))
			h.add(0, 20, 30, Input{Op: OpDisconnect, Conn: 1}, Output{Status: "ok"})
		},
		"lost acquire released by its disconnect": func(h *hist) {
			h.add(1, 15, 60, acq(2, 5, s), Output{Status: StatusLost})
			h.add(1, 20, 60, Input{Op: OpDisconnect, Conn: 2}, Output{Status: "ok"})
			h.add(0, 25, 30, acq(1, 0, s), Output{Status: "timeout"}) // the lost one held it then
			h.add(2, 90, 100, acq(3, 0, s), okTok(tok(3), 10))
		},
		"two-phase grant on release, then wait": func(h *hist) {
			h.add(0, 0, 10, acq(1, 0, s), okTok(tok(1), 10))
			h.add(1, 20, 30, Input{Op: OpEnqueue, Key: lk, Limit: 1, Conn: 2, TTL: s}, Output{Status: "queued"})
			h.add(0, 40, 50, Input{Op: OpRelease, Key: lk, Conn: 1, Token: tok(1)}, Output{Status: "ok"})
			h.add(2, 60, 70, acq(3, 0, s), Output{Status: "timeout"})
			h.add(1, 80, 90, Input{Op: OpWait, Key: lk, Limit: 1, Conn: 2, Timeout: 0}, okTok(tok(2), 10))
			h.add(1, 100, 110, Input{Op: OpWait, Key: lk, Limit: 1, Conn: 2, Timeout: 0}, Output{Status: "error_not_enqueued"})
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			var h hist
			build(&h)
			if res := check(t, h); res != porcupine.Ok {
				t.Fatalf("porcupine said %s; want Ok", res)
			}
		})
	}
}

// Session helpers: one session per history, on key lk.
const (
	sid1    = "00000000000000a1"
	secret1 = "0123456789abcdef0123456789abcdef"
)

func sessIn(conn int, ttl time.Duration) Input {
	return Input{Op: OpSession, Key: lk, Limit: 1, Conn: conn, TTL: ttl}
}

func sessOK(ttl int64) Output { return Output{Status: "ok", SID: sid1, Secret: secret1, TTL: ttl} }

func resumeIn(conn int, sid, secret string) Input {
	return Input{Op: OpResume, Key: lk, Limit: 1, Conn: conn, SID: sid, Secret: secret}
}

func resumeOK(held, queued int) Output { return Output{Status: "ok", Held: held, Queued: queued} }

func plain(op OpKind) Input { return Input{Op: op} }

var okOut = Output{Status: "ok"}

func disc(conn int) Input { return Input{Op: OpDisconnect, Conn: conn} }

func adv(d time.Duration) Input { return Input{Op: OpAdvance, D: d} }

func join(conn int, ttl time.Duration) Input {
	return Input{Op: OpJoin, Key: lk, Limit: 1, Conn: conn, TTL: ttl}
}

func tracked(conn, timeout int, ttl time.Duration) Input {
	in := acq(conn, timeout, ttl)
	in.Tracked = true
	return in
}

func waitIn(conn, timeout int) Input {
	return Input{Op: OpWait, Key: lk, Limit: 1, Conn: conn, Timeout: timeout}
}

// sessionHolder: c1 names a session (TTL 10 s), takes the lock with a
// lease of lease seconds and is cut (detached at 20..30).
func sessionHolder(h *hist, lease int64) {
	h.add(0, 0, 5, sessIn(1, 10*time.Second), sessOK(10))
	h.add(0, 6, 10, acq(1, 0, time.Duration(lease)*time.Second), okTok(tok(1), lease))
	h.add(0, 20, 30, disc(1), okOut)
}

// parkedWaiter: c1 holds; named c2 blocks in l (tracked) and is cut
// while queued, so its place becomes its enqueue record; c3 queues
// behind it; c1 releases (at 60..70), which grants c2's record.
func parkedWaiter(h *hist) {
	s := 10 * time.Second
	h.add(0, 0, 5, acq(1, 0, s), okTok(tok(1), 10))
	h.add(1, 6, 8, sessIn(2, 10*time.Second), sessOK(10))
	h.add(1, 10, 40, join(2, s), okOut)
	h.add(1, 10, 40, tracked(2, 5, s), Output{Status: StatusLost})
	h.add(1, 30, 40, disc(2), okOut)
	h.add(2, 45, 90, join(3, s), okOut)
	h.add(0, 60, 70, Input{Op: OpRelease, Key: lk, Conn: 1, Token: tok(1)}, okOut)
}

// TestCheckerSessions: hand-built histories of named sessions that no
// correct server produces must be rejected, and the legal ones next to
// them accepted.
func TestCheckerSessions(t *testing.T) {
	s := 10 * time.Second
	rejects := map[string]func(h *hist){
		"the next holder granted while the detached session still holds within its TTL": func(h *hist) {
			sessionHolder(h, 30)
			h.add(9, 40, 41, adv(5*time.Second), okOut)
			h.add(9, 42, 43, plain(OpExpireSessions), okOut)
			h.add(1, 50, 60, acq(2, 0, s), okTok(tok(2), 10))
		},
		"a session that expired keeps its lock: renew succeeds": func(h *hist) {
			sessionHolder(h, 30)
			h.add(9, 40, 41, adv(11*time.Second), okOut)
			h.add(9, 42, 43, plain(OpExpireSessions), okOut)
			h.add(1, 50, 60, resumeIn(2, sid1, secret1), Output{Status: "error_session"})
			h.add(1, 70, 80, Input{Op: OpRenew, Key: lk, Conn: 2, Token: tok(1), TTL: s}, Output{Status: "ok", TTL: 10})
		},
		"a resumed session whose lease ran out renews it": func(h *hist) {
			sessionHolder(h, 2)
			h.add(9, 40, 41, adv(3*time.Second), okOut)
			h.add(9, 42, 43, plain(OpSweep), okOut)
			h.add(1, 50, 60, resumeIn(2, sid1, secret1), resumeOK(0, 0))
			h.add(1, 70, 80, Input{Op: OpRenew, Key: lk, Conn: 2, Token: tok(1), TTL: s}, Output{Status: "ok", TTL: 10})
		},
		"resume counts a lease that was swept": func(h *hist) {
			sessionHolder(h, 2)
			h.add(9, 40, 41, adv(3*time.Second), okOut)
			h.add(9, 42, 43, plain(OpSweep), okOut)
			h.add(1, 50, 60, resumeIn(2, sid1, secret1), resumeOK(1, 0))
		},
		"resume counts a lease that ran out unswept": func(h *hist) {
			sessionHolder(h, 2)
			h.add(9, 40, 41, adv(3*time.Second), okOut)
			h.add(1, 50, 60, resumeIn(2, sid1, secret1), resumeOK(1, 0))
		},
		"resume of an expired session": func(h *hist) {
			sessionHolder(h, 30)
			h.add(9, 40, 41, adv(10*time.Second), okOut)
			h.add(9, 42, 43, plain(OpExpireSessions), okOut)
			h.add(1, 50, 60, resumeIn(2, sid1, secret1), resumeOK(1, 0))
		},
		"resume with a wrong secret": func(h *hist) {
			sessionHolder(h, 30)
			h.add(1, 50, 60, resumeIn(2, sid1, "ffffffffffffffffffffffffffffffff"), resumeOK(1, 0))
		},
		"resume while attached, no take-over": func(h *hist) {
			h.add(0, 0, 5, sessIn(1, s), sessOK(10))
			h.add(1, 10, 20, resumeIn(2, sid1, secret1), resumeOK(0, 0))
			h.add(0, 30, 40, acq(1, 0, s), okTok(tok(1), 10)) // c1 was never closed
		},
		"resume on a connection that holds a lock": func(h *hist) {
			sessionHolder(h, 30)
			h.add(1, 40, 45, Input{Op: OpEnqueue, Key: lk, Limit: 1, Conn: 2, TTL: s}, Output{Status: "queued"})
			h.add(1, 50, 60, resumeIn(2, sid1, secret1), resumeOK(1, 0))
		},
		"a second session request changes the id": func(h *hist) {
			h.add(0, 0, 5, sessIn(1, s), sessOK(10))
			h.add(0, 6, 10, sessIn(1, 20*time.Second), Output{Status: "ok", SID: "00000000000000b2", Secret: secret1, TTL: 20})
		},
		"a disconnect releases a named session's lock": func(h *hist) {
			sessionHolder(h, 30)
			h.add(1, 40, 50, acq(2, 0, s), okTok(tok(2), 10))
		},
		"bye keeps the lock": func(h *hist) {
			h.add(0, 0, 5, sessIn(1, s), sessOK(10))
			h.add(0, 6, 10, acq(1, 0, s), okTok(tok(1), 10))
			h.add(0, 20, 30, plain(OpBye).with(1), okOut)
			h.add(1, 40, 50, acq(2, 0, s), Output{Status: "timeout"})
		},
		"a parked place loses its turn to the waiter behind it": func(h *hist) {
			parkedWaiter(h)
			h.add(1, 50, 55, resumeIn(4, sid1, secret1), resumeOK(0, 1)) // the place was kept
			h.add(2, 45, 90, tracked(3, 5, s), okTok(tok(3), 10))
		},
		"resume reports no place, yet w collects a grant": func(h *hist) {
			parkedWaiter(h)
			h.add(1, 100, 110, resumeIn(4, sid1, secret1), resumeOK(0, 0))
			h.add(1, 120, 130, waitIn(4, 0), okTok(tok(2), 10))
		},
		"a parked grant keeps the lease of the l at w": func(h *hist) {
			parkedWaiter(h)
			h.add(1, 100, 110, resumeIn(4, sid1, secret1), resumeOK(1, 0))
			h.add(1, 120, 130, waitIn(4, 0), okTok(tok(2), 33))
		},
		"a blocking l granted ahead of an earlier queued record": func(h *hist) {
			h.add(0, 0, 5, acq(1, 0, s), okTok(tok(1), 10))
			h.add(1, 10, 20, Input{Op: OpEnqueue, Key: lk, Limit: 1, Conn: 2, TTL: s}, Output{Status: "queued"})
			h.add(2, 30, 100, join(3, s), okOut)
			h.add(2, 30, 100, tracked(3, 5, s), okTok(tok(3), 10))
			h.add(0, 40, 50, Input{Op: OpRelease, Key: lk, Conn: 1, Token: tok(1)}, okOut)
		},
		"a detached session's lock given to a waiter before its TTL": func(h *hist) {
			sessionHolder(h, 30)
			h.add(1, 40, 100, join(2, s), okOut)
			h.add(1, 40, 100, tracked(2, 5, s), okTok(tok(2), 10))
			h.add(9, 50, 51, adv(9*time.Second), okOut)
			h.add(9, 52, 53, plain(OpExpireSessions), okOut)
		},
	}
	for name, build := range rejects {
		t.Run("reject/"+name, func(t *testing.T) {
			var h hist
			build(&h)
			if res := check(t, h); res != porcupine.Illegal {
				t.Fatalf("porcupine said %s; want Illegal", res)
			}
		})
	}
	accepts := map[string]func(h *hist){
		"the lock is free once the detached session expired": func(h *hist) {
			sessionHolder(h, 30)
			h.add(9, 40, 41, adv(10*time.Second), okOut)
			h.add(9, 42, 43, plain(OpExpireSessions), okOut)
			h.add(1, 50, 60, acq(2, 0, s), okTok(tok(2), 10))
			h.add(1, 70, 80, resumeIn(3, sid1, secret1), Output{Status: "error_session"})
		},
		"resume within the TTL gives the lock back": func(h *hist) {
			sessionHolder(h, 30)
			h.add(9, 40, 41, adv(9*time.Second), okOut)
			h.add(9, 42, 43, plain(OpExpireSessions), okOut)
			h.add(1, 44, 45, acq(2, 0, s), Output{Status: "timeout"})
			h.add(2, 50, 60, resumeIn(3, sid1, "ffffffffffffffffffffffffffffffff"), Output{Status: "error_session"})
			h.add(2, 61, 62, resumeIn(3, "ffffffffffffffff", secret1), Output{Status: "error_session"})
			h.add(2, 63, 64, resumeIn(3, sid1, secret1), resumeOK(1, 0))
			h.add(2, 65, 66, resumeIn(3, sid1, secret1), Output{Status: "error"})
			h.add(2, 70, 80, Input{Op: OpRenew, Key: lk, Conn: 3, Token: tok(1), TTL: s}, Output{Status: "ok", TTL: 10})
			h.add(9, 81, 82, adv(20*time.Second), okOut)
			h.add(9, 83, 84, plain(OpExpireSessions), okOut) // attached: not expired
			h.add(2, 90, 95, Input{Op: OpSession, Key: lk, Limit: 1, Conn: 3, TTL: 20 * time.Second}, sessOK(20))
		},
		"a resumed session whose lease ran out": func(h *hist) {
			sessionHolder(h, 2)
			h.add(9, 40, 41, adv(3*time.Second), okOut)
			h.add(9, 42, 43, plain(OpSweep), okOut)
			h.add(1, 50, 60, resumeIn(2, sid1, secret1), resumeOK(0, 0))
			h.add(1, 70, 80, Input{Op: OpRenew, Key: lk, Conn: 2, Token: tok(1), TTL: s}, Output{Status: "error"})
		},
		"take-over: the resume waits for the old connection to detach": func(h *hist) {
			h.add(0, 0, 5, sessIn(1, s), sessOK(10))
			h.add(0, 6, 10, acq(1, 0, s), okTok(tok(1), 10))
			h.add(1, 20, 30, resumeIn(2, sid1, secret1), resumeOK(1, 0))
			h.add(0, 20, 40, disc(1), okOut) // closed by the take-over
			h.add(1, 50, 60, Input{Op: OpRelease, Key: lk, Conn: 2, Token: tok(1)}, okOut)
		},
		"bye releases at once": func(h *hist) {
			h.add(0, 0, 5, sessIn(1, s), sessOK(10))
			h.add(0, 6, 10, acq(1, 0, s), okTok(tok(1), 10))
			h.add(0, 20, 30, plain(OpBye).with(1), okOut)
			h.add(1, 40, 50, acq(2, 0, s), okTok(tok(2), 10))
			h.add(1, 60, 70, resumeIn(3, sid1, secret1), Output{Status: "error_session"})
		},
		"a lost bye may not have reached the server": func(h *hist) {
			h.add(0, 0, 5, sessIn(1, s), sessOK(10))
			h.add(0, 6, 10, acq(1, 0, s), okTok(tok(1), 10))
			h.add(0, 20, 40, plain(OpBye).with(1), Output{Status: StatusLost})
			h.add(0, 25, 40, disc(1), okOut)
			h.add(1, 50, 60, resumeIn(2, sid1, secret1), resumeOK(1, 0))
		},
		"a parked place is granted first and collected after resume": func(h *hist) {
			parkedWaiter(h)
			h.add(3, 75, 76, acq(5, 0, s), Output{Status: "timeout"})
			h.add(9, 77, 78, adv(4*time.Second), okOut)
			h.add(1, 100, 110, resumeIn(4, sid1, secret1), resumeOK(1, 0))
			h.add(1, 120, 130, waitIn(4, 0), okTok(tok(2), 10))
			h.add(1, 140, 150, Input{Op: OpRelease, Key: lk, Conn: 4, Token: tok(2)}, okOut)
			h.add(2, 45, 160, tracked(3, 5, s), okTok(tok(3), 10))
		},
		"a parked grant whose lease ran out while away": func(h *hist) {
			parkedWaiter(h)
			h.add(9, 80, 81, adv(11*time.Second), okOut)
			h.add(9, 82, 83, plain(OpSweep), okOut) // c3 is granted
			h.add(1, 100, 110, resumeIn(4, sid1, secret1), resumeOK(0, 0))
			h.add(1, 120, 130, waitIn(4, 0), Output{Status: "error_not_enqueued"})
			h.add(2, 45, 90, tracked(3, 5, s), okTok(tok(3), 10))
		},
		"a blocked l granted at the cut becomes a granted record": func(h *hist) {
			h.add(1, 6, 8, sessIn(2, 10*time.Second), sessOK(10))
			h.add(1, 10, 40, join(2, 5*time.Second), okOut)
			h.add(1, 10, 40, tracked(2, 5, 5*time.Second), Output{Status: StatusLost})
			h.add(1, 30, 40, disc(2), okOut)
			h.add(2, 45, 50, acq(3, 0, s), Output{Status: "timeout"})
			h.add(1, 100, 110, resumeIn(4, sid1, secret1), resumeOK(1, 0))
			h.add(1, 120, 130, waitIn(4, 0), okTok(tok(2), 5))
		},
		"a grant that lapsed at the cut is not parked": func(h *hist) {
			h.add(1, 6, 8, sessIn(2, s), sessOK(10))
			h.add(1, 10, 40, join(2, 2*time.Second), okOut) // granted at once
			h.add(1, 10, 40, tracked(2, 5, 2*time.Second), Output{Status: StatusLost})
			h.add(9, 12, 13, adv(3*time.Second), okOut)
			h.add(9, 14, 15, plain(OpSweep), okOut) // the grant is evicted unseen
			h.add(1, 30, 40, disc(2), okOut)
			h.add(1, 50, 55, resumeIn(4, sid1, secret1), resumeOK(0, 0))
			h.add(1, 60, 65, waitIn(4, 0), Output{Status: "error_not_enqueued"})
			h.add(1, 80, 85, Input{Op: OpEnqueue, Key: lk, Limit: 1, Conn: 4, TTL: s}, Output{Status: "acquired", Token: tok(3), TTL: 10})
		},
		"single-phase and two-phase waiters share the FIFO": func(h *hist) {
			h.add(0, 0, 5, acq(1, 0, s), okTok(tok(1), 10))
			h.add(1, 10, 20, Input{Op: OpEnqueue, Key: lk, Limit: 1, Conn: 2, TTL: s}, Output{Status: "queued"})
			h.add(2, 30, 100, join(3, s), okOut)
			h.add(2, 30, 100, tracked(3, 5, s), okTok(tok(3), 10))
			h.add(0, 40, 50, Input{Op: OpRelease, Key: lk, Conn: 1, Token: tok(1)}, okOut)
			h.add(1, 60, 65, waitIn(2, 0), okTok(tok(2), 10))
			h.add(1, 70, 75, Input{Op: OpRelease, Key: lk, Conn: 2, Token: tok(2)}, okOut)
		},
	}
	for name, build := range accepts {
		t.Run("accept/"+name, func(t *testing.T) {
			var h hist
			build(&h)
			if res := check(t, h); res != porcupine.Ok {
				t.Fatalf("porcupine said %s; want Ok", res)
			}
		})
	}
}

func (in Input) with(conn int) Input { in.Conn = conn; return in }
