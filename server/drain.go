package server

import (
	"errors"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/protocol"
)

// Draining (Shutdown): how connections that hold nothing are told apart
// from those the drain must wait for, and closed at once.
//
// Shutdown "pokes" every session: it moves the connection's read deadline
// to the past. Only the session's own goroutine decides what a poke
// means, so a close never races a request:
//
//   - Waiting for a request, with no byte of it received: if the
//     connection holds nothing (no lease, no queued or granted enqueue
//     record; subscriptions do not count), a short probe read catches a
//     request already in the socket buffer (it is answered
//     error_draining); otherwise the session ends at once, nothing
//     written. A connection that holds something keeps reading under its
//     real read deadline.
//   - In the middle of a request: reading goes on; the request is
//     answered error_draining when complete.
//   - Blocked in l, sl, w or sw: the poke is ignored; the drain's
//     cancellation ends the wait, answered error_draining.
//
// Shutdown pokes again every drainPokeEvery, so a connection whose leases
// ran out (or one whose poke was overwritten by its own deadline update)
// is closed soon after.

// drainProbe is how long an idle session, poked, waits for a request that
// may already be on its way before it closes.
const drainProbe = 10 * time.Millisecond

// Defaults of Server.drainPoke and Server.drainReport.
const (
	drainPokeEvery   = 500 * time.Millisecond
	drainReportEvery = 5 * time.Second
	// drainFirstReport is when Shutdown first logs what it still waits
	// for: once the idle connections have had time to close.
	drainFirstReport = 100 * time.Millisecond
)

// errDrained ends a session closed by a drain poke.
var errDrained = errors.New("server: idle connection closed by shutdown")

// readAfterDeadline handles a read deadline that fired while the session
// waited for input (err is the read's error); see the note above. It runs
// on the session's goroutine, inside the decoder's read.
func (sess *session) readAfterDeadline(p []byte, err error) (int, error) {
	s := sess.srv
	for {
		if !s.draining.Load() || !time.Now().Before(sess.rdUntil) {
			return 0, err // the read timeout itself
		}
		probe := sess.rd.atStart && !s.opts.Engine.Busy(sess.owner)
		if probe {
			_ = sess.conn.SetReadDeadline(time.Now().Add(drainProbe))
		} else {
			_ = sess.conn.SetReadDeadline(sess.rdUntil)
		}
		n, rerr := sess.conn.Read(p)
		if n > 0 {
			sess.rd.atStart = false
			if probe {
				_ = sess.conn.SetReadDeadline(sess.rdUntil)
			}
			return n, nil
		}
		if !isTimeout(rerr) {
			return 0, rerr
		}
		if probe {
			return 0, errDrained
		}
		err = rerr // poked again, or the read timeout: look again
	}
}

// cancelledByDrain reports whether a blocked request ended because the
// server began to drain.
func (sess *session) cancelledByDrain(err error) bool {
	return errors.Is(err, core.ErrCanceled) && sess.srv.shuttingDown()
}

// refuseDraining answers error_draining and ends the session.
func (sess *session) refuseDraining() CloseReason {
	sess.reply(protocol.StatusErrDraining)
	sess.flush()
	return CloseDraining
}

// poke makes every session look at itself (see the note above).
func (s *Server) poke() {
	s.mu.Lock()
	for sess := range s.sessions {
		_ = sess.conn.SetReadDeadline(aLongTimeAgo)
	}
	s.mu.Unlock()
}

// Remaining reports what a drain still waits for: open connections, and
// the leases held on the engine (by any connection, or left by closed
// ones with auto-release off).
func (s *Server) Remaining() (conns, leases int) {
	return s.Connections(), s.opts.Engine.Leases()
}
