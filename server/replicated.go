package server

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/dflockd/dflockd/cluster"
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/protocol"
)

// The replicated mode (Options.Replica): every lock, semaphore and
// session request of a connection goes through the cluster's leader as
// proposals (cluster.Conn); pub/sub, ping and the rest stay local. A
// connection on a node that is not the serving leader is answered
// `error` to such a request and closed, so that its client reconnects
// (to the leader, or to a node that relays to it).

// errLeaderGone ends a connection whose node stopped leading.
var errLeaderGone = errors.New("server: this node is not the cluster leader")

// replicated handles the requests that touch replicated state; handled
// is false for the others.
func (sess *session) replicated(req *protocol.Request) (reason CloseReason, done, handled bool) {
	rc := sess.rc
	ctx := sess.srv.base
	k, key := kindOf(req.Cmd), string(req.Key)
	var err error
	switch req.Cmd {
	case protocol.CmdLock, protocol.CmdSemLock:
		var l core.Lease
		if req.Timeout > 0 {
			alive := sess.block(func(ctx context.Context) {
				l, err = rc.Lock(ctx, k, key, req.Limit, req.TTL, req.Timeout)
			})
			if !alive {
				return sess.gone(), true, true
			}
		} else {
			l, err = rc.Lock(ctx, k, key, req.Limit, req.TTL, 0)
		}
		if err == nil {
			sess.grant(protocol.StatusOK, l)
		}
	case protocol.CmdRelease, protocol.CmdSemRelease:
		tok, ok := parseToken(req.Token)
		if !ok {
			err = core.ErrNotHolder
		} else if err = rc.Release(ctx, k, key, tok); err == nil {
			sess.reply(protocol.StatusOK)
		}
	case protocol.CmdRenew, protocol.CmdSemRenew:
		tok, ok := parseToken(req.Token)
		var ttl time.Duration
		if !ok {
			err = core.ErrNotHolder
		} else if ttl, err = rc.Renew(ctx, k, key, tok, req.TTL); err == nil {
			sess.wmu.Lock()
			sess.out = protocol.AppendOKInt(sess.out, int64(ttl/time.Second))
			sess.noteOut()
			sess.wmu.Unlock()
		} else if !errors.Is(err, cluster.ErrNotLeader) {
			err = core.ErrNotHolder // an expired lease is plain `error` for a renew (§2.3)
		}
	case protocol.CmdEnqueue, protocol.CmdSemEnqueue:
		var l core.Lease
		var acquired bool
		if l, acquired, err = rc.Enqueue(ctx, k, key, req.Limit, req.TTL); err == nil {
			if acquired {
				sess.grant(protocol.StatusAcquired, l)
			} else {
				sess.reply(protocol.StatusQueued)
			}
		}
	case protocol.CmdWait, protocol.CmdSemWait:
		var l core.Lease
		if req.Timeout > 0 {
			alive := sess.block(func(ctx context.Context) {
				l, err = rc.Wait(ctx, k, key, req.Timeout)
			})
			if !alive {
				return sess.gone(), true, true
			}
		} else {
			l, err = rc.Wait(ctx, k, key, 0)
		}
		if err == nil {
			sess.grant(protocol.StatusOK, l)
		}
	case protocol.CmdSession:
		ttl := sess.srv.sessionTTL(req.TTL)
		var id cluster.SessionID
		var secret cluster.Secret
		if id, secret, err = rc.Name(ctx, ttl); err == nil {
			sess.replySession(id.String(), secret.String(), ttl)
		} else if errors.Is(err, core.ErrMaxSessions) {
			err = errors.New("max sessions") // plain error, as single-node
		}
	case protocol.CmdResume:
		var id cluster.SessionID
		var secret cluster.Secret
		var held, queued int
		if !decodeHex(id[:], req.Key) || !decodeHex(secret[:], req.Token) {
			err = core.ErrSession
		} else if held, queued, err = rc.Resume(ctx, id, secret); err == nil {
			sess.replyCounts(held, queued)
		}
	case protocol.CmdBye:
		err = rc.Bye(ctx)
		if err == nil {
			sess.reply(protocol.StatusOK)
			sess.flush()
			return CloseBye, true, true
		}
	default:
		return 0, false, false
	}
	if err == nil {
		return 0, false, true
	}
	switch {
	case errors.Is(err, cluster.ErrNotLeader):
		sess.reply(protocol.StatusError)
		sess.flush()
		sess.srv.log.Debug("request refused: not the cluster leader", "conn", sess.id, "cmd", req.Cmd.String())
		return CloseLeaderGone, true, true
	case errors.Is(err, core.ErrSession):
		sess.reply(protocol.StatusErrSession)
	case errors.Is(err, core.ErrCanceled) && sess.srv.shuttingDown():
		return sess.refuseDraining(), true, true
	default:
		sess.fail(err)
	}
	return 0, false, true
}

