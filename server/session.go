package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/cluster"
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/protocol"
	"github.com/dflockd/dflockd/transport"
)

// authFailPause is how long a connection that failed the handshake waits
// before it is answered `error_auth` and closed (§7.1), so that each guess
// costs the guesser this long.
const authFailPause = 100 * time.Millisecond

// flushAt is the size of pending output past which a session writes even
// though more pipelined requests are already buffered. Below it the
// answers to pipelined requests share one write; past it, a connection
// that pipelines without reading holds at most flushAt plus one answer of
// unsent output in the server (a stats answer is the largest, see
// Options.StatsMaxItems), and the server's write blocks on the socket
// instead of building more.
const flushAt = 64 << 10

// maxPipelined is how many bytes a client may send while one of its
// requests is blocked before the connection is dropped as abusive (the
// size of the read buffer).
const maxPipelined = 4096

// CloseReason says why a session ended. It is logged.
type CloseReason uint8

// Reasons a session ends.
const (
	CloseEOF CloseReason = iota
	CloseReadError
	CloseReadTimeout
	CloseProtocolError
	CloseAuthFailed
	CloseWriteError
	CloseDraining
	CloseAbusivePipeline
	CloseServerClosed
	CloseSlowConsumer
	CloseHandshakeFailed
	CloseBye
	CloseLeaderGone
	CloseRelayed
)

var closeReasons = [...]string{
	CloseEOF:             "eof",
	CloseReadError:       "read_error",
	CloseReadTimeout:     "read_timeout",
	CloseProtocolError:   "protocol_error",
	CloseAuthFailed:      "auth_failed",
	CloseWriteError:      "write_error",
	CloseDraining:        "draining",
	CloseAbusivePipeline: "pipeline_overflow",
	CloseServerClosed:    "server_closed",
	CloseSlowConsumer:    "slow_consumer",
	CloseHandshakeFailed: "handshake_failed",
	CloseBye:             "bye",
	CloseLeaderGone:      "not_leader",
	CloseRelayed:         "relayed",
}

// String returns the reason's log name.
func (r CloseReason) String() string {
	if int(r) < len(closeReasons) {
		return closeReasons[r]
	}
	return "unknown"
}

// session is one connection: a single goroutine reads a request, runs it
// and appends the answer to out, and flushes out when no further request
// is already buffered, so pipelined requests share one write, or when out
// has grown past flushAt.
type session struct {
	srv  *Server
	conn net.Conn
	id   uint64
	ip   string
	// owner is the engine's owner of what the connection holds and waits
	// for: its own, or after a resume the named session's. Only the
	// session goroutine uses it; a resume replaces it under Server.mu.
	owner *core.Owner
	// ns is the connection's named session, nil when unnamed
	// (sessions.go). Only the session goroutine touches it.
	ns *core.Session
	// rc is the connection's handle on the replicated state, nil in
	// single-node mode (replicated.go).
	rc *cluster.Conn
	// keepOnDrop spares the connection from DropConnections (it asked
	// for the leadership transfer that causes the drop).
	keepOnDrop atomic.Bool
	// relayedIn: another node relayed this connection to this one.
	relayedIn bool
	// cred is the token the connection authenticated with, passed on
	// if it is relayed to the leader.
	cred string
	rd   connReader
	dec  *protocol.Decoder
	req  protocol.Request

	// Set before the session starts and never changed: read by stats.
	transport string
	remote    string
	peerAuth  auth.PeerAuthenticator
	pi        peerInfo // Unix credentials, failure limiter source

	peer   auth.Peer // filled in by open
	authed bool
	// tag holds the authenticated identity and the connection's name,
	// which stats and inspect read from other goroutines (inspect.go).
	tag *connTag

	// Pub/sub: created on the first listen.
	push *pusher
	subs map[subKey]struct{}

	wmu sync.Mutex // guards out, wdUntil and writes to conn
	out []byte
	// flushDue is set when an answer the session goroutine appended left
	// out longer than flushAt. Only the session goroutine reads or writes
	// it (the pusher's appends are flushed at once), so loop tests it
	// without wmu.
	flushDue bool
	// wdUntil is the write deadline armed on conn (zero = none known).
	wdUntil time.Time
	// werr is the error of the last failed write.
	werr error

	// rdUntil is the read deadline armed by the line hook (zero = none
	// known); only the session goroutine touches it.
	rdUntil time.Time

	m sessMetrics // metrics.go
}

