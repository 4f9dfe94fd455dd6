package client

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/dflockd/dflockd/protocol"
)

// Session is a named session of a connection (the dflockd sessions
// extension, see Conn.Session): what the connection holds and waits for
// survives the connection's end for TTL, and a new connection can take it
// over with Conn.Resume.
//
// Secret is a bearer credential: whoever has ID and Secret can take the
// session over. String leaves it out, so that logging a Session does not
// leak it.
type Session struct {
	// ID names the session: lowercase hex.
	ID string
	// Secret authorises Resume: lowercase hex, at least 128 bits.
	Secret string
	// TTL is how long the server keeps the session after its connection
	// ends without "bye", in whole seconds.
	TTL time.Duration
}

// String describes s without its secret.
func (s Session) String() string {
	return fmt.Sprintf("session %s (ttl %s)", s.ID, s.TTL)
}

// Limits on the session reply that Conn.Session accepts.
const (
	maxSessionID     = 64  // hex chars
	minSessionSecret = 32  // hex chars: 128 bits
	maxSessionSecret = 128 // hex chars
)

// Session names this connection's session ("session"), so that what the
// connection holds and waits for stays on the server for the session's
// TTL when the connection drops, and a new connection can take it over
// with Resume. ttl asks for that TTL, rounded up to whole seconds (0 = the
// server's default, 15s unless configured; the server caps it at its
// maximum, 300s unless configured: the answer says what was set).
// Calling it again on the same connection returns the same ID and Secret
// and sets the TTL.
//
// A server without the extension (dflockd 1.x) answers `error`: Session
// then returns an error wrapping ErrUnsupported and the Conn stays usable,
// unnamed.
//
// Once a session is named, closing the Conn no longer releases what it
// holds: the session stays, detached, until its TTL ends. Call Bye to end
// it at once.
func (c *Conn) Session(ctx context.Context, ttl time.Duration) (Session, error) {
	arg := ""
	if ttl != 0 {
		s, err := seconds("session ttl", ttl)
		if err != nil {
			return Session{}, err
		}
		arg = s
	}
	resp, err := c.roundTrip(ctx, protocol.CmdSession, "_", arg, wantOK)
	if err != nil {
		return Session{}, unsupported(c, err)
	}
	s, ok := parseSession(&resp)
	if !ok {
		return Session{}, fmt.Errorf("%w: unexpected reply to session: %s", ErrServer, describeOK(&resp))
	}
	if ttl > 0 && s.TTL > ttl.Round(time.Second)+time.Second {
		// The server only lowers a TTL (to its maximum), never raises it.
		return Session{}, fmt.Errorf("%w: session ttl %s answered for %s asked", ErrServer, s.TTL, ttl)
	}
	return s, nil
}

// Resume takes over the session sid with its secret ("resume"): this
// connection now owns everything the session holds and waits for. held
// counts the slots held — including places granted while no connection
// was attached, which still need Wait or SemWait to collect their token —
// and queued the places still waiting. If the session's previous
// connection is still open, the server closes it first.
//
// An unknown, expired or wrongly-secreted session yields an error
// wrapping ErrSessionGone (the server does not say which). A connection
// that already holds, waits on or has enqueued anything, or has already
// named a session, cannot resume: the server answers `error` (ErrServer),
// as does a server without the extension.
func (c *Conn) Resume(ctx context.Context, sid, secret string) (held, queued int, err error) {
	if !validSessionWord(sid, 1, maxSessionID) {
		return 0, 0, invalid("session id %q: want 1 to %d lowercase hex digits", sid, maxSessionID)
	}
	if !validSessionWord(secret, minSessionSecret, maxSessionSecret) {
		return 0, 0, invalid("session secret: want %d to %d lowercase hex digits", minSessionSecret, maxSessionSecret)
	}
	resp, err := c.roundTrip(ctx, protocol.CmdResume, sid, secret, wantOK)
	if err != nil {
		return 0, 0, err
	}
	held, queued, ok := parseResumed(&resp)
	if !ok {
		return 0, 0, fmt.Errorf("%w: unexpected reply to resume: %s", ErrServer, describeOK(&resp))
	}
	return held, queued, nil
}

// Bye ends the connection's session ("bye"): the server releases
// everything the session holds and drops its queue places, exactly as
// closing an unnamed connection does, and closes the connection. Bye then
// closes the Conn; later calls fail with ErrClosed. On a connection
// without a named session it releases what the connection holds all the
// same.
//
// A server without the extension answers `error`: Bye then returns an
// error wrapping ErrUnsupported and the Conn stays open (Close it: for
// such a server that releases everything).
func (c *Conn) Bye(ctx context.Context) error {
	_, err := c.roundTrip(ctx, protocol.CmdBye, "_", "", wantBare)
	if err != nil {
		return unsupported(c, err)
	}
	_ = c.Close() // the server closes its end: the error says nothing
	return nil
}

// unsupported turns a plain `error` answer to an extension request, on a
// Conn that is still open, into ErrUnsupported.
func unsupported(c *Conn, err error) error {
	if errors.Is(err, ErrServer) && !c.closed.Load() && isAnswer(err) && answerStatus(err) == protocol.StatusError {
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	return err
}

// parseSession parses "ok <sid> <secret> <ttl_s>".
func parseSession(resp *protocol.Response) (Session, bool) {
	if resp.Body == nil {
		return Session{}, false
	}
	f := strings.Split(string(resp.Body), " ")
	if len(f) != 3 || !validSessionWord(f[0], 1, maxSessionID) ||
		!validSessionWord(f[1], minSessionSecret, maxSessionSecret) {
		return Session{}, false
	}
	ttl, ok := parseCount(f[2])
	if !ok || ttl < 1 || ttl > protocol.MaxSeconds {
		return Session{}, false
	}
	return Session{ID: f[0], Secret: f[1], TTL: time.Duration(ttl) * time.Second}, true
}

// parseResumed parses "ok <held> <queued>". The protocol package reads
// two numbers as a grant ("ok <token> <secs>"), so that is where they are
// found; counts above 2³¹ are not believed.
func parseResumed(resp *protocol.Response) (held, queued int, ok bool) {
	if resp.Token == "" {
		return 0, 0, false
	}
	h, ok1 := parseCount(resp.Token)
	q := int64(resp.TTL / time.Second)
	if !ok1 || h > math.MaxInt32 || q > math.MaxInt32 {
		return 0, 0, false
	}
	return int(h), int(q), true
}

// parseCount parses a non-negative decimal number without sign or
// leading zeros.
func parseCount(s string) (int64, bool) {
	if s == "" || len(s) > 19 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// validSessionWord reports whether s is lowercase hex of min to max
// characters.
func validSessionWord(s string, minLen, maxLen int) bool {
	if len(s) < minLen || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// describeOK renders a success answer that had the wrong shape, for
// errors.
func describeOK(resp *protocol.Response) string {
	switch {
	case resp.HasN:
		return fmt.Sprintf("%q", "ok "+strconv.FormatInt(resp.N, 10))
	case resp.Token != "":
		return fmt.Sprintf("%q", "ok "+resp.Token+" "+strconv.FormatInt(int64(resp.TTL/time.Second), 10))
	case resp.Body != nil:
		b := resp.Body
		if len(b) > 64 {
			b = b[:64]
		}
		return fmt.Sprintf("%q", "ok "+string(b))
	}
	return `"ok"`
}
