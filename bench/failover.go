package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/protocol"
	"github.com/dflockd/dflockd/transport"
)

// A failover run measures what a leader's death costs the clients of a
// cluster and checks that it costs them nothing but time.
//
// Each worker does one operation at a time — acquire (l, or sl in
// semaphore mode), then release — on a connection of its own that named
// a session. When the connection drops (the leader was killed, or the
// relay through a follower broke), the worker dials the nodes in turn
// until one answers `resume` for its session, and carries on from what
// the server says the session holds.
//
// What the worker counts, and why the count can be trusted:
//
//   - An operation counts as done only when its release was answered ok,
//     or when, after a drop during the release, `resume` shows the session
//     holding nothing (the release was applied: leases here outlast the
//     run, so nothing else could have freed the slot).
//   - Every grant the worker was answered is recorded with its fence.
//     Fences come from one replicated counter, one per grant, so the
//     grants issued during the run are exactly the fences strictly
//     between two probe acquires made before and after it.
//   - An acquire whose answer was lost is ambiguous: `resume` says whether
//     the session holds or waits for something. If it does, the worker
//     tries to collect it with `w`; when that is refused it ends the
//     session with `bye` (releasing whatever the lost acquire got) and
//     starts a new one. Those are counted as orphans.
//
// The checks, all of which must hold:
//
//  1. No fence is seen twice, and each worker's fences rise: a result was
//     neither duplicated nor handed out again by a new leader that lost it.
//  2. recorded ≤ issued ≤ recorded + orphans, where issued is the number of
//     fences between the probes: every grant a worker counted was really
//     made by the cluster (it holds a fence the cluster's counter accounts
//     for), and no acquire was applied twice (a retry after a drop would
//     show up as a grant nobody recorded and no lost answer explains).
//  3. Whenever a worker resumes while it holds nothing, the session holds
//     and waits for nothing; at the end every session resumes as "ok 0 0":
//     no release that was answered ok was lost.
//  4. In hand-off mode (one key), no two workers hold it at once, and each
//     grant's fence is above the previous holder's.

// FailoverConfig describes a failover run against a ProcCluster.
type FailoverConfig struct {
	// Base holds Mode (lock, semaphore or handoff), Workers, Key, Limit,
	// Timeout, Lease, AuthToken and Transport; Rounds, Warmup and Servers
	// are not used.
	Base Config
	// Cluster is the cluster to run against and kill leaders of.
	Cluster *ProcCluster
	// Kills is how many times the leader is killed (SIGKILL).
	Kills int
	// Spacing is the time of steady running before the first kill, after
	// each restart and after the last one (default 2 s).
	Spacing time.Duration
	// SessionTTL is the TTL of the workers' sessions (default 60 s).
	SessionTTL time.Duration
	// Bucket is the width of a timeline bucket (default 100 ms).
	Bucket time.Duration
	// Log, when set, is called with a line per event (kill, new leader).
	Log func(format string, args ...any)
}

// KillEvent is one leader kill of a failover run. Times are since the
// start of the run.
type KillEvent struct {
	Node      string        `json:"node"`
	At        time.Duration `json:"at_ns"`
	NewLeader string        `json:"new_leader"`
	Elected   time.Duration `json:"elected_ns"` // the new leader answered `cluster` as serving, after the kill
	Gap       time.Duration `json:"gap_ns"`     // first successful acquire sent after the kill, answered this long after it
}

// FailoverResult is the outcome of a failover run.
type FailoverResult struct {
	Mode       Mode          `json:"mode"`
	Workers    int           `json:"workers"`
	Ops        int64         `json:"ops"`
	Wall       time.Duration `json:"wall_ns"`
	Throughput float64       `json:"ops_per_sec"`
	Latency    Latency       `json:"latency"` // per operation, retries included
	Kills      []KillEvent   `json:"kills"`
	// Timeline counts operations completed per Bucket from the start.
	Bucket   time.Duration `json:"bucket_ns"`
	Timeline []int64       `json:"timeline"`
	// The checks' figures.
	Recorded   int64 `json:"grants_recorded"`
	Issued     int64 `json:"grants_issued"`
	Orphans    int64 `json:"orphans"`
	Reconnects int64 `json:"reconnects"`
	Collected  int64 `json:"collected_by_wait"`
}

