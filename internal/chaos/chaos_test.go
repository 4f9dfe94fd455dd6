package chaos

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/server"
)

var chaosLong = flag.Bool("chaos.long", false,
	"run the chaos test for a minute with 400 clients (or set DFLOCKD_CHAOS_LONG=1, or to a duration such as 5m)")

// chaosPlan is the size of a chaos run.
type chaosPlan struct {
	clients  int
	duration time.Duration
}

func plan() chaosPlan {
	env := os.Getenv("DFLOCKD_CHAOS_LONG")
	switch {
	case *chaosLong || env != "":
		if d, err := time.ParseDuration(env); err == nil && d > 0 {
			return chaosPlan{clients: 400, duration: d}
		}
		return chaosPlan{clients: 400, duration: time.Minute}
	case testing.Short():
		return chaosPlan{clients: 64, duration: 2 * time.Second}
	}
	return chaosPlan{clients: 200, duration: 5 * time.Second}
}

// The keys the clients fight over. Few keys, many clients: every lock is
// contended and every semaphore full most of the time.
var (
	lockKeys = []string{"chaos.l0", "chaos.l1", "chaos.l2", "chaos.l3", "chaos.l4", "chaos.l5"}
	semKeys  = []struct {
		key   string
		limit int
	}{{"chaos.s0", 2}, {"chaos.s1", 3}, {"chaos.s2", 5}}
	channels = []string{"ev.a", "ev.b", "ev.c.d"}
	patterns = []string{"ev.a", "ev.b", "ev.*", "ev.>", "ev.c.*"}
	groups   = []string{"", "", "g1", "g2"}
)

// The lease every grant gets: far longer than a run, so a lease never
// expires and any overlap of critical sections is a real violation.
const (
	leaseS = 600
	lease  = leaseS * time.Second
)

// Operation kinds, for the figures.
const (
	opLock = iota
	opSem
	opTwoPhase
	opVanishWaiting
	opVanishQueued
	opListen
	opSignal
	opPing
	opStats
	opVanish
	opHold
	opTimeout
	opReconnect
	nOps
)

var opNames = [nOps]string{"lock", "semaphore", "two-phase", "vanish-while-waiting", "vanish-while-queued",
	"listen/unlisten", "signal", "ping", "stats", "vanish", "critical-sections", "timeouts", "connects"}

// sub is a signal subscription as stats lists it.
type sub struct{ pattern, group string }

// belief is a hold a client believes it has at the quiescent point.
type belief struct {
	worker *worker
	sem    bool
	key    string
	token  string
	fence  uint64
	res    *Resource
}

// chaosRun is the state shared by the clients of one run.
type chaosRun struct {
	cl    *cluster
	res   map[string]*Resource // "l:"+key, "s:"+key
	limit map[string]int       // semaphore limits
	end   time.Time
	ops   [nOps]atomic.Int64
	sigs  atomic.Int64 // receivers counted by signal answers

	mu       sync.Mutex
	failures []string
}

func (r *chaosRun) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.failures) < 50 {
		r.failures = append(r.failures, err.Error())
	}
}

// worker is one chaos client. It has at most one connection at a time and
// holds at most one lock or slot at a time; it reconnects (over a random
// transport) after every disconnect.
type worker struct {
	id   int
	run  *chaosRun
	rng  *rand.Rand
	conn *rawConn
	subs map[sub]bool
	sigs int64 // signals received on closed connections
}

func (w *worker) connect() error {
	if w.conn != nil {
		return nil
	}
	tr := w.run.cl.transports[w.rng.IntN(len(w.run.cl.transports))]
	c, err := w.run.cl.dial(context.Background(), tr)
	if err != nil {
		return err
	}
	w.run.ops[opReconnect].Add(1)
	w.conn = c
	return nil
}

// vanish drops the connection, abruptly (RST where possible) or not.
func (w *worker) vanish() {
	w.conn.close(w.rng.IntN(2) == 0)
	w.sigs += w.conn.sigs.Load()
	w.conn = nil
	clear(w.subs)
}

