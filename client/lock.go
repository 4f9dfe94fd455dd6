package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/dflockd/dflockd/protocol"
)

// Defaults of the Lock and Semaphore fields.
const (
	// DefaultAcquireTimeout is used when AcquireTimeout is zero.
	DefaultAcquireTimeout = 10 * time.Second
	// DefaultRenewRatio is used when RenewRatio is zero: renew at half
	// the lease.
	DefaultRenewRatio = 0.5
	// DefaultRenewJitter is used when RenewJitter is zero.
	DefaultRenewJitter = 0.10
)

// renewStopGrace is how long stopping the renewal waits for a renewal
// in flight before it force-closes the connection.
const renewStopGrace = 2 * time.Second

// byeTimeout bounds the best-effort bye that ends a session when an
// acquisition ends (Release, Close, a failed or cancelled Acquire),
// reconnecting first if needed.
const byeTimeout = 2 * time.Second

// Back-off between reconnection attempts after a dropped connection.
const (
	reconnectMinBackoff = 50 * time.Millisecond
	reconnectMaxBackoff = time.Second
)

// raceReleaseTimeout bounds the best-effort release of a grant that raced
// with the cancellation of its acquire.
const raceReleaseTimeout = 2 * time.Second

// Lock is a distributed mutex on one key, held through a connection of
// its own to the server that owns the key (or to the leader of the
// cluster that owns it: see Cluster). Set the fields, then call
// Acquire (or Enqueue and Wait); while the lock is held its lease is
// renewed in the background on the same connection, until Release or
// Close. Zero fields take the documented defaults.
//
// The connection names a session (unless NoSession is set, or the server
// has no sessions), so that a dropped connection does not lose the lock
// or the place in the queue: the client reconnects and resumes by itself,
// and Lost fires only when the lock is really gone. See "Sessions" in the
// package documentation.
//
//	l := &client.Lock{Key: "my-resource", Servers: []string{"127.0.0.1:6388"}}
//	ok, err := l.Acquire(ctx) // false = timed out
//	defer l.Release(ctx)
//
// The fields are read by Acquire and Enqueue; changing them while the lock
// is held affects only the next acquisition. The methods must not be
// called concurrently with each other, except Token, Lost and Close, which
// may be called at any time. A Lock must not be copied after first use.
type Lock struct {
	// Key is the lock's name: 1 to 256 bytes, no whitespace. Required.
	Key string
	// AcquireTimeout is how long Acquire waits for the lock (0 =
	// DefaultAcquireTimeout, 10s; negative = try once without waiting).
	// It is rounded up to whole seconds.
	AcquireTimeout time.Duration
	// LeaseTTL is the lease asked for, in seconds (0 = the server's
	// default). Each renewal asks for it again.
	LeaseTTL int
	// Servers lists the servers the keys are sharded over (empty =
	// DefaultServer, "127.0.0.1:6388", unless Cluster is set). Entries
	// are addresses as for Dial: "host:port" or endpoint URLs such as
	// "tls://host:port" and "unix:///run/dflockd.sock". An entry that
	// lists several addresses separated by commas is one replicated
	// cluster, its members (one member given alone: end it with a
	// comma): to shard keys over three clusters, give three such entries
	// (see "Clusters" in the package documentation).
	Servers []string
	// Cluster lists the members of one replicated cluster that holds
	// every key: the client finds its leader and follows it through
	// failovers (see "Clusters" in the package documentation). It is
	// the same as Servers with one entry listing the members separated
	// by commas; set one or the other, not both.
	Cluster []string
	// ShardFunc picks the server for Key (nil = CRC32Shard).
	ShardFunc ShardFunc
	// RenewRatio is the fraction of the lease after which it is renewed
	// (0 = DefaultRenewRatio, 0.5). It must lie in [0, 1).
	RenewRatio float64
	// RenewJitter makes each renewal up to this fraction of its interval
	// earlier, at random, so that many holders do not renew in lockstep
	// (0 = DefaultRenewJitter, 0.10; negative = no jitter). It must be
	// below 1.
	RenewJitter float64
	// TLSConfig is the TLS configuration; with a bare "host:port" server
	// it also selects TLS. See Options.TLS.
	TLSConfig *tls.Config
	// AuthToken is sent in the auth handshake when non-empty.
	AuthToken string
	// Name names each connection the Lock dials; see Options.Name.
	Name string
	// Transport names the transport for bare server addresses; see
	// Options.Transport.
	Transport string
	// DialTimeout bounds connecting, including the TLS and auth
	// handshakes; see Options.DialTimeout (0 = DefaultDialTimeout, 10s).
	DialTimeout time.Duration
	// OnRenewError, when set, is called (from the renewal goroutine) with
	// the error that ended the lease: a renewal that failed or, with a
	// session, a reconnection that gave up (see Lost). The lease is then
	// considered lost: renewal stops, Token returns "" and Lost is closed.
	OnRenewError func(error)
	// NoSession turns off the named session (see "Sessions" in the
	// package documentation): the lock is then tied to its connection, as
	// with dflockd 1.x, and a dropped connection loses it. The client
	// also goes without when the server answers `error` to session (a
	// server without sessions, or one at its --max-sessions), and then
	// does not ask again for this Lock.
	NoSession bool
	// SessionTTL is the session TTL asked for: how long the server keeps
	// the lock and the queue place after the connection drops, waiting
	// for the client to reconnect (0 = the server's default, 15s unless
	// configured; the server caps it at its maximum, 300s unless
	// configured). Rounded up to whole seconds; negative is invalid.
	SessionTTL time.Duration

	h holder
}