// ErrFailoverCheck is a failed correctness check of a failover run.
var ErrFailoverCheck = errors.New("failover check failed")

// RunFailover runs the workers against the cluster while killing its
// leader fc.Kills times, restarting each killed node once a new leader
// serves, and checks the results (see the comment at the top of this
// file).
func RunFailover(ctx context.Context, fc FailoverConfig) (*FailoverResult, error) {
	cfg := fc.Base
	cfg.Rounds, cfg.Servers = 1, []transport.Endpoint{fc.Cluster.Endpoint(0)}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	switch cfg.Mode {
	case ModeLock, ModeSemaphore, ModeHandoff:
	default:
		return nil, fmt.Errorf("bench: --failover runs lock, semaphore or handoff, not %s", cfg.Mode)
	}
	if fc.Spacing <= 0 {
		fc.Spacing = 2 * time.Second
	}
	if fc.SessionTTL <= 0 {
		fc.SessionTTL = 60 * time.Second
	}
	if fc.Bucket <= 0 {
		fc.Bucket = 100 * time.Millisecond
	}
	logf := fc.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	c := fc.Cluster
	var eps []transport.Endpoint
	for i := range c.Size() {
		eps = append(eps, c.Endpoint(i))
	}
	probeKey := cfg.Key + "_probe"
	f0, err := probe(ctx, eps, cfg, probeKey)
	if err != nil {
		return nil, err
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	shared := &sharedState{}
	stop := make(chan struct{})
	t0 := time.Now()
	workers := make([]*failoverWorker, cfg.Workers)
	var wg sync.WaitGroup
	for i := range workers {
		w := newFailoverWorker(i, &cfg, eps, shared, fc.SessionTTL, t0)
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.run(ctx, stop); err != nil {
				cancel(&WorkerError{Worker: i, Err: err})
			}
		}()
	}
	var kills []KillEvent
	orchestrate := func() error {
		if !sleepCtx(ctx, fc.Spacing) {
			return context.Cause(ctx)
		}
		for range fc.Kills {
			l, err := c.Leader(ctx, -1)
			if err != nil {
				return err
			}
			at := time.Now()
			c.Kill(l)
			ev := KillEvent{Node: c.ID(l), At: at.Sub(t0)}
			logf("bench: failover: killed leader %s (SIGKILL)", ev.Node)
			nl, err := c.Leader(ctx, l)
			if err != nil {
				return err
			}
			ev.Elected = time.Since(at)
			ev.NewLeader = c.ID(nl)
			logf("bench: failover: %s leads %.0f ms after the kill; restarting %s", ev.NewLeader, ms64(ev.Elected), ev.Node)
			kills = append(kills, ev)
			if err := c.Restart(ctx, l); err != nil {
				return err
			}
			logf("bench: failover: %s restarted, pid %d on %s", ev.Node, c.PID(l), c.Endpoint(l).Addr)
			if !sleepCtx(ctx, fc.Spacing) {
				return context.Cause(ctx)
			}
		}
		return nil
	}
	if err := orchestrate(); err != nil {
		cancel(err)
	}
	close(stop)
	end := time.Now()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(cfg.Timeout + 2*fc.SessionTTL):
		cancel(errors.New("bench: failover: workers did not finish"))
		<-done
	}
	end = latest(end, workers)
	if cause := context.Cause(ctx); cause != nil {
		return nil, cause
	}

	res := &FailoverResult{Mode: cfg.Mode, Workers: cfg.Workers, Kills: kills, Bucket: fc.Bucket, Wall: end.Sub(t0)}
	// Check 3 at the end: every session resumes holding nothing.
	for _, w := range workers {
		if err := w.finalAudit(ctx); err != nil {
			return nil, &WorkerError{Worker: w.id, Err: err}
		}
	}
	fEnd, err := probe(ctx, eps, cfg, probeKey)
	if err != nil {
		return nil, err
	}
	if err := res.tally(workers, t0, f0, fEnd); err != nil {
		return res, err
	}
	return res, nil
}

