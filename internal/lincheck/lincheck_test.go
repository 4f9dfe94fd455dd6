package lincheck

import (
	"flag"
	"fmt"
	"math/rand"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/dflockd/dflockd/internal/testcluster"

	"github.com/dflockd/dflockd/internal/faultproxy"
	"github.com/dflockd/dflockd/internal/leakcheck"
)

var (
	long = flag.Bool("lincheck.long", false, "run the long linearizability check (also LINCHECK_LONG=1)")
	seed = flag.Int64("lincheck.seed", 0, "seed of the random runs (0 = from the clock)")
)

func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m, testcluster.IgnoreStrandedFutures)) }

func longMode() bool {
	if *long {
		return true
	}
	v, _ := strconv.ParseBool(os.Getenv("LINCHECK_LONG"))
	return v
}

func runSeed() int64 {
	if *seed != 0 {
		return *seed
	}
	return time.Now().UnixNano()
}

// TestLinearizable runs many clients against a real server, without
// faults and then with them, and requires porcupine to accept the
// history. The CI run is short; -lincheck.long (or LINCHECK_LONG=1) runs
// many longer rounds, each on a fresh server so that every history stays
// small enough to check.
func TestLinearizable(t *testing.T) {
	base := runSeed()
	rounds, cfg, check := 1, runConfig{clients: 8, duration: 800 * time.Millisecond}, 10*time.Second
	if longMode() {
		rounds, cfg, check = 12, runConfig{clients: 10, duration: 1500 * time.Millisecond}, 2*time.Minute
	}
	if d := os.Getenv("LINCHECK_DEBUG_MS"); d != "" {
		ms, _ := strconv.Atoi(d)
		cfg.duration = time.Duration(ms) * time.Millisecond
	}
	if d := os.Getenv("LINCHECK_DEBUG_CLIENTS"); d != "" {
		cfg.clients, _ = strconv.Atoi(d)
	}
	var total totals
	for r := range rounds {
		for i, faults := range []bool{false, true} {
			name := "clean"
			if faults {
				name = "faults"
			}
			if rounds > 1 {
				name = fmt.Sprintf("round%d/%s", r, name)
			}
			t.Run(name, func(t *testing.T) {
				c := cfg
				c.seed, c.faults = base+int64(2*r+i), faults
				h := run(t, c, check)
				total.add(h, c)
			})
		}
	}
	t.Logf("total: %s", total)
}

// totals sums the figures of several runs.
type totals struct {
	runs, ops, faults, lost, slow int64
	clients                       int
	elapsed                       time.Duration
}

func (tt *totals) add(h *harness, c runConfig) {
	s := &h.st
	tt.runs++
	tt.ops += int64(len(h.history()))
	tt.faults += s.cuts.Load() + s.cutAlls.Load() + s.vanishWait.Load() + s.vanishHolding.Load()
	tt.lost += s.lost.Load()
	tt.slow += s.slowHolds.Load()
	tt.clients = max(tt.clients, c.clients)
	tt.elapsed += c.duration
}

func (tt totals) String() string {
	return fmt.Sprintf("%d runs, %d operations checked, %d clients per run, %d injected faults (cuts, cut-alls, vanished clients), %d lost answers, %d slow holders, %v of workload",
		tt.runs, tt.ops, tt.clients, tt.faults, tt.lost, tt.slow, tt.elapsed)
}

// TestVanishedWaiter: a client blocked in `l` closes its connection; its
// place in the queue must go with it, so after the holder releases, a
// try-lock gets the lock. The history of the scenario is checked too.
func TestVanishedWaiter(t *testing.T) {
	h := newHarness(t, 1)
	rng := rand.New(rand.NewSource(1))
	a, b, c := h.newClient(0, rng), h.newClient(1, rng), h.newClient(2, rng)
	k := runKeys[0]
	if out, _ := a.acquire(k, 0); out.Status != "ok" {
		t.Fatalf("first acquire: %+v", out)
	}
	tokA := a.held[k.part()][0]
	// b blocks for up to 30 s behind a, then vanishes.
	in := Input{Op: OpAcquire, Key: k.part(), Limit: 1, Timeout: 30, TTL: defaultTTL}
	op, err := b.send(in, "l", "30")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to be queued", func() bool {
		st := h.ts.Engine.Stats()
		return len(st.Locks) == 1 && st.Locks[0].Waiters == 1
	})
	b.cutBy(func(_ faultproxy.ConnInfo, conn net.Conn) { conn.Close() })
	b.ended(op)
	if st := h.ts.Engine.Stats(); len(st.Locks) != 1 || st.Locks[0].Waiters != 0 {
		t.Fatalf("after the waiter vanished: %+v; want the lock held with no waiter", st.Locks)
	}
	if out, _ := a.do(Input{Op: OpRelease, Key: k.part(), Limit: 1, Token: tokA}, "r", tokA); out.Status != "ok" {
		t.Fatalf("release: %+v", out)
	}
	if out, _ := c.acquire(k, 0); out.Status != "ok" {
		t.Fatalf("try-lock after the holder released: %+v; the vanished waiter must not have been granted", out)
	}
	a.finish()
	c.finish()
	h.check(10 * time.Second)
}

