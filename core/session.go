package core

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Sessions (docs/protocol.md, the session extension).
//
// A named Session owns an Owner beyond the life of one connection. While
// a connection is attached, that connection's goroutine uses the Owner as
// always. When the connection ends without a goodbye the session is
// detached: the Owner's holds and queue places stay, and a detached
// session whose TTL passes is ended by ExpireSessions (Run calls it),
// releasing everything as ReleaseOwner does. ResumeSession attaches a new
// connection, which then uses the Owner.
//
// The engine never reads a random source for sessions: the caller chooses
// the id and the secret (the server draws them from crypto/rand). The
// detach deadline is engine time, so a test clock drives expiry.

// ErrSession: no session with that id and secret (unknown, ended or
// expired, or the secret is wrong: one error for all three).
var ErrSession = errors.New("core: no such session")

// ErrMaxSessions: naming one more session would exceed
// Options.MaxSessions.
var ErrMaxSessions = errors.New("core: too many sessions")

// ErrSessionAttached: ResumeSession found the session attached to a
// connection. The caller closes that connection, waits for it to detach
// (Session.Detached) and tries again.
var ErrSessionAttached = errors.New("core: session is attached to another connection")

// ErrParked is joined to ErrCanceled when a wait whose context ended kept
// its queue place as its owner's enqueue record (WaitOrPark).
var ErrParked = errors.New("core: queue place kept for the session")

// Session is a named owner. Its fields other than id, secret and owner
// are guarded by the engine's session table mutex.
//
// Naming a session costs one allocation: the id and secret of the usual
// sizes (16 and 32 bytes) are kept in the struct itself, and the channel
// a take-over waits on is made only when one does.
type Session struct {
	buf    [48]byte // room for id and secret
	id     string   // aliases buf when it fits
	secret string   // likewise
	owner  *Owner

	ttl      time.Duration
	attached bool
	ended    bool
	deadline int64         // engine nanos; set while detached
	detached chan struct{} // made by Detached, closed at the next detach or end
}

// closedChan is the channel Detached returns for a session that is not
// attached.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// keep stores id and secret in s, inside s.buf when they fit (s is never
// copied: the strings alias it).
func (s *Session) keep(id, secret string) {
	if len(id) == 0 || len(secret) == 0 || len(id)+len(secret) > len(s.buf) {
		s.id, s.secret = strings.Clone(id), strings.Clone(secret)
		return
	}
	n := copy(s.buf[:], id)
	copy(s.buf[n:], secret)
	s.id = unsafe.String(&s.buf[0], n)
	s.secret = unsafe.String(&s.buf[n], len(secret))
}

// ID returns the session id.
func (s *Session) ID() string { return s.id }

// Secret returns the session secret.
func (s *Session) Secret() string { return s.secret }

// Owner returns the owner the session keeps.
func (s *Session) Owner() *Owner { return s.owner }

// sessionTable is the engine's named sessions.
type sessionTable struct {
	mu       sync.Mutex
	m        map[string]*Session
	attached int
	detached int
	next     int64 // earliest detach deadline; 0 = none known
	// retired sums the metrics of owners whose session ended while
	// detached (an attached session's owner is its connection's to fold).
	retired OwnerMetrics
	expired uint64 // sessions ended by ExpireSessions
	resumed uint64 // successful ResumeSession calls
}

// NameSession names o's session with the given id and secret, to be kept
// for ttl after its connection is lost. The session starts attached. It
// fails when the id is taken.
func (e *Engine) NameSession(o *Owner, id, secret string, ttl time.Duration) (*Session, error) {
	t := &e.sess
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[string]*Session)
	}
	if _, dup := t.m[id]; dup {
		return nil, fmt.Errorf("core: session id %s is in use", id)
	}
	if max := e.opts.MaxSessions; max > 0 && len(t.m) >= max {
		return nil, ErrMaxSessions
	}
	s := &Session{owner: o, ttl: ttl, attached: true}
	s.keep(id, secret)
	t.m[s.id] = s
	t.attached++
	return s, nil
}

// SetSessionTTL sets how long s is kept once detached.
func (e *Engine) SetSessionTTL(s *Session, ttl time.Duration) {
	e.sess.mu.Lock()
	s.ttl = ttl
	e.sess.mu.Unlock()
}

