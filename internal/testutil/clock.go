// Package testutil holds helpers shared by tests. It is not for production
// code.
package testutil

import (
	"sync"
	"time"
)

// Clock is a manually driven clock for tests. The zero value starts at a
// fixed instant.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock set to a fixed, arbitrary instant.
func NewClock() *Clock {
	return &Clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