// expect fails unless err is nil and the answer's first word is one of
// wants; it returns the answer's fields.
func (w *worker) expect(ans string, err error, wants ...string) ([]string, error) {
	if err != nil {
		return nil, err
	}
	f := strings.Fields(ans)
	if len(f) > 0 {
		for _, want := range wants {
			if f[0] == want {
				return f, nil
			}
		}
	}
	return nil, fmt.Errorf("client %d: unexpected answer %q (want %v)", w.id, ans, wants)
}

// grantOf returns the token and fence of an "ok|acquired <token> <ttl>"
// answer.
func (w *worker) grantOf(f []string) (string, uint64, error) {
	if len(f) != 3 || f[2] != strconv.Itoa(leaseS) {
		return "", 0, fmt.Errorf("client %d: malformed grant %q", w.id, f)
	}
	fence, ok := core.FenceFromToken(f[1])
	if !ok {
		return "", 0, fmt.Errorf("client %d: token %q carries no fence", w.id, f[1])
	}
	return f[1], fence, nil
}

// leaseArg is empty (the server default, which is the test lease) or the
// lease spelled out.
func (w *worker) leaseArg() string {
	if w.rng.IntN(2) == 0 {
		return ""
	}
	return " " + strconv.Itoa(leaseS)
}

// hold runs a critical section on res under the grant, then releases it
// or (rarely) vanishes while holding it.
func (w *worker) hold(sem bool, key, token string, fence uint64, res *Resource) error {
	w.run.ops[opHold].Add(1)
	_ = res.Enter(w.id, fence) // violations are collected from res
	for n := 1 + w.rng.IntN(3); n > 0; n-- {
		_ = res.Write(w.id, fence)
		if d := w.rng.IntN(3); d > 0 {
			time.Sleep(time.Duration(d) * time.Millisecond)
		}
	}
	_ = res.Exit(w.id, fence)
	if w.rng.IntN(20) == 0 {
		w.run.ops[opVanish].Add(1)
		w.vanish() // the server releases it
		return nil
	}
	cmd := "r"
	if sem {
		cmd = "sr"
	}
	ans, err := w.conn.do(cmd, key, token)
	if err != nil {
		return err
	}
	if ans != "ok" {
		return fmt.Errorf("client %d: %s %s %s = %q; want ok (leases never expire here)", w.id, cmd, key, token, ans)
	}
	return nil
}

// pick chooses a lock or a semaphore key; it returns the command prefix
// ("" or "s"), the key, the limit argument ("" or " <limit>") and the
// resource.
func (w *worker) pick(sem bool) (prefix, key, limitArg string, res *Resource) {
	if !sem {
		key = lockKeys[w.rng.IntN(len(lockKeys))]
		return "", key, "", w.run.res["l:"+key]
	}
	s := semKeys[w.rng.IntN(len(semKeys))]
	return "s", s.key, " " + strconv.Itoa(s.limit), w.run.res["s:"+s.key]
}

// acquire does l or sl with a timeout of 0 (try-lock) or 1 s.
func (w *worker) acquire(sem bool) error {
	prefix, key, limitArg, res := w.pick(sem)
	timeout := []string{"0", "0", "1"}[w.rng.IntN(3)]
	arg := timeout + limitArg + w.leaseArg()
	ans, err := w.conn.do(prefix+"l", key, arg)
	f, err := w.expect(ans, err, "ok", "timeout")
	if err != nil {
		return err
	}
	if f[0] == "timeout" {
		w.run.ops[opTimeout].Add(1)
		return nil
	}
	token, fence, err := w.grantOf(f)
	if err != nil {
		return err
	}
	return w.hold(sem, key, token, fence, res)
}

