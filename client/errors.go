package client

import (
	"errors"
	"fmt"

	"github.com/dflockd/dflockd/protocol"
)

// Errors for the status words of the protocol (§6.2). Compare with
// errors.Is: the errors returned by this package wrap them with context.
var (
	// ErrTimeout: the acquire or wait timed out ("timeout").
	ErrTimeout = errors.New("client: timeout")
	// ErrMaxLocks: the server holds as many keys as it may
	// ("error_max_locks").
	ErrMaxLocks = errors.New("client: server key limit reached")
	// ErrMaxWaiters: the key's wait queue is full ("error_max_waiters").
	ErrMaxWaiters = errors.New("client: wait queue full")
	// ErrLimitMismatch: the semaphore exists with another limit
	// ("error_limit_mismatch").
	ErrLimitMismatch = errors.New("client: semaphore limit mismatch")
	// ErrNotQueued: a wait without a pending enqueue on this connection
	// ("error_not_enqueued").
	ErrNotQueued = errors.New("client: not enqueued")
	// ErrAlreadyQueued: a second enqueue of the same key on one connection
	// ("error_already_enqueued").
	ErrAlreadyQueued = errors.New("client: already enqueued")
	// ErrLeaseExpired: the slot was granted but its lease ran out before
	// it was observed ("error_lease_expired").
	ErrLeaseExpired = errors.New("client: lease expired")
	// ErrAuth: the server refused the auth token ("error_auth"); the
	// server closes the connection.
	ErrAuth = errors.New("client: authentication failed")
	// ErrDraining: the server is shutting down ("error_draining"); the
	// server closes the connection.
	ErrDraining = errors.New("client: server draining")
	// ErrServer: the server answered the plain "error" (wrong or expired
	// token, bad argument, ...) or something this client did not expect.
	ErrServer = errors.New("client: server error")
)

// Errors raised by the client itself.
var (
	// ErrInvalid: an argument was rejected locally, before anything was
	// sent (bad key, token, payload, duration, lease or limit).
	ErrInvalid = errors.New("client: invalid argument")
	// ErrClosed: the connection was closed, by Close, by a cancelled
	// context or by a failure, and cannot be used any more.
	ErrClosed = errors.New("client: connection closed")
)

// statusErrors maps the failure statuses to their sentinels.
var statusErrors = map[protocol.Status]error{
	protocol.StatusTimeout:            ErrTimeout,
	protocol.StatusError:              ErrServer,
	protocol.StatusErrAuth:            ErrAuth,
	protocol.StatusErrMaxLocks:        ErrMaxLocks,
	protocol.StatusErrMaxWaiters:      ErrMaxWaiters,
	protocol.StatusErrLimitMismatch:   ErrLimitMismatch,
	protocol.StatusErrNotEnqueued:     ErrNotQueued,
	protocol.StatusErrAlreadyEnqueued: ErrAlreadyQueued,
	protocol.StatusErrLeaseExpired:    ErrLeaseExpired,
	protocol.StatusErrDraining:        ErrDraining,
}

// replyError returns the error for a reply to cmd on key that is not the
// success the caller expected: the sentinel of its status word, or
// ErrServer for any other shape.
func replyError(cmd protocol.Command, key string, resp *protocol.Response) error {
	if err, ok := statusErrors[resp.Status]; ok {
		return fmt.Errorf("client: %s %s: %w", cmd, key, err)
	}
	return fmt.Errorf("%w: unexpected reply %q to %s %s", ErrServer, resp.Status, cmd, key)
}

// invalid returns an ErrInvalid error with a description.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