func newSession(s *Server, c net.Conn, id uint64, ip, transportName string, peerAuth auth.PeerAuthenticator, pi peerInfo) *session {
	sess := &session{srv: s, conn: c, id: id, ip: ip, transport: transportName, peerAuth: peerAuth, pi: pi}
	sess.remote = remoteName(c, pi.cred)
	sess.tag = newConnTag(sess.remote)
	sess.owner = core.NewOwnerWithTag(id, sess.tag) // inspect shows the remote, identity and name
	sess.rd = connReader{conn: c, early: sess.readAfterDeadline}
	sess.dec = protocol.NewDecoder(&sess.rd)
	timeout := s.opts.ReadTimeout
	sess.dec.SetLineHook(func() {
		// Every line gets at least the full timeout (§1). The hook runs
		// only when the line is not already buffered, and re-arms only
		// when the armed deadline is less than a timeout away, so that a
		// busy connection pays for the deadline (a timer update, about
		// half a microsecond) once per timeout/8, not once per request.
		sess.m.fresh = true // metrics: the request waited for input
		now := time.Now()
		if sess.rdUntil.Sub(now) >= timeout {
			return
		}
		sess.rdUntil = now.Add(timeout + timeout/8)
		_ = c.SetReadDeadline(sess.rdUntil)
		if s.draining.Load() {
			// This may have overwritten a drain poke: poke again.
			_ = c.SetReadDeadline(aLongTimeAgo)
		}
	})
	sess.authed = s.opts.Auth == nil
	if rep := s.opts.Replica; rep != nil {
		sess.rc = rep.Connect("", func() { c.Close() })
	}
	sess.out = make([]byte, 0, 512)
	return sess
}

// identity returns the authenticated identity, "" if none.
func (sess *session) identity() string {
	if p := sess.tag.ident.Load(); p != nil {
		return *p
	}
	return ""
}

func (sess *session) setIdentity(name string) {
	sess.tag.ident.Store(&name)
	if sess.rc != nil {
		sess.rc.SetIdentity(name)
	}
}

// serve runs the session to its end and cleans up after it.
func (sess *session) serve() {
	s := sess.srv
	reason, ok := sess.open()
	if ok {
		reason = sess.loop()
		if reason == CloseWriteError && sess.push != nil {
			// A listener whose answer could not be written in time
			// stopped reading: a slow consumer too.
			sess.wmu.Lock()
			werr := sess.werr
			sess.wmu.Unlock()
			sess.push.stalled(werr)
		}
		if sess.push != nil && sess.push.evicted.Load() {
			reason = CloseSlowConsumer
		}
	}
	sess.dropSubscriptions()
	detach := sess.endOwner(reason) // sessions.go
	sess.conn.Close()
	sess.m.reason = reason
	s.forget(sess, detach)
	s.log.Debug("connection closed", "conn", sess.id, "transport", sess.transport, "remote", sess.remote,
		"reason", reason.String(), "identity", sess.identity(), "name", sess.connName())
}

// handshaker is implemented by connections with a handshake of their own
// (*tls.Conn).
type handshaker interface {
	HandshakeContext(ctx context.Context) error
}

// open completes the connection before any request is read: the TLS
// handshake (bounded by the read timeout), then the listener's peer
// authentication. ok false means the session ends with reason, without a
// byte written by the server.
func (sess *session) open() (reason CloseReason, ok bool) {
	s := sess.srv
	if hs, isHS := sess.conn.(handshaker); isHS {
		ctx, cancel := context.WithTimeout(s.base, s.opts.ReadTimeout)
		err := hs.HandshakeContext(ctx)
		cancel()
		if err != nil {
			s.logRefused("tls handshake failed", "conn", sess.id, "transport", sess.transport, "remote", sess.remote, "err", err)
			return CloseHandshakeFailed, false
		}
	}
	sess.peer = auth.Peer{Transport: sess.transport, RemoteAddr: sess.conn.RemoteAddr()}
	if tc, isTLS := sess.conn.(transport.TLSConner); isTLS {
		st := tc.ConnectionState()
		sess.peer.TLS = &st
	}
	sess.peer.Cred = sess.pi.cred
	if sess.pi.credErr != nil {
		s.log.Debug("peer credentials unavailable", "conn", sess.id, "transport", sess.transport, "err", sess.pi.credErr)
	}
	if sess.peerAuth != nil {
		id, err := sess.peerAuth.AuthenticatePeer(s.base, sess.peer)
		if err != nil {
			sess.authFailed(err) // closed without a byte written either way
			return CloseAuthFailed, false
		}
		sess.setIdentity(id.Name)
	}
	s.log.Debug("connection opened", "conn", sess.id, "transport", sess.transport, "remote", sess.remote, "identity", sess.identity())
	return 0, true
}