func ms64(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func latest(end time.Time, ws []*failoverWorker) time.Time {
	for _, w := range ws {
		for _, o := range w.ops {
			if o.done.After(end) {
				end = o.done
			}
		}
	}
	return end
}

// tally fills res from the workers' records and runs checks 1 and 2.
func (res *FailoverResult) tally(workers []*failoverWorker, t0 time.Time, f0, fEnd uint64) error {
	rec := newRecorder()
	seen := make(map[uint64]int, 1024)
	nb := int(res.Wall/res.Bucket) + 1
	res.Timeline = make([]int64, nb)
	for _, w := range workers {
		rec.merge(w.rec)
		res.Ops += int64(len(w.ops))
		res.Orphans += w.orphans
		res.Reconnects += w.reconnects
		res.Collected += w.collected
		var prev uint64
		for _, f := range w.fences {
			if other, dup := seen[f]; dup {
				return fmt.Errorf("%w: fence %d granted to worker %d and to worker %d", ErrFailoverCheck, f, other, w.id)
			}
			seen[f] = w.id
			if f <= prev {
				return fmt.Errorf("%w: worker %d saw fence %d after %d", ErrFailoverCheck, w.id, f, prev)
			}
			if f <= f0 || f >= fEnd {
				return fmt.Errorf("%w: fence %d outside the run's (%d, %d)", ErrFailoverCheck, f, f0, fEnd)
			}
			prev = f
		}
		res.Recorded += int64(len(w.fences))
		for _, o := range w.ops {
			if b := int(o.done.Sub(t0) / res.Bucket); b >= 0 && b < nb {
				res.Timeline[b]++
			}
		}
	}
	res.Issued = int64(fEnd - f0 - 1)
	if res.Issued < res.Recorded || res.Issued > res.Recorded+res.Orphans {
		return fmt.Errorf("%w: the cluster issued %d grants during the run; workers recorded %d and lost the answer of %d",
			ErrFailoverCheck, res.Issued, res.Recorded, res.Orphans)
	}
	if res.Wall > 0 {
		res.Throughput = float64(res.Ops) / res.Wall.Seconds()
	}
	res.Latency = rec.summary()
	for i := range res.Kills {
		k := &res.Kills[i]
		k.Gap = -1
		for _, w := range workers {
			for _, o := range w.ops {
				if o.sent >= k.At && (k.Gap < 0 || o.granted-k.At < k.Gap) {
					k.Gap = o.granted - k.At
				}
			}
		}
	}
	return nil
}

// probe acquires and releases key once, on whichever node answers, and
// returns the grant's fence.
func probe(ctx context.Context, eps []transport.Endpoint, cfg Config, key string) (uint64, error) {
	var last error
	for attempt := range 200 {
		ep := eps[attempt%len(eps)]
		f, err := probeOnce(ctx, ep, cfg, key)
		if err == nil {
			return f, nil
		}
		last = err
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return 0, context.Cause(ctx)
		}
	}
	return 0, fmt.Errorf("bench: failover: probe: %w", last)
}

func probeOnce(ctx context.Context, ep transport.Endpoint, cfg Config, key string) (uint64, error) {
	c, err := dial(ctx, ep, cfg.Transport, cfg.AuthToken)
	if err != nil {
		return 0, err
	}
	defer c.close()
	_ = c.nc.SetDeadline(time.Now().Add(10 * time.Second))
	c.request(protocol.CmdLock, key, "10 60")
	if err := c.flush(); err != nil {
		return 0, err
	}
	line, err := c.line()
	if err != nil {
		return 0, err
	}
	tok, err := grant(line, "ok", nil)
	if err != nil {
		return 0, err
	}
	c.requestToken(protocol.CmdRelease, key, tok)
	if err := c.flush(); err != nil {
		return 0, err
	}
	if line, err = c.line(); err != nil {
		return 0, err
	}
	if err := expectOK(line); err != nil {
		return 0, err
	}
	f, ok := core.FenceFromToken(string(tok))
	if !ok {
		return 0, fmt.Errorf("%w: token %q has no fence", errUnexpected, tok)
	}
	return f, nil
}

