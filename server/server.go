// Package server runs dflockd sessions over any net.Listener. It glues the
// transport (byte streams), the protocol codec, authentication and the
// core engine together; dispatch.go is the only place that knows both the
// wire statuses and the engine's errors.
package server

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/transport"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("server: closed")

// Server serves the dflockd line protocol. Create it with New; a Server
// can serve several listeners at once, all sharing one engine.
type Server struct {
	opts Options
	log  *slog.Logger

	// base is cancelled when shutdown starts: blocked waits, and later
	// requests, are answered `error_draining`.
	base     context.Context
	cancel   context.CancelFunc
	draining atomic.Bool
	nextID   atomic.Uint64
	// slowConsumers counts listeners closed because they stopped
	// reading: their push queue was full or a write to them timed out
	// (shown in stats).
	slowConsumers atomic.Uint64
	active        sync.WaitGroup // sessions

	// authLim blocks sources that fail authentication too often (nil =
	// no limit); refusedLog and blockedLog rate-limit the log lines about
	// refused connections and blocked sources.
	authLim    *authLimiter
	refusedLog *logGate
	blockedLog *logGate

	// drainPoke and drainReport are how often Shutdown pokes idle
	// sessions and logs what it waits for (tests shorten them).
	drainPoke, drainReport time.Duration

	// statsMu makes stats answers be built one at a time (dispatch.go);
	// it guards the scratch they are built in.
	statsMu       sync.Mutex
	statsBuf      bytes.Buffer
	statsKeys     core.Stats
	statsChannels []core.ChannelStat
	statsClients  []clientStat
	// statsPace keeps back-to-back stats builds to half of one core,
	// however many connections pipeline them; a lone stats never waits.
	statsPace pacer

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]*listenerState
	stopped   []string // listeners whose accept loop ended on its own (ready.go)
	sessions  map[*session]struct{}
	attached  map[*core.Session]*session // named sessions by their connection (sessions.go)
	perIP     map[string]int
	nconns    int
	met       srvMetrics // metrics.go; guarded by mu except where noted
}

// New returns a Server configured by opts. It panics if opts.Engine is nil.
func New(opts Options) *Server {
	if opts.Engine == nil {
		panic("server: Options.Engine is required")
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = DefaultReadTimeout
	}
	if opts.WriteTimeout < 0 {
		opts.WriteTimeout = 0
	}
	s := &Server{
		opts:      opts,
		log:       opts.Logger,
		listeners: make(map[net.Listener]*listenerState),
		sessions:  make(map[*session]struct{}),
		attached:  make(map[*core.Session]*session),
		perIP:     make(map[string]int),

		drainPoke:   drainPokeEvery,
		drainReport: drainReportEvery,
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s.initAuthLimits()
	s.base, s.cancel = context.WithCancel(context.Background())
	return s
}

// Connections returns the number of open connections, including those
// still authenticating.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nconns
}

// Listener describes how the connections of one listener are served and
// authenticated. The zero value serves them with no connection-level
// authentication, under the name of the listener's network.
type Listener struct {
	// Transport is the registered transport name ("tcp", "tls", "unix",
	// "quic"), used in logs, auth.Peer and stats. "" means
	// l.Addr().Network(), reported as "tls" for TLS connections over tcp.
	Transport string
	// Peer, when non-nil, authenticates each connection as soon as it is
	// accepted (after the TLS handshake, if any) and before any request
	// is read. A refused connection is closed without a byte written.
	// Options.Auth, when set, still applies on top: both must pass.
	Peer auth.PeerAuthenticator
}

// Serve accepts connections on l and serves each in its own goroutine
// until Shutdown or Close. It is ServeListener(l, Listener{}).
func (s *Server) Serve(l net.Listener) error { return s.ServeListener(l, Listener{}) }

