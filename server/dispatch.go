package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"
	"unsafe"

	"github.com/dflockd/dflockd/cluster"
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/protocol"
)

// view returns a string that aliases b without copying. The engine never
// retains key or token strings it is given (it copies a key before storing
// it), so a view is safe for the duration of one engine call.
func view(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// kindOf maps a command to its namespace.
func kindOf(c protocol.Command) core.Kind {
	switch c {
	case protocol.CmdSemLock, protocol.CmdSemRelease, protocol.CmdSemRenew, protocol.CmdSemEnqueue, protocol.CmdSemWait:
		return core.KindSemaphore
	}
	return core.KindLock
}

// statusOf maps an engine error to its wire status. It is the only
// error-to-status mapping in the server.
func statusOf(err error) protocol.Status {
	switch {
	case errors.Is(err, core.ErrTimeout):
		return protocol.StatusTimeout
	case errors.Is(err, core.ErrMaxKeys):
		return protocol.StatusErrMaxLocks
	case errors.Is(err, core.ErrMaxWaiters):
		return protocol.StatusErrMaxWaiters
	case errors.Is(err, core.ErrLimitMismatch):
		return protocol.StatusErrLimitMismatch
	case errors.Is(err, core.ErrNotEnqueued):
		return protocol.StatusErrNotEnqueued
	case errors.Is(err, core.ErrAlreadyEnqueued):
		return protocol.StatusErrAlreadyEnqueued
	case errors.Is(err, core.ErrLeaseExpired):
		return protocol.StatusErrLeaseExpired
	}
	// ErrNotHolder, ErrCanceled and anything unexpected.
	return protocol.StatusError
}

// dispatch runs one decoded request and appends its answer. done reports
// that the session must end (with reason).
func (sess *session) dispatch(req *protocol.Request) (CloseReason, bool) {
	defer sess.endRequest(req.Cmd, sess.startRequest())
	if sess.rc != nil {
		rep := sess.srv.opts.Replica
		if !sess.relayedIn && !rep.Leading() && needsLeader(req) && sess.relayFrom(rep, req) {
			return CloseRelayed, true // relay.go
		}
		if reason, done, handled := sess.replicated(req); handled {
			return reason, done
		}
	}
	e := sess.srv.opts.Engine
	switch req.Cmd {
	case protocol.CmdLock, protocol.CmdSemLock:
		return sess.lock(req)
	case protocol.CmdRelease, protocol.CmdSemRelease:
		err := e.Release(sess.owner, kindOf(req.Cmd), view(req.Key), view(req.Token))
		sess.answer(err)
	case protocol.CmdRenew, protocol.CmdSemRenew:
		l, err := e.Renew(kindOf(req.Cmd), view(req.Key), view(req.Token), req.TTL)
		if err != nil {
			// An expired lease is plain `error` for a renew (§2.3).
			sess.reply(protocol.StatusError)
			break
		}
		sess.wmu.Lock()
		sess.out = protocol.AppendOKInt(sess.out, int64(l.TTL/time.Second))
		sess.noteOut()
		sess.wmu.Unlock()
	case protocol.CmdEnqueue, protocol.CmdSemEnqueue:
		l, acquired, err := e.Enqueue(sess.owner, kindOf(req.Cmd), view(req.Key), core.AcquireOptions{Limit: req.Limit, TTL: req.TTL})
		switch {
		case err != nil:
			sess.fail(err)
		case acquired:
			sess.grant(protocol.StatusAcquired, l)
		default:
			sess.reply(protocol.StatusQueued)
		}
	case protocol.CmdWait, protocol.CmdSemWait:
		return sess.wait(req)
	case protocol.CmdPing:
		sess.reply(protocol.StatusOK)
	case protocol.CmdStats:
		sess.stats()
	case protocol.CmdAuth:
		// No token configured, or already authenticated (§2.4).
		sess.reply(protocol.StatusError)
	case protocol.CmdListen:
		sess.listen(req)
	case protocol.CmdUnlisten:
		sess.unlisten(req)
	case protocol.CmdSignal:
		sess.signal(req)
	case protocol.CmdInspect:
		sess.inspect(req) // inspect.go
	case protocol.CmdName:
		sess.setName(req)
	case protocol.CmdCluster:
		sess.clusterRequest(req) // replicated.go
	case protocol.CmdSession:
		sess.nameSession(req) // sessions.go
	case protocol.CmdResume:
		sess.resume(req)
	case protocol.CmdBye:
		// Released before the answer: once a client reads `ok`, the
		// next waiter has the lock.
		sess.endOwner(CloseBye) // sessions.go; serve's call is then a no-op
		sess.reply(protocol.StatusOK)
		sess.flush()
		return CloseBye, true
	default:
		sess.reply(protocol.StatusError)
	}
	return 0, false
}

// answer appends `ok` for nil, else the error's status.
func (sess *session) answer(err error) {
	if err != nil {
		sess.reply(statusOf(err))
		return
	}
	sess.reply(protocol.StatusOK)
}

func (sess *session) grant(st protocol.Status, l core.Lease) {
	sess.m.st = st
	sess.wmu.Lock()
	tok := l.Token
	sess.out = protocol.AppendGrant(sess.out, st, view(tok[:]), l.TTL)
	sess.noteOut()
	sess.wmu.Unlock()
}

func (sess *session) lock(req *protocol.Request) (CloseReason, bool) {
	e := sess.srv.opts.Engine
	opt := core.AcquireOptions{Limit: req.Limit, TTL: req.TTL, Queue: req.Timeout > 0}
	l, t, err := e.Acquire(sess.owner, kindOf(req.Cmd), view(req.Key), opt)
	if err == nil && t != nil {
		alive := sess.block(func(ctx context.Context) {
			if sess.ns != nil {
				// A named session keeps the place if the connection drops.
				l, err = t.WaitOrPark(ctx, req.Timeout)
			} else {
				l, err = t.Wait(ctx, req.Timeout)
			}
		})
		if !alive {
			return sess.gone(), true
		}
	}
	if err != nil {
		if sess.cancelledByDrain(err) {
			return sess.refuseDraining(), true
		}
		sess.fail(err)
		return 0, false
	}
	sess.grant(protocol.StatusOK, l)
	return 0, false
}

// fail answers a failed lock or enqueue. The engine marks the first
// refused key creation in a minute (a *core.MaxKeysError); it is logged
// at WARN, so an operator learns that --max-locks keys are in use.
func (sess *session) fail(err error) {
	st := statusOf(err)
	if mk := (*core.MaxKeysError)(nil); st == protocol.StatusErrMaxLocks && errors.As(err, &mk) {
		sess.srv.log.Warn("key limit reached: every key is in use, new keys are refused (logged at most once a minute)",
			"max_locks", mk.Max, "refused", mk.Refused, "conn", sess.id, "remote", sess.remote)
	}
	sess.reply(st)
}

func (sess *session) wait(req *protocol.Request) (CloseReason, bool) {
	e := sess.srv.opts.Engine
	k, key := kindOf(req.Cmd), view(req.Key)
	var l core.Lease
	var err error
	if req.Timeout > 0 && sess.owner.Queued(k, key) {
		alive := sess.block(func(ctx context.Context) {
			if sess.ns != nil {
				l, err = e.WaitOrPark(ctx, sess.owner, k, key, req.Timeout)
			} else {
				l, err = e.Wait(ctx, sess.owner, k, key, req.Timeout)
			}
		})
		if !alive {
			return sess.gone(), true
		}
	} else {
		l, err = e.Wait(sess.srv.base, sess.owner, k, key, req.Timeout)
	}
	if err != nil {
		if sess.cancelledByDrain(err) {
			return sess.refuseDraining(), true
		}
		sess.reply(statusOf(err))
		return 0, false
	}
	sess.grant(protocol.StatusOK, l)
	return 0, false
}

// gone names why a blocked request found its connection unusable.
func (sess *session) gone() CloseReason {
	if errors.Is(sess.rd.failed, errPipelineOverflow) {
		return CloseAbusivePipeline
	}
	return CloseEOF
}

// statsBody is the JSON shape of `stats` (§5). Every slice is non-nil.
// The members up to signal_channels are the 1.x ones, unchanged; the rest
// are dflockd additions.
type statsBody struct {
	Connections    int                  `json:"connections"`
	Locks          []core.LockStat      `json:"locks"`
	Semaphores     []core.SemaphoreStat `json:"semaphores"`
	IdleLocks      []core.IdleStat      `json:"idle_locks"`
	IdleSemaphores []core.IdleStat      `json:"idle_semaphores"`
	SignalChannels []core.ChannelStat   `json:"signal_channels"`
	SlowConsumers  uint64               `json:"slow_consumers"`
	Clients        []clientStat         `json:"clients"`
	// Requests counts the requests served since the server started;
	// ConnectionsByTransport the open connections per transport
	// (reqcount.go).
	Requests               uint64         `json:"requests"`
	ConnectionsByTransport map[string]int `json:"connections_by_transport"`
	// Sessions counts the named sessions with a connection,
	// DetachedSessions those waiting to be resumed (sessions.go).
	Sessions         int `json:"sessions"`
	DetachedSessions int `json:"detached_sessions"`
	// Cluster is this node's view of its cluster in the replicated mode
	// (as the cluster request answers it); absent otherwise.
	Cluster *cluster.NodeStatus `json:"cluster,omitempty"`
	// Totals counts the entries each list would have without the cap
	// (Options.StatsMaxItems); Truncated says some list is shorter.
	Totals    statsTotals `json:"totals"`
	Truncated bool        `json:"truncated"`
}

// statsTotals is stats.totals: one count per list of statsBody.
type statsTotals struct {
	core.KeyTotals
	SignalChannels int `json:"signal_channels"`
	Clients        int `json:"clients"`
}

// statsLimit is the per-list cap of a stats answer (0: none listed).
func (s *Server) statsLimit() int {
	switch n := s.opts.StatsMaxItems; {
	case n == 0:
		return DefaultStatsMaxItems
	case n < 0:
		return 0
	default:
		return n
	}
}

// stats answers `stats`.
func (sess *session) stats() {
	ans, err := sess.srv.statsAnswer()
	if err != nil {
		sess.srv.log.Error("stats: encoding failed", "err", err)
		sess.reply(protocol.StatusError)
		return
	}
	sess.wmu.Lock()
	if len(sess.out) == 0 {
		sess.out = ans // no copy: flushLocked recycles it after the write
	} else {
		sess.out = append(sess.out, ans...)
		recycleOut(ans)
	}
	sess.noteOut()
	sess.wmu.Unlock()
}

// statsKeep is the largest encoding scratch kept between stats answers.
const statsKeep = 4 << 20

// statsAnswer builds one `stats` answer line ("ok <json>\n").
//
// Each list holds at most statsLimit entries, so an answer is bounded in
// size, and in cost by the number of keys (capped by the engine's MaxKeys)
// plus the entries listed, however many subscriptions and connections
// there are. No lock that other requests need is held across the walk:
// each key and each channel is read under its own lock, and the server's
// mutex only while the listed clients are copied and, separately, while
// the sessions' request counters are summed (one load each).
//
// Answers are built one at a time server-wide (statsMu), in scratch kept
// by the server, and land in a recycled output buffer (bigOut): however
// many connections pipeline stats, at most one answer is being built,
// which bounds the memory they take, with little garbage. Back-to-back
// builds are paced (statsPace) so that stats take at most half of one
// core, leaving other connections' requests their share. statsMu is never
// held while waiting for a connection, only for another build or the
// pacing pause (at most one build's duration).
func (s *Server) statsAnswer() ([]byte, error) {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	if wait := s.statsPace.wait(time.Now()); wait > 0 {
		time.Sleep(wait)
	}
	began := time.Now()
	defer func() { s.statsPace.done(began, time.Now()) }()
	e := s.opts.Engine
	limit := s.statsLimit()
	st := &s.statsKeys
	if rep := s.opts.Replica; rep != nil {
		replicatedKeyStats(rep, st, limit) // replicated.go
	} else {
		e.StatsUpTo(st, limit)
	}
	var nchannels, nclients int
	s.statsChannels, nchannels = e.SignalStatsUpTo(s.statsChannels, limit)
	s.statsClients, nclients = s.clients(s.statsClients, limit)
	s.statsBuf.Reset()
	sb := statsBody{
		Connections:    s.Connections(),
		Locks:          st.Locks,
		Semaphores:     st.Semaphores,
		IdleLocks:      st.IdleLocks,
		IdleSemaphores: st.IdleSemaphores,
		SignalChannels: s.statsChannels,
		SlowConsumers:  s.slowConsumers.Load(),
		Clients:        s.statsClients,
		Totals:         statsTotals{KeyTotals: st.Totals, SignalChannels: nchannels, Clients: nclients},
		Truncated:      st.Truncated() || len(s.statsChannels) < nchannels || len(s.statsClients) < nclients,
	}
	sb.Requests, sb.ConnectionsByTransport = s.requestCounts()
	ss := s.sessionStats()
	sb.Sessions, sb.DetachedSessions = ss.Attached, ss.Detached
	if rep := s.opts.Replica; rep != nil {
		st := rep.Status()
		sb.Cluster = &st
	}
	err := json.NewEncoder(&s.statsBuf).Encode(sb)
	// The scratch must not keep keys, patterns or remotes alive.
	clear(st.Locks)
	clear(st.Semaphores)
	clear(st.IdleLocks)
	clear(st.IdleSemaphores)
	clear(s.statsChannels)
	clear(s.statsClients)
	if err != nil {
		return nil, err
	}
	body := bytes.TrimSuffix(s.statsBuf.Bytes(), []byte{'\n'})
	ans := protocol.AppendOKBody(outBuffer(len("ok ")+len(body)+1), body)
	if s.statsBuf.Cap() > statsKeep {
		s.statsBuf = bytes.Buffer{}
	}
	return ans, nil
}

// bigOut holds written output buffers that had grown past 64 KiB (stats
// answers, mostly) for the next stats answer of any connection: no
// connection keeps one, and pipelined stats do not allocate one each. Like
// any sync.Pool it is emptied by garbage collection when unused.
var bigOut sync.Pool // of *[]byte

// recycleOut offers b, no longer referenced by its owner, to bigOut.
func recycleOut(b []byte) {
	b = b[:0]
	bigOut.Put(&b)
}

// outBuffer returns an empty buffer with room for n bytes, from bigOut
// when it has one that large.
func outBuffer(n int) []byte {
	if p, _ := bigOut.Get().(*[]byte); p != nil && cap(*p) >= n {
		return (*p)[:0]
	}
	return make([]byte, 0, n+n/8) // room for a slightly longer answer next time
}

// pacer spaces the runs of a task so that it is busy at most half the
// time: a run may start only once as long as the previous run took has
// passed since it ended. A run after a quiet spell starts at once.
type pacer struct{ next time.Time }

// wait returns how long a run that would start at now must wait.
func (p *pacer) wait(now time.Time) time.Duration { return p.next.Sub(now) }

// done records a run that lasted from began to ended.
func (p *pacer) done(began, ended time.Time) { p.next = ended.Add(ended.Sub(began)) }
