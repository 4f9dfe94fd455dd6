package core

import (
	"errors"
	"fmt"
)

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

// MaxKeysError is the ErrMaxKeys returned for the first refused key
// creation in RefusalReportInterval (the later ones are plain ErrMaxKeys).
// The engine does no I/O: the caller should report it, for example as a
// warning in its log.
type MaxKeysError struct {
	// Max is Options.MaxKeys.
	Max int
	// Refused counts the refusals since the previous report, this one
	// included.
	Refused uint64
}

// Error describes the refusal.
func (e *MaxKeysError) Error() string {
	return fmt.Sprintf("%v: all %d keys are in use (%d refused since the last report)", ErrMaxKeys, e.Max, e.Refused)
}

// Unwrap returns ErrMaxKeys, so errors.Is(err, ErrMaxKeys) holds.
func (e *MaxKeysError) Unwrap() error { return ErrMaxKeys }