// TestSlowHolder: a holder sleeps while the clock passes its lease;
// another client gets the lock; the slow holder's renew and release then
// answer `error`, and its stale token never touches the new holder.
func TestSlowHolder(t *testing.T) {
	for _, k := range []keySpec{runKeys[0], runKeys[1]} {
		t.Run(k.part(), func(t *testing.T) {
			h := newHarness(t, 2)
			rng := rand.New(rand.NewSource(2))
			slow, other := h.newClient(0, rng), h.newClient(1, rng)
			var slowToks []string
			for range k.limit {
				out, _ := slow.do(Input{Op: OpAcquire, Key: k.part(), Limit: k.limit, TTL: 2 * time.Second}, cmdFor(k, "l"), acquireArg(k, 0, 2))
				if out.Status != "ok" {
					t.Fatalf("acquire: %+v", out)
				}
				slowToks = append(slowToks, out.Token)
			}
			// other queues behind the full key; the lease runs out while
			// slow does nothing; the sweep hands the slot to other.
			done := make(chan Output, 1)
			go func() {
				out, _ := other.do(Input{Op: OpAcquire, Key: k.part(), Limit: k.limit, Timeout: 30, TTL: 5 * time.Second}, cmdFor(k, "l"), acquireArg(k, 30, 5))
				done <- out
			}()
			waitFor(t, "other to be queued", func() bool { return waiters(h, k) == 1 })
			h.tick(9, 3*time.Second, 1)
			if out := <-done; out.Status != "ok" {
				t.Fatalf("waiter after the slow holder's lease ran out: %+v", out)
			}
			tok := slowToks[0]
			if out, _ := slow.do(Input{Op: OpRenew, Key: k.part(), Limit: k.limit, Token: tok, TTL: defaultTTL}, cmdFor(k, "n"), tok); out.Status != "error" {
				t.Fatalf("renew of the expired lease: %+v; want error", out)
			}
			if out, _ := slow.do(Input{Op: OpRelease, Key: k.part(), Limit: k.limit, Token: tok}, cmdFor(k, "r"), tok); out.Status != "error" {
				t.Fatalf("release of the expired lease: %+v; want error", out)
			}
			if n := waiters(h, k); n != 0 {
				t.Fatalf("%d waiters left", n)
			}
			slow.finish()
			other.finish()
			h.check(10 * time.Second)
		})
	}
}

func cmdFor(k keySpec, cmd string) string {
	if k.sem {
		return "s" + cmd
	}
	return cmd
}

func acquireArg(k keySpec, timeout, lease int) string {
	if k.sem {
		return fmt.Sprintf("%d %d %d", timeout, k.limit, lease)
	}
	return fmt.Sprintf("%d %d", timeout, lease)
}

func waiters(h *harness, k keySpec) int {
	st := h.ts.Engine.Stats()
	for _, l := range st.Locks {
		if l.Key == k.name {
			return l.Waiters
		}
	}
	for _, s := range st.Semaphores {
		if s.Key == k.name {
			return s.Waiters
		}
	}
	return 0
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLinearizableSessions runs the session workload with faults: clients
// name sessions, are cut, resume (sometimes with a wrong secret, too late,
// or by taking over), say bye; the clock expires detached sessions.
// Porcupine must accept the history. -lincheck.long runs more rounds.
func TestLinearizableSessions(t *testing.T) {
	base := runSeed()
	// The check usually takes a fraction of a second (a few times more
	// under -race), but a history where several blocking requests
	// overlap many clock ticks can take much longer: the timeout is
	// generous.
	rounds, cfg, check := 1, runConfig{clients: 8, duration: 600 * time.Millisecond}, 30*time.Second
	if longMode() {
		rounds, cfg, check = 12, runConfig{clients: 10, duration: 1500 * time.Millisecond}, 2*time.Minute
	}
	if d := os.Getenv("LINCHECK_DEBUG_MS"); d != "" {
		ms, _ := strconv.Atoi(d)
		cfg.duration = time.Duration(ms) * time.Millisecond
	}
	cfg.faults, cfg.sessions = true, true
	var total totals
	for r := range rounds {
		t.Run(fmt.Sprintf("round%d", r), func(t *testing.T) {
			c := cfg
			c.seed = base + 1000 + int64(r)
			h := run(t, c, check)
			total.add(h, c)
		})
	}
	t.Logf("total: %s", total)
}
