package protocol

import "strconv"

// Status is the first word of a response line, or of a server push frame.
// The zero value is not a status.
type Status uint8

// The status words of dflockd 1.x (§6.2). The comment after each constant is
// its wire spelling.
const (
	StatusOK                 Status = iota + 1 // "ok"
	StatusAcquired                             // "acquired"
	StatusQueued                               // "queued"
	StatusTimeout                              // "timeout"
	StatusError                                // "error"
	StatusErrAuth                              // "error_auth"
	StatusErrMaxLocks                          // "error_max_locks"
	StatusErrMaxWaiters                        // "error_max_waiters"
	StatusErrLimitMismatch                     // "error_limit_mismatch"
	StatusErrNotEnqueued                       // "error_not_enqueued"
	StatusErrAlreadyEnqueued                   // "error_already_enqueued"
	StatusErrLeaseExpired                      // "error_lease_expired"
	StatusErrDraining                          // "error_draining"
	StatusSignal                               // "sig" (server push frame)
	StatusErrSession                           // "error_session" (the session extension)
)

// numStatuses bounds the Status values: 1..numStatuses-1 are defined.
const numStatuses = int(StatusErrSession) + 1

var statusWords = [numStatuses]string{
	StatusOK:                 "ok",
	StatusAcquired:           "acquired",
	StatusQueued:             "queued",
	StatusTimeout:            "timeout",
	StatusError:              "error",
	StatusErrAuth:            "error_auth",
	StatusErrMaxLocks:        "error_max_locks",
	StatusErrMaxWaiters:      "error_max_waiters",
	StatusErrLimitMismatch:   "error_limit_mismatch",
	StatusErrNotEnqueued:     "error_not_enqueued",
	StatusErrAlreadyEnqueued: "error_already_enqueued",
	StatusErrLeaseExpired:    "error_lease_expired",
	StatusErrDraining:        "error_draining",
	StatusSignal:             "sig",
	StatusErrSession:         "error_session",
}

// statusLines holds "word\n" for every status and statusPrefixes "word ",
// built once so that the encoders only copy bytes.
var (
	statusLines    = withSuffix("\n")
	statusPrefixes = withSuffix(" ")
)

func withSuffix(suffix string) (t [numStatuses]string) {
	for s := StatusOK; int(s) < numStatuses; s++ {
		t[s] = statusWords[s] + suffix
	}
	return t
}

// String returns the wire word of s ("ok", "error_max_locks", "sig", ...),
// or "Status(N)" when s is not a defined status.
func (s Status) String() string {
	if s.valid() {
		return statusWords[s]
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

func (s Status) valid() bool { return s != 0 && int(s) < numStatuses }

// wire returns s when it is a defined status and StatusError otherwise: the
// encoders never put an undefined word on the wire.
func (s Status) wire() Status {
	if s.valid() {
		return s
	}
	return StatusError
}

// ParseStatus returns the Status whose wire word is exactly b, or 0 when b
// is not a status word. It does not allocate.
func ParseStatus(b []byte) Status {
	switch string(b) {
	case "ok":
		return StatusOK
	case "acquired":
		return StatusAcquired
	case "queued":
		return StatusQueued
	case "timeout":
		return StatusTimeout
	case "error":
		return StatusError
	case "error_auth":
		return StatusErrAuth
	case "error_max_locks":
		return StatusErrMaxLocks
	case "error_max_waiters":
		return StatusErrMaxWaiters
	case "error_limit_mismatch":
		return StatusErrLimitMismatch
	case "error_not_enqueued":
		return StatusErrNotEnqueued
	case "error_already_enqueued":
		return StatusErrAlreadyEnqueued
	case "error_lease_expired":
		return StatusErrLeaseExpired
	case "error_draining":
		return StatusErrDraining
	case "sig":
		return StatusSignal
	case "error_session":
		return StatusErrSession
	}
	return 0
}
