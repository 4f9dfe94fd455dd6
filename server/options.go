package server

import (
	"log/slog"
	"time"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/core"
)

// DefaultReadTimeout is used when Options.ReadTimeout is zero.
const DefaultReadTimeout = 23 * time.Second

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
	// PushQueueBytes bounds the signal bytes a connection may have
	// accepted and not yet written; a listener that would go past it is
	// closed as a slow consumer (0 = DefaultPushQueueBytes, 1 MiB).
	PushQueueBytes int
	// PushQueue optionally caps the same pending signals in frames
	// (0 = no frame cap; the byte bound applies either way).
	PushQueue int
}