// parseToken converts a wire token to a core.Token; false when it cannot
// be one (it then names no holder).
func parseToken(b []byte) (core.Token, bool) {
	var t core.Token
	if len(b) != len(t) {
		return t, false
	}
	copy(t[:], b)
	return t, true
}

// decodeHex decodes src, lowercase or uppercase hex, into exactly dst.
func decodeHex(dst, src []byte) bool {
	if len(src) != 2*len(dst) {
		return false
	}
	_, err := hex.Decode(dst, src)
	return err == nil
}

// clusterRequest answers `cluster`: with no operation this node's view of
// the cluster as JSON; `add ID RAFTADDR [nonvoter]`, `remove ID` and
// `transfer [ID]` change it, on the leader, for an authenticated client
// only. A server not in the replicated mode answers `error`.
func (sess *session) clusterRequest(req *protocol.Request) {
	rep := sess.srv.opts.Replica
	if rep == nil {
		sess.reply(protocol.StatusError)
		return
	}
	f := strings.Fields(string(req.Op))
	if len(f) == 0 || (len(f) == 1 && f[0] == "status") {
		body, err := json.Marshal(rep.Status())
		if err != nil {
			sess.reply(protocol.StatusError)
			return
		}
		sess.m.st = protocol.StatusOK
		sess.wmu.Lock()
		sess.out = protocol.AppendOKBody(sess.out, body)
		sess.noteOut()
		sess.wmu.Unlock()
		return
	}
	if sess.identity() == "" {
		sess.srv.log.Warn("cluster change refused: the connection is not authenticated", "conn", sess.id,
			"remote", sess.remote, "op", f[0])
		sess.reply(protocol.StatusError)
		return
	}
	var err error
	switch {
	case f[0] == "add" && (len(f) == 3 || len(f) == 4 && f[3] == "nonvoter"):
		err = rep.AddMember(f[1], f[2], len(f) == 3)
	case f[0] == "remove" && len(f) == 2:
		err = rep.RemoveMember(f[1])
	case f[0] == "transfer" && len(f) <= 2:
		id := ""
		if len(f) == 2 {
			id = f[1]
		}
		// Keep this connection through the drop that losing leadership
		// causes, so that its client reads the answer.
		sess.keepOnDrop.Store(true)
		err = rep.TransferLeadership(id)
	default:
		err = fmt.Errorf("unknown cluster operation %q", req.Op)
	}
	if err != nil {
		sess.srv.log.Info("cluster change failed", "conn", sess.id, "identity", sess.identity(), "op", string(req.Op), "err", err)
		sess.reply(protocol.StatusError)
		return
	}
	sess.srv.log.Info("cluster changed", "conn", sess.id, "identity", sess.identity(), "op", string(req.Op))
	sess.reply(protocol.StatusOK)
}

