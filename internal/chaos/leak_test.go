package chaos

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/server"
)

// leakConns is how many connections TestConnectionLeaks opens and closes:
// 10,000 normally; fewer under the race detector, where every TLS and QUIC
// handshake costs several times as much and 10,000 would take over a
// minute on a 2-core machine (about 6 ms per connection, against 1.4 ms
// without it).
func leakConns() int {
	switch {
	case testing.Short():
		return 1000
	case raceEnabled:
		return 1000
	}
	return 10000
}

// footprint is what must return to its baseline once connections are
// gone.
type footprint struct {
	goroutines int
	fds        int    // open file descriptors; -1 where /proc/self/fd is missing
	heap       uint64 // live heap after a GC
}

func (f footprint) String() string {
	return fmt.Sprintf("%d goroutines, %d fds, heap %.1f MiB", f.goroutines, f.fds, float64(f.heap)/(1<<20))
}

func measure() footprint {
	runtime.GC()
	runtime.GC() // a second cycle also frees what sync.Pools let go of
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fds := -1
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		fds = len(ents) // includes the directory ReadDir opened, every time
	}
	return footprint{goroutines: runtime.NumGoroutine(), fds: fds, heap: ms.HeapAlloc}
}

// heapSlack is the heap growth tolerated after the churn: freed memory the
// runtime keeps in caches and pools, plus the idle keys the test created.
func heapSlack(base uint64) uint64 {
	return max(16<<20, base/2)
}

// within reports whether now is back to base.
func (now footprint) within(base footprint) error {
	switch {
	case now.goroutines > base.goroutines:
		return fmt.Errorf("%d goroutines, baseline %d", now.goroutines, base.goroutines)
	case base.fds >= 0 && now.fds > base.fds:
		return fmt.Errorf("%d open fds, baseline %d", now.fds, base.fds)
	case now.heap > base.heap+heapSlack(base.heap):
		return fmt.Errorf("heap %d bytes, baseline %d (+%d tolerated)", now.heap, base.heap, heapSlack(base.heap))
	}
	return nil
}

// churnMix is the order in which churn cycles through the transports.
// TLS and QUIC handshakes cost 5-15 times a TCP or Unix connection, so
// they get a quarter of the connections between them, which keeps 10,000
// connections within about ten seconds on a 2-core machine.
var churnMix = []string{"tcp", "unix", "tcp", "unix", "tls", "tcp", "unix", "quic"}

// churn opens n connections over the cluster's transports (in the
// proportions of churnMix), 16 at a time; each does at least one request
// and is then closed, in order or abruptly. It returns the number of
// requests made per transport.
func churn(cl *cluster, n int) (map[string]int64, error) {
	var mix []string
	for _, tr := range churnMix {
		if _, ok := cl.eps[tr]; ok {
			mix = append(mix, tr)
		}
	}
	var (
		next     atomic.Int64
		reqs     = make([]atomic.Int64, len(mix))
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := churnOne(cl, mix[i%len(mix)], i/len(mix), &reqs[i%len(mix)]); err != nil {
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	byTransport := make(map[string]int64)
	for i, tr := range mix {
		byTransport[tr] += reqs[i].Load()
	}
	return byTransport, firstErr
}

// churnOne is connection i's life: one of a ping, a lock taken and
// released, a subscription, or an enqueue left to the disconnect clean-up.
func churnOne(cl *cluster, tr string, i int, reqs *atomic.Int64) error {
	c, err := cl.dial(context.Background(), tr)
	if err != nil {
		return err
	}
	defer c.close(i%3 == 0)
	key := "leak." + strconv.Itoa(i%32)
	do := func(cmd, key, arg string, want ...string) ([]string, error) {
		reqs.Add(1)
		ans, err := c.do(cmd, key, arg)
		f, err := (&worker{id: i}).expect(ans, err, want...)
		return f, err
	}
	switch i % 4 {
	case 0:
		_, err = do("ping", "_", "", "ok")
	case 1:
		var f []string
		if f, err = do("l", key, "0", "ok", "timeout"); err == nil && f[0] == "ok" {
			_, err = do("r", key, f[1], "ok")
		}
	case 2:
		if _, err = do("listen", key+".>", "", "ok"); err == nil {
			_, err = do("signal", key+".x", "hi", "ok")
		}
	case 3:
		_, err = do("se", key, "2", "acquired", "queued")
	}
	return err
}

// TestConnectionLeaks opens and closes many connections over every
// transport and checks that goroutines, open file descriptors and the
// heap come back to what they were before.
func TestConnectionLeaks(t *testing.T) {
	cl := startCluster(t, core.Options{}, server.Options{})
	// Warm up, so that what is created once per process (crypto tables,
	// pools, runtime timers) is in the baseline.
	if _, err := churn(cl, 64); err != nil {
		t.Fatal(err)
	}
	var base footprint
	if _, err := poll(func() error {
		base = measure()
		if c := cl.srv.Connections(); c != 0 {
			return fmt.Errorf("%d connections still open", c)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	n := leakConns()
	start := time.Now()
	reqs, err := churn(cl, n)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)

	var now footprint
	polls, err := poll(func() error {
		now = measure()
		if c := cl.srv.Connections(); c != 0 {
			return fmt.Errorf("%d connections still open", c)
		}
		return now.within(base)
	})
	t.Logf("leaks: %d connections in %v (race detector: %v); requests by transport: %v",
		n, took.Round(time.Millisecond), raceEnabled, reqs)
	t.Logf("leaks: before: %v; after: %v (%d polls)", base, now, polls)
	if err != nil {
		t.Fatalf("not back to baseline within %v: %v", pollDeadline, err)
	}
	st := cl.engine.Stats()
	if len(st.Locks)+len(st.Semaphores)+len(cl.engine.SignalStats()) != 0 {
		t.Fatalf("engine state left: %+v %+v", st, cl.engine.SignalStats())
	}
}
