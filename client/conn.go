package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dflockd/dflockd/protocol"
	"github.com/dflockd/dflockd/transport"
)

// Conn is one connection to a dflockd server, with one method per
// protocol command. Everything the server ties to a connection — held
// locks, enqueue records — lives as long as the Conn: closing it (or
// losing it) makes the server release them, unless the server was started
// to keep locks on disconnect, or the Conn named a session (Session),
// which keeps them for the session TTL.
//
// A Conn is safe for concurrent use: requests are sent one at a time, each
// waiting for its answer, so a blocking Acquire delays every other call on
// the same Conn until it is answered. Use one Conn per concurrent waiter.
//
// When the context of a call ends while its request is in flight, the
// connection is closed (unblocking the server side, which then releases
// whatever the connection held) and the call returns an error wrapping
// the context's error. The Conn is unusable afterwards: every later call
// fails with ErrClosed. A context that has already ended before a call
// starts leaves the Conn untouched.
type Conn struct {
	nc   net.Conn
	name string // endpoint, for errors

	// sem is a one-slot semaphore serialising request/response pairs;
	// unlike a mutex, waiting for it respects the caller's context.
	sem chan struct{}
	// Owned by the holder of sem. dec is read by recv — or, once a
	// SignalConn took the Conn over, by its reader goroutine only.
	dec  *protocol.Decoder
	buf  []byte
	recv func() (protocol.Response, error) // returns the next answer
	// leader: the Conn was dialled to a cluster's leader; a plain
	// `error` answer is then checked for a node that stopped leading
	// (see roundTrip).
	leader bool

	closed    atomic.Bool // set as soon as Close or abort starts
	closeOnce sync.Once
	closeErr  error
}

// Dial connects to the server at addr and, when opts.AuthToken is set,
// authenticates. addr is "host[:port]" (TCP, or TLS when opts.TLS is set;
// port 6388 when left out), a socket path, or an endpoint URL such as
// "tls://host:port", "unix:///run/dflockd.sock" or "quic://host:port"; see
// Options for how the transport is chosen, and Options.QUIC for opening
// the Conn as a stream of an existing QUIC connection. ctx and
// opts.DialTimeout bound connecting and the handshakes.
//
// A refused token yields an error wrapping ErrAuth. Failing to connect,
// or a failed TLS or auth handshake, yields a *DialError.
//
// To connect to a replicated cluster, list its members in opts.Cluster
// and leave addr empty, or give them in addr separated by commas
// ("10.0.0.1:6388,10.0.0.2:6388,10.0.0.3:6388"): Dial then asks the
// members who leads and connects to the leader (see "Clusters" in the
// package documentation). When no leader can be reached the error is a
// *NoLeaderError.
func Dial(ctx context.Context, addr string, opts Options) (*Conn, error) {
	members, err := clusterMembers(addr, opts)
	if err != nil {
		return nil, fmt.Errorf("client: dial: %w", err)
	}
	if members != nil {
		return dialCluster(ctx, members, opts)
	}
	return dialServer(ctx, addr, opts)
}

// dialServer is Dial of one server.
func dialServer(ctx context.Context, addr string, opts Options) (*Conn, error) {
	if opts.AuthToken != "" {
		if err := checkAuthToken(opts.AuthToken); err != nil {
			return nil, err
		}
	}
	if err := checkName(opts.Name); err != nil {
		return nil, err
	}
	if d := opts.dialTimeout(); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	var (
		nc   net.Conn
		name string
		err  error
	)
	if opts.QUIC != nil {
		name = "quic session"
		nc, err = opts.QUIC.OpenConn(ctx)
	} else {
		var e transport.Endpoint
		if e, err = opts.endpoint(addr); err != nil {
			return nil, fmt.Errorf("client: dial: %w", err)
		}
		name = e.String()
		var t transport.Transport
		if t, err = transport.Lookup(e.Transport); err == nil {
			nc, err = t.Dial(ctx, e.Addr, transport.Options{TLS: opts.TLS})
		}
	}
	if err != nil {
		// A failed connect is a *net.OpError of op "dial"; anything else
		// failed after the connection was made (the TLS handshake).
		op, isOp := errors.AsType[*net.OpError](err)
		return nil, &DialError{Endpoint: name, Handshake: !isOp || op.Op != "dial", Timeout: opts.dialTimeout(), Err: err}
	}
	c := newConn(nc, name)
	if opts.AuthToken != "" {
		if _, err := c.roundTrip(ctx, protocol.CmdAuth, "_", opts.AuthToken, wantOK); err != nil {
			c.Close()
			if errors.Is(err, ErrAuth) || errors.Is(err, ErrDraining) || errors.Is(err, ErrServer) {
				return nil, err // the server answered
			}
			return nil, &DialError{Endpoint: name, Handshake: true, Timeout: opts.dialTimeout(), Err: err}
		}
	}
	if opts.Name != "" {
		if err := c.sendName(ctx, opts.Name); err != nil {
			c.Close()
			return nil, &DialError{Endpoint: name, Handshake: true, Timeout: opts.dialTimeout(), Err: err}
		}
	}
	return c, nil
}