// Semaphore is a distributed counting semaphore: up to Limit holders of
// Key at once. It behaves exactly like Lock, whose documentation applies,
// with the semaphore commands of the protocol (sl, se, sw, sr, sn); lock
// and semaphore keys live in separate namespaces.
type Semaphore struct {
	// Key is the semaphore's name: 1 to 256 bytes, no whitespace.
	// Required.
	Key string
	// Limit is the number of slots; it must be at least 1, and every user
	// of Key must pass the same limit (else ErrLimitMismatch).
	Limit int
	// AcquireTimeout, LeaseTTL, Servers, Cluster, ShardFunc,
	// RenewRatio, RenewJitter, TLSConfig, AuthToken, Name, Transport,
	// DialTimeout, OnRenewError, NoSession and SessionTTL are as for
	// Lock.
	AcquireTimeout time.Duration
	LeaseTTL       int
	Servers        []string
	Cluster        []string
	ShardFunc      ShardFunc
	RenewRatio     float64
	RenewJitter    float64
	TLSConfig      *tls.Config
	AuthToken      string
	Name           string
	Transport      string
	DialTimeout    time.Duration
	OnRenewError   func(error)
	NoSession      bool
	SessionTTL     time.Duration

	h holder
}

// Acquire dials the server that owns Key (ending any previous
// acquisition first, as Close does), authenticates, names a session and
// waits up to AcquireTimeout for the lock. It reports true once the lock
// is held, and starts the background renewal. When the wait times out it
// returns (false, nil) and ends the connection and its session.
//
// If the connection drops while Acquire waits, it reconnects and resumes
// the session, keeping its place in the queue, and goes on waiting for
// what is left of AcquireTimeout; if the place was lost meanwhile (granted
// while away and its lease ran out), it asks again, at the back of the
// queue. It returns an error wrapping ErrSessionGone when the session
// could not be resumed within its TTL.
//
// If ctx ends first, the connection is closed and the session ended (over
// a new connection, best-effort, within about two seconds), so the server
// drops the wait or, had the grant already happened, releases the lock;
// without a session, a grant that raced with the cancellation is released
// explicitly, best-effort. No lock is left held.
func (l *Lock) Acquire(ctx context.Context) (bool, error) {
	cfg, err := l.config()
	if err != nil {
		return false, err
	}
	return l.h.acquire(ctx, cfg)
}

// Enqueue dials the server that owns Key, as Acquire, and joins the
// lock's queue without blocking. It returns "acquired" when the lock was
// free (it is then held and renewed) or "queued"; either way, call Wait.
func (l *Lock) Enqueue(ctx context.Context) (string, error) {
	cfg, err := l.config()
	if err != nil {
		return "", err
	}
	return l.h.enqueue(ctx, cfg)
}

// Wait waits up to timeout for the lock after Enqueue, on the same
// connection. Without a pending Enqueue it returns an error wrapping
// ErrNotQueued. When the wait times out it returns (false, nil) and ends
// the connection: Enqueue again to rejoin the queue. A dropped connection
// and context cancellation are handled as by Acquire. (Enqueue itself
// does not reconnect: a connection that drops during it yields an error.)
func (l *Lock) Wait(ctx context.Context, timeout time.Duration) (bool, error) {
	return l.h.wait(ctx, timeout)
}

// Release stops the renewal, releases the lock if it is held ("r"), and
// ends the connection — with a session, by "bye", so that nothing stays on
// the server (a queue place, a detached session). If the connection is
// down, Release reconnects and resumes the session first, within ctx and
// the session TTL. Releasing while only queued just ends the connection.
// It returns nil when nothing was held, and the release's error otherwise
// (ErrServer when the lease was no longer held).
func (l *Lock) Release(ctx context.Context) error { return l.h.release(ctx) }

