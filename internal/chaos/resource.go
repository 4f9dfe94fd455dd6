// Package chaos holds the invariant chaos test and the connection leak
// test of dflockd (see chaos_test.go and leak_test.go), and Resource, the
// simulated protected resource those tests guard with locks and
// semaphores.
package chaos

import (
	"fmt"
	"sync"
)

// Resource is a simulated resource protected by one dflockd key: a lock
// (limit 1) or a semaphore (limit n). A client that has been granted the
// key enters its critical section with the fence of its token, writes
// with it any number of times, and exits before it releases the key.
//
// Resource checks what a real fenced store would rely on, and records a
// violation each time one fails:
//
//   - at most limit critical sections are open at any instant (for a lock:
//     no two overlap);
//   - for a lock, every critical section's fence is greater than that of
//     every earlier one, and a write whose fence is lower than the highest
//     fence seen is rejected as stale;
//   - a fence is never in two open critical sections at once, and only the
//     holder of an open section writes with it.
//
// A Resource is safe for concurrent use.
type Resource struct {
	name  string
	limit int

	mu         sync.Mutex
	open       map[uint64]int // fence -> holder of an open critical section
	maxFence   uint64         // highest fence that entered (locks)
	maxOpen    int            // most critical sections open at once
	entries    uint64
	writes     uint64
	rejected   uint64
	violations []string
}

// NewResource returns a resource named name guarded by a key of the given
// limit (1 for a lock).
func NewResource(name string, limit int) *Resource {
	if limit < 1 {
		panic("chaos: NewResource: limit < 1")
	}
	return &Resource{name: name, limit: limit, open: make(map[uint64]int)}
}

// Name returns the resource's name.
func (r *Resource) Name() string { return r.name }

// Limit returns the number of holders the resource admits at once.
func (r *Resource) Limit() int { return r.limit }

// violate records a violation; r.mu is held.
func (r *Resource) violate(format string, args ...any) error {
	err := fmt.Errorf("%s: "+format, append([]any{r.name}, args...)...)
	if len(r.violations) < 100 {
		r.violations = append(r.violations, err.Error())
	}
	return err
}

// Enter opens holder's critical section under fence. It returns (and
// records) an error if that breaks an invariant; the section is opened
// anyway so that Exit stays balanced.
func (r *Resource) Enter(holder int, fence uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries++
	var err error
	switch {
	case len(r.open) >= r.limit:
		others := make([]string, 0, len(r.open))
		for f, h := range r.open {
			others = append(others, fmt.Sprintf("client %d fence %d", h, f))
		}
		err = r.violate("client %d (fence %d) entered while %d of %d sections were open: %v",
			holder, fence, len(r.open), r.limit, others)
	case r.open[fence] != 0:
		err = r.violate("fence %d entered twice (clients %d and %d)", fence, r.open[fence], holder)
	case r.limit == 1 && fence <= r.maxFence:
		r.rejected++
		err = r.violate("stale fence %d from client %d: %d already entered", fence, holder, r.maxFence)
	}
	if fence > r.maxFence {
		r.maxFence = fence
	}
	r.open[fence] = holder
	if len(r.open) > r.maxOpen {
		r.maxOpen = len(r.open)
	}
	return err
}

// Write is one write to the resource under fence by holder, inside its
// critical section. A stale fence (lower than the highest seen, for a
// lock) is rejected, and so is a write outside an open section.
func (r *Resource) Write(holder int, fence uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes++
	if h, ok := r.open[fence]; !ok || h != holder {
		r.rejected++
		return r.violate("write by client %d with fence %d outside its critical section", holder, fence)
	}
	if r.limit == 1 && fence < r.maxFence {
		r.rejected++
		return r.violate("stale write by client %d: fence %d < %d", holder, fence, r.maxFence)
	}
	return nil
}

// Exit closes holder's critical section under fence.
func (r *Resource) Exit(holder int, fence uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h, ok := r.open[fence]; !ok || h != holder {
		return r.violate("client %d exits fence %d it did not enter", holder, fence)
	}
	delete(r.open, fence)
	return nil
}

// Open returns the number of critical sections open now.
func (r *Resource) Open() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.open)
}

// ResourceStats are a Resource's counters.
type ResourceStats struct {
	Entries  uint64 // critical sections entered
	Writes   uint64 // writes made
	Rejected uint64 // writes and entries refused as stale or misplaced
	MaxOpen  int    // most critical sections open at once
}

// Stats returns the resource's counters.
func (r *Resource) Stats() ResourceStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return ResourceStats{Entries: r.entries, Writes: r.writes, Rejected: r.rejected, MaxOpen: r.maxOpen}
}

// Violations returns the invariant violations recorded so far (at most
// 100).
func (r *Resource) Violations() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.violations...)
}
