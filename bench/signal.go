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
}

// signalSpec publishes "signal <key> <wall-clock ns>" and counts the
// receivers its answer reports.
func signalSpec(st *signalState) opSpec {
	var buf [20]byte
	return opSpec{
		steps: 1,
		send: func(w *worker, s *slot) {
			s.c.request(protocol.CmdSignal, s.key, string(strconv.AppendInt(buf[:0], time.Now().UnixNano(), 10)))
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
	st := &signalState{}

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
	for _, l := range listeners {
		lwg.Add(1)
		go func() {
			defer lwg.Done()
			l.err = l.read(st, stopListening)
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
func (l *listener) read(st *signalState, stop <-chan struct{}) error {
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
		_, payload, _ := bytes.Cut(rest, []byte{' '})
		sent, err := strconv.ParseInt(string(payload), 10, 64)
		if err != nil {
			return fmt.Errorf("%w: frame payload %q", errUnexpected, payload)
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
