package client

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dflockd/dflockd/protocol"
)

// DefaultHeartbeatInterval is how often a SignalConn pings the server
// unless WithHeartbeatInterval says otherwise. It must stay below the
// server's read timeout (23s by default), or an idle listener is dropped.
const DefaultHeartbeatInterval = 15 * time.Second

// DefaultSignalBuffer is the capacity of the Signals channel unless
// WithSignalBuffer says otherwise.
const DefaultSignalBuffer = 64

// heartbeatTimeout bounds one heartbeat ping; a server that does not
// answer in time is considered gone and the connection is closed.
const heartbeatTimeout = 10 * time.Second

// Signal is one signal received by a SignalConn.
type Signal struct {
	// Channel is the literal channel the signal was emitted on (not the
	// pattern that matched it).
	Channel string
	// Payload is the payload, verbatim.
	Payload string
}

// A SignalOption configures NewSignalConn.
type SignalOption func(*signalOptions)

type signalOptions struct {
	heartbeat time.Duration
	buffer    int
	reconnect bool
	window    time.Duration // reconnect: how long one outage may last; 0 = no limit
}

// WithHeartbeatInterval sets how often the SignalConn sends "ping" to keep
// the connection alive through the server's read timeout (default
// DefaultHeartbeatInterval, 15s); 0 or a negative value disables the
// heartbeat.
func WithHeartbeatInterval(d time.Duration) SignalOption {
	return func(o *signalOptions) { o.heartbeat = max(d, 0) }
}

// WithSignalBuffer sets the capacity of the Signals channel (default
// DefaultSignalBuffer, 64; values below 1 mean the default). Signals that
// arrive while it is full are dropped and counted by DroppedSignals.
func WithSignalBuffer(n int) SignalOption {
	return func(o *signalOptions) {
		if n < 1 {
			n = DefaultSignalBuffer
		}
		o.buffer = n
	}
}

// WithReconnect makes the SignalConn ride through a dropped connection: when
// the stream ends (a reset, a server restart, a failed heartbeat), it
// dials the server again with back-off (50ms doubling to 1s) and re-issues
// every Listen that is in force, with its group, instead of closing the
// Signals channel. Each outage may last up to window (0 or negative = no
// limit, until Close); past it, or when the server refuses the auth token
// or a re-issued Listen, the SignalConn ends as without this option.
//
// Signals emitted while no connection is up are lost: the server keeps
// nothing for a listener that is away, and does not say what was missed.
// Reconnects counts the outages survived, so that a receiver can tell
// that there may be a gap. Commands called while the connection is down
// fail at once (the error wraps ErrClosed) rather than wait; a Listen or
// Unlisten takes effect only when it succeeds.
func WithReconnect(window time.Duration) SignalOption {
	return func(o *signalOptions) { o.reconnect, o.window = true, max(window, 0) }
}

// A ListenOption modifies Listen and Unlisten.
type ListenOption func(*listenOptions)

type listenOptions struct {
	group string
}

// WithGroup makes Listen join, and Unlisten leave, the queue group of
// that name on the pattern: each signal goes to one member of the group
// only, round-robin. The name must not contain CR or LF; whitespace around
// it is ignored by the server.
func WithGroup(group string) ListenOption {
	return func(o *listenOptions) { o.group = group }
}

// SignalConn is a connection dedicated to pub/sub signals. It is made by
// NewSignalConn, which dials a connection of its own; listening needs one
// because the server may push a signal frame at any moment, which a plain
// Conn would not expect.
//
// A reader goroutine reads everything the server sends: signal frames
// ("sig ...") go to the Signals channel, every other line answers the one
// command in flight, so commands keep working while signals stream in. A
// heartbeat goroutine pings the server periodically (see
// WithHeartbeatInterval).
//
// By default the SignalConn lives as long as its connection: when that
// ends, the Signals channel is closed and Err says why. With
// WithReconnect it reconnects and listens again instead (signals sent
// meanwhile are lost).
//
// A SignalConn is safe for concurrent use. Context cancellation during a
// command closes the connection, as for Conn (with WithReconnect, the
// SignalConn then reconnects).
type SignalConn struct {
	addr string
	opts Options
	o    signalOptions

	mu   sync.Mutex
	link *sigLink // current connection
	// The outage in progress (WithReconnect): when it started (zero =
	// none) and the next back-off. A connection counts as back once
	// its listens were re-issued, so the window and the back-off run on
	// across connections that fail before that.
	downSince time.Time
	backoff   time.Duration

	// subMu serialises Listen and Unlisten with the re-listening after a
	// reconnection, so that subs is exactly what the server was told.
	subMu sync.Mutex
	subs  []subscription

	sigs       chan Signal
	dropped    atomic.Uint64
	reconnects atomic.Uint64

	readerDone chan struct{}

	failMu  sync.Mutex
	failErr error // reason the SignalConn ended, for Err

	ctx       context.Context // ends with Close: stops reconnecting
	cancel    context.CancelFunc
	hbStop    chan struct{}
	hbDone    chan struct{}
	wg        sync.WaitGroup // re-listening goroutines
	closeOnce sync.Once
}