// twoPhase does e/se, then (unless it vanishes while queued) w/sw.
func (w *worker) twoPhase(sem bool) error {
	prefix, key, limitArg, res := w.pick(sem)
	arg := strings.TrimSpace(strings.TrimPrefix(limitArg, " ") + w.leaseArg())
	ans, err := w.conn.do(prefix+"e", key, arg)
	f, err := w.expect(ans, err, "acquired", "queued")
	if err != nil {
		return err
	}
	if f[0] == "queued" {
		time.Sleep(time.Duration(w.rng.IntN(20)) * time.Millisecond)
		if w.rng.IntN(7) == 0 {
			w.run.ops[opVanishQueued].Add(1)
			w.vanish() // its waiter must leave the queue
			return nil
		}
		timeout := []string{"0", "1", "1"}[w.rng.IntN(3)]
		ans, err := w.conn.do(prefix+"w", key, timeout)
		f, err = w.expect(ans, err, "ok", "timeout")
		if err != nil {
			return err
		}
		if f[0] == "timeout" {
			w.run.ops[opTimeout].Add(1)
			return nil
		}
	}
	token, fence, err := w.grantOf(f)
	if err != nil {
		return err
	}
	if f[0] == "acquired" && w.rng.IntN(2) == 0 {
		// The second phase of an immediate grant answers at once with
		// the same token.
		ans, err := w.conn.do(prefix+"w", key, "0")
		g, err := w.expect(ans, err, "ok")
		if err != nil {
			return err
		}
		if len(g) != 3 || g[1] != token {
			return fmt.Errorf("client %d: %sw after acquired = %q; want ok %s", w.id, prefix, ans, token)
		}
	}
	return w.hold(sem, key, token, fence, res)
}

// vanishWaiting sends a blocking acquire and disconnects before the
// answer: the waiter must leave the queue (or, if granted meanwhile, the
// slot must be released).
func (w *worker) vanishWaiting() error {
	sem := w.rng.IntN(2) == 0
	prefix, key, limitArg, _ := w.pick(sem)
	if err := w.conn.send(prefix+"l", key, "2"+limitArg); err != nil {
		return err
	}
	time.Sleep(time.Duration(w.rng.IntN(30)) * time.Millisecond)
	w.vanish()
	return nil
}

func (w *worker) listen() error {
	s := sub{patterns[w.rng.IntN(len(patterns))], groups[w.rng.IntN(len(groups))]}
	cmd := "listen"
	if w.subs[s] {
		cmd = "unlisten"
	}
	ans, err := w.conn.do(cmd, s.pattern, s.group)
	if _, err := w.expect(ans, err, "ok"); err != nil {
		return err
	}
	if ans != "ok" {
		return fmt.Errorf("client %d: %s = %q", w.id, cmd, ans)
	}
	if cmd == "listen" {
		w.subs[s] = true
	} else {
		delete(w.subs, s)
	}
	return nil
}

func (w *worker) signal() error {
	ch := channels[w.rng.IntN(len(channels))]
	ans, err := w.conn.do("signal", ch, fmt.Sprintf("from %d", w.id))
	f, err := w.expect(ans, err, "ok")
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(strings.Join(f[1:], ""))
	if err != nil || n < 0 {
		return fmt.Errorf("client %d: signal = %q", w.id, ans)
	}
	w.run.sigs.Add(int64(n))
	return nil
}

// stats checks a snapshot taken over the wire: no semaphore over its
// limit, no lock with a holder and no owner.
func (w *worker) stats() error {
	ans, err := w.conn.do("stats", "_", "")
	if _, err := w.expect(ans, err, "ok"); err != nil {
		return err
	}
	var st wireStats
	if err := json.Unmarshal([]byte(strings.TrimPrefix(ans, "ok ")), &st); err != nil {
		return fmt.Errorf("client %d: stats: %w", w.id, err)
	}
	return w.run.checkSnapshot(st.Locks, st.Semaphores)
}

