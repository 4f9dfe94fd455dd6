package core

import (
	"context"
	"fmt"
	"math"
	"time"
)

// Lease is a granted slot.
type Lease struct {
	// Key is the resource key.
	Key string
	// Token identifies the slot; it releases and renews it from any owner.
	Token Token
	// TTL is the lease length the grant was made with.
	TTL time.Duration
	// Expires is when the lease runs out unless renewed.
	Expires time.Time
}

// AcquireOptions describe one acquire or enqueue.
type AcquireOptions struct {
	// Limit is the number of concurrent holders: 0 or 1 for a lock, N for
	// a semaphore. It must match the key's limit while the key exists.
	// The lock namespace always uses 1.
	Limit int
	// TTL is the lease length (0 = Options.DefaultTTL).
	TTL time.Duration
	// Queue makes Acquire join the FIFO when no slot is free. Without it
	// Acquire is a try-lock and answers ErrTimeout at once.
	Queue bool
}

func (e *Engine) norm(k Kind, opt *AcquireOptions) {
	if k == KindLock || opt.Limit < 1 {
		opt.Limit = 1
	}
	if opt.TTL <= 0 {
		opt.TTL = e.opts.DefaultTTL
	}
}

// Ticket is a place in a key's queue, returned by Acquire when no slot was
// free. Wait on it exactly once.
type Ticket struct {
	e *Engine
	w *waiter
}

// Acquire asks for a slot of key in namespace k on behalf of o.
//
// Expired holders of the key are evicted first. If a slot is free and
// nobody is queued the lease is returned at once with a nil Ticket.
// Otherwise ErrMaxWaiters is returned when the queue is full; else, with
// opt.Queue unset, ErrTimeout (a try-lock never queues); else a Ticket
// for the new place at the tail of the FIFO.
func (e *Engine) Acquire(o *Owner, k Kind, key string, opt AcquireOptions) (Lease, *Ticket, error) {
	l, w, err := e.acquire(o, k, key, opt, false)
	if w == nil {
		return l, nil, err
	}
	return l, &Ticket{e: e, w: w}, err
}

// acquire implements Acquire and Enqueue. With twoPhase it returns the
// enqueue record: granted (with the lease) or waiting.
func (e *Engine) acquire(o *Owner, k Kind, key string, opt AcquireOptions, twoPhase bool) (Lease, *waiter, error) {
	e.norm(k, &opt)
	r, err := e.lockResource(k, key, opt.Limit, true)
	if err != nil {
		return Lease{}, nil, err
	}
	if r.limit != opt.Limit {
		r.mu.Unlock()
		return Lease{}, nil, ErrLimitMismatch
	}
	now := e.now()
	r.lastActive = now
	if len(r.holders) > 0 && e.evict(r, now) > 0 {
		e.grant(r, now)
	}
	if len(r.holders) < r.limit && r.queue.live == 0 {
		tok := e.fence.newToken()
		exp := leaseEnd(now, opt.TTL)
		h := holder{token: tok, owner: o, expires: exp, since: now}
		var rec *waiter
		if twoPhase {
			rec = &waiter{r: r, owner: o, ttl: opt.TTL, twoPhase: true, token: tok, expires: exp}
			rec.state.Store(stateGranted)
			h.rec = rec
		}
		r.holders = append(r.holders, h)
		r.mu.Unlock()
		o.m.immediate.Add(1)
		if !twoPhase {
			o.addHeld(r) // a two-phase slot is tracked by its record until Wait
		}
		return Lease{Key: r.key, Token: tok, TTL: opt.TTL, Expires: e.at(exp)}, rec, nil
	}
	if e.opts.MaxWaiters > 0 && int(r.queue.live) >= e.opts.MaxWaiters {
		r.mu.Unlock()
		return Lease{}, nil, ErrMaxWaiters
	}
	if !opt.Queue {
		r.mu.Unlock()
		return Lease{}, nil, ErrTimeout
	}
	w := &waiter{r: r, owner: o, ttl: opt.TTL, twoPhase: twoPhase, ch: make(chan struct{}, 1), since: now}
	r.queue.push(w)
	e.watch(r)
	r.mu.Unlock()
	return Lease{}, w, nil
}

// leaseEnd returns now + ttl in engine nanos, saturating instead of
// wrapping: a lease of up to MaxInt64 nanoseconds granted on an engine
// that has been running for a while must not overflow into the past.
func leaseEnd(now int64, ttl time.Duration) int64 {
	if end := now + int64(ttl); end >= now {
		return end
	}
	return math.MaxInt64
}

