package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/protocol"
)

// The session extension (docs/protocol.md, Sessions): `session` names the
// connection's session so that a later connection can `resume` it after
// this one is lost; `bye` ends it at once. The engine keeps the named
// sessions (core/session.go); this file maps them to connections.
//
// A session's owner moves between a connection and the engine's table of
// detached sessions only under Server.mu, which the metrics collector
// holds while it folds the owners of both: a scrape sees each owner's
// counters exactly once.

// Defaults of Options.SessionTTL and Options.SessionTTLMax.
const (
	DefaultSessionTTL    = 15 * time.Second
	DefaultSessionTTLMax = 300 * time.Second
)

// takeoverWait bounds how long a resume waits for the connection it took
// the session from to let go of it.
const takeoverWait = 10 * time.Second

// sessionTTL returns the TTL a `session` request gets: asked, or the
// default when it asks none, capped at the maximum.
func (s *Server) sessionTTL(asked time.Duration) time.Duration {
	ttl, max := s.opts.SessionTTL, s.opts.SessionTTLMax
	if max <= 0 {
		max = DefaultSessionTTLMax
	}
	if ttl <= 0 {
		ttl = DefaultSessionTTL
	}
	if asked > 0 {
		ttl = asked
	}
	return min(ttl, max)
}

// newSessionID fills buf with a fresh session id (64 random bits) and
// secret (128 random bits), in lowercase hex, and returns them as views
// of buf (the engine copies them).
func newSessionID(buf *[48]byte) (id, secret string, err error) {
	var b [8 + 16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("server: session id: %w", err)
	}
	hex.Encode(buf[:], b[:])
	return view(buf[:16]), view(buf[16:]), nil
}

// nameSession answers `session`: "ok <sid> <secret> <ttl_s>".
func (sess *session) nameSession(req *protocol.Request) {
	s := sess.srv
	e := s.opts.Engine
	ttl := s.sessionTTL(req.TTL)
	if sess.ns != nil {
		e.SetSessionTTL(sess.ns, ttl)
	} else {
		var ns *core.Session
		var err error
		var buf [48]byte
		for try := 0; ns == nil && try < 3; try++ { // a clash of 64 random bits: retry
			var id, secret string
			if id, secret, err = newSessionID(&buf); err == nil {
				ns, err = e.NameSession(sess.owner, id, secret, ttl)
			}
		}
		if errors.Is(err, core.ErrMaxSessions) {
			s.logRefused("session refused: the named-session limit is reached (--max-sessions); the client carries on without one",
				"conn", sess.id, "remote", sess.remote)
			sess.reply(protocol.StatusError)
			return
		}
		if err != nil {
			s.log.Error("session: naming failed", "conn", sess.id, "err", err)
			sess.reply(protocol.StatusError)
			return
		}
		s.mu.Lock()
		s.attached[ns] = sess
		s.mu.Unlock()
		sess.ns = ns
		sess.tag.session.Store(ns)
		s.log.Debug("session named", "conn", sess.id, "session", ns.ID(), "ttl", ttl, "remote", sess.remote)
	}
	sess.replySession(sess.ns.ID(), sess.ns.Secret(), ttl)
}

// replySession appends the answer to `session`: "ok <sid> <secret> <ttl_s>";
// id and secret are the hex text.
func (sess *session) replySession(id, secret string, ttl time.Duration) {
	sess.m.st = protocol.StatusOK
	sess.wmu.Lock()
	sess.out = append(sess.out, "ok "...)
	sess.out = append(sess.out, id...)
	sess.out = append(sess.out, ' ')
	sess.out = append(sess.out, secret...)
	sess.out = append(sess.out, ' ')
	sess.out = strconv.AppendInt(sess.out, int64(ttl/time.Second), 10)
	sess.out = append(sess.out, '\n')
	sess.noteOut()
	sess.wmu.Unlock()
}

// replyCounts appends the answer to `resume`: "ok <held> <queued>".
func (sess *session) replyCounts(held, queued int) {
	sess.m.st = protocol.StatusOK
	sess.wmu.Lock()
	sess.out = append(sess.out, "ok "...)
	sess.out = strconv.AppendInt(sess.out, int64(held), 10)
	sess.out = append(sess.out, ' ')
	sess.out = strconv.AppendInt(sess.out, int64(queued), 10)
	sess.out = append(sess.out, '\n')
	sess.noteOut()
	sess.wmu.Unlock()
}