func (sess *session) loop() CloseReason {
	s := sess.srv
	for {
		sess.rd.atStart = sess.pendingInput() == 0
		err := sess.dec.ReadRequest(&sess.req)
		if err != nil {
			if reason, done := sess.readFailed(err); done {
				return reason
			}
		} else if !sess.authed {
			if !sess.authenticate() {
				return CloseAuthFailed
			}
		} else if s.draining.Load() {
			return sess.refuseDraining()
		} else if reason, done := sess.dispatch(&sess.req); done {
			return reason
		}
		if (sess.flushDue || sess.pendingInput() == 0) && !sess.flush() {
			return CloseWriteError
		}
	}
}

// readFailed handles a decoder error; done reports that the session ends.
func (sess *session) readFailed(err error) (CloseReason, bool) {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		if !sess.authed {
			sess.failAuth(err)
			return CloseAuthFailed, true
		}
		sess.reply(protocol.StatusError)
		if pe.Fatal() {
			sess.flush()
			return CloseProtocolError, true
		}
		return 0, false
	}
	if isTimeout(err) {
		// An idle peer (or a trickling one) gets `error` and a close.
		sess.reply(protocol.StatusError)
		sess.flush()
		return CloseReadTimeout, true
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		// The peer may have closed only its sending side: the answers to
		// the requests it completed are still owed (they are held back
		// while more input is buffered, here the start of a request the
		// peer never finished, which gets no answer). If the lock is
		// taken, the pusher is writing, and its write already carries
		// every answer appended so far: do not queue behind it (it may
		// be stuck on a peer that does not read until the session ends).
		if sess.wmu.TryLock() {
			sess.flushLocked()
			sess.wmu.Unlock()
		}
		return CloseEOF, true
	}
	if errors.Is(err, errDrained) {
		return CloseDraining, true // idle while the server drains
	}
	if errors.Is(err, net.ErrClosed) && sess.srv.shuttingDown() {
		return CloseServerClosed, true
	}
	return CloseReadError, true
}

// isTimeout reports a deadline error, also when wrapped (TLS, ...).
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// authenticate runs the §7.1 handshake on the first request. The
// credential is compared even when the request is not `auth`, so the time
// taken does not tell a prober which check failed. A connection whose
// source was blocked after it was accepted is closed without its
// credential being looked at.
func (sess *session) authenticate() bool {
	s := sess.srv
	if sess.pi.limited {
		if _, blocked := s.authLim.blocked(sess.pi.src); blocked {
			return false
		}
	}
	cred := ""
	if sess.req.Cmd == protocol.CmdAuth {
		cred = string(sess.req.Token)
	}
	id, err := s.opts.Auth.Authenticate(s.base, sess.peer, cred)
	if err == nil && sess.req.Cmd != protocol.CmdAuth {
		err = fmt.Errorf("%w: first request is %s, not auth", auth.ErrDenied, sess.req.Cmd)
	}
	if err != nil {
		sess.failAuth(err)
		return false
	}
	sess.authed = true
	if s.opts.Replica != nil {
		sess.cred = cred
	}
	if sess.identity() == "" {
		// A connection-level identity (certificate, uid) is the more
		// specific name; the token only adds a check.
		sess.setIdentity(id.Name)
	}
	sess.reply(protocol.StatusOK)
	return true
}

// failAuth handles a failed handshake: it counts the failure, pauses,
// and only then answers error_auth, so that a client cannot end the pause
// early by closing once it has read the answer. When the source was
// already blocked it answers nothing. The close is left to the caller.
func (sess *session) failAuth(err error) {
	if sess.authFailed(err) {
		return
	}
	sess.srv.pauseAuth()
	sess.reply(protocol.StatusErrAuth)
	sess.flush()
}

// reply appends a bare status line.
func (sess *session) reply(st protocol.Status) {
	sess.m.st = st
	sess.wmu.Lock()
	sess.out = protocol.AppendStatus(sess.out, st)
	sess.noteOut()
	sess.wmu.Unlock()
}

// noteOut sets flushDue after an append by the session goroutine; wmu is
// held. It is the one length compare a request pays for the bound.
func (sess *session) noteOut() { sess.flushDue = len(sess.out) > flushAt }

// pendingInput is the number of request bytes already received and not
// yet decoded.
func (sess *session) pendingInput() int { return sess.dec.Buffered() + sess.rd.pendingLen() }

// flush writes out to the connection under the write deadline. It
// reports false when the write failed (the session must end). Only the
// session goroutine calls it.
func (sess *session) flush() bool {
	sess.wmu.Lock()
	defer sess.wmu.Unlock()
	sess.flushDue = false
	sess.m.fresh = true // metrics: a write is not the next request's time
	return sess.flushLocked()
}

