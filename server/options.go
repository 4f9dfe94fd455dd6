package server

import (
	"log/slog"
	"time"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/core"
)

// DefaultReadTimeout is used when Options.ReadTimeout is zero.
const DefaultReadTimeout = 23 * time.Second

// DefaultStatsMaxItems is used when Options.StatsMaxItems is zero.
const DefaultStatsMaxItems = 1000

// Options configure a Server. Zero values are documented defaults.
type Options struct {
	// Engine holds all lock state. Required.
	Engine *core.Engine
	// Auth, when non-nil, requires every connection to authenticate with
	// its first request (§7.1). Nil means authentication is off.
	Auth auth.Authenticator
	// Logger receives structured logs (nil = discard).
	Logger *slog.Logger
	// ReadTimeout is the idle deadline armed before each read from the
	// socket (0 = 23s). Time spent blocked in a command does not count.
	ReadTimeout time.Duration
	// WriteTimeout bounds each flush to the socket (0 = no deadline).
	WriteTimeout time.Duration
	// MaxConns caps open connections (0 = unlimited). Excess sockets are
	// closed without a byte written.
	MaxConns int
	// MaxConnsPerIP caps open connections per remote IP (0 = unlimited).
	MaxConnsPerIP int
	// MaxSubscriptions caps signal subscriptions per connection
	// (0 = unlimited).
	MaxSubscriptions int
	// PushQueue is the number of signal frames a connection may have
	// queued for writing; a listener whose queue is full is closed as a
	// slow consumer (0 = 64).
	PushQueue int
	// StatsMaxItems caps each list of a `stats` answer (locks, semaphores,
	// idle locks, idle semaphores, signal channels, clients): past it an
	// arbitrary subset is listed, the answer's totals count everything and
	// truncated is true. It bounds the size and the cost of one answer
	// (0 = 1000; negative = no lists, totals only).
	StatsMaxItems int
}
