package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/protocol"
)

// slot is one operation in flight: a worker keeps Pipeline of them.
type slot struct {
	key   string
	c     *conn
	step  int
	token []byte
	start time.Time
}

// opSpec defines an operation as a fixed sequence of request/answer
// steps. send appends the request of s.step; recv checks its answer.
type opSpec struct {
	steps int
	send  func(w *worker, s *slot)
	recv  func(w *worker, s *slot, line []byte) error
	// untimed skips the per-operation clock reads (two per operation)
	// of a mode whose latency is measured elsewhere (signal: by the
	// listeners).
	untimed bool
}

// maxDialing bounds the connections a run opens at once. A burst of
// simultaneous handshakes measures nothing useful and can overflow a
// server's accept queue: quic-go refuses new connections (CONNECTION_REFUSED)
// once 32 finished handshakes wait to be accepted, which 100 workers
// dialing together on two cores reach.
const maxDialing = 8

// sharedState is what the workers of one run share: the dial limit and
// the hand-off checks.
type sharedState struct {
	dialing   chan struct{} // one token per dial in progress
	holders   atomic.Int64  // current holders of the hand-off key
	lastFence atomic.Uint64 // fence of the latest hand-off grant
}

// worker runs operations over its own connections.
type worker struct {
	id       int
	cfg      *Config
	spec     opSpec
	shared   *sharedState
	conns    []*conn
	next     int // rotation over conns
	slots    []slot
	queue    ring // slots with a request in flight, oldest first
	rec      *recorder
	progress *atomic.Int64
	measured bool

	acqArg  string // argument line of the acquire request
	waitArg string
}

func newWorker(id int, cfg *Config, spec opSpec, shared *sharedState) *worker {
	w := &worker{id: id, cfg: cfg, spec: spec, shared: shared, rec: newRecorder()}
	w.slots = make([]slot, cfg.Pipeline)
	for i := range w.slots {
		key := cfg.Key
		switch {
		case cfg.SharedKey:
		case cfg.Pipeline > 1:
			key = fmt.Sprintf("%s_%d_%d", cfg.Key, id, i)
		default:
			key = fmt.Sprintf("%s_%d", cfg.Key, id)
		}
		w.slots[i] = slot{key: key, token: make([]byte, 0, 64)}
	}
	w.queue = ring{items: make([]int, cfg.Pipeline)}
	timeout := wholeSeconds(cfg.Timeout)
	lease := ""
	if cfg.Lease > 0 {
		lease = " " + wholeSeconds(cfg.Lease)
	}
	switch cfg.Mode {
	case ModeSemaphore:
		w.acqArg = timeout + " " + strconv.Itoa(cfg.Limit) + lease
	case ModeTwoPhase:
		w.acqArg = trimSpace(lease)
		w.waitArg = timeout
	default:
		w.acqArg = timeout + lease
	}
	return w
}

func trimSpace(s string) string {
	if len(s) > 0 && s[0] == ' ' {
		return s[1:]
	}
	return s
}

