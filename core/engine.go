package core

import (
	"container/heap"
	"context"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/puzpuzpuz/xsync/v3"
)

// Engine holds all lock and semaphore state of one server. All methods are
// safe for concurrent use; an individual *Owner is not (see Owner).
type Engine struct {
	opts     Options
	realTime bool // Options.Now was nil: read the monotonic clock directly
	// coarse is a recent engine time (real clock only): refreshed by
	// every exact reading at most once per coarseStep, and by Run at
	// least once per sweep interval. Only idle-key bookkeeping uses it;
	// leases always use exact time.
	coarse atomic.Int64
	epoch  time.Time // engine nanos are measured from here
	ns     [2]*xsync.MapOf[string, *resource]
	nkeys  atomic.Int64 // live resources in both namespaces
	fence  fence
	exp    expiryHeap
	rc     reclaimer
	subs   sublist      // pub/sub subscriptions (sublist.go)
	sess   sessionTable // named sessions (session.go)
	m      engineMetrics
}

// New returns an Engine configured by opts.
func New(opts Options) *Engine {
	e := &Engine{opts: opts.withDefaults(), realTime: opts.Now == nil}
	e.epoch = e.opts.Now()
	for i := range e.ns {
		e.ns[i] = xsync.NewMapOf[string, *resource]()
	}
	// Seed the fence from the wall clock so tokens keep rising across
	// restarts (best effort: it relies on the clock not going back).
	e.fence.n.Store(uint64(time.Now().UnixNano()))
	e.exp.wake = make(chan struct{}, 1)
	e.subs.init()
	return e
}

// now returns engine nanos: time since the engine's epoch, measured with
// the monotonic clock when the clock provides one.
func (e *Engine) now() int64 {
	if e.realTime {
		n := int64(time.Since(e.epoch)) // one monotonic clock read
		if n-e.coarse.Load() >= coarseStep {
			e.coarse.Store(n) // rare: at most once per coarseStep
		}
		return n
	}
	return int64(e.opts.Now().Sub(e.epoch))
}

// coarseStep is how stale the coarse clock may get between exact readings.
const coarseStep = int64(time.Millisecond)

// recent returns a recent engine time without reading the clock when the
// real clock is in use: the coarse clock, behind by at most coarseStep
// after any exact reading and by at most the sweep interval while Run is
// idle. It is good enough for last-activity times (GC works in seconds)
// and saves a clock read on the release path. A test clock is always read.
func (e *Engine) recent() int64 {
	if e.realTime {
		return e.coarse.Load()
	}
	return e.now()
}

// at converts engine nanos back to a wall-clock time.
func (e *Engine) at(n int64) time.Time { return e.epoch.Add(time.Duration(n)) }

// DefaultTTL returns the lease given to requests that name none.
func (e *Engine) DefaultTTL() time.Duration { return e.opts.DefaultTTL }

// Run hands expired leases on to waiters, sweeps expired leases, ends
// detached sessions whose TTL has passed and collects idle keys until ctx
// is done. It returns ctx's error. Run must
// be called at most once at a time.
func (e *Engine) Run(ctx context.Context) error {
	sweep := time.NewTicker(e.opts.SweepInterval)
	defer sweep.Stop()
	gc := time.NewTicker(e.opts.GCInterval)
	defer gc.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next, ok := e.ExpireDue()
		wait := e.opts.SweepInterval
		if ok {
			if d := time.Duration(next - e.now()); d < wait {
				wait = d
			}
		}
		if next, ok := e.ExpireSessions(); ok {
			if d := time.Duration(next - e.now()); d < wait {
				wait = d
			}
		}
		if wait < time.Millisecond {
			wait = time.Millisecond
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		case <-e.exp.wake:
		case <-sweep.C:
			e.Sweep()
		case <-gc.C:
			e.CollectIdle()
		}
	}
}

// lockResource returns the live resource for key, locked, creating it
// with limit when absent and create is set. It never returns a dead
// (collected) resource; nil with a nil error means the key does not
// exist and create was unset.
func (e *Engine) lockResource(k Kind, key string, limit int, create bool) (*resource, error) {
	m := e.ns[k]
	for {
		r, ok := m.Load(key)
		if !ok {
			if !create {
				return nil, nil
			}
			var fresh bool
			var err error
			r, fresh, err = e.create(m, k, key, limit)
			if err != nil {
				return nil, err
			}
			if fresh {
				return r, nil // created locked: no collector can take it
			}
		}
		r.mu.Lock()
		if !r.dead {
			return r, nil
		}
		r.mu.Unlock()
	}
}

// create inserts a new resource unless MaxKeys would be exceeded; fresh
// reports that r is the new resource, returned locked. When the cap is
// reached, idle keys are collected on the spot (see reclaim) and the
// insert is tried once more, so that ErrMaxKeys means "that many keys are
// in use", not "that many keys were used lately".
func (e *Engine) create(m *xsync.MapOf[string, *resource], k Kind, key string, limit int) (r *resource, fresh bool, err error) {
	// Callers may pass keys that alias reusable buffers; the map and the
	// resource keep this copy.
	key = strings.Clone(key)
	if r, fresh, ok := e.insert(m, k, key, limit); ok {
		return r, fresh, nil
	}
	if e.reclaim() {
		if r, fresh, ok := e.insert(m, k, key, limit); ok {
			return r, fresh, nil
		}
	}
	return nil, false, e.refuse()
}

