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
