package protocol

import (
	"bytes"
	"fmt"
	"strconv"
	"time"
)

// Server-side encoders. Each appends one complete LF-terminated line to dst
// and returns the extended slice; none allocates beyond growing dst. An
// undefined Status is written as "error".

// AppendStatus appends a bare status line, e.g. "timeout\n".
func AppendStatus(dst []byte, s Status) []byte {
	return append(dst, statusLines[s.wire()]...)
}

// AppendGrant appends "<status> <token> <secs>\n", the answer to a granted
// l, sl, w, sw (s = StatusOK) or e, se (s = StatusAcquired). secs is ttl in
// whole seconds, rounded up.
func AppendGrant(dst []byte, s Status, token string, ttl time.Duration) []byte {
	dst = append(dst, statusPrefixes[s.wire()]...)
	dst = append(dst, token...)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, ceilSeconds(ttl), 10)
	return append(dst, '\n')
}

// AppendOKInt appends "ok <n>\n", the answer to n, sn (the new lease in
// seconds) and signal (the receiver count).
func AppendOKInt(dst []byte, n int64) []byte {
	dst = append(dst, statusPrefixes[StatusOK]...)
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, '\n')
}

// AppendOKBody appends "ok <body>\n", the answer to stats (compact JSON).
// body must not contain LF.
func AppendOKBody(dst []byte, body []byte) []byte {
	dst = append(dst, statusPrefixes[StatusOK]...)
	dst = append(dst, body...)
	return append(dst, '\n')
}

// AppendSignal appends the push frame "sig <channel> <payload>\n".
func AppendSignal(dst []byte, channel, payload []byte) []byte {
	dst = append(dst, statusPrefixes[StatusSignal]...)
	dst = append(dst, channel...)
	dst = append(dst, ' ')
	dst = append(dst, payload...)
	return append(dst, '\n')
}

// ceilSeconds returns d in whole seconds, rounding any fraction up.
func ceilSeconds(d time.Duration) int64 {
	s := d / time.Second
	if d%time.Second > 0 {
		s++
	}
	return int64(s)
}

// Response is one parsed response line or push frame. Which fields are set
// depends on the shape of the line; the others are zero. Nothing in it
// aliases the parsed line.
type Response struct {
	Status  Status
	Token   string        // "ok|acquired <token> <secs>"
	TTL     time.Duration // "ok|acquired <token> <secs>": the lease
	N       int64         // "ok <n>": renew TTL in seconds, signal receiver count
	HasN    bool          // N was present
	Body    []byte        // "ok <body>" that is neither of the above (stats JSON); a copy
	Channel string        // StatusSignal: the channel
	Payload []byte        // StatusSignal: the payload verbatim (leading spaces kept); a copy
}

// ParseResponse parses one response line or push frame, without its LF (as
// returned by Decoder.ReadLine), into resp, which is reset first.
//
// Accepted shapes: any bare status word; "ok <n>"; "ok <token> <secs>" and
// "acquired <token> <secs>"; "ok <body>" for anything else after "ok "
// (stats); and "sig <channel> <payload>", split at the first space after
// "sig " — the payload is everything after the next single space, verbatim.
// Anything else, including trailing text after a bare-only word such as
// "timeout", returns an error wrapping ErrBadResponse and leaves resp zero.
func ParseResponse(line []byte, resp *Response) error {
	*resp = Response{}
	word, rest, hasRest := bytes.Cut(line, []byte{' '})
	s := ParseStatus(word)
	if s == 0 {
		return badResponse(line)
	}
	if !hasRest {
		if s == StatusAcquired || s == StatusSignal {
			return badResponse(line) // these always carry arguments
		}
		resp.Status = s
		return nil
	}
	resp.Status = s
	switch s {
	case StatusOK:
		if len(rest) > 0 && rest[0] != '{' && rest[0] != '[' {
			if n, ok := parseInt(rest); ok {
				resp.N, resp.HasN = n, true
				return nil
			}
			if parseGrant(rest, resp) {
				return nil
			}
		}
		resp.Body = append([]byte{}, rest...) // non-nil even for "ok "
		return nil
	case StatusAcquired:
		if parseGrant(rest, resp) {
			return nil
		}
	case StatusSignal:
		ch, payload, ok := bytes.Cut(rest, []byte{' '})
		if ok && len(ch) > 0 {
			resp.Channel = string(ch)
			resp.Payload = append([]byte{}, payload...)
			return nil
		}
	}
	*resp = Response{}
	return badResponse(line)
}

// parseGrant parses "<token> <secs>" into resp. The token must be non-empty
// and space-free, secs a whole number of seconds in [0, MaxSeconds].
func parseGrant(b []byte, resp *Response) bool {
	tok, secs, ok := bytes.Cut(b, []byte{' '})
	if !ok || len(tok) == 0 {
		return false
	}
	v, ok := parseInt(secs)
	if !ok || v < 0 || v > MaxSeconds {
		return false
	}
	resp.Token = string(tok)
	resp.TTL = time.Duration(v) * time.Second
	return true
}

// badResponse wraps ErrBadResponse with (a prefix of) the offending line.
func badResponse(line []byte) error {
	const show = 64
	if len(line) > show {
		return fmt.Errorf("%w: %q...", ErrBadResponse, line[:show])
	}
	return fmt.Errorf("%w: %q", ErrBadResponse, line)
}