// insert returns key's resource, creating it (fresh, and locked) when
// absent. ok is false when creating it would exceed MaxKeys. The
// reservation happens inside the bucket-level Compute, so two creators
// of the same key cannot both count it, and the cap is exact.
func (e *Engine) insert(m *xsync.MapOf[string, *resource], k Kind, key string, limit int) (r *resource, fresh, ok bool) {
	now := e.now()
	max := int64(e.opts.MaxKeys)
	r, _ = m.Compute(key, func(old *resource, loaded bool) (*resource, bool) {
		if loaded {
			return old, false
		}
		if e.nkeys.Add(1) > max {
			e.nkeys.Add(-1)
			return nil, true
		}
		nr := newResource(key, k, limit, now)
		// Locked before anyone else can see it, so the Lock never
		// blocks, and no collector can delete the key between its
		// creation and its first holder or waiter.
		nr.mu.Lock()
		fresh = true
		return nr, false
	})
	return r, fresh, r != nil
}

// grant hands free slots to queued waiters in FIFO order. r.mu is held.
func (e *Engine) grant(r *resource, now int64) {
	for len(r.holders) < r.limit {
		w := r.queue.pop()
		if w == nil {
			break
		}
		w.token = e.fence.newToken()
		w.expires = leaseEnd(now, w.ttl)
		h := holder{token: w.token, owner: w.owner, expires: w.expires, since: now}
		if w.twoPhase {
			h.rec = w
		}
		r.holders = append(r.holders, h)
		w.state.Store(stateGranted)
		countGrant(w, now)
		w.ch <- struct{}{} // never blocks: one slot, one sender
	}
	e.watch(r)
}

// watch registers r's earliest lease expiry in the deadline heap when r
// has waiters, so that an expired holder is replaced promptly instead of
// at the next sweep. Keys without waiters are never registered: nobody is
// waiting for their expiry, and the sweep or the next acquire evicts them.
// r.mu is held.
func (e *Engine) watch(r *resource) {
	if r.queue.live == 0 || len(r.holders) == 0 {
		return
	}
	d := r.earliest()
	if r.deadline != 0 && r.deadline <= d {
		return
	}
	r.deadline = d
	e.exp.push(d, r)
}

// ExpireDue evicts expired holders of every watched key whose deadline
// has passed, handing their slots to waiters. It reports the next pending
// deadline (engine nanos) if there is one. Run calls it; tests that drive
// the clock call it directly.
func (e *Engine) ExpireDue() (next int64, ok bool) {
	now := e.now()
	for {
		d, r, found := e.exp.popDue(now)
		if !found {
			break
		}
		r.mu.Lock()
		if r.deadline == d && !r.dead {
			r.deadline = 0
			if e.evict(r, now) > 0 {
				r.lastActive = now
			}
			e.grant(r, now)
		}
		r.mu.Unlock()
	}
	return e.exp.peek()
}

// Sweep evicts every expired holder of every key and hands the freed
// slots to waiters. It returns the number of leases evicted.
func (e *Engine) Sweep() int {
	now := e.now()
	n := 0
	for _, m := range e.ns {
		m.Range(func(_ string, r *resource) bool {
			r.mu.Lock()
			if !r.dead {
				if c := e.evict(r, now); c > 0 {
					n += c
					r.lastActive = now
					e.grant(r, now)
				}
			}
			r.mu.Unlock()
			return true
		})
	}
	return n
}

// CollectIdle deletes keys that have had no holders and no waiters for at
// least Options.GCMaxIdle, and returns how many it deleted. The key count
// is decremented inside the same bucket-locked step that deletes the key.
func (e *Engine) CollectIdle() int {
	return e.collect(e.now() - int64(e.opts.GCMaxIdle))
}

// collect deletes idle keys last active at or before cutoff (engine
// nanos) and returns how many it deleted. A key in use at that moment
// (its mutex held) is skipped, never waited for inside Compute.
func (e *Engine) collect(cutoff int64) int {
	n := 0
	for _, m := range e.ns {
		m.Range(func(key string, r *resource) bool {
			r.mu.Lock()
			candidate := !r.dead && r.idle() && r.lastActive <= cutoff
			r.mu.Unlock()
			if !candidate {
				return true
			}
			m.Compute(key, func(old *resource, loaded bool) (*resource, bool) {
				if !loaded || old != r {
					return old, !loaded
				}
				// Never block inside Compute: TryLock, and skip the key
				// if someone is using it right now.
				if !r.mu.TryLock() {
					return old, false
				}
				del := r.idle() && r.lastActive <= cutoff
				if del {
					r.dead = true
					e.nkeys.Add(-1)
					n++
				}
				r.mu.Unlock()
				return old, del
			})
			return true
		})
	}
	return n
}