// Close stops the renewal and ends the connection without releasing the
// lock explicitly; the server then releases what the connection held, as
// when an unnamed connection closes (unless it keeps locks on
// disconnect, in which case the lease runs out). With a session, Close
// sends "bye" first so that this happens at once rather than at the end
// of the session TTL: on the connection when it is idle, else (it is down,
// or an Acquire is waiting on it) over a new connection that resumes the
// session. That is best-effort and bounded by about two seconds; a
// session whose server cannot be reached then stays detached on the
// server, with what it held, until its TTL ends. A blocked Acquire or
// Wait fails with ErrClosed. Close is idempotent.
func (l *Lock) Close() error { return l.h.close() }

// Token returns the lease token of the held lock, or "" when none is
// held — also after a failed or timed-out re-acquisition and after the
// lease was lost.
func (l *Lock) Token() string { return l.h.currentToken() }

// Lost returns a channel that is closed when the lease of the current
// acquisition is lost (the same moment OnRenewError is called): when the
// server refuses a renewal (the lease expired or was taken), or — with a
// session — when a dropped connection could not be resumed in time: the
// server answered that the session is gone (ErrSessionGone), or the
// client could not reconnect before the session TTL or the lease, counted
// from the last renewal the server answered, could have run out
// (ErrSessionGone or ErrLeaseExpired). A dropped connection that is
// resumed in time does not close it. Without a session, any failed
// renewal closes it. Release and Close do not close it. It returns nil, a
// channel that never closes, when nothing was acquired yet.
func (l *Lock) Lost() <-chan struct{} { return l.h.lostChan() }

func (l *Lock) config() (resourceConfig, error) {
	servers, err := shards(l.Servers, l.Cluster)
	if err != nil {
		return resourceConfig{}, err
	}
	return newResourceConfig(false, l.Key, 1, l.AcquireTimeout, l.LeaseTTL, servers, l.ShardFunc,
		l.RenewRatio, l.RenewJitter, Options{TLS: l.TLSConfig, AuthToken: l.AuthToken, Name: l.Name, Transport: l.Transport, DialTimeout: l.DialTimeout},
		l.OnRenewError, !l.NoSession, l.SessionTTL)
}

// Acquire takes one slot, as Lock.Acquire.
func (s *Semaphore) Acquire(ctx context.Context) (bool, error) {
	cfg, err := s.config()
	if err != nil {
		return false, err
	}
	return s.h.acquire(ctx, cfg)
}

// Enqueue joins the semaphore's queue, as Lock.Enqueue.
func (s *Semaphore) Enqueue(ctx context.Context) (string, error) {
	cfg, err := s.config()
	if err != nil {
		return "", err
	}
	return s.h.enqueue(ctx, cfg)
}

// Wait waits for the slot after Enqueue, as Lock.Wait.
func (s *Semaphore) Wait(ctx context.Context, timeout time.Duration) (bool, error) {
	return s.h.wait(ctx, timeout)
}

// Release releases the slot, as Lock.Release.
func (s *Semaphore) Release(ctx context.Context) error { return s.h.release(ctx) }

// Close ends the connection, as Lock.Close.
func (s *Semaphore) Close() error { return s.h.close() }

// Token returns the slot's lease token, as Lock.Token.
func (s *Semaphore) Token() string { return s.h.currentToken() }

// Lost reports a lost lease, as Lock.Lost.
func (s *Semaphore) Lost() <-chan struct{} { return s.h.lostChan() }

func (s *Semaphore) config() (resourceConfig, error) {
	if err := checkLimit(s.Limit); err != nil {
		return resourceConfig{}, err
	}
	servers, err := shards(s.Servers, s.Cluster)
	if err != nil {
		return resourceConfig{}, err
	}
	return newResourceConfig(true, s.Key, s.Limit, s.AcquireTimeout, s.LeaseTTL, servers, s.ShardFunc,
		s.RenewRatio, s.RenewJitter, Options{TLS: s.TLSConfig, AuthToken: s.AuthToken, Name: s.Name, Transport: s.Transport, DialTimeout: s.DialTimeout},
		s.OnRenewError, !s.NoSession, s.SessionTTL)
}

// shards returns the list of shards of Servers and Cluster: Cluster is
// one shard, its members joined by commas.
func shards(servers, cluster []string) ([]string, error) {
	if len(cluster) == 0 {
		return servers, nil
	}
	if len(servers) > 0 {
		return nil, invalid("Servers and Cluster are both set: list clusters in Servers, one entry each, its members separated by commas")
	}
	for _, m := range cluster {
		if strings.TrimSpace(m) == "" || strings.Contains(m, ",") {
			return nil, invalid("cluster member %q: want one address", m)
		}
	}
	// A trailing comma keeps a cluster of one member a cluster.
	return []string{strings.Join(cluster, ",") + ","}, nil
}

// dial connects to cfg's server, or to the leader of cfg's cluster.
func (c resourceConfig) dial(ctx context.Context) (*Conn, error) {
	if len(c.opts.Cluster) > 0 {
		return Dial(ctx, "", c.opts)
	}
	return Dial(ctx, c.server, c.opts)
}

