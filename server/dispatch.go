package server

import (
	"context"
	"encoding/json"
	"errors"
	"time"
	"unsafe"

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
	sess.wmu.Lock()
	tok := l.Token
	sess.out = protocol.AppendGrant(sess.out, st, view(tok[:]), l.TTL)
	sess.wmu.Unlock()
}

func (sess *session) lock(req *protocol.Request) (CloseReason, bool) {
	e := sess.srv.opts.Engine
	opt := core.AcquireOptions{Limit: req.Limit, TTL: req.TTL, Queue: req.Timeout > 0}
	l, t, err := e.Acquire(sess.owner, kindOf(req.Cmd), view(req.Key), opt)
	if err == nil && t != nil {
		alive := sess.block(func(ctx context.Context) {
			l, err = t.Wait(ctx, req.Timeout)
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
			l, err = e.Wait(ctx, sess.owner, k, key, req.Timeout)
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
type statsBody struct {
	Connections    int                  `json:"connections"`
	Locks          []core.LockStat      `json:"locks"`
	Semaphores     []core.SemaphoreStat `json:"semaphores"`
	IdleLocks      []core.IdleStat      `json:"idle_locks"`
	IdleSemaphores []core.IdleStat      `json:"idle_semaphores"`
	SignalChannels []core.ChannelStat   `json:"signal_channels"`
	SlowConsumers  uint64               `json:"slow_consumers"`
	Clients        []clientStat         `json:"clients"`
}

func (sess *session) stats() {
	e := sess.srv.opts.Engine
	st := e.Stats()
	body, err := json.Marshal(statsBody{
		Connections:    sess.srv.Connections(),
		Locks:          st.Locks,
		Semaphores:     st.Semaphores,
		IdleLocks:      st.IdleLocks,
		IdleSemaphores: st.IdleSemaphores,
		SignalChannels: e.SignalStats(),
		SlowConsumers:  sess.srv.slowConsumers.Load(),
		Clients:        sess.srv.clients(),
	})
	if err != nil {
		sess.srv.log.Error("stats: encoding failed", "err", err)
		sess.reply(protocol.StatusError)
		return
	}
	sess.wmu.Lock()
	sess.out = protocol.AppendOKBody(sess.out, body)
	sess.wmu.Unlock()
}
