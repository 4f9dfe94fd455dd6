package lincheck

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/dflockd/dflockd/internal/faultproxy"
)

// The session run (TestLinearizableSessions): most clients name a session
// bound to one key, are cut by the proxy or vanish, reconnect and resume
// it (now and then first with a wrong secret or an unknown id, sometimes
// only after the clock has run on, sometimes never), take it over from a
// connection still open, or end it with bye. The clock ends detached
// sessions whose TTL passed. Every key is tracked, so blocking acquires,
// two-phase records and the places parked by detached sessions share
// each key's FIFO under the model's eyes.

// Session TTLs of the session run's server: the default and the cap.
// They are short next to the clock's ticks (0.2 to 2.5 s), so that the
// waits behind a detached session span few clock operations: each one
// inside a blocking request's interval multiplies the checker's work.
const (
	sessionTTL    = 3 * time.Second
	sessionTTLMax = 8 * time.Second
)

var sessionKeys = []keySpec{
	{name: "A", limit: 1, twoPhase: true, tracked: true},
	{name: "B", sem: true, limit: 2, twoPhase: true, tracked: true},
	{name: "C", limit: 1, twoPhase: true, tracked: true},
	{name: "D", sem: true, limit: 2, twoPhase: true, tracked: true},
}

// afterCut prepares the fresh connection that replaced a cut one: a
// client with a session resumes it first (or, now and then, abandons it
// to its TTL); any other forgets its tokens.
func (c *client) afterCut() {
	if c.sid != "" && c.rng.Intn(10) > 0 {
		c.resume = true
		return
	}
	if c.sid != "" {
		c.h.st.abandoned.Add(1)
	}
	c.sid, c.secret = "", ""
	c.held = map[string][]string{}
}

// sessionStep runs one random action of the session run.
func (c *client) sessionStep(faults bool) {
	if c.bound == nil { // an unnamed client on any key
		k := c.h.keys[c.rng.Intn(len(c.h.keys))]
		if faults && c.rng.Intn(100) < 4 {
			c.vanish(k)
			return
		}
		c.trackedStep(k, false)
		return
	}
	k := *c.bound
	if c.resume {
		c.resume = false
		c.resumeSession(k)
		return
	}
	switch r := c.rng.Intn(100); {
	case !c.attached && r < 25:
		c.nameSession(k)
	case faults && r < 4:
		c.vanish(k)
	case r < 6:
		c.bye(k)
	case c.attached && r < 8:
		c.takeover(k)
	case c.attached && r < 10:
		c.nameSession(k) // again: the same id, a new TTL
	default:
		c.trackedStep(k, true)
	}
}

// trackedStep runs one request of any kind on a tracked key. Each
// request that blocks while the clock runs multiplies the checker's
// work, so only blocking clients (those bound to a key: at most two per
// key) lock or wait with a timeout; the others try and poll.
func (c *client) trackedStep(k keySpec, blocking bool) {
	timeout := func() int {
		if blocking {
			return c.rng.Intn(2)
		}
		return 0
	}
	switch r := c.rng.Intn(100); {
	case r < 25:
		t := 0
		if blocking && r < 15 {
			t = 1
		}
		out, ok := c.acquire(k, t)
		if ok && out.Status == "ok" && c.rng.Intn(8) == 0 {
			c.h.st.slowHolds.Add(1)
			time.Sleep(time.Duration(5+c.rng.Intn(25)) * time.Millisecond)
		}
	case r < 35:
		c.acquire(k, 0)
	case r < 55:
		out, ok := c.enqueue(k)
		if ok && (out.Status == "queued" || out.Status == "acquired") && c.rng.Intn(5) > 0 {
			c.wait(k, timeout())
		}
	case r < 62:
		c.wait(k, timeout())
	case r < 82:
		c.release(k)
	default:
		c.renew(k)
	}
}

// sessionArg returns the argument of a `session` request and the TTL the
// server sets for it.
func (c *client) sessionArg() (string, time.Duration) {
	if c.rng.Intn(4) == 0 {
		return "", sessionTTL
	}
	ask := time.Duration(1+c.rng.Intn(10)) * time.Second
	return strconv.Itoa(int(ask / time.Second)), min(ask, sessionTTLMax)
}

// nameSession sends `session`.
func (c *client) nameSession(k keySpec) {
	arg, ttl := c.sessionArg()
	out, ok := c.doLine(Input{Op: OpSession, Key: k.part(), Limit: k.limit, TTL: ttl}, "session", "_", arg)
	if ok && out.Status == "ok" {
		if !c.attached {
			c.h.st.named.Add(1)
		}
		c.sid, c.secret, c.attached = out.SID, out.Secret, true
	}
}

