package core

// Busy reports whether o holds a slot whose lease has not run out, or has
// an enqueue record that is still queued or holds a slot. A server uses it
// while shutting down to tell the connections it must wait for from the
// idle ones it may close at once. Like every use of an Owner, it must be
// called from the owner's own goroutine.
func (e *Engine) Busy(o *Owner) bool {
	now := e.now()
	for _, w := range o.records {
		r := w.r
		r.mu.Lock()
		live := false
		switch w.state.Load() {
		case stateWaiting:
			live = true
		case stateGranted:
			i := r.findToken(w.token)
			live = i >= 0 && r.holders[i].expires > now
		}
		r.mu.Unlock()
		if live {
			return true
		}
	}
	return o.held.any(func(r *resource) bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for i := range r.holders {
			if h := &r.holders[i]; h.owner == o && h.expires > now {
				return true
			}
		}
		return false
	})
}

// Leases returns the number of slots held under leases that have not run
// out, across both namespaces.
func (e *Engine) Leases() int {
	now := e.now()
	n := 0
	for _, m := range e.ns {
		m.Range(func(_ string, r *resource) bool {
			r.mu.Lock()
			for i := range r.holders {
				if r.holders[i].expires > now {
					n++
				}
			}
			r.mu.Unlock()
			return true
		})
	}
	return n
}

// any reports whether f holds for some resource in the set.
func (s *heldSet) any(f func(r *resource) bool) bool {
	for _, he := range s.small {
		if f(he.r) {
			return true
		}
	}
	for r := range s.big {
		if f(r) {
			return true
		}
	}
	return false
}