// opRecord is one completed operation, times since the run's start.
type opRecord struct {
	sent    time.Duration // the acquire that succeeded was sent
	granted time.Duration // and answered
	done    time.Time     // the release was answered (or seen applied)
}

// Worker states.
const (
	stIdle      = iota // holds nothing
	stAcquiring        // an acquire was sent, not answered
	stHolding          // holds token; the release may have been sent
)

// failoverWorker is one worker of a failover run.
type failoverWorker struct {
	id     int
	cfg    *Config
	eps    []transport.Endpoint
	next   int
	shared *sharedState
	ttl    time.Duration
	t0     time.Time
	key    string
	acqCmd protocol.Command
	relCmd protocol.Command
	acqArg string

	c           *conn
	cur         atomic.Pointer[conn] // c, for the cancellation to close
	sid, secret string
	state       int
	token       []byte
	counted     bool // counted among the hand-off key's holders
	opStart     time.Time
	sent        time.Time
	granted     time.Time

	fences     []uint64
	ops        []opRecord
	nops       atomic.Int64 // len(ops), for a watcher
	rec        *recorder
	orphans    int64
	reconnects int64
	collected  int64
}

func newFailoverWorker(id int, cfg *Config, eps []transport.Endpoint, shared *sharedState, ttl time.Duration, t0 time.Time) *failoverWorker {
	w := &failoverWorker{id: id, cfg: cfg, eps: eps, next: id % len(eps), shared: shared, ttl: ttl, t0: t0,
		rec: newRecorder(), token: make([]byte, 0, 64)}
	w.key = fmt.Sprintf("%s_%d", cfg.Key, id)
	if cfg.SharedKey {
		w.key = cfg.Key
	}
	lease := " " + wholeSeconds(max(cfg.Lease, ttl))
	w.acqCmd, w.relCmd = protocol.CmdLock, protocol.CmdRelease
	w.acqArg = wholeSeconds(cfg.Timeout) + lease
	if cfg.Mode == ModeSemaphore {
		w.acqCmd, w.relCmd = protocol.CmdSemLock, protocol.CmdSemRelease
		w.acqArg = wholeSeconds(cfg.Timeout) + " " + strconv.Itoa(cfg.Limit) + lease
	}
	return w
}

// errDropped marks a connection that ended (or answered that it cannot
// serve): the worker reconnects.
var errDropped = errors.New("connection dropped")

// run does operations until stop is closed, then finishes the one under
// way and returns holding nothing.
func (w *failoverWorker) run(ctx context.Context, stop <-chan struct{}) error {
	defer func() {
		if w.c != nil {
			w.c.close()
		}
	}()
	stopAfter := context.AfterFunc(ctx, func() {
		if c := w.cur.Load(); c != nil {
			c.close() // ends a blocked read; the worker then sees ctx
		}
	})
	defer stopAfter()
	for {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if w.state == stIdle {
			select {
			case <-stop:
				return nil
			default:
			}
		}
		if w.c == nil {
			if err := w.connect(ctx); err != nil {
				return err
			}
			continue
		}
		var err error
		switch w.state {
		case stIdle:
			err = w.acquire()
		default:
			err = w.release()
		}
		if errors.Is(err, errDropped) {
			w.drop()
			continue
		}
		if err != nil {
			return err
		}
	}
}

func (w *failoverWorker) drop() {
	w.cur.Store(nil)
	if w.c != nil {
		w.c.close()
		w.c = nil
	}
}

// roundTrip sends one request and reads its answer; a transport error is
// errDropped.
func (w *failoverWorker) roundTrip(cmd protocol.Command, key, arg string) ([]byte, error) {
	_ = w.c.nc.SetDeadline(time.Now().Add(w.cfg.Timeout + 30*time.Second))
	w.c.request(cmd, key, arg)
	if err := w.c.flush(); err != nil {
		return nil, fmt.Errorf("%w: %w", errDropped, err)
	}
	line, err := w.c.line()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errDropped, err)
	}
	return line, nil
}