// resourceConfig is a validated snapshot of a Lock's or Semaphore's
// fields, taken at the start of an acquisition.
type resourceConfig struct {
	sem     bool
	key     string
	limit   int
	timeout time.Duration
	lease   []LeaseOption
	server  string
	opts    Options
	ratio   float64
	jitter  float64
	onError func(error)
	// session: name a session (unless the server lacks them), asking for
	// sessionTTL (0 = the server's default).
	session    bool
	sessionTTL time.Duration
}

func newResourceConfig(sem bool, key string, limit int, timeout time.Duration, lease int, servers []string,
	shard ShardFunc, ratio, jitter float64, opts Options, onError func(error), session bool, sessionTTL time.Duration) (resourceConfig, error) {
	if err := checkKey("key", key); err != nil {
		return resourceConfig{}, err
	}
	if err := checkLease(int64(lease)); err != nil {
		return resourceConfig{}, err
	}
	if sessionTTL != 0 {
		if _, err := seconds("session ttl", sessionTTL); err != nil {
			return resourceConfig{}, err
		}
	}
	switch {
	case ratio == 0:
		ratio = DefaultRenewRatio
	case ratio < 0 || ratio >= 1:
		return resourceConfig{}, invalid("RenewRatio %v: must be in [0, 1)", ratio)
	}
	switch {
	case jitter == 0:
		jitter = DefaultRenewJitter
	case jitter < 0:
		jitter = 0
	case jitter >= 1:
		return resourceConfig{}, invalid("RenewJitter %v: must be below 1", jitter)
	}
	switch {
	case timeout == 0:
		timeout = DefaultAcquireTimeout
	case timeout < 0:
		timeout = 0
	}
	if len(servers) == 0 {
		servers = []string{DefaultServer}
	}
	if shard == nil {
		shard = CRC32Shard
	}
	i := shard(key, len(servers))
	if i < 0 || i >= len(servers) {
		return resourceConfig{}, invalid("ShardFunc returned %d for %d servers", i, len(servers))
	}
	server := servers[i]
	if strings.Contains(server, ",") {
		// A cluster: its members, for Options.Cluster.
		server = strings.TrimSuffix(server, ",")
		opts.Cluster = strings.Split(server, ",")
	}
	cfg := resourceConfig{
		sem: sem, key: key, limit: limit, timeout: timeout, server: server,
		opts: opts, ratio: ratio, jitter: jitter, onError: onError,
		session: session, sessionTTL: sessionTTL,
	}
	if lease > 0 {
		cfg.lease = []LeaseOption{WithLeaseTTL(lease)}
	}
	return cfg, nil
}

// holder is the state shared by Lock and Semaphore: one connection (and
// the session it named, if any), at most one held lease and its renewal
// goroutine.
type holder struct {
	mu        sync.Mutex
	conn      *Conn
	cfg       resourceConfig     // of the current acquisition
	sess      *Session           // named by the current acquisition; nil = none
	noSession bool               // the server answered `error` to session: do not ask again
	token     string             // held lease; "" = none
	enqueued  bool               // Enqueue answered, Wait not yet called
	lost      chan struct{}      // of the current acquisition
	renewal   *renewal           // running renewal, if any
	gen       context.Context    // of the current acquisition: ends with it
	genCancel context.CancelFunc //
}

// renewal is one background renewal goroutine.
type renewal struct {
	ctx  context.Context // cancelled to ask the goroutine to end
	stop context.CancelFunc
	done chan struct{} // closed by the goroutine when it ends
}

// acquisition is what detach takes out of a holder.
type acquisition struct {
	conn  *Conn
	sess  *Session
	token string
	cfg   resourceConfig
}

// detach takes the connection, session and lease out of h and ends the
// acquisition (a reconnection in progress gives up). The caller stops the
// renewal first, and says goodbye on the connection.
func (h *holder) detach() acquisition {
	h.mu.Lock()
	defer h.mu.Unlock()
	a := acquisition{conn: h.conn, sess: h.sess, token: h.token, cfg: h.cfg}
	h.conn, h.sess, h.token, h.enqueued = nil, nil, "", false
	if h.genCancel != nil {
		h.genCancel()
		h.gen, h.genCancel = nil, nil
	}
	return a
}

// stopRenewal takes the running renewal out of h, asks it to end and
// waits for it. A renewal stuck in I/O for more than renewStopGrace gets
// the current connection force-closed.
func (h *holder) stopRenewal() {
	h.mu.Lock()
	r := h.renewal
	h.renewal = nil
	h.mu.Unlock()
	if r == nil {
		return
	}
	r.stop()
	t := time.NewTimer(renewStopGrace)
	defer t.Stop()
	select {
	case <-r.done:
	case <-t.C:
		h.mu.Lock()
		c := h.conn
		h.mu.Unlock()
		if c != nil {
			c.abort()
		}
		<-r.done
	}
}