// resumeSession resumes the client's session on a fresh connection.
func (c *client) resumeSession(k keySpec) {
	in := Input{Op: OpResume, Key: k.part(), Limit: k.limit}
	switch c.rng.Intn(10) {
	case 0: // a wrong secret
		in.SID, in.Secret = c.sid, fmt.Sprintf("%032x", c.rng.Uint64())
		c.h.st.wrongResumes.Add(1)
		if _, ok := c.doLine(in, "resume", in.SID, in.Secret); !ok {
			return
		}
	case 1: // an id nobody was given
		in.SID, in.Secret = fmt.Sprintf("%016x", c.rng.Uint64()), c.secret
		c.h.st.wrongResumes.Add(1)
		if _, ok := c.doLine(in, "resume", in.SID, in.Secret); !ok {
			return
		}
	}
	if c.rng.Intn(4) == 0 {
		// Let the clock run on: the session may expire meanwhile.
		time.Sleep(time.Duration(1+c.rng.Intn(5)) * time.Millisecond)
	}
	in.SID, in.Secret = c.sid, c.secret
	out, ok := c.doLine(in, "resume", c.sid, c.secret)
	if !ok {
		return // lost: the next connection resumes again
	}
	c.resumed(out)
}

// resumed applies the answer of a resume of the client's session.
func (c *client) resumed(out Output) {
	if out.Status == "ok" {
		c.attached = true
		c.h.st.resumed.Add(1)
		return
	}
	c.h.st.resumeRefused.Add(1)
	c.sid, c.secret = "", ""
	c.held = map[string][]string{}
}

// bye sends `bye`. The server ends the session (or releases an unnamed
// connection's owner) before it answers, then closes the connection; no
// disconnect follows it.
func (c *client) bye(k keySpec) {
	in := Input{Op: OpBye, Key: k.part(), Limit: k.limit}
	op, err := c.sendLine(in, "bye", "_", "")
	var out Output
	if err == nil {
		out, err = c.receive(op, 15*time.Second)
	}
	if err != nil {
		if !c.isCut() {
			c.h.t.Errorf("client %d: bye: no answer and no fault injected: %v", c.id, err)
			c.cutBy(func(_ faultproxy.ConnInfo, conn net.Conn) { conn.Close() })
		}
		c.disconnected(op)
		return
	}
	c.h.st.byes.Add(1)
	c.cutBy(func(_ faultproxy.ConnInfo, conn net.Conn) { conn.Close() })
	c.mu.Lock()
	info, quiet := c.info, c.quiet
	c.quiet = false
	c.conn.Close()
	c.mu.Unlock()
	if quiet {
		defer c.h.quiet.Add(-1)
	}
	c.h.waitGone(info.Upstream)
	c.h.record(c.id, op.Input.(Input), out, op.Call, op.Return)
	c.sid, c.secret = "", ""
	c.held = map[string][]string{}
	if err := c.connect(); err != nil {
		c.h.t.Errorf("client %d reconnect after bye: %v", c.id, err)
	}
}

// takeover resumes the session from a new connection while the one it
// is attached to is still open: the server closes that one first.
func (c *client) takeover(k keySpec) {
	c.mu.Lock()
	if c.cut || c.sid == "" {
		c.mu.Unlock()
		return
	}
	old, oldInfo, oldID := c.conn, c.info, c.connID
	c.cut, c.cutAt = true, c.h.now() // the injector leaves it alone now
	cutAt := c.cutAt
	c.mu.Unlock()
	c.h.st.takeovers.Add(1)
	if err := c.connect(); err != nil {
		c.h.t.Errorf("client %d: connection for a take-over: %v", c.id, err)
	} else {
		in := Input{Op: OpResume, Key: k.part(), Limit: k.limit, SID: c.sid, Secret: c.secret}
		if out, ok := c.doLine(in, "resume", c.sid, c.secret); ok {
			c.resumed(out)
		}
	}
	// Closed by the server if the take-over happened; else by us now.
	old.Close()
	gone := c.h.waitGone(oldInfo.Upstream)
	c.h.record(c.id, Input{Op: OpDisconnect, Conn: oldID}, Output{Status: "ok"}, cutAt, gone)
	c.h.st.disconnects.Add(1)
}

// endSessions ends every session left detached by the run: the clock
// passes the longest TTL and the sessions expire, and the sweep after
// them evicts every lease (all shorter than that): no session, waiter or
// holder may be left.
func (h *harness) endSessions(client int) {
	h.t.Helper()
	h.tick(client, max(sessionTTLMax, defaultTTL)+time.Second, 1)
	st := h.ts.Engine.Stats()
	for _, l := range st.Locks {
		if l.Waiters != 0 {
			h.t.Errorf("lock %s has %d waiters after every session expired", l.Key, l.Waiters)
		}
	}
	for _, s := range st.Semaphores {
		if s.Waiters != 0 {
			h.t.Errorf("semaphore %s has %d waiters after every session expired", s.Key, s.Waiters)
		}
	}
	if ss := h.ts.Engine.SessionStats(); ss.Attached+ss.Detached != 0 {
		h.t.Errorf("sessions left after the run: %+v", ss)
	}
	if len(st.Locks)+len(st.Semaphores) != 0 {
		h.t.Errorf("keys still in use after the last sweep: locks %+v semaphores %+v", st.Locks, st.Semaphores)
	}
}