func (w *failoverWorker) acquire() error {
	if w.opStart.IsZero() {
		w.opStart = time.Now()
	}
	w.sent = time.Now()
	w.state = stAcquiring
	line, err := w.roundTrip(w.acqCmd, w.key, w.acqArg)
	if err != nil {
		return err
	}
	return w.granted1(line, "ok")
}

// granted1 takes the grant in line (status st) as the worker's hold.
func (w *failoverWorker) granted1(line []byte, st string) error {
	tok, err := grant(line, st, w.token)
	if err != nil {
		return err
	}
	w.token = tok
	w.granted = time.Now()
	f, ok := core.FenceFromToken(string(tok))
	if !ok {
		return fmt.Errorf("%w: token %q has no fence", errUnexpected, tok)
	}
	if w.cfg.Mode == ModeHandoff {
		if n := w.shared.holders.Add(1); n != 1 {
			return fmt.Errorf("%w: %s: %d holders at once", ErrFailoverCheck, w.key, n)
		}
		w.counted = true
		if prev := w.shared.lastFence.Load(); f <= prev {
			return fmt.Errorf("%w: %s: fence %d after %d", ErrFailoverCheck, w.key, f, prev)
		}
		w.shared.lastFence.Store(f)
	}
	w.fences = append(w.fences, f)
	w.state = stHolding
	return nil
}

func (w *failoverWorker) release() error {
	w.uncount()
	line, err := w.roundTrip(w.relCmd, w.key, string(w.token))
	if err != nil {
		return err
	}
	if err := expectOK(line); err != nil {
		return fmt.Errorf("%s: release: %w", w.key, err)
	}
	w.completed()
	return nil
}

// uncount leaves the hand-off key's holders, just before releasing.
func (w *failoverWorker) uncount() {
	if w.counted {
		w.counted = false
		w.shared.holders.Add(-1)
	}
}

// completed records the operation under way as done.
func (w *failoverWorker) completed() {
	now := time.Now()
	w.rec.record(now.Sub(w.opStart))
	w.ops = append(w.ops, opRecord{sent: w.sent.Sub(w.t0), granted: w.granted.Sub(w.t0), done: now})
	w.nops.Add(1)
	w.opStart = time.Time{}
	w.state = stIdle
}

