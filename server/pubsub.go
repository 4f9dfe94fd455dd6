package server

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/protocol"
)

// DefaultPushQueueBytes is the per-connection bound on pending signal
// bytes used when Options.PushQueueBytes is zero: 1 MiB, as NATS bounds
// the pending bytes of a client.
const DefaultPushQueueBytes = 1 << 20

// PushFrameOverhead is what a queued signal frame counts against the push
// queue bound beyond its bytes (its slot in the queue), so that tiny frames
// cannot make a listener hold several times the bound.
const PushFrameOverhead = 24

// pushChunk is the most the writer copies into one write. Frames of at
// least half of it are written as they are: copying them would not save
// a write.
const pushChunk = 64 << 10

// chunkPool holds the writers' copy buffers: a listener holds one only
// while it writes, so idle listeners cost none.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, 0, pushChunk); return &b }}

// subKey names one of a session's subscriptions.
type subKey struct {
	pattern, group string
}

// pusher is a session's push endpoint for signals (core.Subscriber). A
// publisher only appends the shared frame to its queue under a short
// mutex, never touching the socket, so a slow listener cannot stall a
// publisher. The queue is bounded in bytes: every frame accepted and not
// yet written counts, the ones in the writer's current batch included, so
// a listener that stops reading holds at most about maxBytes. The
// pusher's own goroutine takes the whole queue at once and writes it,
// many frames per write, under the session's write lock so frames never
// split or interleave with responses mid-line.
type pusher struct {
	sess      *session
	maxBytes  int
	maxFrames int // 0 = no frame cap

	mu      sync.Mutex
	q       [][]byte
	pending int // bytes accepted and not yet written (queue + batch), with PushFrameOverhead each
	frames  int // frames accepted and not yet written
	peak    int // the largest pending seen
	closed  bool

	wake    chan struct{} // one slot: "the queue went non-empty"
	stop    chan struct{}
	done    chan struct{}
	evicted atomic.Bool
}

func newPusher(sess *session, maxBytes, maxFrames int) *pusher {
	p := &pusher{
		sess:      sess,
		maxBytes:  maxBytes,
		maxFrames: maxFrames,
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	go p.run()
	return p
}

// Deliver queues frame unless that would take the pending bytes past the
// bound (or the frames past the optional frame cap). A frame is always
// accepted when nothing is pending, so a bound smaller than one frame
// still lets frames through one at a time. It never blocks on I/O.
func (p *pusher) Deliver(frame []byte) bool {
	p.mu.Lock()
	cost := len(frame) + PushFrameOverhead
	if p.closed || (p.pending > 0 && p.pending+cost > p.maxBytes) ||
		(p.maxFrames > 0 && p.frames >= p.maxFrames) {
		if !p.closed {
			p.sess.m.dropped.Add(1)
		}
		p.mu.Unlock()
		return false
	}
	p.q = append(p.q, frame)
	p.pending += cost
	p.peak = max(p.peak, p.pending)
	p.frames++
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
	pending := p.pending
	p.mu.Unlock()
	if closed {
		// The refusal was not a full queue: the connection is already
		// going away (session ended, or the writer failed). Not a slow
		// consumer.
		return
	}
	p.slowConsumer("queue full", pending)
}

// stalled reports that a write to the listener's connection failed with
// err. A write that ran out of time means the peer stopped reading: the
// listener is a slow consumer like one whose queue overflowed. Other
// errors (the peer closed or reset the connection) and the deliberate
// interruption of close are plain disconnects.
func (p *pusher) stalled(err error) {
	if !isTimeout(err) {
		return
	}
	p.mu.Lock()
	closed := p.closed
	pending := p.pending
	p.mu.Unlock()
	if closed {
		return
	}
	p.slowConsumer("write timeout", pending)
}

// slowConsumer counts, logs and closes the listener, once.
func (p *pusher) slowConsumer(why string, pending int) {
	if !p.evicted.CompareAndSwap(false, true) {
		return
	}
	s := p.sess.srv
	s.slowConsumers.Add(1)
	s.log.Info("slow consumer evicted", "conn", p.sess.id, "remote", p.sess.remote,
		"reason", why, "pending_bytes", pending, "queue_bytes", p.maxBytes)
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
		n, err := p.write(batch)
		frames := len(batch)
		clear(batch)
		if cap(batch) > 4096 {
			batch = nil // do not keep a burst's array (96 KiB)
		}
		if err != nil {
			// A failed or late write ends the connection (§4.5); refuse
			// further frames so they are not counted as received.
			p.stalled(err)
			p.mu.Lock()
			p.closed = true
			p.q = nil
			p.mu.Unlock()
			p.sess.conn.Close()
			return
		}
		p.mu.Lock()
		p.pending -= n
		p.frames -= frames
		p.mu.Unlock()
	}
}

// write writes the frames of batch under the session's write lock and
// returns what they counted against the bound. Answers already waiting in the session's
// output go first. Small frames are copied together into a pooled chunk
// of up to pushChunk bytes per write; long ones are written as they are.
func (p *pusher) write(batch [][]byte) (n int, err error) {
	sess := p.sess
	bp := chunkPool.Get().(*[]byte)
	buf := (*bp)[:0]
	sess.wmu.Lock()
	if len(sess.out) > 0 && !sess.flushLocked() {
		err = sess.werr
	}
	for _, f := range batch {
		n += len(f) + PushFrameOverhead
		if err != nil {
			continue
		}
		if len(buf)+len(f) > pushChunk && len(buf) > 0 {
			err = sess.writeLocked(buf)
			buf = buf[:0]
		}
		if err != nil {
			continue
		}
		if len(f) >= pushChunk/2 {
			err = sess.writeLocked(f)
		} else {
			buf = append(buf, f...)
		}
	}
	if err == nil && len(buf) > 0 {
		err = sess.writeLocked(buf)
	}
	sess.wmu.Unlock()
	*bp = buf[:0]
	chunkPool.Put(bp)
	return n, err
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

// peakBytes returns the most bytes the pusher ever had pending.
func (p *pusher) peakBytes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peak
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
		b := sess.srv.opts.PushQueueBytes
		if b <= 0 {
			b = DefaultPushQueueBytes
		}
		sess.push = newPusher(sess, b, max(sess.srv.opts.PushQueue, 0))
		sess.subs = make(map[subKey]struct{})
	}
	if _, err := sess.srv.opts.Engine.Subscribe(sess.push, pattern, group); err != nil {
		sess.reply(protocol.StatusError)
		return
	}
	sess.subs[subKey{strings.Clone(pattern), strings.Clone(group)}] = struct{}{}
	sess.noteSubs()
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
		sess.noteSubs()
	}
	sess.reply(protocol.StatusOK)
}

// signal handles `signal <channel> <payload>`: one shared frame offered
// to every matching listener; the answer is the receiver count.
func (sess *session) signal(req *protocol.Request) {
	frame := make([]byte, 0, len("sig ")+len(req.Key)+1+len(req.Payload)+1)
	frame = protocol.AppendSignal(frame, req.Key, req.Payload)
	n := sess.srv.opts.Engine.Signal(view(req.Key), frame)
	sess.m.published.Add(1)
	sess.m.delivered.Add(uint64(n))
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