// end ends the current acquisition: the renewal stops and, when it named
// a session, the session ends with bye (see goodbye); else the connection
// closes, which makes the server release what it held.
func (h *holder) end() error {
	h.stopRenewal()
	a := h.detach()
	if a.conn == nil {
		return nil
	}
	return goodbye(context.Background(), a.conn, a.sess, a.cfg)
}

// goodbye ends a connection and its session, if it named one, so that
// nothing lingers on the server: bye on c when it is open and idle, else
// (c failed, or a request is still in flight) c is closed and the session
// is resumed on a fresh connection to say bye there. Both are best-effort
// and bounded by byeTimeout; a session that cannot be reached stays
// detached on the server until its TTL ends.
func goodbye(ctx context.Context, c *Conn, sess *Session, cfg resourceConfig) error {
	if sess == nil {
		return c.Close()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), byeTimeout)
	defer cancel()
	if c.idle() {
		if err := c.Bye(ctx); err == nil {
			return nil
		}
	}
	c.Close()
	nc, _, _, err := resumeSession(ctx, cfg, *sess, time.Now().Add(byeTimeout), ErrSessionGone)
	if err != nil {
		return nil // gone already, or unreachable: it ends at its TTL
	}
	if err := nc.Bye(ctx); err != nil {
		nc.Close()
	}
	return nil
}

// dial opens a connection for cfg after ending the previous acquisition,
// names its session unless that is off, and installs it as the current
// acquisition.
func (h *holder) dial(ctx context.Context, cfg resourceConfig) (*Conn, error) {
	_ = h.end()
	c, sess, err := h.open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.conn, h.cfg, h.sess = c, cfg, sess
	h.gen, h.genCancel = context.WithCancel(context.Background())
	h.mu.Unlock()
	return c, nil
}

// restart ends the session of c, the current connection, with bye (which
// releases what it holds) and replaces it by a new connection and
// session.
func (h *holder) restart(ctx context.Context, c *Conn, cfg resourceConfig) (*Conn, error) {
	if err := c.Bye(ctx); err != nil {
		c.Close()
		return c, err
	}
	nc, sess, err := h.open(ctx, cfg)
	if err != nil {
		return c, err
	}
	h.mu.Lock()
	current := h.conn == c
	if current {
		h.conn, h.sess = nc, sess
	}
	h.mu.Unlock()
	if !current {
		_ = goodbye(ctx, nc, sess, cfg)
		return c, fmt.Errorf("client: reconnect: %w", ErrClosed)
	}
	return nc, nil
}