// connect dials the nodes in turn, with back-off, until one names a new
// session or resumes the worker's, then reconciles the worker's state
// with what the session holds.
func (w *failoverWorker) connect(ctx context.Context) error {
	backoff := 10 * time.Millisecond
	deadline := time.Now().Add(w.ttl)
	for {
		held, queued, err := w.connectOnce(ctx)
		if err == nil {
			return w.reconcile(held, queued)
		}
		if !errors.Is(err, errDropped) {
			return err
		}
		w.drop()
		if time.Now().After(deadline) {
			return fmt.Errorf("no node resumed the session within its TTL (%s): %w", w.ttl, err)
		}
		if !sleepCtx(ctx, backoff) {
			return context.Cause(ctx)
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

// connectOnce dials the next node and names or resumes the session.
func (w *failoverWorker) connectOnce(ctx context.Context) (held, queued int, err error) {
	ep := w.eps[w.next%len(w.eps)]
	w.next++
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	c, err := dial(dctx, ep, w.cfg.Transport, w.cfg.AuthToken)
	cancel()
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %w", errDropped, err)
	}
	w.c = c
	w.cur.Store(c)
	if ctx.Err() != nil {
		return 0, 0, context.Cause(ctx) // cancelled while dialling
	}
	if w.sid == "" {
		line, err := w.roundTrip(protocol.CmdSession, "_", wholeSeconds(w.ttl))
		if err != nil {
			return 0, 0, err
		}
		f := bytes.Fields(line)
		if len(f) != 4 || string(f[0]) != "ok" {
			// No leader yet (the node answers error): try again.
			return 0, 0, fmt.Errorf("%w: session answered %q", errDropped, line)
		}
		w.sid, w.secret = string(f[1]), string(f[2])
		return 0, 0, nil
	}
	line, err := w.roundTrip(protocol.CmdResume, w.sid, w.secret)
	if err != nil {
		return 0, 0, err
	}
	f := bytes.Fields(line)
	switch {
	case len(f) == 3 && string(f[0]) == "ok":
		held, err1 := strconv.Atoi(string(f[1]))
		queued, err2 := strconv.Atoi(string(f[2]))
		if err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("%w: resume answered %q", errUnexpected, line)
		}
		w.reconnects++
		return held, queued, nil
	case string(line) == "error_session":
		return 0, 0, fmt.Errorf("%w: session %s was lost (resume on %s answered error_session)", ErrFailoverCheck, w.sid, ep)
	}
	return 0, 0, fmt.Errorf("%w: resume answered %q", errDropped, line)
}

// reconcile sets the worker's state from a resumed session's counts.
func (w *failoverWorker) reconcile(held, queued int) error {
	switch w.state {
	case stIdle:
		if held != 0 || queued != 0 {
			return fmt.Errorf("%w: %s: session resumed holding %d and waiting for %d, after every release was answered ok",
				ErrFailoverCheck, w.key, held, queued)
		}
	case stHolding:
		switch {
		case held == 1 && queued == 0:
			// Still ours: the release is sent again.
		case held == 0 && queued == 0:
			// The release was applied before the drop.
			w.uncount()
			w.completed()
		default:
			return fmt.Errorf("%w: %s: session holding a grant resumed with %d held, %d queued", ErrFailoverCheck, w.key, held, queued)
		}
	case stAcquiring:
		if held+queued == 0 {
			w.state = stIdle // the acquire was never applied: ask again
			return nil
		}
		// The acquire was applied but its answer lost. A place parked
		// by the server (the connection dropped while the node lived) is
		// collected with w; otherwise the grant's token is unknown and
		// the session is ended, releasing it.
		line, err := w.roundTrip(w.waitCmd(), w.key, wholeSeconds(w.cfg.Timeout))
		if err != nil {
			w.drop() // dropped again: the next connect reconciles
			return nil
		}
		if bytes.HasPrefix(line, []byte("ok ")) {
			w.collected++
			return w.granted1(line, "ok")
		}
		if _, err := w.roundTrip(protocol.CmdBye, "_", ""); err != nil && !errors.Is(err, errDropped) {
			return err
		}
		w.drop()
		w.orphans++
		w.sid, w.secret = "", ""
		w.state = stIdle
	}
	return nil
}

func (w *failoverWorker) waitCmd() protocol.Command {
	if w.cfg.Mode == ModeSemaphore {
		return protocol.CmdSemWait
	}
	return protocol.CmdWait
}

// finalAudit resumes the worker's session on a fresh connection and
// checks that it holds and waits for nothing, then ends it.
func (w *failoverWorker) finalAudit(ctx context.Context) error {
	w.drop()
	if w.sid == "" {
		return nil
	}
	var last error
	for attempt := range 100 {
		w.next = attempt
		held, queued, err := w.connectOnce(ctx)
		if err == nil {
			defer w.drop()
			if held != 0 || queued != 0 {
				return fmt.Errorf("%w: %s: at the end the session holds %d and waits for %d", ErrFailoverCheck, w.key, held, queued)
			}
			_, _ = w.roundTrip(protocol.CmdBye, "_", "")
			return nil
		}
		w.drop()
		if !errors.Is(err, errDropped) {
			return err
		}
		last = err
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return context.Cause(ctx)
		}
	}
	return fmt.Errorf("final audit: %w", last)
}

// SortedGaps returns the kills' gaps, smallest first.
func (res *FailoverResult) SortedGaps() []time.Duration {
	var g []time.Duration
	for _, k := range res.Kills {
		g = append(g, k.Gap)
	}
	slices.Sort(g)
	return g
}
