package server

import (
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dflockd/dflockd/auth"
)

// Defaults of the authentication failure limiter (see Options).
const (
	DefaultAuthFailures   = 5
	DefaultAuthFailWindow = 10 * time.Second
	DefaultAuthBackoff    = 5 * time.Second
	DefaultAuthBackoffMax = 60 * time.Second
	DefaultAuthSources    = 10000
)

// authLimiter counts authentication failures per source (see sourceKey)
// and blocks a source that fails too often. A source whose failures reach
// max within window (counted from the first failure of the window) is
// blocked for a back-off: backoff the first time, then twice the previous
// one per block, up to backoffMax. The back-off returns to backoff once
// the source has had no failure for backoffMax after its last block ended.
//
// Memory is bounded: at most cap sources are remembered; a new source
// evicts the one whose last failure is oldest. Sources with nothing left
// to remember are dropped as they age out.
//
// Successful authentications never touch the limiter; checking a source
// costs an atomic load while no source is remembered, and a mutex and a
// map lookup otherwise.
type authLimiter struct {
	now                         func() time.Time
	max                         int
	window, backoff, backoffMax time.Duration
	cap                         int

	n       atomic.Int64 // len(sources), read without mu
	mu      sync.Mutex
	sources map[string]*authSource
	// Doubly linked list in order of last failure: head is the oldest.
	head, tail *authSource
}

// authSource is the failure record of one source.
type authSource struct {
	key         string
	windowStart time.Time // first failure of the current window
	fails       int       // failures counted since windowStart
	until       time.Time // blocked until (zero = never blocked)
	level       time.Duration
	last        time.Time // last failure
	prev, next  *authSource
}

func newAuthLimiter(o Options, now func() time.Time) *authLimiter {
	return &authLimiter{
		now: now, max: o.AuthFailures, window: o.AuthFailWindow,
		backoff: o.AuthBackoff, backoffMax: o.AuthBackoffMax, cap: o.AuthSources,
		sources: make(map[string]*authSource),
	}
}

// blocked reports whether src is blocked now, and if so for how much
// longer.
func (l *authLimiter) blocked(src string) (time.Duration, bool) {
	if l.n.Load() == 0 {
		return 0, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.sources[src]
	if e == nil {
		return 0, false
	}
	if left := e.until.Sub(l.now()); left > 0 {
		return left, true
	}
	return 0, false
}

// failVerdict is what fail decided about one failure.
type failVerdict struct {
	// refused: the source was already blocked when this failure was
	// counted (a connection accepted before the block); answer nothing.
	refused bool
	// blockedFor is the back-off of a block this failure started (0 =
	// none started).
	blockedFor time.Duration
}

// fail records a failure of src.
func (l *authLimiter) fail(src string) failVerdict {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.prune(now)
	e := l.sources[src]
	if e == nil {
		if len(l.sources) >= l.cap {
			l.remove(l.head)
		}
		e = &authSource{key: src}
		l.sources[src] = e
		l.n.Store(int64(len(l.sources)))
	} else {
		l.unlink(e)
	}
	l.pushBack(e)
	if now.Before(e.until) {
		return failVerdict{refused: true}
	}
	e.last = now
	if e.fails == 0 || now.Sub(e.windowStart) >= l.window {
		e.windowStart, e.fails = now, 0
	}
	e.fails++
	if e.fails < l.max {
		return failVerdict{}
	}
	switch {
	case e.level == 0 || now.Sub(e.until) >= l.backoffMax:
		e.level = l.backoff
	case e.level < l.backoffMax:
		e.level = min(2*e.level, l.backoffMax)
	}
	e.until = now.Add(e.level)
	e.fails = 0
	return failVerdict{blockedFor: e.level}
}

// stale reports that e has nothing left to remember at now: not blocked,
// no failure in the current window, and its back-off level expired.
func (l *authLimiter) stale(e *authSource, now time.Time) bool {
	if now.Before(e.until) || now.Sub(e.last) < l.window {
		return false
	}
	return e.level == 0 || now.Sub(e.until) >= l.backoffMax
}

// prune drops stale sources from the old end of the list. The list is in
// order of last failure, so it stops at the first source still relevant.
func (l *authLimiter) prune(now time.Time) {
	for l.head != nil && l.stale(l.head, now) {
		l.remove(l.head)
	}
}

func (l *authLimiter) remove(e *authSource) {
	l.unlink(e)
	delete(l.sources, e.key)
	l.n.Store(int64(len(l.sources)))
}

func (l *authLimiter) unlink(e *authSource) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (l *authLimiter) pushBack(e *authSource) {
	e.prev = l.tail
	if l.tail != nil {
		l.tail.next = e
	} else {
		l.head = e
	}
	l.tail = e
}

// len returns the number of sources remembered.
func (l *authLimiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sources)
}