// subscription is one Listen in force.
type subscription struct{ pattern, group string }

// sigLink is one connection of a SignalConn and its reply slot.
type sigLink struct {
	c       *Conn
	replies chan replyResult // one slot: the answer to the command in flight
	done    chan struct{}    // closed by the reader when the stream ends
	err     error            // why it ended; set before done is closed
}

type replyResult struct {
	resp protocol.Response
	err  error
}

// newLink wraps c: from now on only the reader goroutine reads from its
// stream, and commands get their answers from it.
func newLink(c *Conn) *sigLink {
	l := &sigLink{c: c, replies: make(chan replyResult, 1), done: make(chan struct{})}
	c.recv = l.awaitReply
	return l
}

// NewSignalConn dials addr with opts, as Dial (authenticating when
// opts.AuthToken is set), and starts the reader and heartbeat goroutines.
// Close it when done.
func NewSignalConn(ctx context.Context, addr string, opts Options, sopts ...SignalOption) (*SignalConn, error) {
	o := signalOptions{heartbeat: DefaultHeartbeatInterval, buffer: DefaultSignalBuffer}
	for _, opt := range sopts {
		if opt != nil {
			opt(&o)
		}
	}
	c, err := Dial(ctx, addr, opts)
	if err != nil {
		return nil, err
	}
	s := &SignalConn{
		addr:       addr,
		opts:       opts,
		o:          o,
		link:       newLink(c),
		sigs:       make(chan Signal, o.buffer),
		readerDone: make(chan struct{}),
		hbStop:     make(chan struct{}),
		hbDone:     make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.read()
	if o.heartbeat > 0 {
		go s.heartbeat(o.heartbeat)
	} else {
		close(s.hbDone)
	}
	return s, nil
}

// current returns the current link.
func (s *SignalConn) current() *sigLink {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.link
}

// read is the reader goroutine: it reads each link until its stream ends
// and, with WithReconnect, replaces it by a new one; then it closes sigs.
func (s *SignalConn) read() {
	// Deferred calls run last-in first-out: readerDone closes before sigs,
	// so Err is already final when a receiver sees Signals closed.
	defer close(s.sigs)
	defer close(s.readerDone)
	l := s.current()
	for {
		err := s.readLink(l)
		if !s.o.reconnect || s.closedByUs() {
			s.fail(err)
			return
		}
		nl, rerr := s.redial(err)
		if rerr != nil {
			s.fail(rerr)
			return
		}
		l = nl
	}
}

// readLink routes signal frames to sigs and every other line to l's
// replies until l's stream ends, then closes l.done and returns why.
func (s *SignalConn) readLink(l *sigLink) error {
	var resp protocol.Response
	for {
		line, err := l.c.dec.ReadLine(MaxResponseLine)
		if err != nil {
			return l.end(fmt.Errorf("client: signal connection %s: %w", l.c.name, err))
		}
		if err := protocol.ParseResponse(line, &resp); err != nil {
			// Out of step with the server: nothing after this can be
			// trusted.
			return l.end(fmt.Errorf("%w: %w", ErrServer, err))
		}
		if resp.Status == protocol.StatusSignal {
			select {
			case s.sigs <- Signal{Channel: resp.Channel, Payload: string(resp.Payload)}:
			default:
				s.dropped.Add(1)
			}
			continue
		}
		select {
		case l.replies <- replyResult{resp: resp}:
		default:
			// An answer nobody asked for: the stream is out of step.
			return l.end(fmt.Errorf("%w: unexpected reply %q", ErrServer, resp.Status))
		}
	}
}

// end records why l's stream ended, closes its connection and l.done.
func (l *sigLink) end(err error) error {
	l.err = err
	l.c.Close()
	close(l.done)
	return err
}

// awaitReply is the Conn's recv while a SignalConn owns it: it waits for
// the reader to hand over the next answer.
func (l *sigLink) awaitReply() (protocol.Response, error) {
	select {
	case r := <-l.replies:
		return r.resp, r.err
	case <-l.done:
		// An answer may have been handed over just before the reader
		// ended.
		select {
		case r := <-l.replies:
			return r.resp, r.err
		default:
		}
		if l.err != nil {
			return protocol.Response{}, l.err
		}
		return protocol.Response{}, ErrClosed
	}
}

// redial replaces the link whose stream ended with cause: it dials with
// back-off until a connection is up, within the reconnect window, installs
// it, and re-issues every Listen in force on it from a goroutine of its
// own (the reader must be reading the new stream for the answers to
// arrive). A failure of the re-listening closes the new connection, which
// sends the reader back here; an answer refusing a Listen ends the
// SignalConn.
func (s *SignalConn) redial(cause error) (*sigLink, error) {
	s.mu.Lock()
	if s.downSince.IsZero() {
		s.downSince, s.backoff = time.Now(), 0
	}
	var deadline time.Time
	if s.o.window > 0 {
		deadline = s.downSince.Add(s.o.window)
	}
	s.mu.Unlock()
	lastErr := cause
	for {
		if err := s.fatal(); err != nil {
			return nil, err
		}
		s.mu.Lock()
		backoff := s.backoff
		s.backoff = min(max(2*backoff, reconnectMinBackoff), reconnectMaxBackoff)
		s.mu.Unlock()
		if backoff > 0 {
			d := backoff - time.Duration(rand.Int64N(int64(backoff)/4+1))
			if !deadline.IsZero() {
				d = min(d, max(time.Until(deadline), 0))
			}
			t := time.NewTimer(d)
			select {
			case <-s.ctx.Done():
				t.Stop()
				return nil, ErrClosed
			case <-t.C:
			}
		}
		if s.ctx.Err() != nil {
			return nil, ErrClosed
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return nil, fmt.Errorf("client: signal connection: not reconnected within %s: %w", s.o.window, lastErr)
		}
		ctx, cancel := s.ctx, context.CancelFunc(func() {})
		if !deadline.IsZero() {
			ctx, cancel = context.WithDeadline(s.ctx, deadline)
		}
		c, err := Dial(ctx, s.addr, s.opts)
		cancel()
		if err != nil {
			if s.ctx.Err() != nil {
				return nil, ErrClosed
			}
			if final(err) {
				return nil, err
			}
			lastErr = err
			continue
		}
		l := newLink(c)
		s.mu.Lock()
		s.link = l
		s.mu.Unlock()
		if s.closedByUs() { // Close raced with the dial: it may have missed l
			c.Close()
			return nil, ErrClosed
		}
		s.wg.Add(1)
		go s.relisten(l)
		return l, nil
	}
}

// relisten re-issues every Listen in force on l and counts the
// reconnection once they all succeeded.
func (s *SignalConn) relisten(l *sigLink) {
	defer s.wg.Done()
	s.subMu.Lock()
	defer s.subMu.Unlock()
	for _, sub := range s.subs {
		_, err := l.c.roundTrip(s.ctx, protocol.CmdListen, sub.pattern, sub.group, wantBare)
		if err == nil {
			continue
		}
		if isAnswer(err) {
			s.setFatal(fmt.Errorf("client: signal connection: listen again after reconnecting: %w", err))
		}
		l.c.Close() // the reader sees the stream end
		return
	}
	s.mu.Lock()
	s.downSince, s.backoff = time.Time{}, 0
	s.mu.Unlock()
	s.reconnects.Add(1)
}

// fatal returns the error that forbids reconnecting, if any.
func (s *SignalConn) fatal() error {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	return s.failErr
}

// setFatal records err as the reason the SignalConn ends.
func (s *SignalConn) setFatal(err error) {
	s.failMu.Lock()
	if s.failErr == nil {
		s.failErr = err
	}
	s.failMu.Unlock()
}

// heartbeat pings every interval until Close. A failed ping closes the
// connection: that ends the SignalConn (and so the Signals channel), or
// with WithReconnect makes it reconnect.
func (s *SignalConn) heartbeat(interval time.Duration) {
	defer close(s.hbDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.hbStop:
			return
		case <-s.readerDone:
			return
		case <-t.C:
		}
		l := s.current()
		ctx, cancel := context.WithTimeout(context.Background(), heartbeatTimeout)
		err := l.c.Ping(ctx)
		cancel()
		if err == nil {
			continue
		}
		if !s.o.reconnect {
			s.fail(fmt.Errorf("client: heartbeat: %w", err))
			return
		}
		l.c.Close() // the reader reconnects
	}
}

