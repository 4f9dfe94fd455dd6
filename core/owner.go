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
	tag     any // set at creation, never changed: Inspect reads it from any goroutine
	records map[recKey]*waiter
	held    heldSet // slots this owner took itself; may be stale
	m       ownerMetrics
}

type recKey struct {
	kind Kind
	key  string
}

// NewOwner returns an Owner with the given id (the connection id shown in
// stats as owner_conn_id).
func NewOwner(id uint64) *Owner {
	return &Owner{id: id}
}

// NewOwnerWithTag returns an Owner with the given id and an opaque tag
// that Inspect reports beside each holder and waiter of this owner (the
// server passes its session, to show the remote, identity and name). The
// tag never changes; anything in it that does must be safe to read from
// other goroutines.
func NewOwnerWithTag(id uint64, tag any) *Owner {
	return &Owner{id: id, tag: tag}
}

// Tag returns the tag given to NewOwnerWithTag, or nil.
func (o *Owner) Tag() any { return o.tag }

// ID returns the owner's id.
func (o *Owner) ID() uint64 { return o.id }

// addHeld records a slot o took on r.
func (o *Owner) addHeld(r *resource) { o.held.add(r) }

// dropHeld forgets one slot o held on r.
func (o *Owner) dropHeld(r *resource) { o.held.drop(r) }

// heldSet counts slots per resource. Most sessions hold a handful of
// keys, so it starts as a small slice searched from the newest end (no
// hashing, no allocation after warm-up) and turns into a map past
// smallHeld entries. Entries can go stale when another owner releases a
// slot by token or a lease expires; prune drops those.
type heldSet struct {
	small []heldEntry
	big   map[*resource]int32
	prune int // size at which big is pruned
}

type heldEntry struct {
	r *resource
	n int32
}

const smallHeld = 16

func (s *heldSet) add(r *resource) {
	if s.big == nil {
		for i := len(s.small) - 1; i >= 0; i-- {
			if s.small[i].r == r {
				s.small[i].n++
				return
			}
		}
		if len(s.small) < smallHeld {
			s.small = append(s.small, heldEntry{r, 1})
			return
		}
		s.big = make(map[*resource]int32, 2*smallHeld)
		for _, he := range s.small {
			s.big[he.r] = he.n
		}
		s.small = nil
		s.prune = 4 * smallHeld
	}
	s.big[r]++
	if len(s.big) >= s.prune {
		s.pruneStale()
	}
}

func (s *heldSet) drop(r *resource) {
	if s.big == nil {
		for i := len(s.small) - 1; i >= 0; i-- {
			if s.small[i].r == r {
				if s.small[i].n--; s.small[i].n == 0 {
					last := len(s.small) - 1
					s.small[i] = s.small[last]
					s.small[last] = heldEntry{}
					s.small = s.small[:last]
				}
				return
			}
		}
		return
	}
	if n := s.big[r]; n > 1 {
		s.big[r] = n - 1
	} else if n == 1 {
		delete(s.big, r)
	}
}

// pruneStale recounts, under each resource's mutex, the slots the owner
// really holds. The owner is found through the holders themselves.
func (s *heldSet) pruneStale() {
	for r := range s.big {
		r.mu.Lock()
		n := int32(0)
		for i := range r.holders {
			if h := r.holders[i].owner; h != nil && &h.held == s {
				n++
			}
		}
		r.mu.Unlock()
		if n == 0 {
			delete(s.big, r)
		} else {
			s.big[r] = n
		}
	}
	s.prune = 2*len(s.big) + 4*smallHeld
}

// each calls f for every resource in the set.
func (s *heldSet) each(f func(r *resource)) {
	for _, he := range s.small {
		f(he.r)
	}
	for r := range s.big {
		f(r)
	}
}

// drain calls f for every resource in the set and empties it.
func (s *heldSet) drain(f func(r *resource)) {
	for _, he := range s.small {
		f(he.r)
	}
	clear(s.small)
	s.small = s.small[:0]
	for r := range s.big {
		f(r)
	}
	s.big = nil
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
			if i := r.findToken(w.token); i >= 0 {
				if keep {
					r.holders[i].rec = nil
				} else {
					r.removeAt(i)
					e.m.disconnected.Add(1)
					r.lastActive = now
					e.grant(r, now)
				}
			}
			w.state.Store(stateDone)
		}
		r.mu.Unlock()
	}
	if keep {
		o.held.drain(func(*resource) {})
		return
	}
	o.held.drain(func(r *resource) {
		r.mu.Lock()
		released := false
		for i := 0; i < len(r.holders); {
			if r.holders[i].owner == o {
				r.removeAt(i)
				e.m.disconnected.Add(1)
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
	})
}