// open dials cfg's server and names its session unless that is off. A
// cluster's leader that stops leading before it answers (the connection
// fails) is looked for again, with back-off, within the dial timeout.
func (h *holder) open(ctx context.Context, cfg resourceConfig) (*Conn, *Session, error) {
	var until time.Time
	if d := cfg.opts.dialTimeout(); d > 0 {
		until = time.Now().Add(d)
	}
	backoff := reconnectMinBackoff
	for {
		c, err := cfg.dial(ctx)
		if err != nil {
			return nil, nil, err
		}
		h.mu.Lock()
		named := cfg.session && !h.noSession
		h.mu.Unlock()
		if !named {
			return c, nil, nil
		}
		s, err := c.Session(ctx, cfg.sessionTTL)
		switch {
		case err == nil:
			return c, &s, nil
		case errors.Is(err, ErrUnsupported):
			// A server without sessions (1.x): the lock works as there,
			// tied to the connection. Remembered for this Lock.
			h.mu.Lock()
			h.noSession = true
			h.mu.Unlock()
			return c, nil, nil
		}
		c.Close()
		if !c.leader || !isConnError(err) || ctx.Err() != nil || (!until.IsZero() && time.Now().After(until)) {
			return nil, nil, err
		}
		t := time.NewTimer(backoff - time.Duration(rand.Int64N(int64(backoff)/4+1)))
		backoff = min(2*backoff, reconnectMaxBackoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, fmt.Errorf("client: dial %s: %w", cfg.server, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// abandon ends an acquisition whose request on c failed: with a session,
// goodbye makes the server drop the place (or release a grant that raced
// with a cancelled context); without one, closing c does, and a raced
// grant is also released explicitly, best-effort. Nothing is done when c
// stopped being the current connection meanwhile: whoever ended the
// acquisition (Close) cleans up.
func (h *holder) abandon(ctx context.Context, c *Conn, cfg resourceConfig, resp *protocol.Response) {
	h.mu.Lock()
	mine := h.conn == c
	h.mu.Unlock()
	if !mine {
		c.Close()
		return
	}
	a := h.detach()
	if a.sess != nil {
		_ = goodbye(ctx, c, a.sess, cfg)
		return
	}
	c.Close()
	if resp.Token != "" && ctx.Err() != nil {
		releaseRaced(ctx, cfg, resp.Token)
	}
}

// releaseRaced releases token over a fresh connection, ignoring errors.
// Closing the acquiring connection already makes the server release the
// lock unless it keeps locks on disconnect; this covers that case.
func releaseRaced(ctx context.Context, cfg resourceConfig, token string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), raceReleaseTimeout)
	defer cancel()
	c, err := cfg.dial(ctx)
	if err != nil {
		return
	}
	defer c.Close()
	_ = c.release(ctx, cfg.sem, cfg.key, token)
}

// hold records a granted lease on c and starts renewing it. It fails with
// ErrClosed when c stopped being the current connection meanwhile (Close
// was called, and ended the session or closed c).
func (h *holder) hold(c *Conn, token string, leaseTTL int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn != c {
		c.Close()
		return fmt.Errorf("client: acquire %s: %w", h.cfg.key, ErrClosed)
	}
	if h.token != token || h.lost == nil {
		h.lost = make(chan struct{})
	}
	h.token = token
	ctx, stop := context.WithCancel(context.Background())
	r := &renewal{ctx: ctx, stop: stop, done: make(chan struct{})}
	h.renewal = r
	go h.renew(r, c, h.cfg, token, leaseTTL, h.lost)
	return nil
}

// sessionOf returns the session of the current acquisition if c is its
// connection, else nil.
func (h *holder) sessionOf(c *Conn) *Session {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn != c {
		return nil
	}
	return h.sess
}

// reconnect replaces c, the current connection, which failed, by a new
// connection that resumed the session: it retries with back-off (see
// resumeSession) until deadline or until ctx or the acquisition ends. It
// returns the new connection and the counts of the resume. When resume
// answers error_session, the acquisition forgets the session.
func (h *holder) reconnect(ctx context.Context, c *Conn, deadline time.Time, expired error) (*Conn, int, int, error) {
	h.mu.Lock()
	if h.conn != c || h.sess == nil {
		h.mu.Unlock()
		return nil, 0, 0, fmt.Errorf("client: reconnect: %w", ErrClosed)
	}
	sess, cfg, gen := *h.sess, h.cfg, h.gen
	h.mu.Unlock()
	c.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(gen, cancel)()

	nc, held, queued, err := resumeSession(ctx, cfg, sess, deadline, expired)
	h.mu.Lock()
	current := h.conn == c
	switch {
	case err != nil:
		if current && answerStatus(err) == protocol.StatusErrSession {
			h.sess = nil
		}
	case current:
		h.conn = nc
	}
	h.mu.Unlock()
	switch {
	case err != nil:
		if gen.Err() != nil && ctx.Err() != nil {
			err = fmt.Errorf("client: reconnect: %w", ErrClosed)
		}
		return nil, 0, 0, err
	case !current:
		// The acquisition ended meanwhile (Close): end the session just
		// taken over.
		_ = goodbye(context.Background(), nc, &sess, cfg)
		return nil, 0, 0, fmt.Errorf("client: reconnect: %w", ErrClosed)
	}
	return nc, held, queued, nil
}

// resumeSession dials cfg's server and resumes sess, retrying with
// exponential back-off (reconnectMinBackoff to reconnectMaxBackoff, with
// jitter) after failures to connect or to get an answer, until deadline
// or ctx ends; past deadline the error wraps expired (ErrSessionGone for
// the session TTL, ErrLeaseExpired for the end of a lease) and the last
// failure. A refused auth token, a resume answered error_session
// (ErrSessionGone) or any other answer is final.
func resumeSession(ctx context.Context, cfg resourceConfig, sess Session, deadline time.Time, expired error) (*Conn, int, int, error) {
	backoff := reconnectMinBackoff
	var lastErr error
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			d := backoff - time.Duration(rand.Int64N(int64(backoff)/4+1))
			backoff = min(2*backoff, reconnectMaxBackoff)
			if left := time.Until(deadline); d > left {
				d = left
			}
			t := time.NewTimer(max(d, 0))
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, 0, 0, fmt.Errorf("client: reconnect to %s: %w", cfg.server, context.Cause(ctx))
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			return nil, 0, 0, fmt.Errorf("client: reconnect to %s: %w", cfg.server, context.Cause(ctx))
		}
		if !time.Now().Before(deadline) {
			return nil, 0, 0, fmt.Errorf("client: reconnect to %s: %w: not resumed in time (session ttl %s): %w",
				cfg.server, expired, sess.TTL, lastErr)
		}
		actx, cancel := context.WithDeadline(ctx, deadline)
		c, err := cfg.dial(actx)
		if err == nil {
			var held, queued int
			held, queued, err = c.Resume(actx, sess.ID, sess.Secret)
			if err == nil {
				cancel()
				return c, held, queued, nil
			}
			c.Close()
		}
		cancel()
		if final(err) || isAnswer(err) {
			return nil, 0, 0, fmt.Errorf("client: reconnect to %s: %w", cfg.server, err)
		}
		if ctx.Err() != nil {
			return nil, 0, 0, fmt.Errorf("client: reconnect to %s: %w", cfg.server, context.Cause(ctx))
		}
		lastErr = err
	}
}