// Lock acquires a slot, blocking up to timeout (0 = try once) or until ctx
// ends. It is Acquire followed by Ticket.Wait.
func (e *Engine) Lock(ctx context.Context, o *Owner, k Kind, key string, timeout time.Duration, opt AcquireOptions) (Lease, error) {
	opt.Queue = timeout > 0
	l, t, err := e.Acquire(o, k, key, opt)
	if err != nil || t == nil {
		return l, err
	}
	return t.Wait(ctx, timeout)
}

// Wait blocks until the ticket is granted, timeout passes, or ctx ends.
//
// On timeout the waiter leaves the queue and ErrTimeout is returned,
// unless a grant won the race, in which case the lease is returned. When
// ctx ends the result is ErrCanceled and a grant that raced in is released
// and passed to the next waiter. A grant whose lease ran out before Wait
// observed it gives ErrLeaseExpired.
func (t *Ticket) Wait(ctx context.Context, timeout time.Duration) (Lease, error) {
	return t.wait(ctx, timeout, false)
}

// wait implements Wait and WaitOrPark.
func (t *Ticket) wait(ctx context.Context, timeout time.Duration, park bool) (Lease, error) {
	w := t.w
	if timeout > 0 {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		select {
		case <-w.ch:
			return t.e.observe(w)
		case <-timer.C:
			return t.e.abandon(w, false, nil)
		case <-ctx.Done():
			if park {
				return t.e.park(w, ctx.Err())
			}
			return t.e.abandon(w, true, ctx.Err())
		}
	}
	select {
	case <-w.ch:
		return t.e.observe(w)
	default:
		return t.e.abandon(w, false, nil)
	}
}

// abandon takes w out of the queue after a timeout or cancellation. If a
// grant got there first it is kept (timeout) or released (cancel).
func (e *Engine) abandon(w *waiter, cancel bool, cause error) (Lease, error) {
	r := w.r
	r.mu.Lock()
	if w.state.Load() == stateWaiting {
		w.state.Store(stateDone)
		r.queue.live--
		r.lastActive = e.now()
		r.mu.Unlock()
		if cancel {
			return Lease{}, fmt.Errorf("%w: %w", ErrCanceled, cause)
		}
		return Lease{}, ErrTimeout
	}
	r.mu.Unlock()
	<-w.ch // the grant's signal is in the channel or about to be
	if cancel {
		e.releaseGranted(w)
		return Lease{}, fmt.Errorf("%w: %w", ErrCanceled, cause)
	}
	return e.observe(w)
}

// releaseGranted gives back a grant nobody will use.
func (e *Engine) releaseGranted(w *waiter) {
	r := w.r
	r.mu.Lock()
	if i := r.findToken(w.token); i >= 0 {
		r.removeAt(i)
		e.m.disconnected.Add(1)
		now := e.now()
		r.lastActive = now
		e.grant(r, now)
	}
	w.state.Store(stateDone)
	r.mu.Unlock()
}

// observe turns a granted waiter into a lease for its owner. A two-phase
// record's lease restarts now (the wait resets it); a plain waiter's keeps
// its grant time. An expired grant is evicted and reported as
// ErrLeaseExpired.
func (e *Engine) observe(w *waiter) (Lease, error) {
	r := w.r
	now := e.now()
	reset := w.twoPhase
	if !reset && now < w.expires {
		// Fast hand-off: only w's owner knows the token, and the lease
		// has not run out, so the holder entry is still in place.
		w.state.Store(stateDone)
		w.owner.addHeld(r)
		return Lease{Key: r.key, Token: w.token, TTL: w.ttl, Expires: e.at(w.expires)}, nil
	}
	r.mu.Lock()
	i := r.findToken(w.token)
	if i < 0 {
		w.state.Store(stateDone)
		r.mu.Unlock()
		if w.twoPhase {
			return Lease{}, ErrNotEnqueued
		}
		return Lease{}, ErrLeaseExpired
	}
	h := &r.holders[i]
	if h.expires <= now {
		r.removeAt(i)
		e.m.expired.Add(1)
		r.lastActive = now
		e.grant(r, now)
		w.state.Store(stateDone)
		r.mu.Unlock()
		return Lease{}, ErrLeaseExpired
	}
	if reset {
		h.expires = leaseEnd(now, w.ttl)
	}
	h.rec = nil
	exp := h.expires
	r.lastActive = now
	w.state.Store(stateDone)
	r.mu.Unlock()
	w.owner.addHeld(r)
	return Lease{Key: r.key, Token: w.token, TTL: w.ttl, Expires: e.at(exp)}, nil
}

