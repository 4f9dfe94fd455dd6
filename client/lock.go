package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
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

// raceReleaseTimeout bounds the best-effort release of a grant that raced
// with the cancellation of its acquire.
const raceReleaseTimeout = 2 * time.Second

// Lock is a distributed mutex on one key, held through a connection of
// its own to the server that owns the key. Set the fields, then call
// Acquire (or Enqueue and Wait); while the lock is held its lease is
// renewed in the background on the same connection, until Release or
// Close. Zero fields take the documented defaults.
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
	// DefaultServer, "127.0.0.1:6388"). Entries are addresses as for Dial:
	// "host:port" or endpoint URLs such as "tls://host:port" and
	// "unix:///run/dflockd.sock".
	Servers []string
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
	// the error of the renewal that failed. The lease is then considered
	// lost: renewal stops, Token returns "" and Lost is closed.
	OnRenewError func(error)

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
	// AcquireTimeout, LeaseTTL, Servers, ShardFunc, RenewRatio,
	// RenewJitter, TLSConfig, AuthToken, Name, Transport, DialTimeout and
	// OnRenewError are as for Lock.
	AcquireTimeout time.Duration
	LeaseTTL       int
	Servers        []string
	ShardFunc      ShardFunc
	RenewRatio     float64
	RenewJitter    float64
	TLSConfig      *tls.Config
	AuthToken      string
	Name           string
	Transport      string
	DialTimeout    time.Duration
	OnRenewError   func(error)

	h holder
}

// Acquire dials the server that owns Key (closing any connection of a
// previous acquisition, which releases what it held), authenticates and
// waits up to AcquireTimeout for the lock. It reports true once the lock
// is held, and starts the background renewal. When the wait times out it
// returns (false, nil) and closes the connection.
//
// If ctx ends first, the connection is closed, so the server drops the
// wait or, had the grant already happened, releases the lock; a grant that
// raced with the cancellation is also released explicitly, best-effort.
// No lock is left held.
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
// ErrNotQueued. When the wait times out it returns (false, nil) and closes
// the connection: Enqueue again to rejoin the queue. Context
// cancellation behaves as for Acquire.
func (l *Lock) Wait(ctx context.Context, timeout time.Duration) (bool, error) {
	return l.h.wait(ctx, timeout)
}

// Release stops the renewal, releases the lock if it is held, and closes
// the connection. Releasing while only queued just closes it. It returns
// nil when nothing was held.
func (l *Lock) Release(ctx context.Context) error { return l.h.release(ctx) }

// Close stops the renewal and closes the connection without releasing:
// the server releases the lock when it sees the connection end (unless it
// keeps locks on disconnect, in which case the lease runs out). Close is
// idempotent.
func (l *Lock) Close() error { return l.h.close() }

// Token returns the lease token of the held lock, or "" when none is
// held — also after a failed or timed-out re-acquisition and after the
// lease was lost.
func (l *Lock) Token() string { return l.h.currentToken() }

// Lost returns a channel that is closed when the lease of the current
// acquisition is lost, that is when a renewal fails (the same moment
// OnRenewError is called). Release and Close do not close it. It returns
// nil, a channel that never closes, when nothing was acquired yet.
func (l *Lock) Lost() <-chan struct{} { return l.h.lostChan() }