// resume answers `resume`: "ok <held> <queued>", error_session, or error
// when this connection already has a session of its own or holds or
// waits on something.
func (sess *session) resume(req *protocol.Request) {
	s := sess.srv
	e := s.opts.Engine
	if sess.ns != nil {
		sess.reply(protocol.StatusError)
		return
	}
	if held, queued := e.OwnerCounts(sess.owner); held+queued > 0 {
		sess.reply(protocol.StatusError)
		return
	}
	ns, err := sess.takeSession(string(req.Key), string(req.Token))
	if err != nil {
		if errors.Is(err, core.ErrSession) {
			sess.reply(protocol.StatusErrSession)
		} else {
			s.log.Warn("session: resume failed", "conn", sess.id, "err", err)
			sess.reply(protocol.StatusError)
		}
		return
	}
	held, queued := e.OwnerCounts(sess.owner)
	s.log.Debug("session resumed", "conn", sess.id, "session", ns.ID(), "remote", sess.remote, "held", held, "queued", queued)
	sess.replyCounts(held, queued)
}

// takeSession attaches the session id to this connection, closing the
// connection it is attached to, if any, and waiting for that one to let
// go. On success the session's owner is this connection's.
func (sess *session) takeSession(id, secret string) (*core.Session, error) {
	s := sess.srv
	e := s.opts.Engine
	// A session is resumed only by the identity that named it (the
	// same token, certificate name or uid): a leaked secret is not
	// enough across identities. The refusal is error_session as well.
	me := sess.identity()
	sameIdentity := func(ns *core.Session) bool {
		return ns.Owner().Tag().(*connTag).identity() == me
	}
	for try := 0; ; try++ {
		s.mu.Lock()
		ns, err := e.ResumeSession(id, secret, sameIdentity)
		if err == nil {
			// The connection's own owner holds nothing (checked above);
			// its counters are retired and the session's owner adopted.
			fresh := sess.owner
			fresh.AddMetricsTo(&s.met.retired.owner)
			sess.owner = ns.Owner()
			tag := ns.Owner().Tag().(*connTag)
			tag.moveTo(sess.id, sess.tag)
			sess.tag = tag
			sess.ns = ns
			s.attached[ns] = sess
			s.mu.Unlock()
			e.ReleaseOwner(fresh)
			return ns, nil
		}
		if !errors.Is(err, core.ErrSessionAttached) || try == 2 {
			s.mu.Unlock()
			return nil, err
		}
		old := s.attached[ns]
		detached := e.Detached(ns)
		s.mu.Unlock()
		if old != nil {
			s.log.Info("session taken over by a new connection", "session", ns.ID(), "conn", old.id, "remote", old.remote,
				"new_conn", sess.id, "new_remote", sess.remote)
			old.conn.Close()
		}
		if err := waitDetached(s.base, detached); err != nil {
			return nil, fmt.Errorf("session %s: the connection it was attached to did not let go: %w", ns.ID(), err)
		}
	}
}

// endOwner ends the connection's hold on its owner when the session
// ends (or, for bye, just before it answers; calling it again is
// harmless): a named session is detached (kept for its TTL) unless it said
// bye or the server is shutting down; everything else is released. It
// reports whether the owner was detached (and is no longer this
// connection's to count).
func (sess *session) endOwner(reason CloseReason) (detach bool) {
	s := sess.srv
	e := s.opts.Engine
	if sess.rc != nil && reason != CloseBye {
		// Detach a named session, close an implicit one (bounded: the
		// leader may be gone).
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		sess.rc.Close(ctx)
		cancel()
	}
	if sess.ns == nil {
		e.ReleaseOwner(sess.owner)
		return false
	}
	if reason == CloseBye || s.shuttingDown() {
		e.EndSession(sess.ns) // idempotent: bye ends it before answering
		s.mu.Lock()
		delete(s.attached, sess.ns)
		s.mu.Unlock()
		return false
	}
	return true // forget detaches it under the server's mutex
}

// waitDetached waits up to takeoverWait for detached to close.
func waitDetached(ctx context.Context, detached <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, takeoverWait)
	defer cancel()
	select {
	case <-detached:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