// replicatedKeyStats fills st from the replicated state, as StatsUpTo does
// from the engine: keys of limit 1 under locks, larger limits under
// semaphores, at most limit entries per list. Lease ends are the
// leader's timers (0 on a node that does not lead); owner_conn_id is 0
// (holders belong to sessions); there are no idle keys (an idle key is
// deleted at once in this mode).
func replicatedKeyStats(rep *cluster.Replica, st *core.Stats, limit int) {
	st.Locks, st.Semaphores = st.Locks[:0], st.Semaphores[:0]
	st.IdleLocks, st.IdleSemaphores = st.IdleLocks[:0], st.IdleSemaphores[:0]
	st.Totals = core.KeyTotals{}
	now := time.Now()
	heldFor := func(since int64) float64 {
		return math.Round(float64(now.Sub(time.Unix(0, since)).Milliseconds())) / 1e3
	}
	for _, kind := range []core.Kind{core.KindLock, core.KindSemaphore} {
		for _, k := range rep.State().Keys(kind) {
			if k.Limit <= 1 {
				st.Totals.Locks++
				if len(st.Locks) >= limit {
					continue
				}
				ls := core.LockStat{Key: k.Key, Waiters: len(k.Queue)}
				if len(k.Holders) > 0 {
					h := k.Holders[0]
					if left, ok := rep.LeaseLeft(h.Token); ok {
						ls.LeaseExpiresInS = math.Round(float64(left.Milliseconds())) / 1e3
					}
					ls.HeldS = heldFor(h.Since)
				}
				st.Locks = append(st.Locks, ls)
				continue
			}
			st.Totals.Semaphores++
			if len(st.Semaphores) >= limit {
				continue
			}
			ss := core.SemaphoreStat{Key: k.Key, Limit: k.Limit, Holders: len(k.Holders), Waiters: len(k.Queue)}
			for _, h := range k.Holders {
				ss.HeldS = max(ss.HeldS, heldFor(h.Since))
			}
			st.Semaphores = append(st.Semaphores, ss)
		}
	}
}

// replicatedInspect describes one key of the replicated state, as inspect
// does from the engine: holders and waiters name their session (no
// connection: conn_id 0); lease ends are the leader's timers.
func replicatedInspect(rep *cluster.Replica, kind core.Kind, key string, limit int) *inspectBody {
	body := &inspectBody{Key: key, Kind: kind.String(), Holders: []inspectHolder{}, Waiters: []inspectWaiter{}}
	ki, ok := rep.State().Inspect(kind, key)
	if !ok {
		return body
	}
	now := time.Now()
	since := func(ns int64) float64 { return secs(int64(now.Sub(time.Unix(0, ns)))) }
	body.Exists, body.Limit = true, ki.Limit
	body.Totals = inspectTotals{Holders: len(ki.Holders), Waiters: len(ki.Queue)}
	for _, h := range ki.Holders {
		if len(body.Holders) >= limit {
			break
		}
		ih := inspectHolder{Fence: h.Fence, HeldForS: since(h.Since), Enqueued: h.Pending}
		if h.Session != (cluster.SessionID{}) {
			ih.Session = h.Session.String()
		}
		if left, ok := rep.LeaseLeft(h.Token); ok {
			ih.LeaseLeftS = secs(int64(left))
		}
		body.Holders = append(body.Holders, ih)
	}
	for _, p := range ki.Queue {
		if len(body.Waiters) >= limit {
			break
		}
		body.Waiters = append(body.Waiters, inspectWaiter{inspectConn: inspectConn{Session: p.Session.String()},
			WaitingS: since(p.Since), Enqueued: p.TwoPhase})
	}
	body.Truncated = len(body.Holders) < body.Totals.Holders || len(body.Waiters) < body.Totals.Waiters
	return body
}

// sessionStats counts named sessions: the engine's in memory, the
// replica's (as its leader sees them) in replicated mode.
func (s *Server) sessionStats() core.SessionStats {
	if rep := s.opts.Replica; rep != nil {
		return rep.SessionStats()
	}
	return s.opts.Engine.SessionStats()
}