// checkAuthToken validates an auth token locally.
func checkAuthToken(token string) error {
	switch {
	case strings.TrimSpace(token) == "":
		return invalid("blank auth token")
	case strings.ContainsAny(token, "\r\n"):
		return invalid("auth token contains CR or LF")
	case len(token) > protocol.MaxLongLine:
		return invalid("auth token longer than %d bytes", protocol.MaxLongLine)
	}
	return nil
}

func newConn(nc net.Conn, name string) *Conn {
	c := &Conn{
		nc:   nc,
		name: name,
		sem:  make(chan struct{}, 1),
		dec:  protocol.NewDecoder(nc),
	}
	c.recv = c.readReply
	return c
}

// Close closes the connection without releasing anything explicitly; the
// server then releases what the connection held. Calls in flight fail.
// Close is idempotent: later calls return nil.
func (c *Conn) Close() error {
	c.closed.Store(true) // first: the call in flight must see why it failed
	select {
	case c.sem <- struct{}{}: // idle: close gracefully
		defer func() { <-c.sem }()
	default:
		// A request is in flight: a past deadline ends its blocked Read
		// or Write at once, whatever the transport's Close waits for.
		_ = c.nc.SetDeadline(time.Unix(1, 0))
	}
	return c.close()
}

// idle reports whether c is open with no request in flight.
func (c *Conn) idle() bool { return len(c.sem) == 0 && !c.closed.Load() }

// close closes nc once; later calls return nil.
func (c *Conn) close() error {
	first := false
	c.closeOnce.Do(func() {
		first = true
		c.closed.Store(true)
		c.closeErr = c.nc.Close()
	})
	if !first {
		return nil
	}
	return c.closeErr
}

// abort closes the connection from a context's AfterFunc: the past
// deadline wakes any blocked Read or Write at once, whatever the
// transport's Close does.
func (c *Conn) abort() {
	c.closed.Store(true)
	_ = c.nc.SetDeadline(time.Unix(1, 0))
	c.close()
}

// readReply reads the next answer from the stream, skipping push frames (a
// plain Conn does not listen, but a stray frame must not be taken for an
// answer).
func (c *Conn) readReply() (protocol.Response, error) {
	var resp protocol.Response
	for {
		line, err := c.dec.ReadLine(MaxResponseLine)
		if err != nil {
			return protocol.Response{}, err
		}
		if err := protocol.ParseResponse(line, &resp); err != nil {
			return protocol.Response{}, fmt.Errorf("%w: %w", ErrServer, err)
		}
		if resp.Status != protocol.StatusSignal {
			return resp, nil
		}
	}
}

// expect says which answers a command treats as success.
type expect uint8

const (
	wantOK      expect = iota // "ok" with anything after it
	wantBare                  // "ok" alone
	wantN                     // "ok <n>"
	wantGrant                 // "ok <token> <secs>"
	wantEnqueue               // "acquired <token> <secs>" or "queued"
)

// matches reports whether resp is a success for e.
func (e expect) matches(resp *protocol.Response) bool {
	switch e {
	case wantOK:
		return resp.Status == protocol.StatusOK
	case wantBare:
		return resp.Status == protocol.StatusOK && !resp.HasN && resp.Token == "" && resp.Body == nil
	case wantN:
		return resp.Status == protocol.StatusOK && resp.HasN
	case wantGrant:
		return resp.Status == protocol.StatusOK && resp.Token != ""
	case wantEnqueue:
		return resp.Status == protocol.StatusAcquired || resp.Status == protocol.StatusQueued
	}
	return false
}