func (l *Lock) config() (resourceConfig, error) {
	return newResourceConfig(false, l.Key, 1, l.AcquireTimeout, l.LeaseTTL, l.Servers, l.ShardFunc,
		l.RenewRatio, l.RenewJitter, Options{TLS: l.TLSConfig, AuthToken: l.AuthToken, Name: l.Name, Transport: l.Transport, DialTimeout: l.DialTimeout},
		l.OnRenewError)
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

// Close closes without releasing, as Lock.Close.
func (s *Semaphore) Close() error { return s.h.close() }

// Token returns the slot's lease token, as Lock.Token.
func (s *Semaphore) Token() string { return s.h.currentToken() }

// Lost reports a lost lease, as Lock.Lost.
func (s *Semaphore) Lost() <-chan struct{} { return s.h.lostChan() }

func (s *Semaphore) config() (resourceConfig, error) {
	if err := checkLimit(s.Limit); err != nil {
		return resourceConfig{}, err
	}
	return newResourceConfig(true, s.Key, s.Limit, s.AcquireTimeout, s.LeaseTTL, s.Servers, s.ShardFunc,
		s.RenewRatio, s.RenewJitter, Options{TLS: s.TLSConfig, AuthToken: s.AuthToken, Name: s.Name, Transport: s.Transport, DialTimeout: s.DialTimeout},
		s.OnRenewError)
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
}

func newResourceConfig(sem bool, key string, limit int, timeout time.Duration, lease int, servers []string,
	shard ShardFunc, ratio, jitter float64, opts Options, onError func(error)) (resourceConfig, error) {
	if err := checkKey("key", key); err != nil {
		return resourceConfig{}, err
	}
	if err := checkLease(int64(lease)); err != nil {
		return resourceConfig{}, err
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
	cfg := resourceConfig{
		sem: sem, key: key, limit: limit, timeout: timeout, server: servers[i],
		opts: opts, ratio: ratio, jitter: jitter, onError: onError,
	}
	if lease > 0 {
		cfg.lease = []LeaseOption{WithLeaseTTL(lease)}
	}
	return cfg, nil
}

// holder is the state shared by Lock and Semaphore: one connection, at
// most one held lease and its renewal goroutine.
type holder struct {
	mu       sync.Mutex
	conn     *Conn
	cfg      resourceConfig // of the current connection
	token    string         // held lease; "" = none
	enqueued bool           // Enqueue answered, Wait not yet called
	lost     chan struct{}  // of the current acquisition
	renewal  *renewal       // running renewal, if any
}

// renewal is one background renewal goroutine.
type renewal struct {
	stop chan struct{} // closed to ask the goroutine to end
	done chan struct{} // closed by the goroutine when it ends
}

// detach takes the connection and renewal out of h and clears the lease
// state. The caller stops the renewal and closes the connection.
func (h *holder) detach() (*Conn, *renewal, string, resourceConfig) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, r, tok, cfg := h.conn, h.renewal, h.token, h.cfg
	h.conn, h.renewal, h.token, h.enqueued = nil, nil, "", false
	return c, r, tok, cfg
}

// stopRenewal asks r to end and waits for it. A renewal stuck in I/O for
// more than renewStopGrace gets its connection force-closed.
func stopRenewal(r *renewal, c *Conn) {
	if r == nil {
		return
	}
	close(r.stop)
	t := time.NewTimer(renewStopGrace)
	defer t.Stop()
	select {
	case <-r.done:
	case <-t.C:
		if c != nil {
			c.abort()
		}
		<-r.done
	}
}

// reset ends the current acquisition without releasing.
func (h *holder) reset() error {
	c, r, _, _ := h.detach()
	stopRenewal(r, c)
	if c != nil {
		return c.Close()
	}
	return nil
}

// dial opens a connection for cfg after ending the previous acquisition,
// and installs it as the current one.
func (h *holder) dial(ctx context.Context, cfg resourceConfig) (*Conn, error) {
	_ = h.reset()
	c, err := Dial(ctx, cfg.server, cfg.opts)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.conn, h.cfg = c, cfg
	h.mu.Unlock()
	return c, nil
}

// drop closes c and forgets it if it is still the current connection.
func (h *holder) drop(c *Conn) {
	h.mu.Lock()
	if h.conn == c {
		h.conn, h.token, h.enqueued = nil, "", false
	}
	h.mu.Unlock()
	c.Close()
}

// failed handles an error of a request on c: c is dropped (the server
// cleans up after it) and a grant that raced with a cancelled context is
// released best-effort.
func (h *holder) failed(ctx context.Context, c *Conn, cfg resourceConfig, resp *protocol.Response) {
	h.drop(c)
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
	c, err := Dial(ctx, cfg.server, cfg.opts)
	if err != nil {
		return
	}
	defer c.Close()
	_ = c.release(ctx, cfg.sem, cfg.key, token)
}

// hold records a granted lease on c and starts renewing it. It fails with
// ErrClosed when c stopped being the current connection meanwhile (Close
// was called); c is then closed, which releases the lease.
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
	r := &renewal{stop: make(chan struct{}), done: make(chan struct{})}
	h.renewal = r
	go h.renew(r, c, h.cfg, token, leaseTTL, h.lost)
	return nil
}

func (h *holder) acquire(ctx context.Context, cfg resourceConfig) (bool, error) {
	c, err := h.dial(ctx, cfg)
	if err != nil {
		return false, err
	}
	resp, err := c.acquire(ctx, cfg.sem, cfg.key, cfg.timeout, cfg.limit, cfg.lease)
	if err != nil {
		h.failed(ctx, c, cfg, &resp)
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
		h.failed(ctx, c, cfg, &resp)
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
	c, cfg, enqueued, r := h.conn, h.cfg, h.enqueued, h.renewal
	if c != nil && enqueued {
		h.enqueued, h.renewal = false, nil
	}
	h.mu.Unlock()
	if c == nil || !enqueued {
		return false, fmt.Errorf("client: wait: %w", ErrNotQueued)
	}
	stopRenewal(r, c) // Enqueue acquired: w restarts the lease
	resp, err := c.wait(ctx, cfg.sem, cfg.key, timeout)
	if err != nil {
		h.failed(ctx, c, cfg, &resp)
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
	c, r, token, cfg := h.detach()
	stopRenewal(r, c)
	if c == nil {
		return nil
	}
	var err error
	if token != "" {
		err = c.release(ctx, cfg.sem, cfg.key, token)
	}
	c.Close()
	return err
}

func (h *holder) close() error { return h.reset() }

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
// RenewRatio, less up to RenewJitter of that, it renews on c. The first
// failure marks the lease lost and ends it; a stop request ends it
// quietly, even when it made the renewal in flight fail.
func (h *holder) renew(r *renewal, c *Conn, cfg resourceConfig, token string, leaseTTL int, lost chan struct{}) {
	defer close(r.done)
	for {
		t := time.NewTimer(renewInterval(leaseTTL, cfg.ratio, cfg.jitter))
		select {
		case <-r.stop:
			t.Stop()
			return
		case <-t.C:
		}
		// A renewal still unanswered when the lease runs out is pointless;
		// the deadline also closes a connection to a hung server.
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(max(leaseTTL, 1))*time.Second)
		n, err := c.renew(ctx, cfg.sem, cfg.key, token, cfg.lease)
		cancel()
		select {
		case <-r.stop:
			return
		default:
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

// renewInterval is lease × ratio, made up to jitter of that earlier at
// random, and never below 10 ms.
func renewInterval(leaseTTL int, ratio, jitter float64) time.Duration {
	d := float64(time.Duration(leaseTTL)*time.Second) * ratio
	d -= d * jitter * rand.Float64()
	return max(time.Duration(d), 10*time.Millisecond)
}
