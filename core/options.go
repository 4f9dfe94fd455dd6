package core

import "time"

// Default values used when the corresponding Options field is zero.
const (
	DefaultLeaseTTL      = 33 * time.Second
	DefaultSweepInterval = time.Second
	DefaultGCInterval    = 5 * time.Second
	DefaultMaxKeys       = 1024
)

// Options configure an Engine. The zero value is usable: every zero field
// takes the documented default.
type Options struct {
	// DefaultTTL is the lease given when a request names none (0 = 33s).
	DefaultTTL time.Duration
	// SweepInterval is the period of the full lease-expiry sweep (0 = 1s).
	// Contended keys do not wait for it: their expiries are tracked in a
	// deadline heap and handed on promptly.
	SweepInterval time.Duration
	// GCInterval is the period of idle-key collection (0 = 5s).
	GCInterval time.Duration
	// GCMaxIdle is how long a key with no holders and no waiters survives
	// before GC deletes it. Zero means it is deleted at the next GC tick.
	GCMaxIdle time.Duration
	// MaxKeys caps keys across both namespaces (0 = 1024). Idle keys count
	// until collected, but creating a key at the cap first collects every
	// idle key on the spot (at most one such collection at a time, and
	// not back to back), so ErrMaxKeys means that many keys are in use.
	MaxKeys int
	// MaxWaiters caps queued waiters per key (0 = unlimited).
	MaxWaiters int
	// KeepOnDisconnect, when true, leaves an owner's held slots in place
	// after ReleaseOwner (they expire with their leases). Waiters and
	// enqueue records are always purged.
	KeepOnDisconnect bool
	// MaxSessions caps named sessions, attached and detached together
	// (0 = unlimited); NameSession answers ErrMaxSessions past it.
	MaxSessions int
	// Now is the clock (nil = time.Now). Tests drive it.
	Now func() time.Time
}

func (o *Options) withDefaults() Options {
	c := *o
	if c.DefaultTTL <= 0 {
		c.DefaultTTL = DefaultLeaseTTL
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = DefaultSweepInterval
	}
	if c.GCInterval <= 0 {
		c.GCInterval = DefaultGCInterval
	}
	if c.GCMaxIdle < 0 {
		c.GCMaxIdle = 0
	}
	if c.MaxKeys <= 0 {
		c.MaxKeys = DefaultMaxKeys
	}
	if c.MaxWaiters < 0 {
		c.MaxWaiters = 0
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}