// roundTrip sends one request and waits for its answer, which must match
// want; any other answer becomes the error of its status word.
//
// If ctx ends while the request is in flight the connection is aborted and
// the error wraps ctx's error; resp is then still the answer when it had
// been read in full (a grant that raced the cancellation), else zero.
func (c *Conn) roundTrip(ctx context.Context, cmd protocol.Command, key, arg string, want expect) (resp protocol.Response, err error) {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return resp, fmt.Errorf("client: %s %s: %w", cmd, key, context.Cause(ctx))
	}
	defer func() { <-c.sem }()
	if c.closed.Load() {
		return resp, fmt.Errorf("client: %s %s: %w", cmd, key, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return resp, fmt.Errorf("client: %s %s: %w", cmd, key, context.Cause(ctx))
	}

	stop := context.AfterFunc(ctx, c.abort)
	c.buf = protocol.AppendRequest(c.buf[:0], cmd, key, arg)
	_, err = c.nc.Write(c.buf)
	if err == nil {
		resp, err = c.recv()
	}
	if !stop() { // ctx ended and the connection was aborted
		if err != nil {
			resp = protocol.Response{}
		}
		return resp, fmt.Errorf("client: %s %s: %w", cmd, key, context.Cause(ctx))
	}
	if err != nil {
		// The stream is out of step (or gone): nothing more can be read
		// from it reliably, so the Conn is closed and later calls fail
		// with ErrClosed.
		closedBefore := c.closed.Load() // by Close, from elsewhere
		c.abort()
		if closedBefore {
			err = fmt.Errorf("%w: %w", ErrClosed, err)
			return protocol.Response{}, fmt.Errorf("client: %s %s on %s: %w", cmd, key, c.name, err)
		}
		return protocol.Response{}, &connError{fmt.Errorf("client: %s %s on %s: %w", cmd, key, c.name, err)}
	}
	switch resp.Status {
	case protocol.StatusErrAuth, protocol.StatusErrDraining:
		c.close() // the server closes these connections
	}
	if !want.matches(&resp) {
		if c.leader && resp.Status == protocol.StatusError && needsLeader(cmd) && c.leaderGone() {
			// The node refused the request because it no longer leads
			// (and closed the connection): a connection failure, after
			// which the caller finds the new leader.
			c.abort()
			return protocol.Response{}, &connError{fmt.Errorf("client: %s %s on %s: %w", cmd, key, c.name, errNotLeader)}
		}
		return resp, replyError(cmd, key, &resp)
	}
	return resp, nil
}

// grantResult unpacks a successful "ok|acquired <token> <secs>".
func grantResult(resp *protocol.Response) (string, int) {
	return resp.Token, int(resp.TTL / time.Second)
}

// lockArgs builds the arg line of l / sl: timeout, [limit], [lease].
func lockArgs(timeout time.Duration, limit int, sem bool, opts []LeaseOption) (string, error) {
	t, err := seconds("timeout", timeout)
	if err != nil {
		return "", err
	}
	lease, err := leaseArg(opts)
	if err != nil {
		return "", err
	}
	arg := t
	if sem {
		if err := checkLimit(limit); err != nil {
			return "", err
		}
		arg += " " + strconv.Itoa(limit)
	}
	if lease != "" {
		arg += " " + lease
	}
	return arg, nil
}

// acquire sends l or sl. resp is the raw answer (see roundTrip).
func (c *Conn) acquire(ctx context.Context, sem bool, key string, timeout time.Duration, limit int, opts []LeaseOption) (protocol.Response, error) {
	if err := checkKey("key", key); err != nil {
		return protocol.Response{}, err
	}
	arg, err := lockArgs(timeout, limit, sem, opts)
	if err != nil {
		return protocol.Response{}, err
	}
	cmd := protocol.CmdLock
	if sem {
		cmd = protocol.CmdSemLock
	}
	return c.roundTrip(ctx, cmd, key, arg, wantGrant)
}

