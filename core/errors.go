package core

import "errors"

// Sentinel errors returned by the Engine. Compare with errors.Is.
var (
	// ErrTimeout: no slot became free within the timeout (or timeout 0
	// found none).
	ErrTimeout = errors.New("core: timed out")
	// ErrCanceled: the caller's context ended while it waited. Any grant
	// that raced with the cancellation has been passed on.
	ErrCanceled = errors.New("core: wait canceled")
	// ErrNotHolder: the token does not name a current holder of the key.
	ErrNotHolder = errors.New("core: not a holder")
	// ErrLeaseExpired: the lease ran out before the caller observed it.
	ErrLeaseExpired = errors.New("core: lease expired")
	// ErrMaxKeys: creating the key would exceed Options.MaxKeys.
	ErrMaxKeys = errors.New("core: too many keys")
	// ErrMaxWaiters: the key's queue already holds Options.MaxWaiters.
	ErrMaxWaiters = errors.New("core: too many waiters")
	// ErrLimitMismatch: the key exists with a different limit.
	ErrLimitMismatch = errors.New("core: limit mismatch")
	// ErrNotEnqueued: Wait without a live enqueue record for the key.
	ErrNotEnqueued = errors.New("core: not enqueued")
	// ErrAlreadyEnqueued: Enqueue while a record for the key exists.
	ErrAlreadyEnqueued = errors.New("core: already enqueued")
)
