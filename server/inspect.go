package server

import (
	"encoding/json"
	"math"
	"sync/atomic"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/protocol"
)

// The two dflockd extensions of this file: `name` lets a connection name
// itself, `inspect` shows who holds and who waits for one key
// (docs/protocol.md, Extensions). A 1.x server answers both `error`.

// connTag is what inspect shows about a connection. It is the tag of the
// connection's engine owner, so the engine keeps it as long as a lease of
// the connection lives, which may be after the session ended (leases kept
// on disconnect): it is a small allocation of its own, and does not keep
// the session's buffers alive.
//
// A named session (sessions.go) keeps its first connection's tag for its
// whole life: a resume points it at the new connection (conn, remote,
// identity and name), and detached says no connection is attached.
type connTag struct {
	conn     atomic.Uint64                // connection id, 0 = the owner's id
	remote   atomic.Pointer[string]       // never nil
	ident    atomic.Pointer[string]       // authenticated identity, nil = none
	name     atomic.Pointer[string]       // set by `name`, nil = none
	session  atomic.Pointer[core.Session] // named session, nil = unnamed
	detached atomic.Bool                  // the named session has no connection
}

func newConnTag(remote string) *connTag {
	t := &connTag{}
	t.remote.Store(&remote)
	return t
}

// moveTo points t, the tag of a resumed session, at the connection now
// attached, whose own tag is now.
func (t *connTag) moveTo(id uint64, now *connTag) {
	t.conn.Store(id)
	t.remote.Store(now.remote.Load())
	t.ident.Store(now.ident.Load())
	t.name.Store(now.name.Load())
	t.detached.Store(false)
}

// connName returns the name the connection gave itself, "" if none; other
// goroutines (stats, inspect) read it.
func (sess *session) connName() string { return sess.tag.connName() }

func (t *connTag) connName() string {
	if p := t.name.Load(); p != nil {
		return *p
	}
	return ""
}

func (t *connTag) identity() string {
	if p := t.ident.Load(); p != nil {
		return *p
	}
	return ""
}

// setName answers `name`: the decoder has validated the name.
func (sess *session) setName(req *protocol.Request) {
	n := string(req.Name)
	old := sess.connName()
	sess.tag.name.Store(&n)
	sess.srv.log.Debug("connection named", "conn", sess.id, "transport", sess.transport, "remote", sess.remote,
		"identity", sess.identity(), "name", n, "previous", old)
	sess.reply(protocol.StatusOK)
}

// inspectBody is the JSON of an `inspect` answer. Every list is non-nil.
type inspectBody struct {
	Key  string `json:"key"`
	Kind string `json:"kind"` // "lock" or "semaphore"
	// Exists is false for a key that does not exist (never used, or
	// collected as idle); the other members are then zero.
	Exists    bool            `json:"exists"`
	Limit     int             `json:"limit"`
	Holders   []inspectHolder `json:"holders"`
	Waiters   []inspectWaiter `json:"waiters"`
	Totals    inspectTotals   `json:"totals"`
	Truncated bool            `json:"truncated"`
}

type inspectTotals struct {
	Holders int `json:"holders"`
	Waiters int `json:"waiters"`
}

// inspectConn names the connection of a holder or waiter.
type inspectConn struct {
	ConnID   uint64 `json:"conn_id"`
	Remote   string `json:"remote"`
	Identity string `json:"identity"`
	Name     string `json:"name"`
	// Session is the named session's id ("" = unnamed); Detached says
	// its connection is gone and it waits to be resumed.
	Session  string `json:"session,omitempty"`
	Detached bool   `json:"detached,omitempty"`
}

type inspectHolder struct {
	Fence uint64 `json:"fence"`
	inspectConn
	LeaseLeftS float64 `json:"lease_left_s"`
	HeldForS   float64 `json:"held_for_s"`
	Enqueued   bool    `json:"enqueued"`
}

type inspectWaiter struct {
	inspectConn
	WaitingS float64 `json:"waiting_s"`
	Enqueued bool    `json:"enqueued"`
}

// connOf describes the owner of a holder or waiter. A connection whose
// lease outlives it (kept on disconnect) is still described: its tag
// keeps what was known.
func connOf(id uint64, tag any) inspectConn {
	c := inspectConn{ConnID: id}
	if t, ok := tag.(*connTag); ok {
		c.Remote, c.Identity, c.Name = *t.remote.Load(), t.identity(), t.connName()
		if id := t.conn.Load(); id != 0 {
			c.ConnID = id
		}
		if ns := t.session.Load(); ns != nil {
			c.Session, c.Detached = ns.ID(), t.detached.Load()
		}
	}
	return c
}

// secs rounds d to milliseconds, in seconds.
func secs(nanos int64) float64 { return math.Round(float64(nanos)/1e6) / 1e3 }

// inspect answers `inspect`: one key's state, its lists capped like those
// of stats (Options.StatsMaxItems), built under that key's mutex only.
func (sess *session) inspect(req *protocol.Request) {
	kind := core.KindLock
	if req.Sem {
		kind = core.KindSemaphore
	}
	key := string(req.Key)
	if rep := sess.srv.opts.Replica; rep != nil {
		sess.replyInspect(replicatedInspect(rep, kind, key, sess.srv.statsLimit())) // replicated.go
		return
	}
	ki, ok := sess.srv.opts.Engine.Inspect(kind, key, sess.srv.statsLimit())
	body := inspectBody{
		Key: key, Kind: kind.String(), Exists: ok, Limit: ki.Limit,
		Holders: make([]inspectHolder, 0, len(ki.Holders)),
		Waiters: make([]inspectWaiter, 0, len(ki.Waiters)),
		Totals:  inspectTotals{Holders: ki.HoldersTotal, Waiters: ki.WaitersTotal},
		// The engine's lists are cut at the cap; totals count all.
		Truncated: ki.Truncated(),
	}
	for _, h := range ki.Holders {
		body.Holders = append(body.Holders, inspectHolder{
			Fence: h.Fence, inspectConn: connOf(h.OwnerID, h.Tag),
			LeaseLeftS: secs(int64(h.LeaseLeft)), HeldForS: secs(int64(h.HeldFor)), Enqueued: h.Enqueued,
		})
	}
	for _, w := range ki.Waiters {
		body.Waiters = append(body.Waiters, inspectWaiter{
			inspectConn: connOf(w.OwnerID, w.Tag), WaitingS: secs(int64(w.Waiting)), Enqueued: w.Enqueued,
		})
	}
	sess.replyInspect(&body)
}

// replyInspect appends an inspect answer.
func (sess *session) replyInspect(body *inspectBody) {
	js, err := json.Marshal(body)
	if err != nil {
		sess.srv.log.Error("inspect: encoding failed", "err", err)
		sess.reply(protocol.StatusError)
		return
	}
	sess.wmu.Lock()
	sess.out = protocol.AppendOKBody(sess.out, js)
	sess.noteOut()
	sess.wmu.Unlock()
}
