package protocol

import "errors"

// Error is a protocol error (§6.1). Code is the internal error code of the
// 1.x reference server; it never appears on the wire, where every Error is
// answered with the single status word "error". Compare with errors.Is
// against the sentinels below.
type Error struct {
	Code int    // internal code, 3..14
	Msg  string // human-readable text, "protocol: ..."
}

// Error returns e.Msg.
func (e *Error) Error() string { return e.Msg }

// Fatal reports whether the connection must be closed after the "error"
// answer has been written: true for a read timeout (10) and for an oversized
// line (12). All other protocol errors leave the connection usable.
func (e *Error) Fatal() bool { return e.Code == 10 || e.Code == 12 }

// Parse errors returned by Decoder.ReadRequest. After any of them except
// ErrLineTooLong all three lines of the request have been consumed and the
// connection stays usable.
var (
	// ErrUnknownCommand reports a first line that is not a verb (code 3).
	ErrUnknownCommand = &Error{Code: 3, Msg: "protocol: unknown command"}
	// ErrNotInteger reports a numeric field that is not a base-10 int64
	// (code 4).
	ErrNotInteger = &Error{Code: 4, Msg: "protocol: not an integer"}
	// ErrBadKey reports a key, pattern or channel that is empty or contains
	// space, TAB, CR or LF, or a signal channel with '*' or '>' (code 5).
	ErrBadKey = &Error{Code: 5, Msg: "protocol: bad key"}
	// ErrBadTimeout reports a timeout below 0 or above MaxSeconds (code 6).
	ErrBadTimeout = &Error{Code: 6, Msg: "protocol: bad timeout"}
	// ErrEmptyToken reports r or sr without a token (code 7).
	ErrEmptyToken = &Error{Code: 7, Msg: "protocol: empty token"}
	// ErrArgCount reports a wrong number of fields, a missing w/sw timeout,
	// or an empty, blank or oversized signal payload (code 8).
	ErrArgCount = &Error{Code: 8, Msg: "protocol: wrong argument count"}
	// ErrBadLease reports a lease below 1 or above MaxSeconds (code 9).
	ErrBadLease = &Error{Code: 9, Msg: "protocol: bad lease"}
	// ErrLineTooLong reports a line over its cap (code 12). It is fatal:
	// the decoder drained that line, but the rest of the request was not
	// read, so the stream is out of step.
	ErrLineTooLong = &Error{Code: 12, Msg: "protocol: line too long"}
	// ErrBadLimit reports a semaphore limit below 1 (code 13).
	ErrBadLimit = &Error{Code: 13, Msg: "protocol: bad limit"}
	// ErrBadName reports a connection name (the name extension) that is
	// empty, longer than MaxName bytes, or not printable ASCII (code 14,
	// a dflockd addition).
	ErrBadName = &Error{Code: 14, Msg: "protocol: bad name"}
)

// ErrBadResponse is wrapped by ParseResponse errors: the line is not a
// response or push frame of this protocol.
var ErrBadResponse = errors.New("protocol: bad response")