// DetachSession marks s detached: its owner's holds and places stay until
// ResumeSession or the end of its TTL. The caller must stop using the
// owner first. A session already ended is left alone.
func (e *Engine) DetachSession(s *Session) {
	t := &e.sess
	t.mu.Lock()
	if s.ended || !s.attached {
		t.mu.Unlock()
		return
	}
	s.attached = false
	s.deadline = leaseEnd(e.now(), s.ttl)
	t.attached--
	t.detached++
	sooner := t.next == 0 || s.deadline < t.next
	if sooner {
		t.next = s.deadline
	}
	s.wakeTakeover()
	t.mu.Unlock()
	if sooner {
		select {
		case e.exp.wake <- struct{}{}: // Run recomputes its next deadline
		default:
		}
	}
}

// wakeTakeover closes the channel a take-over waits on, if any; the table
// mutex is held.
func (s *Session) wakeTakeover() {
	if s.detached != nil {
		close(s.detached)
		s.detached = nil
	}
}

// Detached returns a channel closed when s next detaches or ends; it is
// closed already when s is not attached.
func (e *Engine) Detached(s *Session) <-chan struct{} {
	e.sess.mu.Lock()
	defer e.sess.mu.Unlock()
	if !s.attached || s.ended {
		return closedChan
	}
	if s.detached == nil {
		s.detached = make(chan struct{})
	}
	return s.detached
}

// ResumeSession attaches the session id to a new connection, which must
// present its secret. It answers ErrSession for an unknown or ended id and
// for a wrong secret alike, comparing the secret in constant time in
// every case; and ErrSessionAttached, with the session, when another
// connection is attached to it. allow, when not nil, is asked about a
// session whose secret matched (with the table mutex held: it must not
// call the engine); false is answered ErrSession too.
func (e *Engine) ResumeSession(id, secret string, allow func(*Session) bool) (*Session, error) {
	t := &e.sess
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.m[id]
	want := dummySecret
	if ok {
		want = s.secret
	}
	match := subtle.ConstantTimeCompare([]byte(secret), []byte(want)) == 1
	if !ok || !match || s.ended || (allow != nil && !allow(s)) {
		return nil, ErrSession
	}
	if s.attached {
		return s, ErrSessionAttached
	}
	s.attached = true
	t.detached--
	t.attached++
	t.resumed++
	return s, nil
}

// dummySecret is compared against when the id is unknown, so that an
// unknown id costs the same as a wrong secret.
const dummySecret = "00000000000000000000000000000000"

// EndSession ends s at once (a goodbye): it is forgotten and its owner
// released as ReleaseOwner does. The caller must be the attached
// connection.
func (e *Engine) EndSession(s *Session) {
	t := &e.sess
	t.mu.Lock()
	if s.ended {
		t.mu.Unlock()
		return
	}
	e.forgetSession(s)
	t.mu.Unlock()
	e.ReleaseOwner(s.owner)
}

// forgetSession removes s from the table; the table mutex is held.
func (e *Engine) forgetSession(s *Session) {
	t := &e.sess
	s.ended = true
	delete(t.m, s.id)
	if s.attached {
		t.attached--
		s.wakeTakeover()
	} else {
		t.detached--
	}
}

// ExpireSessions ends every detached session whose TTL has passed,
// releasing its owner as ReleaseOwner does, and reports the next detach
// deadline (engine nanos) if there is one. Run calls it; tests that drive
// the clock call it directly.
func (e *Engine) ExpireSessions() (next int64, ok bool) {
	t := &e.sess
	now := e.now()
	t.mu.Lock()
	if t.next == 0 || t.next > now {
		next := t.next
		t.mu.Unlock()
		return next, next != 0
	}
	var due []*Session
	t.next = 0
	for _, s := range t.m {
		if s.attached {
			continue
		}
		if s.deadline <= now {
			due = append(due, s)
		} else if t.next == 0 || s.deadline < t.next {
			t.next = s.deadline
		}
	}
	for _, s := range due {
		e.forgetSession(s)
		s.owner.AddMetricsTo(&t.retired)
		t.expired++
	}
	next = t.next
	t.mu.Unlock()
	for _, s := range due {
		e.ReleaseOwner(s.owner)
	}
	return next, next != 0
}

