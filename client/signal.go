package client

import (
	"context"
	"fmt"
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
// A SignalConn is safe for concurrent use. Context cancellation during a
// command closes the connection, as for Conn.
type SignalConn struct {
	c       *Conn
	sigs    chan Signal
	replies chan replyResult // one slot: the answer to the command in flight
	dropped atomic.Uint64

	readerDone chan struct{}
	readerErr  error // set before readerDone is closed

	failMu  sync.Mutex
	failErr error // first reason the connection ended, for Err

	hbStop    chan struct{}
	hbDone    chan struct{}
	closeOnce sync.Once
}

type replyResult struct {
	resp protocol.Response
	err  error
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
		c:          c,
		sigs:       make(chan Signal, o.buffer),
		replies:    make(chan replyResult, 1),
		readerDone: make(chan struct{}),
		hbStop:     make(chan struct{}),
		hbDone:     make(chan struct{}),
	}
	// Only the reader goroutine reads from the stream from now on;
	// commands get their answers from it.
	c.recv = s.awaitReply
	go s.read()
	if o.heartbeat > 0 {
		go s.heartbeat(o.heartbeat)
	} else {
		close(s.hbDone)
	}
	return s, nil
}

// read is the reader goroutine: it routes signal frames to sigs and every
// other line to replies until the stream ends, then closes sigs.
func (s *SignalConn) read() {
	// Deferred calls run last-in first-out: readerDone closes before sigs,
	// so Err is already final when a receiver sees Signals closed.
	defer close(s.sigs)
	defer close(s.readerDone)
	var resp protocol.Response
	for {
		line, err := s.c.dec.ReadLine(MaxResponseLine)
		if err != nil {
			s.readerErr = fmt.Errorf("client: signal connection %s: %w", s.c.name, err)
			s.fail(s.readerErr)
			return
		}
		if err := protocol.ParseResponse(line, &resp); err != nil {
			// Out of step with the server: nothing after this can be
			// trusted.
			s.readerErr = fmt.Errorf("%w: %w", ErrServer, err)
			s.fail(s.readerErr)
			return
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
		case s.replies <- replyResult{resp: resp}:
		default:
			// An answer nobody asked for: the stream is out of step.
			s.readerErr = fmt.Errorf("%w: unexpected reply %q", ErrServer, resp.Status)
			s.fail(s.readerErr)
			return
		}
	}
}

// awaitReply is the Conn's recv while a SignalConn owns it: it waits for
// the reader to hand over the next answer.
func (s *SignalConn) awaitReply() (protocol.Response, error) {
	select {
	case r := <-s.replies:
		return r.resp, r.err
	case <-s.readerDone:
		// An answer may have been handed over just before the reader
		// ended.
		select {
		case r := <-s.replies:
			return r.resp, r.err
		default:
		}
		if s.readerErr != nil {
			return protocol.Response{}, s.readerErr
		}
		return protocol.Response{}, ErrClosed
	}
}

// heartbeat pings every interval until Close or until a ping fails, which
// closes the connection (and so the Signals channel).
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
		ctx, cancel := context.WithTimeout(context.Background(), heartbeatTimeout)
		err := s.c.Ping(ctx)
		cancel()
		if err != nil {
			s.fail(fmt.Errorf("client: heartbeat: %w", err))
			return
		}
	}
}

// fail records the first reason the connection ended and closes it.
func (s *SignalConn) fail(err error) {
	s.failMu.Lock()
	if s.failErr == nil && !s.closedByUs() {
		s.failErr = err
	}
	s.failMu.Unlock()
	s.c.Close()
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
	_, err := s.c.roundTrip(ctx, cmd, pattern, o.group, wantBare)
	return err
}

// Emit publishes payload on channel and returns the number of receivers,
// as Conn.Emit. If this connection listens to the channel it receives its
// own signal too, before or after Emit returns.
func (s *SignalConn) Emit(ctx context.Context, channel, payload string) (int, error) {
	return emit(ctx, s.c, channel, payload)
}

// Ping checks that the server answers.
func (s *SignalConn) Ping(ctx context.Context) error { return s.c.Ping(ctx) }

// Stats returns the server's stats, as Conn.Stats.
func (s *SignalConn) Stats(ctx context.Context) (*Stats, error) { return s.c.Stats(ctx) }

// Signals returns the channel on which received signals are delivered. It
// is closed when the connection ends, by Close or by a failure (see Err).
// Drain it promptly: a signal arriving while it is full is dropped.
func (s *SignalConn) Signals() <-chan Signal { return s.sigs }

// DroppedSignals returns how many signals were dropped because the
// Signals channel was full. The server is not told.
func (s *SignalConn) DroppedSignals() uint64 { return s.dropped.Load() }

// Err returns why the connection ended, once the Signals channel is
// closed: nil after Close, else the failure (a read error, a failed
// heartbeat, a command whose context ended). Before that it returns nil.
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

// Close stops the heartbeat, closes the connection (the server drops its
// subscriptions) and waits for the reader goroutine; the Signals channel
// is closed when it returns. Close is idempotent.
func (s *SignalConn) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.hbStop)
		err = s.c.Close()
		<-s.readerDone
		<-s.hbDone
	})
	return err
}