// Bounds of on-the-spot collection (see reclaim). After a collection that
// took d, the next starts no sooner than reclaimGapFactor*d later, kept
// between reclaimMinGap and reclaimMaxGap: a refusal storm against a map
// full of live keys spends at most about 1/16 of one core scanning.
const (
	reclaimGapFactor = 16
	reclaimMinGap    = int64(time.Millisecond)
	reclaimMaxGap    = int64(time.Second)
)

// RefusalReportInterval is how often at most a refused key creation is
// reported as a *MaxKeysError (the others are plain ErrMaxKeys).
const RefusalReportInterval = time.Minute

// reclaimer serialises on-the-spot collections and rate-limits refusal
// reports.
type reclaimer struct {
	mu    sync.Mutex
	gen   atomic.Uint64 // completed collections
	next  int64         // guarded by mu: no collection starts before (engine nanos)
	freed int           // guarded by mu: keys the last collection deleted

	reported atomic.Int64  // 1 + engine nanos of the last report, 0 = none yet
	refused  atomic.Uint64 // refusals not yet reported
}

// reclaim runs when a key cannot be created because MaxKeys keys exist.
// It deletes every idle key (no holder, no waiter, however recently
// used), as CollectIdle does, and reports whether a retry may succeed.
// At most one collection runs at a time: a caller that finds one running
// waits for it and uses its result instead of scanning again; and a new
// one starts only after the gap described at reclaimGapFactor, so a
// caller arriving sooner is refused at once.
func (e *Engine) reclaim() bool {
	g := e.rc.gen.Load()
	e.rc.mu.Lock()
	defer e.rc.mu.Unlock()
	if e.rc.gen.Load() != g {
		return e.rc.freed > 0 // collected while this caller waited
	}
	start := e.now()
	if start < e.rc.next {
		return false
	}
	n := e.collect(math.MaxInt64)
	end := e.now()
	e.rc.next = end + min(max(reclaimGapFactor*(end-start), reclaimMinGap), reclaimMaxGap)
	e.rc.freed = n
	e.rc.gen.Add(1)
	return n > 0
}

// refuse counts a refused key creation and returns ErrMaxKeys, as a
// *MaxKeysError for the first refusal in RefusalReportInterval.
func (e *Engine) refuse() error {
	e.rc.refused.Add(1)
	now := e.now()
	last := e.rc.reported.Load()
	if last != 0 && now-(last-1) < int64(RefusalReportInterval) {
		return ErrMaxKeys
	}
	if !e.rc.reported.CompareAndSwap(last, now+1) {
		return ErrMaxKeys // another refusal is being reported
	}
	return &MaxKeysError{Max: e.opts.MaxKeys, Refused: e.rc.refused.Swap(0)}
}

// Keys returns the number of live keys in both namespaces.
func (e *Engine) Keys() int { return int(e.nkeys.Load()) }

// expiryHeap is a min-heap of (deadline, resource) with its own mutex.
// It holds at most one entry per resource: registering an earlier
// deadline for a resource already in the heap moves its entry (the
// resource's hpos says where it is), so a client that keeps shortening a
// lease cannot make the heap grow. Lock order: resource.mu may be held
// while taking expiryHeap.mu, never the other way round.
type expiryHeap struct {
	mu    sync.Mutex
	items deadlines
	wake  chan struct{}
}

type deadlineItem struct {
	at int64
	r  *resource
}

// deadlines implements heap.Interface and keeps each resource's hpos
// (1 + its index, 0 = absent) up to date; expiryHeap.mu is held.
type deadlines []deadlineItem

func (d deadlines) Len() int           { return len(d) }
func (d deadlines) Less(i, j int) bool { return d[i].at < d[j].at }
func (d deadlines) Swap(i, j int) {
	d[i], d[j] = d[j], d[i]
	d[i].r.hpos = int32(i + 1)
	d[j].r.hpos = int32(j + 1)
}
func (d *deadlines) Push(x any) {
	it := x.(deadlineItem)
	it.r.hpos = int32(len(*d) + 1)
	*d = append(*d, it)
}
func (d *deadlines) Pop() any {
	old := *d
	it := old[len(old)-1]
	old[len(old)-1] = deadlineItem{}
	*d = old[:len(old)-1]
	it.r.hpos = 0
	return it
}

// push registers at as r's deadline, replacing any entry r already has.
func (h *expiryHeap) push(at int64, r *resource) {
	h.mu.Lock()
	if i := int(r.hpos) - 1; i >= 0 {
		h.items[i].at = at
		heap.Fix(&h.items, i)
	} else {
		heap.Push(&h.items, deadlineItem{at: at, r: r})
	}
	first := h.items[0].r == r
	h.mu.Unlock()
	if first {
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
}

func (h *expiryHeap) popDue(now int64) (int64, *resource, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.items) == 0 || h.items[0].at > now {
		return 0, nil, false
	}
	it := heap.Pop(&h.items).(deadlineItem)
	return it.at, it.r, true
}

func (h *expiryHeap) peek() (int64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.items) == 0 {
		return 0, false
	}
	return h.items[0].at, true
}

// len returns the number of registered deadlines.
func (h *expiryHeap) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.items)
}