// step runs one random operation.
func (w *worker) step() error {
	if err := w.connect(); err != nil {
		return err
	}
	switch n := w.rng.IntN(100); {
	case n < 25:
		w.run.ops[opLock].Add(1)
		return w.acquire(false)
	case n < 40:
		w.run.ops[opSem].Add(1)
		return w.acquire(true)
	case n < 58:
		w.run.ops[opTwoPhase].Add(1)
		return w.twoPhase(w.rng.IntN(2) == 0)
	case n < 63:
		w.run.ops[opVanishWaiting].Add(1)
		return w.vanishWaiting()
	case n < 75:
		w.run.ops[opListen].Add(1)
		return w.listen()
	case n < 87:
		w.run.ops[opSignal].Add(1)
		return w.signal()
	case n < 93:
		w.run.ops[opPing].Add(1)
		ans, err := w.conn.do("ping", "_", "")
		_, err = w.expect(ans, err, "ok")
		return err
	case n < 95:
		w.run.ops[opStats].Add(1)
		return w.stats()
	default:
		w.run.ops[opVanish].Add(1)
		w.vanish()
		return nil
	}
}

// settle is the worker's last move before the quiescent check: stay
// connected and, half the time, take one more lock or slot with a
// try-lock and keep it (critical section open).
func (w *worker) settle() (*belief, error) {
	if err := w.connect(); err != nil {
		return nil, err
	}
	// A QUIC stream reaches the server with its first bytes: make sure
	// every connection has been seen.
	ans, err := w.conn.do("ping", "_", "")
	if _, err := w.expect(ans, err, "ok"); err != nil {
		return nil, err
	}
	if w.rng.IntN(2) == 0 {
		return nil, nil
	}
	sem := w.rng.IntN(2) == 0
	prefix, key, limitArg, res := w.pick(sem)
	ans, err = w.conn.do(prefix+"l", key, "0"+limitArg)
	f, err := w.expect(ans, err, "ok", "timeout")
	if err != nil || f[0] == "timeout" {
		return nil, err
	}
	token, fence, err := w.grantOf(f)
	if err != nil {
		return nil, err
	}
	w.run.ops[opHold].Add(1)
	_ = res.Enter(w.id, fence)
	_ = res.Write(w.id, fence)
	return &belief{worker: w, sem: sem, key: key, token: token, fence: fence, res: res}, nil
}

// finish ends a settled worker: it leaves its critical section, then
// releases, or just disconnects, and closes the connection.
func (w *worker) finish(b *belief) error {
	var err error
	if b != nil {
		_ = b.res.Exit(w.id, b.fence)
		if w.rng.IntN(2) == 0 {
			cmd := "r"
			if b.sem {
				cmd = "sr"
			}
			var ans string
			ans, err = w.conn.do(cmd, b.key, b.token)
			if err == nil && ans != "ok" {
				err = fmt.Errorf("client %d: final %s %s = %q", w.id, cmd, b.key, ans)
			}
		}
	}
	w.vanish()
	return err
}

// wireStats is the part of the stats answer the test reads.
type wireStats struct {
	Connections    int                  `json:"connections"`
	Locks          []core.LockStat      `json:"locks"`
	Semaphores     []core.SemaphoreStat `json:"semaphores"`
	SignalChannels []core.ChannelStat   `json:"signal_channels"`
	SlowConsumers  uint64               `json:"slow_consumers"`
	Clients        []struct {
		ID        uint64 `json:"id"`
		Transport string `json:"transport"`
		Remote    string `json:"remote"`
	} `json:"clients"`
}

// checkSnapshot checks the invariants any snapshot must satisfy.
func (r *chaosRun) checkSnapshot(locks []core.LockStat, sems []core.SemaphoreStat) error {
	for _, s := range sems {
		if lim, ok := r.limit[s.Key]; !ok || s.Limit != lim || s.Holders > lim {
			return fmt.Errorf("stats: semaphore %+v; its limit is %d", s, lim)
		}
	}
	for _, l := range locks {
		// Stats reads the clock once before visiting the keys, so a lease
		// granted meanwhile can show a little more than its length.
		if (l.OwnerConnID == 0) != (l.LeaseExpiresInS == 0) || l.LeaseExpiresInS > leaseS+5 {
			return fmt.Errorf("stats: lock %+v", l)
		}
	}
	return nil
}