// ServeListener accepts connections on l and serves each in its own
// goroutine, as lo describes, until Shutdown or Close. A Server may serve
// any number of listeners at once; they share its engine, limits and
// stats. ServeListener closes l before returning. It always returns a
// non-nil error: ErrServerClosed after Shutdown or Close.
//
// Accept errors other than a closed listener are retried with exponential
// back-off (5 ms doubling to 1 s, reset by the next success).
func (s *Server) ServeListener(l net.Listener, lo Listener) error {
	guessed := lo.Transport == ""
	if guessed {
		lo.Transport = l.Addr().Network()
	}
	st := &listenerState{name: lo.Transport + "://" + l.Addr().String()}
	if !s.track(l, st) {
		l.Close()
		return ErrServerClosed
	}
	defer s.untrack(l)
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.shuttingDown() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				s.acceptStopped(st, err)
				return err
			}
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff *= 2; backoff > time.Second {
				backoff = time.Second
			}
			s.log.Warn("accept failed; backing off", "err", err, "retry_in", backoff)
			s.acceptFailing(st, err)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.base.Done():
				t.Stop()
			}
			s.acceptFailing(st, nil)
			continue
		}
		backoff = 0
		name := lo.Transport
		if guessed && name == "tcp" {
			if _, isTLS := c.(transport.TLSConner); isTLS {
				name = "tls" // Serve on a TLS listener, as before ServeListener
			}
		}
		pi := s.inspect(c, lo)
		if pi.limited {
			if left, blocked := s.authLim.blocked(pi.src); blocked {
				s.log.Debug("connection refused: source blocked after authentication failures",
					"transport", name, "remote", remoteName(c, pi.cred), "source", pi.src, "for", left)
				s.met.authBlocked.Add(1)
				c.Close() // nothing read, nothing written
				continue
			}
		}
		sess, ok := s.admit(c, name, lo.Peer, pi)
		if !ok {
			c.Close() // over a connection cap: no byte is written
			continue
		}
		go sess.serve()
	}
}

func (s *Server) shuttingDown() bool { return s.draining.Load() }

func (s *Server) track(l net.Listener, st *listenerState) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.draining.Load() {
		return false
	}
	s.listeners[l] = st
	return true
}

func (s *Server) untrack(l net.Listener) {
	s.mu.Lock()
	delete(s.listeners, l)
	s.mu.Unlock()
	l.Close()
}

// remoteIP returns the host part of addr, or the whole string when it has
// no port (Unix sockets).
func remoteIP(a net.Addr) string {
	if a == nil {
		return ""
	}
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// admit applies the connection caps (check and increment under one lock,
// so concurrent accepts cannot overshoot) and registers a session.
func (s *Server) admit(c net.Conn, transportName string, peerAuth auth.PeerAuthenticator, pi peerInfo) (*session, bool) {
	ip := remoteIP(c.RemoteAddr())
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.draining.Load() {
		return nil, false
	}
	if s.opts.MaxConns > 0 && s.nconns >= s.opts.MaxConns {
		s.log.Debug("connection refused: max connections", "remote", c.RemoteAddr())
		s.met.refused[refusedMaxConns]++
		return nil, false
	}
	if s.opts.MaxConnsPerIP > 0 && s.perIP[ip] >= s.opts.MaxConnsPerIP {
		s.log.Debug("connection refused: max connections per ip", "remote", c.RemoteAddr())
		s.met.refused[refusedPerIP]++
		return nil, false
	}
	s.nconns++
	s.perIP[ip]++
	sess := newSession(s, c, s.nextID.Add(1), ip, transportName, peerAuth, pi)
	s.sessions[sess] = struct{}{}
	s.met.accept(transportName)
	s.active.Add(1)
	return sess, true
}

// forget unregisters a finished session.
// With detach, the connection's named session is detached in the same
// step, and its owner's counters stay with the engine's detached sessions.
func (s *Server) forget(sess *session, detach bool) {
	s.mu.Lock()
	delete(s.sessions, sess)
	if detach {
		s.opts.Engine.DetachSession(sess.ns)
		delete(s.attached, sess.ns)
		sess.tag.detached.Store(true)
	}
	s.met.retire(sess, !detach)
	s.nconns--
	if n := s.perIP[sess.ip] - 1; n > 0 {
		s.perIP[sess.ip] = n
	} else {
		delete(s.perIP, sess.ip)
	}
	s.mu.Unlock()
	s.active.Done()
}

// clientStat is one entry of the `clients` array of stats.
type clientStat struct {
	ID        uint64 `json:"id"`
	Transport string `json:"transport"`
	Remote    string `json:"remote"`
	Identity  string `json:"identity"`
	Name      string `json:"name"` // set by the name extension, "" = none
}

// clients lists at most limit open sessions (limit < 0: all), an
// arbitrary subset sorted by id, in dst's storage (its contents are
// replaced), and returns how many there are. The slice is never nil. The
// server's mutex is held only while the listed sessions are copied.
func (s *Server) clients(dst []clientStat, limit int) (out []clientStat, total int) {
	s.mu.Lock()
	total = len(s.sessions)
	n := total
	if limit >= 0 {
		n = min(n, limit)
	}
	out = slices.Grow(dst[:0], n)
	if out == nil {
		out = []clientStat{} // JSON []
	}
	for sess := range s.sessions {
		if len(out) == n {
			break
		}
		out = append(out, clientStat{
			ID:        sess.id,
			Transport: sess.transport,
			Remote:    sess.remote,
			Identity:  sess.identity(),
			Name:      sess.connName(),
		})
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b clientStat) int { return cmp.Compare(a.ID, b.ID) })
	return out, total
}