// await sends the blocking request of an acquisition — l (Acquire) or w
// (Wait) — on c and, when c's connection drops while it waits and a
// session is named, reconnects, resumes and collects the place with w (or,
// when the session came back without it, asks again with l), within what
// is left of timeout. It returns the connection last used.
func (h *holder) await(ctx context.Context, c *Conn, cfg resourceConfig, timeout time.Duration,
	first func(*Conn) (protocol.Response, error)) (*Conn, protocol.Response, error) {
	start := time.Now()
	resp, err := first(c)
	for err != nil && isConnError(err) && ctx.Err() == nil {
		sess := h.sessionOf(c)
		if sess == nil {
			break
		}
		nc, held, queued, rerr := h.reconnect(ctx, c, time.Now().Add(sess.TTL), ErrSessionGone)
		if rerr != nil {
			return c, protocol.Response{}, rerr
		}
		c = nc
		left := max(timeout-time.Since(start), 0)
		if held+queued > 0 {
			resp, err = c.wait(ctx, cfg.sem, cfg.key, left)
			st := answerStatus(err)
			if st != protocol.StatusErrNotEnqueued && st != protocol.StatusErrLeaseExpired {
				continue
			}
			if held > 0 && st == protocol.StatusErrNotEnqueued {
				// The session holds a slot it cannot collect: a grant
				// whose answer was lost (a cluster's leader died
				// between the grant and the answer). Ending the session
				// releases it; a new one asks again.
				if c, err = h.restart(ctx, c, cfg); err != nil {
					return c, protocol.Response{}, err
				}
			}
		}
		// The place is gone: the request never reached the server, or
		// the place was granted while away and its lease ran out
		// (error_not_enqueued, or error_lease_expired when the server
		// still knew of the grant). Ask again, at the back of the queue.
		resp, err = c.acquire(ctx, cfg.sem, cfg.key, left, cfg.limit, cfg.lease)
	}
	return c, resp, err
}

func (h *holder) acquire(ctx context.Context, cfg resourceConfig) (bool, error) {
	c, err := h.dial(ctx, cfg)
	if err != nil {
		return false, err
	}
	c, resp, err := h.await(ctx, c, cfg, cfg.timeout, func(c *Conn) (protocol.Response, error) {
		return c.acquire(ctx, cfg.sem, cfg.key, cfg.timeout, cfg.limit, cfg.lease)
	})
	if err != nil {
		h.abandon(ctx, c, cfg, &resp)
		if errors.Is(err, ErrTimeout) {
			return false, nil
		}
		return false, err
	}
	if err := h.hold(c, resp.Token, int(resp.TTL/time.Second)); err != nil {
		return false, err
	}
	return true, nil
}

func (h *holder) enqueue(ctx context.Context, cfg resourceConfig) (string, error) {
	c, err := h.dial(ctx, cfg)
	if err != nil {
		return "", err
	}
	resp, err := c.enqueue(ctx, cfg.sem, cfg.key, cfg.limit, cfg.lease)
	if err != nil {
		h.abandon(ctx, c, cfg, &resp)
		return "", err
	}
	if resp.Status == protocol.StatusAcquired {
		if err := h.hold(c, resp.Token, int(resp.TTL/time.Second)); err != nil {
			return "", err
		}
	}
	h.mu.Lock()
	if h.conn == c {
		h.enqueued = true
	}
	h.mu.Unlock()
	return resp.Status.String(), nil
}

func (h *holder) wait(ctx context.Context, timeout time.Duration) (bool, error) {
	h.mu.Lock()
	enqueued := h.conn != nil && h.enqueued
	h.enqueued = false
	h.mu.Unlock()
	if !enqueued {
		return false, fmt.Errorf("client: wait: %w", ErrNotQueued)
	}
	h.stopRenewal() // Enqueue acquired: w restarts the lease
	h.mu.Lock()
	c, cfg := h.conn, h.cfg
	h.mu.Unlock()
	if c == nil {
		return false, fmt.Errorf("client: wait: %w", ErrClosed)
	}
	c, resp, err := h.await(ctx, c, cfg, timeout, func(c *Conn) (protocol.Response, error) {
		return c.wait(ctx, cfg.sem, cfg.key, timeout)
	})
	if err != nil {
		h.abandon(ctx, c, cfg, &resp)
		if errors.Is(err, ErrTimeout) {
			return false, nil
		}
		return false, err
	}
	if err := h.hold(c, resp.Token, int(resp.TTL/time.Second)); err != nil {
		return false, err
	}
	return true, nil
}