// TestChaos runs hundreds of clients over every transport doing random
// lock, semaphore, two-phase, pub/sub and disconnect operations against
// one server, and checks that mutual exclusion and semaphore limits hold
// throughout (by a fenced Resource per key and by stats snapshots), that
// at a quiescent point stats agree with what the clients believe they
// hold and listen to, and that once every client is gone nothing of
// theirs is left: no holder, no waiter, no subscription, no connection.
func TestChaos(t *testing.T) {
	p := plan()
	seed := uint64(time.Now().UnixNano())
	t.Logf("chaos: %d clients for %v, seed %d", p.clients, p.duration, seed)

	cl := startCluster(t,
		core.Options{DefaultTTL: lease, GCInterval: 100 * time.Millisecond, GCMaxIdle: time.Minute},
		// A queue deep enough that no listener is ever evicted as a slow
		// consumer: an eviction would drop the locks of a client that
		// believes it holds them.
		server.Options{ReadTimeout: 5 * time.Minute, WriteTimeout: 30 * time.Second, PushQueueBytes: 1 << 30})

	run := &chaosRun{cl: cl, res: make(map[string]*Resource), limit: make(map[string]int)}
	for _, k := range lockKeys {
		run.res["l:"+k] = NewResource("lock "+k, 1)
	}
	for _, s := range semKeys {
		run.res["s:"+s.key] = NewResource("semaphore "+s.key, s.limit)
		run.limit[s.key] = s.limit
	}

	// Snapshots from the engine while the storm runs.
	var snapshots atomic.Int64
	stopMon := make(chan struct{})
	monDone := make(chan struct{})
	go func() {
		defer close(monDone)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopMon:
				return
			case <-tick.C:
			}
			st := cl.engine.Stats()
			if err := run.checkSnapshot(st.Locks, st.Semaphores); err != nil {
				run.fail(err)
			}
			snapshots.Add(1)
		}
	}()

	workers := make([]*worker, p.clients)
	beliefs := make([]*belief, p.clients)
	settled := make(chan struct{}, p.clients)
	release := make(chan struct{})
	var wg sync.WaitGroup
	run.end = time.Now().Add(p.duration)
	for i := range workers {
		w := &worker{id: i + 1, run: run, rng: rand.New(rand.NewPCG(seed, uint64(i))), subs: make(map[sub]bool)}
		// Start spread over the transports.
		c, err := cl.dial(context.Background(), cl.transports[i%len(cl.transports)])
		if err != nil {
			t.Fatal(err)
		}
		w.conn = c
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			for err == nil && time.Now().Before(run.end) {
				err = w.step()
			}
			var b *belief
			if err == nil {
				b, err = w.settle()
			}
			if err != nil {
				run.fail(err)
			}
			beliefs[i] = b
			settled <- struct{}{}
			<-release
			if w.conn != nil {
				if err := w.finish(b); err != nil {
					run.fail(err)
				}
			}
		}()
	}
	for range workers {
		<-settled
	}
	close(stopMon)
	<-monDone
	elapsed := time.Since(run.end.Add(-p.duration))
	if len(run.failures) > 0 {
		close(release)
		wg.Wait()
		t.Fatalf("chaos: %d failures, first: %s", len(run.failures), strings.Join(run.failures, "\n"))
	}

	// Quiescent point: nobody waits; each settled client holds what it
	// believes and listens to what it believes.
	checks := quiescentCheck(t, run, workers, beliefs)
	close(release)
	wg.Wait()
	checks += emptyCheck(t, cl)

	var total int64
	var figures []string
	for i := range nOps {
		n := run.ops[i].Load()
		figures = append(figures, fmt.Sprintf("%s %d", opNames[i], n))
		if i <= opVanish {
			total += n
		}
	}
	var sigs int64
	for _, w := range workers {
		sigs += w.sigs
	}
	t.Logf("chaos: %d operations in %v over %v: %s", total, elapsed.Round(time.Millisecond), cl.transports, strings.Join(figures, ", "))
	t.Logf("chaos: %d signal deliveries counted by publishers, %d received", run.sigs.Load(), sigs)
	var names []string
	for name := range run.res {
		names = append(names, name)
	}
	sort.Strings(names)
	var entries, writes uint64
	for _, name := range names {
		r := run.res[name]
		st := r.Stats()
		entries += st.Entries
		writes += st.Writes
		for _, v := range r.Violations() {
			t.Errorf("invariant violated: %s", v)
		}
		if st.MaxOpen > r.Limit() {
			t.Errorf("%s: %d critical sections open at once, limit %d", r.Name(), st.MaxOpen, r.Limit())
		}
		t.Logf("chaos: %s: %d critical sections, %d writes, %d rejected, at most %d open at once (limit %d)",
			r.Name(), st.Entries, st.Writes, st.Rejected, st.MaxOpen, r.Limit())
	}
	t.Logf("chaos: invariant checks: %d fenced entries+writes, %d engine snapshots, %d quiescent/final checks",
		entries+writes, snapshots.Load(), checks)
	if len(run.failures) > 0 {
		t.Fatalf("chaos: %d failures after the quiescent point: %s", len(run.failures), strings.Join(run.failures, "\n"))
	}
	if sigs > run.sigs.Load() {
		t.Errorf("received %d signals, but publishers were told of only %d receivers", sigs, run.sigs.Load())
	}
}

