package core

import (
	"sync"
	"sync/atomic"
	"time"
)

// Kind selects a namespace. Locks and semaphores never share a key: `l k`
// and `sl k 1 3` address two different resources.
type Kind uint8

const (
	// KindLock is the lock namespace (l, r, n, e, w). Limit is always 1.
	KindLock Kind = iota
	// KindSemaphore is the semaphore namespace (sl, sr, sn, se, sw).
	KindSemaphore
)

// String returns "lock" or "semaphore".
func (k Kind) String() string {
	if k == KindSemaphore {
		return "semaphore"
	}
	return "lock"
}

// Waiter states. A waiter leaves stateWaiting exactly once, under its
// resource's mutex.
const (
	stateWaiting uint32 = iota // in the queue
	stateGranted               // holds a slot; token and expires are set
	stateDone                  // cancelled, consumed, released or expired
)

// waiter is a queued request, and for two-phase acquires also the enqueue
// record. Its fields other than state are written under r.mu; state is
// atomic so that an owner can check its records without taking r.mu.
type waiter struct {
	r        *resource
	owner    *Owner
	ttl      time.Duration
	twoPhase bool

	state   atomic.Uint32
	ch      chan struct{} // 1 slot; the granter sends exactly once
	token   Token         // set when granted
	expires int64         // set when granted (engine nanos)
	since   int64         // when it joined the queue (engine nanos; Inspect, wait-time metrics)
}

// holder is one granted slot.
type holder struct {
	token   Token
	owner   *Owner
	expires int64   // engine nanos
	since   int64   // engine nanos when the slot was granted (Inspect; stats: held_s)
	rec     *waiter // two-phase record still pointing at this slot, or nil
}

// waitQueue is a FIFO of waiters with O(1) push and pop. Cancelled
// waiters are marked done and skipped lazily; the backing slice is
// compacted so that a long-lived contended key does not grow without
// bound.
type waitQueue struct {
	items []*waiter
	head  int32
	live  int32 // waiters still in stateWaiting
}

func (q *waitQueue) push(w *waiter) {
	if q.head > 0 && int(q.head) == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if dead := len(q.items) - int(q.head) - int(q.live); dead > 32 && dead > int(q.live) {
		q.compact()
	}
	q.items = append(q.items, w)
	q.live++
}

// compact drops consumed and cancelled entries.
func (q *waitQueue) compact() {
	n := 0
	for _, w := range q.items[q.head:] {
		if w.state.Load() == stateWaiting {
			q.items[n] = w
			n++
		}
	}
	clear(q.items[n:])
	q.items, q.head = q.items[:n], 0
}

// pop removes and returns the first waiting waiter, or nil.
func (q *waitQueue) pop() *waiter {
	for int(q.head) < len(q.items) {
		w := q.items[q.head]
		q.items[q.head] = nil
		q.head++
		if w.state.Load() == stateWaiting {
			q.live--
			if int(q.head) == len(q.items) {
				q.items, q.head = q.items[:0], 0
			}
			return w
		}
	}
	q.items, q.head = q.items[:0], 0
	return nil
}

// resource is the state of one key in one namespace. key, kind and limit
// never change; every other field is guarded by mu. Fields are ordered
// so that the struct packs into 112 bytes: a server may hold millions.
type resource struct {
	key        string
	holders    []holder
	queue      waitQueue
	lastActive int64 // engine nanos
	deadline   int64 // expiry currently registered in the deadline heap, 0 = none
	limit      int
	mu         sync.Mutex
	kind       Kind
	dead       bool // removed from the map by GC; callers must look up again
	// hpos is 1 + the index of r's entry in the deadline heap, 0 = none.
	// Unlike the fields above it is guarded by expiryHeap.mu.
	hpos int32
}

// lockResource is a resource allocated together with room for its one
// holder: one allocation (176 bytes) instead of two (128 + 64) per lock.
type lockResource struct {
	r   resource
	one [1]holder
}

func newResource(key string, kind Kind, limit int, now int64) *resource {
	if limit == 1 {
		lr := &lockResource{r: resource{key: key, kind: kind, limit: limit, lastActive: now}}
		lr.r.holders = lr.one[:0:1]
		return &lr.r
	}
	c := min(limit, 4)
	return &resource{key: key, kind: kind, limit: limit, holders: make([]holder, 0, c), lastActive: now}
}

// find returns the index of the holder with token, or -1.
func (r *resource) find(token string) int {
	for i := range r.holders {
		if r.holders[i].token.is(token) {
			return i
		}
	}
	return -1
}

// findToken is find for a token value.
func (r *resource) findToken(t Token) int {
	for i := range r.holders {
		if r.holders[i].token == t {
			return i
		}
	}
	return -1
}

// removeAt drops holder i (order of holders is not meaningful) and ends
// any enqueue record still bound to it.
func (r *resource) removeAt(i int) holder {
	h := r.holders[i]
	last := len(r.holders) - 1
	if i != last {
		r.holders[i] = r.holders[last]
	}
	r.holders[last] = holder{}
	r.holders = r.holders[:last]
	if h.rec != nil {
		h.rec.state.Store(stateDone)
	}
	return h
}

// evictExpired removes every holder whose lease has passed and reports how
// many it removed.
func (r *resource) evictExpired(now int64) int {
	n := 0
	for i := 0; i < len(r.holders); {
		if r.holders[i].expires <= now {
			r.removeAt(i)
			n++
			continue
		}
		i++
	}
	return n
}

// earliest returns the soonest holder expiry, or 0 with no holders.
func (r *resource) earliest() int64 {
	var m int64
	for i := range r.holders {
		if e := r.holders[i].expires; m == 0 || e < m {
			m = e
		}
	}
	return m
}

// touch records activity at t (engine nanos); it never moves lastActive
// back, since t may come from the coarse clock.
func (r *resource) touch(t int64) {
	if t > r.lastActive {
		r.lastActive = t
	}
}

// idle reports whether the key has neither holders nor waiters.
func (r *resource) idle() bool { return len(r.holders) == 0 && r.queue.live == 0 }