// fail records the first reason the SignalConn ended and closes its
// connection.
func (s *SignalConn) fail(err error) {
	s.failMu.Lock()
	if s.failErr == nil && !s.closedByUs() {
		s.failErr = err
	}
	s.failMu.Unlock()
	s.current().c.Close()
}

// Listen subscribes to pattern ("listen"): a channel name, or a pattern
// with NATS-style wildcards as whole dot-separated tokens ("*" matches one
// token, a final ">" one or more). The server rejects malformed patterns
// (ErrServer). Listening twice to the same pattern and group is harmless.
func (s *SignalConn) Listen(ctx context.Context, pattern string, opts ...ListenOption) error {
	return s.subscribe(ctx, protocol.CmdListen, pattern, opts)
}

// Unlisten removes the subscription to pattern ("unlisten") made with the
// same group (or none). Removing a subscription that does not exist is not
// an error.
func (s *SignalConn) Unlisten(ctx context.Context, pattern string, opts ...ListenOption) error {
	return s.subscribe(ctx, protocol.CmdUnlisten, pattern, opts)
}

func (s *SignalConn) subscribe(ctx context.Context, cmd protocol.Command, pattern string, opts []ListenOption) error {
	if err := checkKey("pattern", pattern); err != nil {
		return err
	}
	var o listenOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	switch {
	case strings.ContainsAny(o.group, "\r\n"):
		return invalid("group contains CR or LF")
	case len(o.group) > protocol.MaxLine:
		return invalid("group longer than %d bytes", protocol.MaxLine)
	}
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if _, err := s.current().c.roundTrip(ctx, cmd, pattern, o.group, wantBare); err != nil {
		return err
	}
	// The server trims the group; so does the record, to match it.
	sub := subscription{pattern: pattern, group: strings.TrimSpace(o.group)}
	i := slices.Index(s.subs, sub)
	switch {
	case cmd == protocol.CmdListen && i < 0:
		s.subs = append(s.subs, sub)
	case cmd == protocol.CmdUnlisten && i >= 0:
		s.subs = slices.Delete(s.subs, i, i+1)
	}
	return nil
}