// Shutdown stops the server gracefully (docs/protocol.md, Connections):
// it closes every listener; closes at once every connection that holds
// nothing (no lease, no queued or granted enqueue record) and has no
// request in flight; answers blocked lock waits, and any later request,
// with `error_draining` and closes that connection; and waits for the
// remaining connections (holders of leases) to end, closing each one as
// soon as it holds nothing. While it waits it logs, at INFO, how many
// connections and leases remain (after 100 ms, then every 5 s). If ctx
// ends first, the remaining connections are closed (their locks are
// released as on any disconnect) and ctx's error is returned once their
// sessions have finished.
func (s *Server) Shutdown(ctx context.Context) error {
	s.beginDrain()
	s.poke()
	done := make(chan struct{})
	go func() { s.active.Wait(); close(done) }()
	poke := time.NewTicker(s.drainPoke)
	defer poke.Stop()
	report := time.NewTimer(min(drainFirstReport, s.drainReport))
	defer report.Stop()
	reported := false
	for {
		select {
		case <-done:
			if reported {
				s.log.Info("shutdown: all connections closed")
			}
			return nil
		case <-poke.C:
			s.poke()
		case <-report.C:
			s.reportDrain(ctx)
			reported = true
			report.Reset(s.drainReport)
		case <-ctx.Done():
			conns, leases := s.Remaining()
			s.log.Info("shutdown: deadline reached, closing the remaining connections", "connections", conns, "leases", leases)
			s.closeSessions()
			<-done
			return ctx.Err()
		}
	}
}

// reportDrain logs what Shutdown still waits for.
func (s *Server) reportDrain(ctx context.Context) {
	conns, leases := s.Remaining()
	if conns == 0 {
		return
	}
	args := []any{"connections", conns, "leases", leases}
	if dl, ok := ctx.Deadline(); ok {
		args = append(args, "force_close_in", time.Until(dl).Round(time.Second).String())
	}
	s.log.Info("shutdown: waiting for connections that hold leases or queued places (they close when they hold nothing)", args...)
}

// Close closes all listeners and connections immediately and waits for
// their sessions to finish cleaning up.
func (s *Server) Close() error {
	s.beginDrain()
	s.closeSessions()
	s.active.Wait()
	return nil
}

func (s *Server) beginDrain() {
	s.mu.Lock()
	s.draining.Store(true)
	ls := make([]net.Listener, 0, len(s.listeners))
	for l := range s.listeners {
		ls = append(ls, l)
	}
	s.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
	s.cancel()
}

// DropConnections closes every client connection without stopping the
// server: in the replicated mode, when this node stops leading, its
// clients reconnect to the new leader (named sessions resume there).
func (s *Server) DropConnections() {
	s.mu.Lock()
	conns := make([]net.Conn, 0, len(s.sessions))
	for sess := range s.sessions {
		if !sess.keepOnDrop.Load() {
			conns = append(conns, sess.conn)
		}
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (s *Server) closeSessions() {
	s.mu.Lock()
	s.closed = true
	for sess := range s.sessions {
		sess.conn.Close()
	}
	s.mu.Unlock()
}
