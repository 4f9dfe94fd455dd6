package core

import (
	"sync/atomic"
	"time"
)

// Metrics counting. Nothing here takes a lock or touches memory shared by
// all requests: an event on the request path is an atomic add to the
// Owner of the connection involved (its own memory, written by its own
// session goroutine, and by a granter only when it hands a queued waiter
// of that owner a slot), and rare events (expiries, disconnect releases)
// are atomic adds to engine-wide counters. Readers fold the owners of the
// live connections (and of the closed ones, accumulated once at close)
// at scrape time; gauges are read from the keys themselves.

// WaitBuckets are the upper bounds, in seconds, of the wait-time
// histogram (OwnerMetrics.Wait); one more bucket counts longer waits.
var WaitBuckets = [...]float64{
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
}

// waitBounds is WaitBuckets in nanoseconds.
var waitBounds = func() (b [len(WaitBuckets)]int64) {
	for i, s := range WaitBuckets {
		b[i] = int64(s * float64(time.Second))
	}
	return b
}()

// WaitHistogram is a snapshot of a wait-time histogram: Counts[i] counts
// the waits in bucket i alone (not cumulative), the last entry those
// longer than every bound; Sum is their total.
type WaitHistogram struct {
	Counts [len(WaitBuckets) + 1]uint64
	Sum    time.Duration
}

// Add adds h's observations into dst.
func (dst *WaitHistogram) Add(h *WaitHistogram) {
	for i := range h.Counts {
		dst.Counts[i] += h.Counts[i]
	}
	dst.Sum += h.Sum
}

// Count returns the number of observations.
func (dst *WaitHistogram) Count() uint64 {
	var n uint64
	for _, c := range dst.Counts {
		n += c
	}
	return n
}

// waitHist is the live form of WaitHistogram.
type waitHist struct {
	counts [len(WaitBuckets) + 1]atomic.Uint64
	sum    atomic.Int64 // nanoseconds
}

func (h *waitHist) observe(d int64) {
	i := 0
	for i < len(waitBounds) && d > waitBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(d)
}

func (h *waitHist) addTo(dst *WaitHistogram) {
	for i := range h.counts {
		dst.Counts[i] += h.counts[i].Load()
	}
	dst.Sum += time.Duration(h.sum.Load())
}

// ownerMetrics are an Owner's counters.
type ownerMetrics struct {
	immediate atomic.Uint64 // slots taken at once (acquire, enqueue)
	released  atomic.Uint64 // leases released by token through this owner
	afterWait atomic.Uint64 // queued waiters of this owner granted a slot
	wait      waitHist      // their time from enqueue to grant
}

// OwnerMetrics is a snapshot of one owner's counters, or a sum of them.
type OwnerMetrics struct {
	// GrantsImmediate counts slots taken without queueing (Acquire,
	// Enqueue); GrantsAfterWait counts queued waiters handed a slot.
	GrantsImmediate, GrantsAfterWait uint64
	// Released counts leases this owner released by token (anyone's).
	Released uint64
	// Wait is the time from enqueue to grant of the GrantsAfterWait.
	Wait WaitHistogram
}

// Add adds m into dst.
func (dst *OwnerMetrics) Add(m *OwnerMetrics) {
	dst.GrantsImmediate += m.GrantsImmediate
	dst.GrantsAfterWait += m.GrantsAfterWait
	dst.Released += m.Released
	dst.Wait.Add(&m.Wait)
}

// AddMetricsTo adds o's counters into dst. It is safe to call from any
// goroutine while o is in use; once ReleaseOwner(o) has returned, o's
// counters no longer change.
func (o *Owner) AddMetricsTo(dst *OwnerMetrics) {
	m := &o.m
	dst.GrantsImmediate += m.immediate.Load()
	dst.GrantsAfterWait += m.afterWait.Load()
	dst.Released += m.released.Load()
	m.wait.addTo(&dst.Wait)
}

// engineMetrics are the engine-wide counters of rare events.
type engineMetrics struct {
	expired      atomic.Uint64 // leases evicted because they ran out
	disconnected atomic.Uint64 // leases released by ReleaseOwner or a cancelled grant
	released     atomic.Uint64 // releases with a nil owner
}

// NamespaceMetrics are the gauges of one namespace.
type NamespaceMetrics struct {
	// Keys counts live keys, idle ones awaiting collection included.
	Keys int
	// Held counts granted slots (for locks: locks held).
	Held int
	// Waiters counts queued waiters.
	Waiters int
}

// Metrics is a snapshot of the engine's own counters and gauges; the
// per-owner counters are read with Owner.AddMetricsTo.
type Metrics struct {
	// Namespaces is indexed by Kind.
	Namespaces [2]NamespaceMetrics
	// Fence is the fence value of the last token issued.
	Fence uint64
	// Expired counts leases that ran out (evicted by the sweep, the
	// deadline heap, or the next request on the key).
	Expired uint64
	// Disconnected counts leases released because their owner's session
	// ended (ReleaseOwner) or their blocked request was cancelled.
	Disconnected uint64
	// ReleasedUnowned counts releases made with a nil Owner.
	ReleasedUnowned uint64
}

// Metrics reads the engine's counters and walks every key for the
// gauges, each key under its own mutex (consistent per key, not across
// keys); its cost is one short visit per key.
func (e *Engine) Metrics() Metrics {
	m := Metrics{
		Fence:           e.fence.n.Load(),
		Expired:         e.m.expired.Load(),
		Disconnected:    e.m.disconnected.Load(),
		ReleasedUnowned: e.m.released.Load(),
	}
	for k, ns := range e.ns {
		g := &m.Namespaces[k]
		ns.Range(func(_ string, r *resource) bool {
			r.mu.Lock()
			if !r.dead {
				g.Keys++
				g.Held += len(r.holders)
				g.Waiters += int(r.queue.live)
			}
			r.mu.Unlock()
			return true
		})
	}
	return m
}

// evict is r.evictExpired counted as expiries. r.mu is held.
func (e *Engine) evict(r *resource, now int64) int {
	n := r.evictExpired(now)
	if n > 0 {
		e.m.expired.Add(uint64(n))
	}
	return n
}

// countGrant counts a queued waiter's grant at now on its owner. r.mu is
// held; the owner is live (its waiter was still waiting).
func countGrant(w *waiter, now int64) {
	if o := w.owner; o != nil {
		o.m.afterWait.Add(1)
		o.m.wait.observe(now - w.since)
	}
}

// countRelease counts a release by token made through o.
func (e *Engine) countRelease(o *Owner) {
	if o != nil {
		o.m.released.Add(1)
		return
	}
	e.m.released.Add(1)
}
