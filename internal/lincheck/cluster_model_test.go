package lincheck

import (
	"math"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// Hand-built histories of a cluster run: the cluster model must reject
// the ones a failover must never produce, and accept the ones it may.

// clusterHistory builds a history on one key ("lock:k", limit 1 unless
// a step says otherwise) with clock ticks every 50 ms up to 10 s.
type clusterHistory struct {
	ops []porcupine.Operation
}

const histEnd = 10 * time.Second

func newClusterHistory() *clusterHistory {
	h := &clusterHistory{}
	const every = 50 * time.Millisecond
	for t := time.Duration(0); t < histEnd; t += every {
		h.ops = append(h.ops, porcupine.Operation{ClientId: 99, Input: Input{Op: OpTick, At: t, Next: t + every + 1},
			Output: Output{Status: "ok"}, Call: int64(t), Return: int64(t) + 1})
	}
	return h
}

// add records an operation of owner over [call, ret] (ret < 0: lost,
// unbounded).
func (h *clusterHistory) add(owner int, call, ret time.Duration, in Input, out Output) {
	if in.Key == "" && in.Op != OpDisconnect {
		in.Key, in.Limit = "lock:k", 1
	}
	in.Owner, in.Conn = owner, owner
	r := int64(ret)
	if ret < 0 {
		r, out = math.MaxInt64, Output{Status: StatusLost}
	}
	h.ops = append(h.ops, porcupine.Operation{ClientId: owner, Input: in, Output: out, Call: int64(call), Return: r})
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func try(ttl time.Duration) Input { return Input{Op: OpAcquire, TTL: ttl} }

func grant(f uint64, ttl time.Duration) Output {
	return Output{Status: "ok", Token: tok(f), TTL: int64(ttl / time.Second)}
}

func (h *clusterHistory) check(t *testing.T, want porcupine.CheckResult) {
	t.Helper()
	res := porcupine.CheckOperationsTimeout(ClusterModel(), h.ops, 10*time.Second)
	if res != want {
		t.Fatalf("porcupine says %s, want %s", res, want)
	}
}

func TestClusterModelRejects(t *testing.T) {
	cases := map[string]func(h *clusterHistory){
		// Two holders of a lock overlap after a failover: the second
		// acquire (on the new leader) returns while the first lease of
		// 10 s cannot have ended.
		"overlap after failover": func(h *clusterHistory) {
			h.add(1, ms(100), ms(110), try(10*time.Second), grant(5, 10*time.Second))
			h.add(2, ms(2000), ms(2010), try(10*time.Second), grant(6, 10*time.Second))
		},
		// A fence below one granted before goes out after a new leader.
		"fence backwards": func(h *clusterHistory) {
			h.add(1, ms(100), ms(110), try(time.Second), grant(50, time.Second))
			h.add(1, ms(200), ms(210), Input{Op: OpRelease, Token: tok(50)}, Output{Status: "ok"})
			h.add(2, ms(2000), ms(2010), try(time.Second), grant(40, time.Second))
		},
		// The same fence twice.
		"fence repeated": func(h *clusterHistory) {
			h.add(1, ms(100), ms(110), try(time.Second), grant(50, time.Second))
			h.add(1, ms(200), ms(210), Input{Op: OpRelease, Token: tok(50)}, Output{Status: "ok"})
			h.add(2, ms(2000), ms(2010), try(time.Second), grant(50, time.Second))
		},
		// A named session's lock is gone after a failover (resume counts
		// nothing) while its lease of 10 s cannot have run out.
		"held lock lost on failover": func(h *clusterHistory) {
			h.add(1, ms(10), ms(20), Input{Op: OpSession}, Output{Status: "ok", SID: "s1", Secret: "x"})
			h.add(1, ms(100), ms(110), try(10*time.Second), grant(5, 10*time.Second))
			h.add(1, ms(1500), ms(1510), Input{Op: OpResume, SID: "s1", Secret: "x"}, Output{Status: "ok", Held: 0, Queued: 0})
		},
		// A lease renewed across a failover is cut short: the renew at
		// 1 s (10 s) answered ok, yet another client takes the lock at
		// 3 s.
		"renewed lease cut short": func(h *clusterHistory) {
			h.add(1, ms(100), ms(110), try(time.Second), grant(5, time.Second))
			h.add(1, ms(800), ms(810), Input{Op: OpRenew, Token: tok(5), TTL: 10 * time.Second}, Output{Status: "ok", TTL: 10})
			h.add(2, ms(3000), ms(3010), try(time.Second), grant(6, time.Second))
		},
		// A renew refused while the lease cannot have run out.
		"renew refused early": func(h *clusterHistory) {
			h.add(1, ms(100), ms(110), try(5*time.Second), grant(5, 5*time.Second))
			h.add(1, ms(1000), ms(1010), Input{Op: OpRenew, Token: tok(5), TTL: 5 * time.Second}, Output{Status: "error"})
		},
		// A released lock is still held: a try-lock after the release
		// answers timeout though nobody else took it.
		"released lock still held": func(h *clusterHistory) {
			h.add(1, ms(100), ms(110), try(10*time.Second), grant(5, 10*time.Second))
			h.add(1, ms(200), ms(210), Input{Op: OpRelease, Token: tok(5)}, Output{Status: "ok"})
			h.add(2, ms(1500), ms(1510), try(10*time.Second), Output{Status: "timeout"})
		},
		// A released token released again.
		"double release": func(h *clusterHistory) {
			h.add(1, ms(100), ms(110), try(10*time.Second), grant(5, 10*time.Second))
			h.add(1, ms(200), ms(210), Input{Op: OpRelease, Token: tok(5)}, Output{Status: "ok"})
			h.add(2, ms(1500), ms(1510), Input{Op: OpRelease, Token: tok(5)}, Output{Status: "ok"})
		},
		// A bye (the session ended, releasing its lock), yet the lock
		// is still held.
		"bye keeps the lock": func(h *clusterHistory) {
			h.add(1, ms(10), ms(20), Input{Op: OpSession}, Output{Status: "ok", SID: "s1", Secret: "x"})
			h.add(1, ms(100), ms(110), try(10*time.Second), grant(5, 10*time.Second))
			h.add(1, ms(200), ms(210), Input{Op: OpBye}, Output{Status: "ok"})
			h.add(2, ms(1500), ms(1510), try(10*time.Second), Output{Status: "timeout"})
		},
		// A semaphore of 2 with three holders.
		"semaphore over its limit": func(h *clusterHistory) {
			sem := func(in Input) Input { in.Key, in.Limit = "sem:s", 2; return in }
			h.add(1, ms(100), ms(110), sem(try(10*time.Second)), grant(5, 10*time.Second))
			h.add(2, ms(200), ms(210), sem(try(10*time.Second)), grant(6, 10*time.Second))
			h.add(3, ms(2200), ms(2210), sem(try(10*time.Second)), grant(7, 10*time.Second))
		},
		// A lost acquire cannot explain a lost lock: the named session
		// held one lock (10 s), and another try-lock that was lost adds
		// at most one; a resume that counts none is still wrong.
		"lost op does not excuse a lost hold": func(h *clusterHistory) {
			h.add(1, ms(10), ms(20), Input{Op: OpSession}, Output{Status: "ok", SID: "s1", Secret: "x"})
			h.add(1, ms(100), ms(110), try(10*time.Second), grant(5, 10*time.Second))
			h.add(1, ms(300), -1, Input{Op: OpRelease, Token: tok(4)}, Output{})
			h.add(1, ms(1500), ms(1510), Input{Op: OpResume, SID: "s1", Secret: "x"}, Output{Status: "ok", Held: 0, Queued: 0})
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			h := newClusterHistory()
			build(h)
			h.check(t, porcupine.Illegal)
		})
	}
}

func TestClusterModelAccepts(t *testing.T) {
	cases := map[string]func(h *clusterHistory){
		// A lease outlives its TTL by the grace a new leader adds: the
		// lock of 1 s is still held at 1.4 s, and free at 1.8 s.
		"lease outlives its ttl": func(h *clusterHistory) {
			h.add(1, ms(100), ms(110), try(time.Second), grant(5, time.Second))
			h.add(2, ms(1400), ms(1410), try(time.Second), Output{Status: "timeout"})
			h.add(1, ms(1500), ms(1510), Input{Op: OpRenew, Token: tok(5), TTL: time.Second}, Output{Status: "ok", TTL: 1})
			h.add(2, ms(3000), ms(3010), try(time.Second), grant(9, time.Second))
		},
		// An expired lease is evicted (at no observed moment): the lock
		// is taken by another and the old holder's renew is refused.
		"expired lease evicted": func(h *clusterHistory) {
			h.add(1, ms(100), ms(110), try(time.Second), grant(5, time.Second))
			h.add(2, ms(1200), ms(1210), try(time.Second), grant(6, time.Second))
			h.add(1, ms(1300), ms(1310), Input{Op: OpRenew, Token: tok(5), TTL: time.Second}, Output{Status: "error"})
			h.add(1, ms(1400), ms(1410), Input{Op: OpRelease, Token: tok(5)}, Output{Status: "error"})
		},
		// A named session's lock survives a failover; the resume counts
		// it and the holder releases it.
		"held lock survives failover": func(h *clusterHistory) {
			h.add(1, ms(10), ms(20), Input{Op: OpSession}, Output{Status: "ok", SID: "s1", Secret: "x"})
			h.add(1, ms(100), ms(110), try(5*time.Second), grant(5, 5*time.Second))
			h.add(1, ms(1500), ms(1510), Input{Op: OpResume, SID: "s1", Secret: "x"}, Output{Status: "ok", Held: 1, Queued: 0})
			h.add(2, ms(1600), ms(1610), try(time.Second), Output{Status: "timeout"})
			h.add(1, ms(1700), ms(1710), Input{Op: OpRelease, Token: tok(5)}, Output{Status: "ok"})
			h.add(2, ms(1800), ms(1810), try(time.Second), grant(6, time.Second))
		},
		// A try-lock whose answer was lost in a failover took the lock:
		// the next holder waits for that unknown grant's lease.
		"lost acquire took the lock": func(h *clusterHistory) {
			h.add(1, ms(100), -1, try(time.Second), Output{})
			h.add(2, ms(1500), ms(1510), try(time.Second), Output{Status: "timeout"})
			h.add(2, ms(2500), ms(2510), try(time.Second), grant(7, time.Second))
		},
		// An unnamed connection that dropped: its lock is released at
		// some unobserved moment after the drop.
		"disconnect releases": func(h *clusterHistory) {
			h.add(1, ms(100), ms(110), try(10*time.Second), grant(5, 10*time.Second))
			h.add(1, ms(120), -1, Input{Op: OpDisconnect, Key: ""}, Output{Status: "ok"})
			h.add(2, ms(130), ms(140), try(time.Second), Output{Status: "timeout"})
			h.add(2, ms(1500), ms(1510), try(time.Second), grant(6, time.Second))
		},
		// Fences keep rising across a failover.
		"fences rise": func(h *clusterHistory) {
			h.add(1, ms(100), ms(110), try(time.Second), grant(5, time.Second))
			h.add(1, ms(200), ms(210), Input{Op: OpRelease, Token: tok(5)}, Output{Status: "ok"})
			h.add(2, ms(2000), ms(2010), try(time.Second), grant(9, time.Second))
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			h := newClusterHistory()
			build(h)
			h.check(t, porcupine.Ok)
		})
	}
}