// flushLocked is flush with wmu held.
func (sess *session) flushLocked() bool {
	if len(sess.out) == 0 {
		return true
	}
	err := sess.writeLocked(sess.out)
	if cap(sess.out) > 64<<10 {
		// Do not keep a huge stats buffer; the next stats answer of any
		// connection may reuse it.
		recycleOut(sess.out)
		sess.out = make([]byte, 0, 512)
	} else {
		sess.out = sess.out[:0]
	}
	return err == nil
}

// writeLocked writes b to the connection under the write deadline, with
// wmu held; a failure is also kept in werr.
func (sess *session) writeLocked(b []byte) error {
	if wt := sess.srv.opts.WriteTimeout; wt > 0 {
		// As for reads: every write gets at least the full timeout, and
		// the deadline moves only when less than that is left.
		if now := time.Now(); sess.wdUntil.Sub(now) < wt {
			sess.wdUntil = now.Add(wt + wt/8)
			_ = sess.conn.SetWriteDeadline(sess.wdUntil)
		}
	}
	_, err := sess.conn.Write(b)
	if err != nil {
		sess.werr = err
	}
	return err
}

// block runs wait while watching the connection, so that a peer that
// closes while its request is blocked is noticed at once (its waiter is
// cancelled) rather than at the end of the timeout. Pending output is
// flushed first. It reports false when the session must end: the peer went
// away, or sent more than maxPipelined bytes while blocked.
func (sess *session) block(wait func(ctx context.Context)) (alive bool) {
	defer sess.blockedSince(monoNow())
	if !sess.flush() {
		return false
	}
	ctx, cancel := context.WithCancel(sess.srv.base)
	defer cancel()
	sess.rdUntil = time.Time{} // the watcher moves the read deadline
	stop := sess.rd.watch(cancel)
	wait(ctx)
	return stop()
}

// connReader feeds the decoder. While a request blocks, a watcher
// goroutine reads ahead from the socket into pending (to see EOF); the
// decoder consumes pending before reading the socket again.
type connReader struct {
	conn    net.Conn
	pending []byte
	off     int
	// atStart is set before each request when none of its bytes have
	// been received; any byte read clears it.
	atStart bool
	// early handles a read deadline that fired, with the read's error
	// (see session.readAfterDeadline).
	early func(p []byte, err error) (int, error)

	stopping atomic.Bool
	failed   error // set by the watcher: why the peer is gone
}

func (r *connReader) pendingLen() int { return len(r.pending) - r.off }

func (r *connReader) Read(p []byte) (int, error) {
	if r.off < len(r.pending) {
		n := copy(p, r.pending[r.off:])
		r.off += n
		if r.off == len(r.pending) {
			r.pending, r.off = r.pending[:0], 0
		}
		r.atStart = false
		return n, nil
	}
	n, err := r.conn.Read(p)
	if n > 0 {
		r.atStart = false
	} else if err != nil && r.early != nil && isTimeout(err) {
		return r.early(p, err)
	}
	return n, err
}

// aLongTimeAgo is a deadline in the past, used to interrupt a read.
var aLongTimeAgo = time.Unix(1, 0)

// watch starts reading ahead; it calls cancel when the peer closes or
// errs. The returned stop ends the watcher and reports whether the
// connection is still usable.
func (r *connReader) watch(cancel context.CancelFunc) (stop func() bool) {
	_ = r.conn.SetReadDeadline(time.Time{}) // time blocked does not count
	if r.off > 0 {
		r.pending = append(r.pending[:0], r.pending[r.off:]...)
		r.off = 0
	}
	if cap(r.pending) < maxPipelined {
		r.pending = append(make([]byte, 0, maxPipelined), r.pending...)
	}
	r.failed = nil
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if len(r.pending) == cap(r.pending) {
				r.failed = errPipelineOverflow
				cancel()
				return
			}
			n, err := r.conn.Read(r.pending[len(r.pending):cap(r.pending)])
			r.pending = r.pending[:len(r.pending)+n]
			if err != nil && isTimeout(err) && !r.stopping.Load() {
				// Only stop and a drain poke move the deadline while a
				// request blocks, and a poke is not for a blocked
				// request: clear it, unless stop came in meanwhile (its
				// deadline, set after its flag, then ends the read).
				_ = r.conn.SetReadDeadline(time.Time{})
				if !r.stopping.Load() {
					continue
				}
				return
			}
			if err != nil {
				if !r.stopping.Load() || !isTimeout(err) {
					r.failed = err
					cancel()
				}
				return
			}
		}
	}()
	return func() bool {
		r.stopping.Store(true)
		_ = r.conn.SetReadDeadline(aLongTimeAgo)
		<-done
		r.stopping.Store(false)
		return r.failed == nil
	}
}

var errPipelineOverflow = errors.New("server: too much input while a request was blocked")
