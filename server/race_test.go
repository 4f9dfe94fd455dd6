package server

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dflockd/dflockd/core"
)

// TestRace_ClientsHammerThreeKeys runs 20 clients over TCP against 3 keys
// with blocking and try acquires, releases, disconnects while holding and
// disconnects while blocked. A counter per key, raised inside the
// critical section, must never exceed 1; afterwards the server must have
// no holders, no waiters and no connections (§2.3 mutual exclusion, §7.2
// cleanup, edges 14, 18, 19, 55).
func TestRace_ClientsHammerThreeKeys(t *testing.T) {
	t.Parallel()
	const (
		clients = 20
		rounds  = 100
		keys    = 3
	)
	ts := start(t, Options{}, core.Options{})
	var (
		inside [keys]atomic.Int32
		grants atomic.Int64
		fail   errs
		wg     sync.WaitGroup
	)
	for id := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(id), 7))
			w, err := dialWire(ts.Addr)
			if err != nil {
				fail.add(err)
				return
			}
			defer func() { w.close() }()
			redial := func() bool {
				w.close()
				if w, err = dialWire(ts.Addr); err != nil {
					fail.add(err)
					return false
				}
				return true
			}
			for range rounds {
				k := rng.IntN(keys)
				key := fmt.Sprintf("hammer%d", k)
				if rng.IntN(10) == 0 {
					// Disconnect while (probably) blocked.
					if err := w.send("l", key, "1"); err != nil {
						fail.add(err)
						return
					}
					if !redial() {
						return
					}
					continue
				}
				line, err := w.do("l", key, fmt.Sprint(rng.IntN(2))) // timeout 0 or 1 s
				if err != nil {
					fail.add(fmt.Errorf("client %d: l: %w", id, err))
					return
				}
				if line == "timeout" {
					continue
				}
				f := strings.Fields(line)
				if len(f) != 3 || f[0] != "ok" {
					fail.add(fmt.Errorf("client %d: l answered %q", id, line))
					return
				}
				grants.Add(1)
				if n := inside[k].Add(1); n != 1 {
					fail.add(fmt.Errorf("key %s: %d holders at once", key, n))
				}
				runtime.Gosched() // widen the critical section a little
				inside[k].Add(-1) // before the slot can be handed on
				if rng.IntN(8) == 0 {
					// Disconnect while holding: auto-release.
					if !redial() {
						return
					}
					continue
				}
				if line, err := w.do("r", key, f[1]); err != nil || line != "ok" {
					fail.add(fmt.Errorf("client %d: r = %q, %v", id, line, err))
					return
				}
			}
		}()
	}
	wg.Wait()
	fail.check(t)
	if grants.Load() == 0 {
		t.Fatal("no client ever got a lock")
	}
	eventually(t, "all connections gone", func() bool { return ts.Connections() == 0 })
	eventually(t, "no holders and no waiters", func() bool { return !busy(ts.Engine) })
	mon := ts.dial(t)
	st, _ := wireStats(t, mon)
	if len(st.Locks) != 0 || len(st.Semaphores) != 0 || len(st.IdleLocks) != keys {
		t.Fatalf("stats after the run = %+v; want %d idle locks and nothing else", st, keys)
	}
	t.Logf("%d grants", grants.Load())
}