func (h *holder) release(ctx context.Context) error {
	h.stopRenewal()
	a := h.detach()
	if a.conn == nil {
		return nil
	}
	c := a.conn
	var err error
	if a.token != "" {
		err = c.release(ctx, a.cfg.sem, a.cfg.key, a.token)
		for a.sess != nil && (isConnError(err) || errors.Is(err, ErrClosed)) && ctx.Err() == nil {
			// The connection dropped (maybe while the renewal was
			// reconnecting): take the session over to release.
			nc, held, _, rerr := resumeSession(ctx, a.cfg, *a.sess, time.Now().Add(a.sess.TTL), ErrSessionGone)
			if rerr != nil {
				return rerr
			}
			c = nc
			if held == 0 {
				// The release took effect before the connection dropped
				// (a cluster's leader died before answering it): had
				// the lease run out, the renewal would have reported it
				// lost and there would be no token to release.
				err = nil
				break
			}
			err = c.release(ctx, a.cfg.sem, a.cfg.key, a.token)
		}
	}
	_ = goodbye(ctx, c, a.sess, a.cfg)
	return err
}

func (h *holder) close() error { return h.end() }

func (h *holder) currentToken() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.token
}

func (h *holder) lostChan() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lost
}

// renew is the renewal goroutine of one held lease: every lease ×
// RenewRatio, less up to RenewJitter of that, it renews on c — with a
// session, at least every third of the session TTL, so that a dropped
// connection is noticed while the session lasts.
//
// When c's connection fails and a session is named, it reconnects and
// resumes (see reconnect), and renews at once on the new connection. It
// keeps trying only while the session and the lease are certainly still
// alive on the server: until the session TTL, or the lease, has passed
// since the last renewal the server answered was sent (the server's
// clocks start no earlier than that). The first renewal the server
// refuses, or a reconnection that gives up, marks the lease lost and ends
// the goroutine; a stop request ends it quietly, even when it made the
// renewal in flight fail.
func (h *holder) renew(r *renewal, c *Conn, cfg resourceConfig, token string, leaseTTL int, lost chan struct{}) {
	defer close(r.done)
	var sessTTL time.Duration
	if sess := h.sessionOf(c); sess != nil {
		sessTTL = sess.TTL
	}
	// Until when the lease and the session are certainly alive on the
	// server (the grant was answered just now).
	now := time.Now()
	leaseEnd, sessEnd := now.Add(time.Duration(leaseTTL)*time.Second), now.Add(sessTTL)
	for {
		t := time.NewTimer(renewInterval(leaseTTL, cfg.ratio, cfg.jitter, sessTTL/3))
		select {
		case <-r.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		var (
			n   int
			err error
		)
		for {
			// A renewal still unanswered when the lease runs out is
			// pointless; the deadline also closes a connection to a hung
			// server.
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(max(leaseTTL, 1))*time.Second)
			sent := time.Now()
			n, err = c.renew(ctx, cfg.sem, cfg.key, token, cfg.lease)
			cancel()
			if r.ctx.Err() != nil {
				return
			}
			if err == nil {
				leaseEnd, sessEnd = sent.Add(time.Duration(n)*time.Second), sent.Add(sessTTL)
				break
			}
			if h.sessionOf(c) == nil || isAnswer(err) || errors.Is(err, ErrInvalid) {
				break // no session to resume, or the server said no
			}
			deadline, expired := sessEnd, ErrSessionGone
			if leaseEnd.Before(deadline) {
				deadline, expired = leaseEnd, ErrLeaseExpired
			}
			before := time.Now()
			nc, _, _, rerr := h.reconnect(r.ctx, c, deadline, expired)
			if r.ctx.Err() != nil {
				return
			}
			if rerr != nil {
				err = rerr
				break
			}
			// The resume was sent after before: the session's clock
			// restarted no earlier.
			c, sessEnd = nc, before.Add(sessTTL)
		}
		if err != nil {
			h.mu.Lock()
			if h.lost == lost {
				h.token = ""
			}
			if h.renewal == r {
				// Nothing is left to stop, and OnRenewError may call
				// Release or Close, which must not wait for this
				// goroutine.
				h.renewal = nil
			}
			h.mu.Unlock()
			close(lost)
			if cfg.onError != nil {
				cfg.onError(err)
			}
			return
		}
		leaseTTL = n
	}
}

// renewInterval is lease × ratio, capped at most (when positive), made up
// to jitter of that earlier at random, and never below 10 ms.
func renewInterval(leaseTTL int, ratio, jitter float64, most time.Duration) time.Duration {
	d := float64(time.Duration(leaseTTL)*time.Second) * ratio
	if most > 0 {
		d = min(d, float64(most))
	}
	d -= d * jitter * rand.Float64()
	return max(time.Duration(d), 10*time.Millisecond)
}