// Enqueue is the first phase of a two-phase acquire: it takes a slot at
// once when one is free (acquired = true) or joins the queue without
// blocking. Either way it leaves an enqueue record for (o, k, key) that
// Wait consumes. A second Enqueue before that gives ErrAlreadyEnqueued.
func (e *Engine) Enqueue(o *Owner, k Kind, key string, opt AcquireOptions) (lease Lease, acquired bool, err error) {
	if o.record(k, key) != nil {
		return Lease{}, false, ErrAlreadyEnqueued
	}
	opt.Queue = true
	l, rec, err := e.acquire(o, k, key, opt, true)
	if err != nil {
		return Lease{}, false, err
	}
	if o.records == nil {
		o.records = make(map[recKey]*waiter)
	}
	o.records[recKey{k, rec.r.key}] = rec // r.key: the engine's own copy
	return l, rec.ch == nil, nil
}

// Wait is the second phase of a two-phase acquire. It consumes o's
// enqueue record for (k, key): a record that already holds a slot answers
// at once with the lease reset to now + TTL; a queued one blocks up to
// timeout (0 = poll once; a timeout leaves the queue). Without a record
// the answer is ErrNotEnqueued.
func (e *Engine) Wait(ctx context.Context, o *Owner, k Kind, key string, timeout time.Duration) (Lease, error) {
	return e.wait(ctx, o, k, key, timeout, false)
}

// wait implements Wait and WaitOrPark.
func (e *Engine) wait(ctx context.Context, o *Owner, k Kind, key string, timeout time.Duration, park bool) (Lease, error) {
	w := o.record(k, key)
	if w == nil {
		return Lease{}, ErrNotEnqueued
	}
	delete(o.records, recKey{k, key})
	if w.ch == nil {
		// Acquired at enqueue time: answer at once, whatever the timeout.
		return e.observe(w)
	}
	t := Ticket{e: e, w: w}
	return t.wait(ctx, timeout, park)
}

// Release gives back the slot named by token. Any owner may release any
// token; o (may be nil) is the caller, used only for bookkeeping.
func (e *Engine) Release(o *Owner, k Kind, key, token string) error {
	r, _ := e.lockResource(k, key, 0, false)
	if r == nil {
		return ErrNotHolder
	}
	i := r.find(token)
	if i < 0 {
		r.mu.Unlock()
		return ErrNotHolder
	}
	h := r.removeAt(i)
	e.countRelease(o)
	if r.queue.live > 0 {
		now := e.now() // the next holder's lease starts now: exact time
		r.lastActive = now
		e.grant(r, now)
	} else {
		r.touch(e.recent())
	}
	r.mu.Unlock()
	// A two-phase slot not yet observed by Wait (h.rec != nil) was never
	// added to the owner's held set, so there is nothing to drop.
	if o != nil && h.owner == o && h.rec == nil {
		o.dropHeld(r)
	}
	return nil
}

// Renew sets the lease named by token to end at now + ttl (0 = the default
// TTL, not the TTL of the acquire); that may be sooner than before. A
// lease that has already run out is evicted and reported as
// ErrLeaseExpired: it is never revived. When the key has waiters and the
// new end is the key's earliest, it is registered in the deadline heap,
// so the slot is handed on when it runs out, not at the next sweep.
func (e *Engine) Renew(k Kind, key, token string, ttl time.Duration) (Lease, error) {
	if ttl <= 0 {
		ttl = e.opts.DefaultTTL
	}
	r, _ := e.lockResource(k, key, 0, false)
	if r == nil {
		return Lease{}, ErrNotHolder
	}
	i := r.find(token)
	if i < 0 {
		r.mu.Unlock()
		return Lease{}, ErrNotHolder
	}
	now := e.now()
	r.lastActive = now
	h := &r.holders[i]
	if h.expires <= now {
		r.removeAt(i)
		e.m.expired.Add(1)
		e.grant(r, now)
		r.mu.Unlock()
		return Lease{}, ErrLeaseExpired
	}
	h.expires = leaseEnd(now, ttl)
	l := Lease{Key: r.key, Token: h.token, TTL: ttl}
	exp := h.expires
	// A shorter lease may now end before the deadline registered for
	// the key's waiters: register the earlier one, so the hand-off stays
	// as prompt as for a lease that was never renewed.
	e.watch(r)
	r.mu.Unlock()
	l.Expires = e.at(exp)
	return l, nil
}
