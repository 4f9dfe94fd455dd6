package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dflockd/dflockd/protocol"
	"github.com/dflockd/dflockd/server"
)

// drainLimit bounds the wait, after the last publish, for the frames still
// on their way to the listeners.
const drainLimit = 10 * time.Second

// signalState is what the publishers and listeners of a signal run share.
type signalState struct {
	t0        atomic.Int64 // wall-clock nanoseconds at the start of the timed part; 0 before
	expected  atomic.Int64 // receivers reported by measured publishes
	published atomic.Int64 // measured publishes
	delivered atomic.Int64 // measured frames received
	lastFrame atomic.Int64 // monotonic offset (ns since t0) of the latest measured frame
	base      time.Time

	// Flow control: publishers stay at most window publishes ahead of
	// the slowest listener.
	sent     atomic.Int64   // publishes written, warm-up included
	received []atomic.Int64 // frames read per listener, warm-up included
	failed   atomic.Bool    // a listener is gone: stop waiting for it
	waiting  atomic.Int32   // publishers blocked in await
	wake     chan struct{}  // a listener read a frame while someone waited
	window   int64          // see signalWindow

	// Payloads: the publish time, then pad up to the size.
	size int
	pad  []byte
}

// DefaultSignalQueueBytes is the server's default push queue bound
// (server.DefaultPushQueueBytes), from which the default window derives.
const DefaultSignalQueueBytes = server.DefaultPushQueueBytes

// timestampDigits is the width of the publish time (Unix nanoseconds, in
// decimal) that starts every payload.
const timestampDigits = 19

// payloadLen is the payload size of cfg's publishes.
func payloadLen(cfg Config) int {
	if cfg.PayloadSize > 0 {
		return cfg.PayloadSize
	}
	return timestampDigits
}

// signalWindow is cfg's window in publishes (at least 1). The publishers
// of a signal run stay at most this many publishes ahead of the slowest
// listener. The server answers a publish once the frame is queued for
// each listener, not once it is delivered, so without a window publishers
// on a busy machine outrun the listeners until the server's per-listener
// push queue (--signal-queue-bytes, 1 MiB by default) overflows and it
// drops them as slow consumers. The window keeps the run measuring
// sustained delivery. By default (Config.SignalWindow 0) it is as many
// frames as fill half of the server's default queue, so that a listener
// that keeps up is never evicted, whatever the payload size.
func signalWindow(cfg Config) int64 {
	if cfg.SignalWindow > 0 {
		return int64(cfg.SignalWindow)
	}
	// What each frame counts against the server's bound.
	frame := len("sig ") + len(cfg.Key) + len(" ") + payloadLen(cfg) + len("\n") + server.PushFrameOverhead
	return int64(max(1, DefaultSignalQueueBytes/2/frame))
}

// minReceived returns the frame count of the slowest listener.
func (st *signalState) minReceived() int64 {
	m := int64(-1)
	for i := range st.received {
		if v := st.received[i].Load(); m < 0 || v < m {
			m = v
		}
	}
	return m
}

// await blocks a publisher until it may send one more publish, flushing
// its own buffered requests first so that they can be delivered.
func (st *signalState) await(w *worker) {
	if st.sent.Load()-st.minReceived() >= st.window {
		_ = w.flush() // a write error shows up on the next read
		st.waiting.Add(1)
		for st.sent.Load()-st.minReceived() >= st.window && !st.failed.Load() {
			select {
			case <-st.wake:
			case <-time.After(time.Millisecond):
			}
		}
		st.waiting.Add(-1)
	}
	st.sent.Add(1)
}

// signalSpec publishes "signal <key> <wall-clock ns><pad>" and counts the
// receivers its answer reports.
func signalSpec(st *signalState) opSpec {
	return opSpec{
		steps:   1,
		untimed: true, // the listeners measure publish to delivery
		send: func(w *worker, s *slot) {
			st.await(w)
			// The slot's token buffer is free in this mode: the payload
			// is built there, so publishing allocates nothing.
			s.token = strconv.AppendInt(s.token[:0], time.Now().UnixNano(), 10)
			if len(s.token) < st.size {
				s.token = append(s.token, st.pad[len(s.token):]...)
			}
			s.c.requestToken(protocol.CmdSignal, s.key, s.token)
		},
		recv: func(w *worker, s *slot, line []byte) error {
			n, ok := bytes.CutPrefix(line, []byte("ok "))
			if !ok {
				return fmt.Errorf("%w: %q (want ok <receivers>)", errUnexpected, line)
			}
			v, err := strconv.ParseInt(string(n), 10, 64)
			if err != nil {
				return fmt.Errorf("%w: %q (want ok <receivers>)", errUnexpected, line)
			}
			if w.measured {
				st.expected.Add(v)
				st.published.Add(1)
			}
			return nil
		},
	}
}

// listener is one listening connection and the latencies it saw.
type listener struct {
	c   *conn
	rec *recorder
	err error
}