// Emit publishes payload on channel and returns the number of receivers,
// as Conn.Emit. If this connection listens to the channel it receives its
// own signal too, before or after Emit returns.
func (s *SignalConn) Emit(ctx context.Context, channel, payload string) (int, error) {
	return emit(ctx, s.current().c, channel, payload)
}

// Ping checks that the server answers.
func (s *SignalConn) Ping(ctx context.Context) error { return s.current().c.Ping(ctx) }

// Stats returns the server's stats, as Conn.Stats.
func (s *SignalConn) Stats(ctx context.Context) (*Stats, error) { return s.current().c.Stats(ctx) }

// Signals returns the channel on which received signals are delivered. It
// is closed when the SignalConn ends, by Close or by a failure (see Err;
// with WithReconnect, a failure to reconnect). Drain it promptly: a signal
// arriving while it is full is dropped.
func (s *SignalConn) Signals() <-chan Signal { return s.sigs }

// DroppedSignals returns how many signals were dropped because the
// Signals channel was full. The server is not told.
func (s *SignalConn) DroppedSignals() uint64 { return s.dropped.Load() }

// Reconnects returns how many times the SignalConn reconnected and
// listened again after its connection dropped (WithReconnect). Signals
// emitted during each of those outages were lost.
func (s *SignalConn) Reconnects() uint64 { return s.reconnects.Load() }

// Err returns why the SignalConn ended, once the Signals channel is
// closed: nil after Close, else the failure (a read error, a failed
// heartbeat, a command whose context ended; with WithReconnect, why
// reconnecting gave up). Before that it returns nil.
func (s *SignalConn) Err() error {
	select {
	case <-s.readerDone:
	default:
		return nil
	}
	s.failMu.Lock()
	defer s.failMu.Unlock()
	return s.failErr
}

// closedByUs reports whether Close was called.
func (s *SignalConn) closedByUs() bool {
	select {
	case <-s.hbStop:
		return true
	default:
		return false
	}
}

// Close stops the heartbeat and any reconnection, closes the connection
// (the server drops its subscriptions) and waits for the reader goroutine;
// the Signals channel is closed when it returns. Close is idempotent.
func (s *SignalConn) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.hbStop)
		s.cancel()
		err = s.current().c.Close()
		<-s.readerDone
		<-s.hbDone
		s.wg.Wait()
		// The reader may have installed a new link after the Close above.
		s.current().c.Close()
	})
	return err
}
