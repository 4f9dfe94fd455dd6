package core

// Owner is one client session's identity in the engine: what it holds and
// its two-phase enqueue records. Create one per connection with NewOwner
// and hand it to ReleaseOwner when the connection ends.
//
// An Owner is used by one goroutine at a time (its session); the engine
// never touches an Owner's maps from another goroutine. Other goroutines
// only change the atomic state of the owner's waiters.
type Owner struct {
	id      uint64
	records map[recKey]*waiter
	held    map[*resource]int32 // slots this owner took itself; may be stale
	prune   int                 // len(held) at which stale entries are pruned
}

type recKey struct {
	kind Kind
	key  string
}

// NewOwner returns an Owner with the given id (the connection id shown in
// stats as owner_conn_id).
func NewOwner(id uint64) *Owner {
	return &Owner{id: id, held: make(map[*resource]int32, 4), prune: 64}
}

// ID returns the owner's id.
func (o *Owner) ID() uint64 { return o.id }

// addHeld records a slot o took on r.
func (o *Owner) addHeld(r *resource) {
	o.held[r]++
	if len(o.held) >= o.prune {
		o.pruneHeld()
	}
}

// dropHeld forgets one slot o held on r.
func (o *Owner) dropHeld(r *resource) {
	if n := o.held[r]; n > 1 {
		o.held[r] = n - 1
	} else if n == 1 {
		delete(o.held, r)
	}
}

// pruneHeld drops entries for slots that were released by another owner,
// expired, or whose key was collected, so the map tracks what o really
// holds.
func (o *Owner) pruneHeld() {
	for r := range o.held {
		r.mu.Lock()
		var n int32
		for i := range r.holders {
			if r.holders[i].owner == o {
				n++
			}
		}
		r.mu.Unlock()
		if n == 0 {
			delete(o.held, r)
		} else {
			o.held[r] = n
		}
	}
	o.prune = 2*len(o.held) + 64
}

// record returns o's live enqueue record for (k, key), dropping a stale one.
func (o *Owner) record(k Kind, key string) *waiter {
	if o.records == nil {
		return nil
	}
	rk := recKey{k, key}
	w, ok := o.records[rk]
	if !ok {
		return nil
	}
	if w.state.Load() == stateDone {
		delete(o.records, rk)
		return nil
	}
	return w
}

// Queued reports whether o has an enqueue record for (k, key) that is
// still waiting in the queue, i.e. whether Wait may block.
func (o *Owner) Queued(k Kind, key string) bool {
	w := o.record(k, key)
	return w != nil && w.state.Load() == stateWaiting
}

// ReleaseOwner ends an owner's session: its enqueue records are deleted
// and its queued waiters removed, always; its held slots are released and
// handed on unless Options.KeepOnDisconnect is set. The owner must not be
// used afterwards.
func (e *Engine) ReleaseOwner(o *Owner) {
	now := e.now()
	keep := e.opts.KeepOnDisconnect
	for rk, w := range o.records {
		delete(o.records, rk)
		r := w.r
		r.mu.Lock()
		switch w.state.Load() {
		case stateWaiting:
			w.state.Store(stateDone)
			r.queue.live--
			r.lastActive = now
		case stateGranted:
			if i := r.find(w.token); i >= 0 {
				if keep {
					r.holders[i].rec = nil
				} else {
					r.removeAt(i)
					r.lastActive = now
					e.grant(r, now)
				}
			}
			w.state.Store(stateDone)
		}
		r.mu.Unlock()
	}
	if keep {
		clear(o.held)
		return
	}
	for r := range o.held {
		delete(o.held, r)
		r.mu.Lock()
		released := false
		for i := 0; i < len(r.holders); {
			if r.holders[i].owner == o {
				r.removeAt(i)
				released = true
				continue
			}
			i++
		}
		if released {
			r.lastActive = now
			e.grant(r, now)
		}
		r.mu.Unlock()
	}
}
