package server

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/protocol"
)

// DefaultPushQueue is the per-connection push queue length used when
// Options.PushQueue is zero.
const DefaultPushQueue = 64

// subKey names one of a session's subscriptions.
type subKey struct {
	pattern, group string
}

// pusher is a session's push endpoint for signals (core.Subscriber). A
// publisher only appends to its bounded queue under a short mutex, never
// touching the socket, so a slow listener cannot stall a publisher. The
// pusher's own goroutine moves queued frames into the session's output
// buffer and writes them, many frames per write, under the session's write
// lock so frames never split or interleave with responses mid-line.
type pusher struct {
	sess *session
	max  int

	mu     sync.Mutex
	q      [][]byte
	closed bool

	wake    chan struct{} // one slot: "the queue went non-empty"
	stop    chan struct{}
	done    chan struct{}
	evicted atomic.Bool
}

func newPusher(sess *session, max int) *pusher {
	p := &pusher{
		sess: sess,
		max:  max,
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go p.run()
	return p
}

// Deliver queues frame unless the queue is full. It never blocks on I/O.
func (p *pusher) Deliver(frame []byte) bool {
	p.mu.Lock()
	if p.closed || len(p.q) >= p.max {
		p.mu.Unlock()
		return false
	}
	p.q = append(p.q, frame)
	first := len(p.q) == 1
	p.mu.Unlock()
	if first {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// Evict closes the connection of a listener whose queue overflowed (§4.5).
// The session then ends as on any disconnect: its subscriptions, waiters
// and (with auto-release) locks are cleaned up.
func (p *pusher) Evict() {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		// The refusal was not a full queue: the connection is already
		// going away (session ended, or the writer failed). Not a slow
		// consumer.
		return
	}
	if !p.evicted.CompareAndSwap(false, true) {
		return
	}
	s := p.sess.srv
	s.slowConsumers.Add(1)
	s.log.Info("slow consumer evicted", "conn", p.sess.id, "remote", p.sess.conn.RemoteAddr(), "queue", p.max)
	p.sess.conn.Close()
}

// run drains the queue into the connection until close.
func (p *pusher) run() {
	defer close(p.done)
	var batch [][]byte
	for {
		select {
		case <-p.wake:
		case <-p.stop:
			return
		}
		p.mu.Lock()
		batch, p.q = p.q, batch[:0]
		p.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		sess := p.sess
		sess.wmu.Lock()
		for _, f := range batch {
			sess.out = append(sess.out, f...)
		}
		ok := sess.flushLocked()
		sess.wmu.Unlock()
		clear(batch)
		if !ok {
			// A failed or late write ends the connection (§4.5); refuse
			// further frames so they are not counted as received.
			p.mu.Lock()
			p.closed = true
			p.q = nil
			p.mu.Unlock()
			sess.conn.Close()
			return
		}
	}
}

// close stops the pusher and waits for its goroutine. Frames still
// queued are dropped: the connection is going away.
func (p *pusher) close() {
	p.mu.Lock()
	p.closed = true
	p.q = nil
	p.mu.Unlock()
	close(p.stop)
	// A write blocked on a peer that does not read (it may have
	// half-closed) must not hold up the disconnect; with no write
	// timeout it would never end.
	_ = p.sess.conn.SetWriteDeadline(time.Unix(1, 0))
	<-p.done
}

// listen handles `listen <pattern> [<group>]`.
func (sess *session) listen(req *protocol.Request) {
	pattern, group := view(req.Key), view(req.Group)
	if !core.ValidPattern(pattern) {
		sess.reply(protocol.StatusError)
		return
	}
	if _, dup := sess.subs[subKey{pattern, group}]; dup {
		sess.reply(protocol.StatusOK) // idempotent, even at the cap (§4.2)
		return
	}
	if max := sess.srv.opts.MaxSubscriptions; max > 0 && len(sess.subs) >= max {
		sess.reply(protocol.StatusError)
		return
	}
	if sess.push == nil {
		q := sess.srv.opts.PushQueue
		if q <= 0 {
			q = DefaultPushQueue
		}
		sess.push = newPusher(sess, q)
		sess.subs = make(map[subKey]struct{})
	}
	if _, err := sess.srv.opts.Engine.Subscribe(sess.push, pattern, group); err != nil {
		sess.reply(protocol.StatusError)
		return
	}
	sess.subs[subKey{strings.Clone(pattern), strings.Clone(group)}] = struct{}{}
	sess.reply(protocol.StatusOK)
}

// unlisten handles `unlisten <pattern> [<group>]`: `ok` even when nothing
// was subscribed, `error` for an invalid pattern.
func (sess *session) unlisten(req *protocol.Request) {
	pattern, group := view(req.Key), view(req.Group)
	if !core.ValidPattern(pattern) {
		sess.reply(protocol.StatusError)
		return
	}
	k := subKey{pattern, group}
	if _, ok := sess.subs[k]; ok {
		_, _ = sess.srv.opts.Engine.Unsubscribe(sess.push, pattern, group)
		delete(sess.subs, k)
	}
	sess.reply(protocol.StatusOK)
}

// signal handles `signal <channel> <payload>`: one shared frame offered
// to every matching listener; the answer is the receiver count.
func (sess *session) signal(req *protocol.Request) {
	frame := make([]byte, 0, len("sig ")+len(req.Key)+1+len(req.Payload)+1)
	frame = protocol.AppendSignal(frame, req.Key, req.Payload)
	n := sess.srv.opts.Engine.Signal(view(req.Key), frame)
	sess.wmu.Lock()
	sess.out = protocol.AppendOKInt(sess.out, int64(n))
	sess.noteOut()
	sess.wmu.Unlock()
}

// dropSubscriptions removes every subscription of the session and stops
// its pusher. Called once, when the session ends.
func (sess *session) dropSubscriptions() {
	if sess.push == nil {
		return
	}
	e := sess.srv.opts.Engine
	for k := range sess.subs {
		_, _ = e.Unsubscribe(sess.push, k.pattern, k.group)
	}
	sess.subs = nil
	sess.push.close()
}