// pollDeadline bounds every wait for the server to catch up.
const pollDeadline = 15 * time.Second

// poll calls check until it returns nil or pollDeadline passes; it
// returns the number of calls and the last error.
func poll(check func() error) (int, error) {
	deadline := time.Now().Add(pollDeadline)
	for n := 1; ; n++ {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return n, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// quiescentCheck waits until the engine, the server and the stats command
// agree with what the settled clients believe, and returns the number of
// checks made.
func quiescentCheck(t *testing.T, run *chaosRun, workers []*worker, beliefs []*belief) int {
	t.Helper()
	cl := run.cl
	wantLocks := make(map[string]*belief)
	wantSems := make(map[string]int)
	for _, b := range beliefs {
		switch {
		case b == nil:
		case b.sem:
			wantSems[b.key]++
		default:
			if wantLocks[b.key] != nil {
				t.Fatalf("two clients believe they hold %s", b.key)
			}
			wantLocks[b.key] = b
		}
	}
	wantSubs := make(map[sub]int)
	for _, w := range workers {
		for s := range w.subs {
			wantSubs[s]++
		}
	}
	conns := len(workers) + 1 // and the observer below
	obs, err := cl.dial(context.Background(), cl.transports[0])
	if err != nil {
		t.Fatal(err)
	}
	defer obs.close(false)

	match := func(locks []core.LockStat, sems []core.SemaphoreStat, chans []core.ChannelStat) error {
		if err := run.checkSnapshot(locks, sems); err != nil {
			return err
		}
		got := 0
		for _, l := range locks {
			if l.Waiters != 0 || l.OwnerConnID == 0 || wantLocks[l.Key] == nil {
				return fmt.Errorf("lock %+v; clients believe holder=%v", l, wantLocks[l.Key] != nil)
			}
			got++
		}
		if got != len(wantLocks) {
			return fmt.Errorf("%d locks held, clients believe %d", got, len(wantLocks))
		}
		got = 0
		for _, s := range sems {
			if s.Waiters != 0 || s.Holders != wantSems[s.Key] {
				return fmt.Errorf("semaphore %+v; clients believe they hold %d", s, wantSems[s.Key])
			}
			got++
		}
		if got != len(wantSems) {
			return fmt.Errorf("%d semaphores held, clients believe %d", got, len(wantSems))
		}
		if len(chans) != len(wantSubs) {
			return fmt.Errorf("signal channels %+v; clients listen to %v", chans, wantSubs)
		}
		for _, c := range chans {
			if c.Listeners != wantSubs[sub{c.Pattern, c.Group}] {
				return fmt.Errorf("signal channel %+v: clients believe %d listeners", c, wantSubs[sub{c.Pattern, c.Group}])
			}
		}
		return nil
	}

	checks := 0
	n, err := poll(func() error {
		if got := cl.srv.Connections(); got != conns {
			return fmt.Errorf("server has %d connections, clients have %d", got, conns)
		}
		st := cl.engine.Stats()
		return match(st.Locks, st.Semaphores, cl.engine.SignalStats())
	})
	checks += n
	if err != nil {
		t.Fatalf("quiescent point (engine): %v", err)
	}

	// The same, over the wire, plus the owner of each lock.
	n, err = poll(func() error {
		ans, err := obs.do("stats", "_", "")
		if err != nil {
			return err
		}
		var st wireStats
		if err := json.Unmarshal([]byte(strings.TrimPrefix(ans, "ok ")), &st); err != nil {
			return fmt.Errorf("stats %q: %w", ans, err)
		}
		if st.Connections != conns || len(st.Clients) != conns || st.SlowConsumers != 0 {
			return fmt.Errorf("stats: %d connections, %d clients, %d slow consumers; want %d, %d, 0",
				st.Connections, len(st.Clients), st.SlowConsumers, conns, conns)
		}
		if err := match(st.Locks, st.Semaphores, st.SignalChannels); err != nil {
			return fmt.Errorf("stats command: %w", err)
		}
		owners := make(map[uint64][2]string)
		for _, c := range st.Clients {
			owners[c.ID] = [2]string{c.Transport, c.Remote}
		}
		for _, l := range st.Locks {
			b := wantLocks[l.Key]
			got, mine := owners[l.OwnerConnID], [2]string{b.worker.conn.transport, b.worker.conn.localAddr()}
			if got[0] != mine[0] || (mine[0] != "unix" && port(got[1]) != port(mine[1])) {
				return fmt.Errorf("lock %s: owner %d is %v; the believing client is %v", l.Key, l.OwnerConnID, got, mine)
			}
		}
		return nil
	})
	checks += n
	if err != nil {
		t.Fatalf("quiescent point: %v", err)
	}
	t.Logf("chaos: quiescent point: %d locks, %d semaphore slots, %d subscriptions, %d connections, all as the clients believe",
		len(wantLocks), sumValues(wantSems), sumValues(wantSubs), conns)
	return checks
}

// port returns the port of a host:port address (a QUIC client's local
// address is the unspecified one the UDP socket was bound to).
func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func sumValues[K comparable](m map[K]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// emptyCheck waits until every trace of the (now closed) clients is gone.
func emptyCheck(t *testing.T, cl *cluster) int {
	t.Helper()
	n, err := poll(func() error {
		if got := cl.srv.Connections(); got != 0 {
			return fmt.Errorf("%d connections left", got)
		}
		st := cl.engine.Stats()
		if len(st.Locks) != 0 || len(st.Semaphores) != 0 {
			return fmt.Errorf("holders or waiters left: locks %+v, semaphores %+v", st.Locks, st.Semaphores)
		}
		if ch := cl.engine.SignalStats(); len(ch) != 0 {
			return fmt.Errorf("subscriptions left: %+v", ch)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after every client closed: %v", err)
	}
	// And over the wire, from a fresh connection.
	obs, err := cl.dial(context.Background(), cl.transports[len(cl.transports)-1])
	if err != nil {
		t.Fatal(err)
	}
	defer obs.close(false)
	ans, err := obs.do("stats", "_", "")
	if err != nil {
		t.Fatal(err)
	}
	var st wireStats
	if err := json.Unmarshal([]byte(strings.TrimPrefix(ans, "ok ")), &st); err != nil {
		t.Fatalf("stats %q: %v", ans, err)
	}
	if st.Connections != 1 || len(st.Locks)+len(st.Semaphores)+len(st.SignalChannels) != 0 || st.SlowConsumers != 0 {
		t.Fatalf("stats after every client closed: %s", ans)
	}
	return n + 1
}
