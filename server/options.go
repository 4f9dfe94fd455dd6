package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/cluster"
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
	// PushQueueBytes bounds the signal bytes a connection may have
	// accepted and not yet written; a listener that would go past it is
	// closed as a slow consumer (0 = DefaultPushQueueBytes, 1 MiB).
	PushQueueBytes int
	// PushQueue optionally caps the same pending signals in frames
	// (0 = no frame cap; the byte bound applies either way).
	PushQueue int

	// Authentication failure limits. They apply to connections that can
	// fail authentication: every connection when Auth is set, and those
	// of a listener with a peer authenticator. A failure is a refused
	// token handshake (wrong token, another first request, a malformed
	// one) or a refused peer (Unix uid/gid allow list, client certificate
	// identity); a failed TLS handshake is not counted. Failures are
	// counted per source: the remote IP address (IPv6 by its /64 prefix)
	// for network transports, QUIC included, and the peer's user id on a
	// Unix socket. A source with AuthFailures failures within
	// AuthFailWindow is blocked: its new connections are closed at once,
	// without a byte read or written, for AuthBackoff, then twice as long
	// per further block, up to AuthBackoffMax. A source with no failure
	// for AuthBackoffMax after its last block ended starts again from
	// AuthBackoff. Each block is logged once, at warning level.

	// AuthFailures is how many failures within AuthFailWindow block a
	// source (0 = 5; negative = no limit).
	AuthFailures int
	// AuthFailWindow is the window failures are counted in, from the
	// source's first failure in it (0 = 10s).
	AuthFailWindow time.Duration
	// AuthBackoff is how long a source is first blocked (0 = 5s).
	AuthBackoff time.Duration
	// AuthBackoffMax caps the doubling back-off (0 = 60s).
	AuthBackoffMax time.Duration
	// AuthSources caps the sources remembered (0 = 10,000); when full,
	// the source whose last failure is oldest is forgotten.
	AuthSources int

	// Test hooks (nil = the real thing): the clock of the failure limiter
	// and of the log rate limits, and the pause before a failed
	// handshake is answered.
	now       func() time.Time
	authPause func(ctx context.Context)
	// StatsMaxItems caps each list of a `stats` answer (locks, semaphores,
	// idle locks, idle semaphores, signal channels, clients): past it an
	// arbitrary subset is listed, the answer's totals count everything and
	// truncated is true. It bounds the size and the cost of one answer
	// (0 = 1000; negative = no lists, totals only).
	StatsMaxItems int
	// SessionTTL is how long a named session whose connection was lost
	// is kept for a resume when its `session` request names no TTL
	// (0 = DefaultSessionTTL, 15s). SessionTTLMax caps the TTL a request
	// may ask for (0 = DefaultSessionTTLMax, 300s).
	SessionTTL    time.Duration
	SessionTTLMax time.Duration
	// Replica, when set, is the replicated mode: lock, semaphore and
	// session requests go through the cluster's leader (replicated.go);
	// Engine still serves pub/sub and the local views.
	Replica *cluster.Replica
}