// sourceKey names the source of a connection for the failure limiter: the
// peer's user id on a Unix socket with credentials ("uid:1000"), else the
// remote IP address; an IPv6 address is taken by its /64 prefix, the
// block usually given to one host or site, so that spraying addresses
// from one prefix counts as one source. Other addresses count by their
// string form.
func sourceKey(a net.Addr, cred *auth.UnixCred) string {
	if cred != nil {
		return "uid:" + strconv.FormatUint(uint64(cred.UID), 10)
	}
	var ip net.IP
	switch a := a.(type) {
	case *net.TCPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	case nil:
		return ""
	default:
		return remoteIP(a)
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	if len(ip) == net.IPv6len {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}

// logGate rate-limits a kind of log line with a token bucket: burst lines
// at once, then one per every. A line that passes after some were held
// back carries their number.
type logGate struct {
	now        func() time.Time
	burst      float64
	every      time.Duration
	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int
}

func newLogGate(now func() time.Time, burst int, every time.Duration) *logGate {
	return &logGate{now: now, burst: float64(burst), every: every, tokens: float64(burst)}
}

// allow reports whether a line may be logged now and, if so, how many
// were held back since the last one that was.
func (g *logGate) allow() (suppressed int, ok bool) {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.last.IsZero() {
		g.tokens = min(g.burst, g.tokens+float64(now.Sub(g.last))/float64(g.every))
	}
	g.last = now
	if g.tokens < 1 {
		g.suppressed++
		return 0, false
	}
	g.tokens--
	suppressed, g.suppressed = g.suppressed, 0
	return suppressed, true
}

// Rate limits of the log lines about refused connections and blocked
// sources: refusedLogBurst lines at once, then one per refusedLogEvery.
const (
	refusedLogBurst = 10
	refusedLogEvery = time.Second
)

// initAuthLimits applies the defaults of the failure limiter options and
// builds the limiter and the log gates.
func (s *Server) initAuthLimits() {
	o := &s.opts
	if o.now == nil {
		o.now = time.Now
	}
	if o.AuthFailures == 0 {
		o.AuthFailures = DefaultAuthFailures
	}
	if o.AuthFailWindow <= 0 {
		o.AuthFailWindow = DefaultAuthFailWindow
	}
	if o.AuthBackoff <= 0 {
		o.AuthBackoff = DefaultAuthBackoff
	}
	if o.AuthBackoffMax <= 0 {
		o.AuthBackoffMax = DefaultAuthBackoffMax
	}
	o.AuthBackoffMax = max(o.AuthBackoffMax, o.AuthBackoff)
	if o.AuthSources <= 0 {
		o.AuthSources = DefaultAuthSources
	}
	if o.AuthFailures > 0 {
		s.authLim = newAuthLimiter(*o, o.now)
	}
	s.refusedLog = newLogGate(o.now, refusedLogBurst, refusedLogEvery)
	s.blockedLog = newLogGate(o.now, refusedLogBurst, refusedLogEvery)
}

// logRefused logs a refused connection at info level, rate-limited.
func (s *Server) logRefused(msg string, args ...any) {
	n, ok := s.refusedLog.allow()
	if !ok {
		return
	}
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	s.log.Info(msg, args...)
}

// pauseAuth waits before a failed handshake is answered, so that each
// guess costs the guesser time (§7.1), or until shutdown.
func (s *Server) pauseAuth() {
	if s.opts.authPause != nil {
		s.opts.authPause(s.base)
		return
	}
	t := time.NewTimer(authFailPause)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.base.Done():
	}
}

// authFailed logs a failed authentication of sess and counts it against
// its source. It reports true when the source was already blocked (the
// connection was accepted before the block began): the session must end
// without an answer.
func (sess *session) authFailed(err error) (refuse bool) {
	s := sess.srv
	s.logRefused("authentication failed", "conn", sess.id, "transport", sess.transport, "remote", sess.remote, "reason", err)
	if !sess.pi.limited {
		return false
	}
	v := s.authLim.fail(sess.pi.src)
	if v.blockedFor > 0 {
		args := []any{"source", sess.pi.src, "transport", sess.transport, "remote", sess.remote,
			"failures", s.opts.AuthFailures, "window", s.opts.AuthFailWindow, "blocked_for", v.blockedFor}
		if n, ok := s.blockedLog.allow(); ok {
			if n > 0 {
				args = append(args, "suppressed", n)
			}
			s.log.Warn("authentication failures: source blocked", args...)
		}
	}
	return v.refused
}