// enqueue sends e or se.
func (c *Conn) enqueue(ctx context.Context, sem bool, key string, limit int, opts []LeaseOption) (protocol.Response, error) {
	if err := checkKey("key", key); err != nil {
		return protocol.Response{}, err
	}
	lease, err := leaseArg(opts)
	if err != nil {
		return protocol.Response{}, err
	}
	cmd, arg := protocol.CmdEnqueue, lease
	if sem {
		if err := checkLimit(limit); err != nil {
			return protocol.Response{}, err
		}
		cmd, arg = protocol.CmdSemEnqueue, strconv.Itoa(limit)
		if lease != "" {
			arg += " " + lease
		}
	}
	return c.roundTrip(ctx, cmd, key, arg, wantEnqueue)
}

// wait sends w or sw.
func (c *Conn) wait(ctx context.Context, sem bool, key string, timeout time.Duration) (protocol.Response, error) {
	if err := checkKey("key", key); err != nil {
		return protocol.Response{}, err
	}
	t, err := seconds("timeout", timeout)
	if err != nil {
		return protocol.Response{}, err
	}
	cmd := protocol.CmdWait
	if sem {
		cmd = protocol.CmdSemWait
	}
	return c.roundTrip(ctx, cmd, key, t, wantGrant)
}

// release sends r or sr.
func (c *Conn) release(ctx context.Context, sem bool, key, token string) error {
	if err := checkKey("key", key); err != nil {
		return err
	}
	if err := checkToken(token); err != nil {
		return err
	}
	cmd := protocol.CmdRelease
	if sem {
		cmd = protocol.CmdSemRelease
	}
	_, err := c.roundTrip(ctx, cmd, key, token, wantBare)
	return err
}

// renew sends n or sn.
func (c *Conn) renew(ctx context.Context, sem bool, key, token string, opts []LeaseOption) (int, error) {
	if err := checkKey("key", key); err != nil {
		return 0, err
	}
	if err := checkToken(token); err != nil {
		return 0, err
	}
	lease, err := leaseArg(opts)
	if err != nil {
		return 0, err
	}
	arg := token
	if lease != "" {
		arg += " " + lease
	}
	cmd := protocol.CmdRenew
	if sem {
		cmd = protocol.CmdSemRenew
	}
	resp, err := c.roundTrip(ctx, cmd, key, arg, wantN)
	if err != nil {
		return 0, err
	}
	return int(resp.N), nil
}

// Acquire takes the lock key ("l"), waiting up to timeout for it (rounded
// up to whole seconds; 0 tries once without waiting). It returns the lease
// token and the lease in seconds. A timeout returns an error wrapping
// ErrTimeout; the Conn stays usable.
func (c *Conn) Acquire(ctx context.Context, key string, timeout time.Duration, opts ...LeaseOption) (token string, leaseTTL int, err error) {
	resp, err := c.acquire(ctx, false, key, timeout, 0, opts)
	if err != nil {
		return "", 0, err
	}
	token, leaseTTL = grantResult(&resp)
	return token, leaseTTL, nil
}

// Release releases the lock key held with token ("r"). Tokens are bearer
// credentials: any connection may release. A token that does not hold the
// lock yields an error wrapping ErrServer.
func (c *Conn) Release(ctx context.Context, key, token string) error {
	return c.release(ctx, false, key, token)
}

// Renew extends the lease of the lock key held with token ("n") to the
// requested lease, or to the server's default without WithLeaseTTL. It
// returns the new lease in seconds. An unknown or expired token yields an
// error wrapping ErrServer.
func (c *Conn) Renew(ctx context.Context, key, token string, opts ...LeaseOption) (int, error) {
	return c.renew(ctx, false, key, token, opts)
}

// Enqueue joins the queue of the lock key without blocking ("e"): status
// is "acquired" (token and leaseTTL are set) or "queued" (call Wait on
// this same Conn). A second Enqueue of the key on this Conn before Wait
// yields ErrAlreadyQueued.
func (c *Conn) Enqueue(ctx context.Context, key string, opts ...LeaseOption) (status, token string, leaseTTL int, err error) {
	return c.enqueueResult(c.enqueue(ctx, false, key, 0, opts))
}

func (c *Conn) enqueueResult(resp protocol.Response, err error) (status, token string, leaseTTL int, _ error) {
	if err != nil {
		return "", "", 0, err
	}
	token, leaseTTL = grantResult(&resp)
	return resp.Status.String(), token, leaseTTL, nil
}