// runSignal runs ModeSignal: cfg.Workers publishers, cfg.Listeners
// listening connections on the channel cfg.Key.
func runSignal(ctx context.Context, cfg Config) (*Result, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	st := &signalState{
		received: make([]atomic.Int64, cfg.Listeners),
		wake:     make(chan struct{}, 1),
		window:   signalWindow(cfg),
		size:     payloadLen(cfg),
	}
	st.pad = bytes.Repeat([]byte{'.'}, st.size)

	listeners := make([]*listener, cfg.Listeners)
	defer func() {
		for _, l := range listeners {
			if l != nil {
				l.c.close()
			}
		}
	}()
	for i := range listeners {
		ep := cfg.Servers[i%len(cfg.Servers)]
		c, err := dial(ctx, ep, cfg.Transport, cfg.AuthToken)
		if err != nil {
			return nil, fmt.Errorf("listener %d: %w", i, err)
		}
		listeners[i] = &listener{c: c, rec: newRecorder()}
		c.request(protocol.CmdListen, cfg.Key, "")
		if err := c.flush(); err != nil {
			return nil, fmt.Errorf("listener %d: %w", i, err)
		}
		line, err := c.line()
		if err == nil && string(line) != "ok" {
			err = fmt.Errorf("%w: %q (want ok)", errUnexpected, line)
		}
		if err != nil {
			return nil, fmt.Errorf("listener %d: listen %s: %w", i, cfg.Key, err)
		}
	}

	var lwg sync.WaitGroup
	stopListening := make(chan struct{})
	for i, l := range listeners {
		lwg.Add(1)
		go func() {
			defer lwg.Done()
			l.err = l.read(st, &st.received[i], stopListening)
			if l.err != nil {
				st.failed.Store(true)
			}
		}()
	}

	spec := signalSpec(st)
	workerCfg := cfg
	workerCfg.Mode = ModeLock  // keys as for per-worker modes ...
	workerCfg.SharedKey = true // ... but every publisher uses the channel
	workerCfg.Pipeline = cfg.Pipeline
	res, err := runWorkers(ctx, workerCfg, spec, func() {
		st.base = time.Now()
		st.t0.Store(st.base.UnixNano())
	})
	if err == nil {
		// Wait for the frames still in flight.
		deadline := time.Now().Add(drainLimit)
		for st.delivered.Load() < st.expected.Load() && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
	}
	close(stopListening)
	for _, l := range listeners {
		l.c.close()
	}
	lwg.Wait()
	if err != nil {
		return nil, err
	}
	rec := newRecorder()
	for i, l := range listeners {
		if l.err != nil {
			return nil, fmt.Errorf("listener %d: %w", i, l.err)
		}
		rec.merge(l.rec)
	}
	res.Mode = ModeSignal
	res.KeyDesc = cfg.Key
	res.SharedKey = false
	res.Listeners = cfg.Listeners
	res.Published = st.published.Load()
	res.Expected = st.expected.Load()
	res.Ops = st.delivered.Load()
	if res.Ops < res.Expected {
		return nil, fmt.Errorf("bench: %d of %d frames delivered within %v of the last publish", res.Ops, res.Expected, drainLimit)
	}
	res.Wall = time.Duration(st.lastFrame.Load())
	if res.Wall > 0 {
		res.Throughput = float64(res.Ops) / res.Wall.Seconds()
	}
	res.Latency = rec.summary()
	return res, nil
}

// errEvicted is a listener's connection closing under it, which during
// a run means the server dropped it as a slow consumer.
var errEvicted = errors.New("listener connection closed by the server (slow consumer?)")

// read consumes push frames until stop is closed, recording the latency
// of every frame published in the timed part.
func (l *listener) read(st *signalState, received *atomic.Int64, stop <-chan struct{}) error {
	for {
		line, err := l.c.line()
		if err != nil {
			select {
			case <-stop:
				return nil
			default:
				return fmt.Errorf("%w: %w", errEvicted, err)
			}
		}
		rest, ok := bytes.CutPrefix(line, []byte("sig "))
		if !ok {
			return fmt.Errorf("%w: %q (want a sig frame)", errUnexpected, line)
		}
		received.Add(1)
		if st.waiting.Load() > 0 {
			select {
			case st.wake <- struct{}{}:
			default:
			}
		}
		_, payload, _ := bytes.Cut(rest, []byte{' '})
		sent, ok := parsePayload(payload, st.size)
		if !ok {
			return fmt.Errorf("%w: frame payload %.60q (want %d bytes: the publish time, then dots)", errUnexpected, payload, st.size)
		}
		t0 := st.t0.Load()
		if t0 == 0 || sent < t0 {
			continue // a warm-up frame
		}
		now := time.Now()
		l.rec.record(time.Duration(now.UnixNano() - sent))
		st.delivered.Add(1)
		off := int64(now.Sub(st.base))
		for {
			prev := st.lastFrame.Load()
			if off <= prev || st.lastFrame.CompareAndSwap(prev, off) {
				break
			}
		}
	}
}

// parsePayload checks that payload is a publish's: size bytes, a decimal
// publish time then '.' padding; it returns the time.
func parsePayload(payload []byte, size int) (sent int64, ok bool) {
	if len(payload) != size {
		return 0, false
	}
	i := 0
	for ; i < len(payload) && payload[i] >= '0' && payload[i] <= '9'; i++ {
		if i == timestampDigits {
			return 0, false // would overflow
		}
		sent = sent*10 + int64(payload[i]-'0')
	}
	if i == 0 {
		return 0, false
	}
	// The padding is checked at its ends only: a full scan would make
	// the listeners, not the server, the bottleneck with large payloads.
	if i < len(payload) && (payload[i] != '.' || payload[len(payload)-1] != '.') {
		return 0, false
	}
	return sent, true
}