// run dials, runs the warm-up, signals ready, waits for start and runs the
// measured rounds.
func (w *worker) run(ctx context.Context, warmup int, ready func(), start <-chan struct{}) error {
	for range w.cfg.Connections {
		ep := w.cfg.Servers[w.id%len(w.cfg.Servers)]
		select {
		case w.shared.dialing <- struct{}{}:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		c, err := dial(ctx, ep, w.cfg.Transport, w.cfg.AuthToken)
		<-w.shared.dialing
		if err != nil {
			return err
		}
		w.conns = append(w.conns, c)
	}
	// A cancelled run closes the connections so that blocked reads end.
	stop := context.AfterFunc(ctx, w.close)
	defer stop()
	if err := w.phase(ctx, warmup); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	ready()
	select {
	case <-start:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	w.measured = true
	return w.phase(ctx, w.cfg.Rounds)
}

// close closes the worker's connections.
func (w *worker) close() {
	for _, c := range w.conns {
		c.close()
	}
}

// phase runs n operations, keeping up to len(w.slots) in flight.
func (w *worker) phase(ctx context.Context, n int) error {
	started, done := 0, 0
	for i := range w.slots {
		if started == n {
			break
		}
		w.begin(i)
		started++
	}
	for done < n {
		head := w.queue.pop()
		s := &w.slots[head]
		if !s.c.buffered() {
			if err := w.flush(); err != nil {
				return w.ioError(ctx, err)
			}
		}
		line, err := s.c.line()
		if err != nil {
			return w.ioError(ctx, err)
		}
		if err := w.spec.recv(w, s, line); err != nil {
			return fmt.Errorf("%s: %w", s.key, err)
		}
		s.step++
		if s.step < w.spec.steps {
			w.spec.send(w, s)
			w.queue.push(head)
			continue
		}
		if w.measured {
			if !w.spec.untimed {
				w.rec.record(time.Since(s.start))
			}
			w.progress.Add(1)
		}
		done++
		if started < n {
			w.begin(head)
			started++
		}
	}
	return nil
}

// begin starts a new operation in slot i on the next connection.
func (w *worker) begin(i int) {
	s := &w.slots[i]
	s.c = w.conns[w.next%len(w.conns)]
	w.next++
	s.step = 0
	if !w.spec.untimed {
		s.start = time.Now()
	}
	w.spec.send(w, s)
	w.queue.push(i)
}

// flush sends every connection's buffered requests.
func (w *worker) flush() error {
	for _, c := range w.conns {
		if err := c.flush(); err != nil {
			return err
		}
	}
	return nil
}

// ioError prefers the run's cancellation cause over the read error it
// provoked.
func (w *worker) ioError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// specs maps each request/answer mode to its steps.
var specs = map[Mode]opSpec{
	ModeLock:      lockSpec(protocol.CmdLock, protocol.CmdRelease),
	ModeSemaphore: lockSpec(protocol.CmdSemLock, protocol.CmdSemRelease),
	ModeHandoff:   handoffSpec(),
	ModeTwoPhase: {
		steps: 3,
		send: func(w *worker, s *slot) {
			switch s.step {
			case 0:
				s.c.request(protocol.CmdEnqueue, s.key, w.acqArg)
			case 1:
				s.c.request(protocol.CmdWait, s.key, w.waitArg)
			default:
				s.c.requestToken(protocol.CmdRelease, s.key, s.token)
			}
		},
		recv: func(w *worker, s *slot, line []byte) (err error) {
			switch s.step {
			case 0:
				if string(line) == "queued" {
					return nil
				}
				s.token, err = grant(line, "acquired", s.token)
			case 1:
				s.token, err = grant(line, "ok", s.token)
			default:
				err = expectOK(line)
			}
			return err
		},
	},
}

// lockSpec is acquire (with the worker's acquire argument) then release.
func lockSpec(acquire, release protocol.Command) opSpec {
	return opSpec{
		steps: 2,
		send: func(w *worker, s *slot) {
			if s.step == 0 {
				s.c.request(acquire, s.key, w.acqArg)
			} else {
				s.c.requestToken(release, s.key, s.token)
			}
		},
		recv: func(w *worker, s *slot, line []byte) (err error) {
			if s.step == 0 {
				s.token, err = grant(line, "ok", s.token)
				return err
			}
			return expectOK(line)
		},
	}
}

// errOrder reports a broken hand-off: two holders at once, or a grant
// whose fencing number did not increase.
var errOrder = errors.New("hand-off order broken")

// handoffSpec is lockSpec on the shared key, checking while it holds the
// lock that nobody else does and that fencing numbers only increase.
func handoffSpec() opSpec {
	base := lockSpec(protocol.CmdLock, protocol.CmdRelease)
	return opSpec{
		steps: 2,
		send: func(w *worker, s *slot) {
			if s.step == 1 {
				w.shared.holders.Add(-1) // about to let go
			}
			base.send(w, s)
		},
		recv: func(w *worker, s *slot, line []byte) error {
			if err := base.recv(w, s, line); err != nil || s.step != 0 {
				return err
			}
			if n := w.shared.holders.Add(1); n != 1 {
				return fmt.Errorf("%w: %d holders at once", errOrder, n)
			}
			f, ok := core.FenceFromToken(string(s.token))
			if !ok {
				return fmt.Errorf("%w: token %q has no fencing number", errUnexpected, s.token)
			}
			if prev := w.shared.lastFence.Load(); f <= prev {
				return fmt.Errorf("%w: fence %d after %d", errOrder, f, prev)
			}
			w.shared.lastFence.Store(f)
			return nil
		},
	}
}

// ring is a FIFO of slot indexes of fixed capacity (a worker never has
// more than its Pipeline slots in flight), so the loop allocates nothing.
type ring struct {
	items      []int
	head, size int
}

func (r *ring) push(v int) {
	r.items[(r.head+r.size)%len(r.items)] = v
	r.size++
}

func (r *ring) pop() int {
	v := r.items[r.head]
	r.head = (r.head + 1) % len(r.items)
	r.size--
	return v
}
