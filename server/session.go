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
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/protocol"
	"github.com/dflockd/dflockd/transport"
)

// authFailPause is how long a connection that failed the handshake waits
// before it is closed (§7.1), slowing down token guessing.
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
	srv   *Server
	conn  net.Conn
	id    uint64
	ip    string
	owner *core.Owner
	rd    connReader
	dec   *protocol.Decoder
	req   protocol.Request

	// Set before the session starts and never changed: read by stats.
	transport string
	remote    string
	peerAuth  auth.PeerAuthenticator

	peer   auth.Peer // filled in by open
	authed bool
	// ident is the authenticated identity ("" = none); stats read it
	// from other goroutines.
	ident atomic.Pointer[string]

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

	// rdUntil is the read deadline armed by the line hook (zero = none
	// known); only the session goroutine touches it.
	rdUntil time.Time
}

func newSession(s *Server, c net.Conn, id uint64, ip, transportName string, peerAuth auth.PeerAuthenticator) *session {
	sess := &session{srv: s, conn: c, id: id, ip: ip, owner: core.NewOwner(id), transport: transportName, peerAuth: peerAuth}
	if ra := c.RemoteAddr(); ra != nil {
		sess.remote = ra.String()
	}
	sess.rd = connReader{conn: c}
	sess.dec = protocol.NewDecoder(&sess.rd)
	timeout := s.opts.ReadTimeout
	sess.dec.SetLineHook(func() {
		// Every line gets at least the full timeout (§1). The hook runs
		// only when the line is not already buffered, and re-arms only
		// when the armed deadline is less than a timeout away, so that a
		// busy connection pays for the deadline (a timer update, about
		// half a microsecond) once per timeout/8, not once per request.
		now := time.Now()
		if sess.rdUntil.Sub(now) >= timeout {
			return
		}
		sess.rdUntil = now.Add(timeout + timeout/8)
		_ = c.SetReadDeadline(sess.rdUntil)
	})
	sess.authed = s.opts.Auth == nil
	sess.out = make([]byte, 0, 512)
	return sess
}

// identity returns the authenticated identity, "" if none.
func (sess *session) identity() string {
	if p := sess.ident.Load(); p != nil {
		return *p
	}
	return ""
}

func (sess *session) setIdentity(name string) { sess.ident.Store(&name) }

// serve runs the session to its end and cleans up after it.
func (sess *session) serve() {
	s := sess.srv
	reason, ok := sess.open()
	if ok {
		reason = sess.loop()
		if sess.push != nil && sess.push.evicted.Load() {
			reason = CloseSlowConsumer
		}
	}
	sess.dropSubscriptions()
	s.opts.Engine.ReleaseOwner(sess.owner)
	sess.conn.Close()
	s.forget(sess)
	s.log.Debug("connection closed", "conn", sess.id, "transport", sess.transport, "remote", sess.remote,
		"reason", reason.String(), "identity", sess.identity())
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
			s.log.Debug("tls handshake failed", "conn", sess.id, "transport", sess.transport, "remote", sess.remote, "err", err)
			return CloseHandshakeFailed, false
		}
	}
	sess.peer = auth.Peer{Transport: sess.transport, RemoteAddr: sess.conn.RemoteAddr()}
	if tc, isTLS := sess.conn.(transport.TLSConner); isTLS {
		st := tc.ConnectionState()
		sess.peer.TLS = &st
	}
	if pc, isUnix := sess.conn.(transport.PeerCreder); isUnix {
		if cred, err := pc.PeerCred(); err == nil {
			sess.peer.Cred = &auth.UnixCred{PID: cred.PID, UID: cred.UID, GID: cred.GID}
		} else {
			s.log.Debug("peer credentials unavailable", "conn", sess.id, "transport", sess.transport, "err", err)
		}
	}
	if sess.peerAuth != nil {
		id, err := sess.peerAuth.AuthenticatePeer(s.base, sess.peer)
		if err != nil {
			s.log.Info("authentication failed", "conn", sess.id, "transport", sess.transport, "remote", sess.remote, "reason", err)
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
			sess.reply(protocol.StatusErrDraining)
			sess.flush()
			return CloseDraining
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
			sess.failAuth()
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
// taken does not tell a prober which check failed.
func (sess *session) authenticate() bool {
	s := sess.srv
	cred := ""
	if sess.req.Cmd == protocol.CmdAuth {
		cred = string(sess.req.Token)
	}
	id, err := s.opts.Auth.Authenticate(s.base, sess.peer, cred)
	if err == nil && sess.req.Cmd != protocol.CmdAuth {
		err = fmt.Errorf("%w: first request is %s, not auth", auth.ErrDenied, sess.req.Cmd)
	}
	if err != nil {
		s.log.Info("authentication failed", "conn", sess.id, "transport", sess.transport, "remote", sess.remote, "reason", err)
		sess.failAuth()
		return false
	}
	sess.authed = true
	if sess.identity() == "" {
		// A connection-level identity (certificate, uid) is the more
		// specific name; the token only adds a check.
		sess.setIdentity(id.Name)
	}
	sess.reply(protocol.StatusOK)
	return true
}

// failAuth answers error_auth, pauses, and leaves the close to the caller.
func (sess *session) failAuth() {
	sess.reply(protocol.StatusErrAuth)
	sess.flush()
	t := time.NewTimer(authFailPause)
	defer t.Stop()
	select {
	case <-t.C:
	case <-sess.srv.base.Done():
	}
}

// reply appends a bare status line.
func (sess *session) reply(st protocol.Status) {
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
	return sess.flushLocked()
}

// flushLocked is flush with wmu held.
func (sess *session) flushLocked() bool {
	if len(sess.out) == 0 {
		return true
	}
	if wt := sess.srv.opts.WriteTimeout; wt > 0 {
		// As for reads: every write gets at least the full timeout, and
		// the deadline moves only when less than that is left.
		if now := time.Now(); sess.wdUntil.Sub(now) < wt {
			sess.wdUntil = now.Add(wt + wt/8)
			_ = sess.conn.SetWriteDeadline(sess.wdUntil)
		}
	}
	_, err := sess.conn.Write(sess.out)
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

// block runs wait while watching the connection, so that a peer that
// closes while its request is blocked is noticed at once (its waiter is
// cancelled) rather than at the end of the timeout. Pending output is
// flushed first. It reports false when the session must end: the peer went
// away, or sent more than maxPipelined bytes while blocked.
func (sess *session) block(wait func(ctx context.Context)) (alive bool) {
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
		return n, nil
	}
	return r.conn.Read(p)
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