// Wait waits up to timeout for the lock enqueued on this Conn ("w"). A
// timeout yields ErrTimeout and drops the queue position (Enqueue again);
// Wait without Enqueue yields ErrNotQueued. After an Enqueue that already
// acquired, Wait returns the same token at once and restarts its lease.
func (c *Conn) Wait(ctx context.Context, key string, timeout time.Duration) (token string, leaseTTL int, err error) {
	resp, err := c.wait(ctx, false, key, timeout)
	if err != nil {
		return "", 0, err
	}
	token, leaseTTL = grantResult(&resp)
	return token, leaseTTL, nil
}

// SemAcquire takes one slot of the semaphore key of the given limit
// ("sl"), waiting up to timeout. A semaphore that exists with another
// limit yields ErrLimitMismatch. Otherwise as Acquire.
func (c *Conn) SemAcquire(ctx context.Context, key string, timeout time.Duration, limit int, opts ...LeaseOption) (token string, leaseTTL int, err error) {
	resp, err := c.acquire(ctx, true, key, timeout, limit, opts)
	if err != nil {
		return "", 0, err
	}
	token, leaseTTL = grantResult(&resp)
	return token, leaseTTL, nil
}

// SemRelease releases the semaphore slot held with token ("sr"), as
// Release.
func (c *Conn) SemRelease(ctx context.Context, key, token string) error {
	return c.release(ctx, true, key, token)
}

// SemRenew extends the lease of a semaphore slot ("sn"), as Renew.
func (c *Conn) SemRenew(ctx context.Context, key, token string, opts ...LeaseOption) (int, error) {
	return c.renew(ctx, true, key, token, opts)
}

// SemEnqueue joins the queue of the semaphore key ("se"), as Enqueue.
func (c *Conn) SemEnqueue(ctx context.Context, key string, limit int, opts ...LeaseOption) (status, token string, leaseTTL int, err error) {
	return c.enqueueResult(c.enqueue(ctx, true, key, limit, opts))
}

// SemWait waits for the semaphore slot enqueued on this Conn ("sw"), as
// Wait.
func (c *Conn) SemWait(ctx context.Context, key string, timeout time.Duration) (token string, leaseTTL int, err error) {
	resp, err := c.wait(ctx, true, key, timeout)
	if err != nil {
		return "", 0, err
	}
	token, leaseTTL = grantResult(&resp)
	return token, leaseTTL, nil
}

// Ping checks that the server answers ("ping"). It also keeps an idle
// connection from hitting the server's read timeout.
func (c *Conn) Ping(ctx context.Context) error {
	_, err := c.roundTrip(ctx, protocol.CmdPing, "_", "", wantBare)
	return err
}

// Emit publishes payload on channel ("signal") and returns how many
// listeners accepted it. channel must be literal (no '*' or '>'); payload
// must not be blank, must not contain CR or LF and must fit in a 64 KiB
// frame (protocol.MaxPayload); otherwise ErrInvalid.
func (c *Conn) Emit(ctx context.Context, channel, payload string) (int, error) {
	return emit(ctx, c, channel, payload)
}

func emit(ctx context.Context, c *Conn, channel, payload string) (int, error) {
	if err := checkSignal(channel, payload); err != nil {
		return 0, err
	}
	resp, err := c.roundTrip(ctx, protocol.CmdSignal, channel, payload, wantN)
	if err != nil {
		return 0, err
	}
	return int(resp.N), nil
}

// StatsRaw returns the server's "stats" answer as raw JSON.
func (c *Conn) StatsRaw(ctx context.Context) (json.RawMessage, error) {
	resp, err := c.roundTrip(ctx, protocol.CmdStats, "_", "", wantOK)
	if err != nil {
		return nil, err
	}
	if resp.Body == nil || !json.Valid(resp.Body) {
		return nil, fmt.Errorf("%w: stats answer is not JSON", ErrServer)
	}
	return json.RawMessage(resp.Body), nil
}

// Stats returns the server's "stats" answer, decoded.
func (c *Conn) Stats(ctx context.Context) (*Stats, error) {
	raw, err := c.StatsRaw(ctx)
	if err != nil {
		return nil, err
	}
	var st Stats
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("%w: stats: %w", ErrServer, err)
	}
	return &st, nil
}
