package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

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
	// ErrUnsupported: the server answered `error` to a dflockd extension
	// request (inspect, session, bye): it does not know it, as a 1.x
	// server (or, for session, refuses to name one more). It wraps
	// ErrServer too.
	ErrUnsupported = fmt.Errorf("%w: request not supported by the server (dflockd 1.x?)", ErrServer)
	// ErrSessionGone: the server does not know the session asked for
	// ("error_session"): it expired, ended with bye, was never named, or
	// the secret is wrong (the server does not say which). Everything it
	// held has been released.
	ErrSessionGone = errors.New("client: session gone")
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
	protocol.StatusErrSession:         ErrSessionGone,
}

// replyError returns the error for a reply to cmd on key that is not the
// success the caller expected: the sentinel of its status word, or
// ErrServer for any other shape.
func replyError(cmd protocol.Command, key string, resp *protocol.Response) error {
	if err, ok := statusErrors[resp.Status]; ok {
		return &answerError{status: resp.Status, err: fmt.Errorf("client: %s %s: %w", cmd, key, err)}
	}
	return &answerError{status: resp.Status, err: fmt.Errorf("%w: unexpected reply %q to %s %s", ErrServer, resp.Status, cmd, key)}
}

// answerError is the error of a request that the server answered, with a
// status other than the success expected: the connection is in step and
// the answer is final, unlike a connError.
type answerError struct {
	status protocol.Status
	err    error
}

func (e *answerError) Error() string { return e.err.Error() }
func (e *answerError) Unwrap() error { return e.err }

// isAnswer reports whether err is (or wraps) a server's answer.
func isAnswer(err error) bool {
	_, ok := errors.AsType[*answerError](err)
	return ok
}

// answerStatus returns the status word of the answer in err, or 0.
func answerStatus(err error) protocol.Status {
	if e, ok := errors.AsType[*answerError](err); ok {
		return e.status
	}
	return 0
}

// connError is the error of a request whose connection failed under it
// (reset, EOF, a write or read error, a reply the client could not
// parse), as opposed to an answer, a cancelled context or a Close: the
// Conn is closed, and what it held may survive on the server when it named
// a session.
type connError struct{ err error }

func (e *connError) Error() string { return e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

// isConnError reports whether err is a connection failure (see
// connError).
func isConnError(err error) bool {
	_, ok := errors.AsType[*connError](err)
	return ok
}

// invalid returns an ErrInvalid error with a description.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// A DialError is the error of a Dial that could not set up the
// connection: connecting, the TLS handshake or the auth exchange failed.
// Its message names the endpoint once, followed by the cause without the
// layers that repeat it ("client: dial tcp://127.0.0.1:6390: connection
// refused"); errors.Is and errors.As see the whole chain (syscall errors,
// ErrAuth, context.DeadlineExceeded, ...).
type DialError struct {
	// Endpoint is the endpoint dialled, e.g. "tcp://127.0.0.1:6388".
	Endpoint string
	// Handshake is true when the connection was established and the TLS
	// or auth handshake failed.
	Handshake bool
	// Timeout is the dial timeout that was in force (0 = none).
	Timeout time.Duration
	// Err is the cause.
	Err error
}

// Error implements error.
func (e *DialError) Error() string {
	cause := Cause(e.Err)
	if e.Timeout > 0 && errors.Is(e.Err, context.DeadlineExceeded) {
		cause += " after " + e.Timeout.String()
	}
	return "client: dial " + e.Endpoint + ": " + cause
}

// Unwrap returns the cause.
func (e *DialError) Unwrap() error { return e.Err }

// Cause describes err without the network layers that name the address
// again: "connection refused" rather than "dial tcp 127.0.0.1:6390:
// connect: connection refused"; "timed out" for a deadline.
func Cause(err error) string {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return "timed out"
	}
	if op, ok := errors.AsType[*net.OpError](err); ok && op.Err != nil {
		err = op.Err
	}
	if sc, ok := errors.AsType[*os.SyscallError](err); ok && sc.Err != nil {
		err = sc.Err
	}
	return err.Error()
}