// SessionStats are counts of named sessions.
type SessionStats struct {
	// Attached counts named sessions with a connection, Detached those
	// waiting to be resumed.
	Attached, Detached int
	// Expired counts sessions ended at the end of their TTL, Resumed
	// successful resumes, since the engine started.
	Expired, Resumed uint64
}

// SessionStats returns the named-session counts.
func (e *Engine) SessionStats() SessionStats {
	t := &e.sess
	t.mu.Lock()
	defer t.mu.Unlock()
	return SessionStats{Attached: t.attached, Detached: t.detached, Expired: t.expired, Resumed: t.resumed}
}

// AddDetachedMetricsTo adds the owner metrics of every detached session,
// and of those that ended while detached, into dst. Together with the
// owners of the attached connections this covers every owner once, as
// long as the caller serialises it with its own attach and detach steps.
func (e *Engine) AddDetachedMetricsTo(dst *OwnerMetrics) {
	t := &e.sess
	t.mu.Lock()
	defer t.mu.Unlock()
	dst.Add(&t.retired)
	for _, s := range t.m {
		if !s.attached {
			s.owner.AddMetricsTo(dst)
		}
	}
}

// OwnerCounts reports what o holds and waits for: held counts its slots
// whose leases have not run out, including granted enqueue records not
// yet collected by Wait; queued its places still waiting. Stale entries
// of the held set (slots released by token) and leases that ran out but
// were not evicted yet are not counted. Only o's goroutine may call it.
func (e *Engine) OwnerCounts(o *Owner) (held, queued int) {
	now := e.now()
	for _, w := range o.records {
		r := w.r
		r.mu.Lock()
		switch w.state.Load() {
		case stateWaiting:
			queued++
		case stateGranted:
			if i := r.findToken(w.token); i >= 0 && r.holders[i].expires > now {
				held++
			}
		}
		r.mu.Unlock()
	}
	o.held.each(func(r *resource) {
		r.mu.Lock()
		for i := range r.holders {
			if h := &r.holders[i]; h.owner == o && h.rec == nil && h.expires > now {
				held++
			}
		}
		r.mu.Unlock()
	})
	return held, queued
}

// WaitOrPark is Ticket.Wait, except that when ctx ends first the place is
// not given up: it becomes the owner's enqueue record for the key, as if
// the request had been an Enqueue, and the error joins ErrCanceled and
// ErrParked. A later Wait by the owner collects it. When the owner already
// has a record for the key, the place is cancelled as by Wait.
func (t *Ticket) WaitOrPark(ctx context.Context, timeout time.Duration) (Lease, error) {
	return t.wait(ctx, timeout, true)
}

// WaitOrPark is Engine.Wait, except that when ctx ends first the record
// stays in place (see Ticket.WaitOrPark).
func (e *Engine) WaitOrPark(ctx context.Context, o *Owner, k Kind, key string, timeout time.Duration) (Lease, error) {
	return e.wait(ctx, o, k, key, timeout, true)
}

// park turns w, whose wait was cancelled with cause, into its owner's
// enqueue record. The owner's goroutine calls it.
func (e *Engine) park(w *waiter, cause error) (Lease, error) {
	o := w.owner
	r := w.r
	rk := recKey{r.kind, r.key}
	if o.record(rk.kind, rk.key) != nil {
		return e.abandon(w, true, cause)
	}
	r.mu.Lock()
	switch w.state.Load() {
	case stateWaiting:
		w.twoPhase = true
	case stateGranted:
		w.twoPhase = true
		if i := r.findToken(w.token); i >= 0 {
			r.holders[i].rec = w
		}
	default:
		r.mu.Unlock()
		return Lease{}, fmt.Errorf("%w: %w", ErrCanceled, cause)
	}
	r.mu.Unlock()
	if o.records == nil {
		o.records = make(map[recKey]*waiter)
	}
	o.records[rk] = w
	return Lease{}, fmt.Errorf("%w (%w): %w", ErrCanceled, ErrParked, cause)
}
