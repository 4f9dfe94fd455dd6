package server

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/testutil"
)

// Tests of the session extension (sessions.go). The conf* cases run over
// every transport through the conformance suite.

var sessionAnswer = regexp.MustCompile(`^ok ([0-9a-f]{16}) ([0-9a-f]{32}) ([0-9]+)$`)

// nameSession sends `session` and returns the id and secret, checking the
// answer's shape and TTL.
func nameSession(t testing.TB, c *testutil.LineClient, arg, wantTTL string) (sid, secret string) {
	t.Helper()
	line := c.Do("session", "_", arg)
	m := sessionAnswer.FindStringSubmatch(line)
	if m == nil || m[3] != wantTTL {
		t.Fatalf("session %q = %q; want ok <16 hex> <32 hex> %s", arg, line, wantTTL)
	}
	return m[1], m[2]
}

// dropConn closes the client's side of c, as a network failure would.
func dropConn(c *testutil.LineClient) { c.Conn.Close() }

// Resume after a drop gives back the lock (same token, still renewable and
// releasable), counts it, and the lock was never free meanwhile.
func confSessionResume(t *testing.T, name string) {
	ts := serveConformance(t, name, Options{})
	a, b := ts.dial(t), ts.dial(t)
	sid, secret := nameSession(t, a, "", "15")
	if sid2, secret2 := nameSession(t, a, "20", "20"); sid2 != sid || secret2 != secret {
		t.Fatal("a second session request changed the id or secret")
	}
	tok := expectGrant(t, a.Do("l", "k", "0 30"), "ok", "30")
	dropConn(a)
	eventually(t, "the session detached", func() bool { return ts.Engine.SessionStats().Detached == 1 })
	b.Expect("l", "k", "0", "timeout") // still held while detached
	a2 := ts.dial(t)
	a2.Expect("resume", sid, secret, "ok 1 0")
	a2.Expect("n", "k", tok+" 30", "ok 30")
	a2.Expect("resume", sid, secret, "error") // already attached to this connection
	a2.Expect("r", "k", tok, "ok")
	expectGrant(t, b.Do("l", "k", "0"), "ok", "33")
	a2.Expect("bye", "_", "", "ok")
	a2.ExpectClosed()
	eventually(t, "the session ended", func() bool { st := ts.Engine.SessionStats(); return st.Attached+st.Detached == 0 })
	a3 := ts.dial(t)
	a3.Expect("resume", sid, secret, "error_session")
}

// One answer for a wrong secret, a never-named id and an expired session.
func confSessionRefusals(t *testing.T, name string) {
	ts := serveConformance(t, name, Options{SessionTTL: time.Second})
	a := ts.dial(t)
	sid, secret := nameSession(t, a, "", "1")
	dropConn(a)
	eventually(t, "the session detached", func() bool { return ts.Engine.SessionStats().Detached == 1 })
	c := ts.dial(t)
	c.Expect("resume", sid, strings.Repeat("0", 32), "error_session")
	c.Expect("resume", "0000000000000000", secret, "error_session")
	c.Expect("resume", sid, secret[:31], "error_session")
	eventually(t, "the session expired", func() bool { return ts.Engine.SessionStats().Detached == 0 })
	c.Expect("resume", sid, secret, "error_session")
	c.Expect("resume", sid, "", "error") // malformed: no secret
	// The refusals leave the connection usable and unnamed.
	expectGrant(t, c.Do("l", "k", "0"), "ok", "33")
}

// resume is refused once the connection holds or waits on anything, or has
// a session of its own.
func confResumeAfterAcquire(t *testing.T, name string) {
	ts := serveConformance(t, name, Options{})
	a := ts.dial(t)
	sid, secret := nameSession(t, a, "", "15")
	dropConn(a)
	eventually(t, "the session detached", func() bool { return ts.Engine.SessionStats().Detached == 1 })
	b := ts.dial(t)
	tok := expectGrant(t, b.Do("l", "other", "0"), "ok", "33")
	b.Expect("resume", sid, secret, "error")
	b.Expect("r", "other", tok, "ok")
	tok = expectGrant(t, b.Do("e", "k2", ""), "acquired", "33")
	b.Expect("resume", sid, secret, "error") // a granted enqueue record
	b.Expect("r", "k2", tok, "ok")
	c := ts.dial(t)
	nameSession(t, c, "", "15")
	c.Expect("resume", sid, secret, "error") // c has a session of its own
	// Nothing held any more: b may resume (the session holds nothing).
	b.Expect("resume", sid, secret, "ok 0 0")
}

// Pipelined: session and resume share one write with the requests after
// them, and every answer comes back in order.
func confSessionPipelined(t *testing.T, name string) {
	ts := serveConformance(t, name, Options{})
	a := ts.dial(t)
	a.Send("session\n_\n\nl\nk\n0 30\nping\n_\n\n")
	m := sessionAnswer.FindStringSubmatch(a.ReadLine())
	if m == nil {
		t.Fatal("pipelined session: bad answer")
	}
	tok := expectGrant(t, a.ReadLine(), "ok", "30")
	expectLine(t, a, "ok")
	dropConn(a)
	eventually(t, "the session detached", func() bool { return ts.Engine.SessionStats().Detached == 1 })
	b := ts.dial(t)
	b.Send("resume\n" + m[1] + "\n" + m[2] + "\nn\nk\n" + tok + " 40\nr\nk\n" + tok + "\nresume\n" + m[1] + "\n" + m[2] + "\n")
	expectLine(t, b, "ok 1 0")
	expectLine(t, b, "ok 40")
	expectLine(t, b, "ok")
	expectLine(t, b, "error")
}

// A blocked l whose connection drops keeps its FIFO place as an enqueued
// place; granted while detached, it is collected with w after resume.
func confBlockedLockParked(t *testing.T, name string) {
	ts := serveConformance(t, name, Options{})
	holder, a, c := ts.dial(t), ts.dial(t), ts.dial(t)
	tok := expectGrant(t, holder.Do("l", "k", "0"), "ok", "33")
	sid, secret := nameSession(t, a, "", "15")
	a.Req("l", "k", "30 20")
	eventually(t, "a queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })
	chC := bg(c)
	c.Req("l", "k", "30")
	eventually(t, "c queued", func() bool { return waitersOf(ts.Engine, "k") == 2 })
	dropConn(a)
	eventually(t, "the session detached", func() bool { return ts.Engine.SessionStats().Detached == 1 })
	if n := waitersOf(ts.Engine, "k"); n != 2 {
		t.Fatalf("waiters after the drop = %d; want a's place kept", n)
	}
	holder.Expect("r", "k", tok, "ok") // the lock goes to a's place, not to c
	pending(t, chC)
	a2 := ts.dial(t)
	a2.Expect("resume", sid, secret, "ok 1 0")
	ta := expectGrant(t, a2.Do("w", "k", "0"), "ok", "20")
	a2.Expect("r", "k", ta, "ok")
	expectGrant(t, recv(t, chC), "ok", "33")
}

// bye releases at once and closes the connection.
func confBye(t *testing.T, name string) {
	ts := serveConformance(t, name, Options{})
	a, b := ts.dial(t), ts.dial(t)
	nameSession(t, a, "", "15")
	expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	chB := bg(b)
	b.Req("l", "k", "30")
	eventually(t, "b queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })
	a.Expect("bye", "_", "", "ok")
	a.ExpectClosed()
	expectGrant(t, recv(t, chB), "ok", "33")
	// An unnamed connection's bye ends it the same way.
	b.Expect("bye", "_", "", "ok")
	b.ExpectClosed()
}

// A dropped unnamed connection releases at once, as in 1.x.
func TestUnnamedConnectionReleasesOnDrop(t *testing.T) {
	ts := start(t, Options{}, core.Options{})
	a, b := testutil.Dial(t, ts.Addr), testutil.Dial(t, ts.Addr)
	expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	chB := bg(b)
	b.Req("l", "k", "30")
	eventually(t, "b queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })
	dropConn(a)
	expectGrant(t, recv(t, chB), "ok", "33")
}

// The TTL of a detached session: at its end everything is released and
// the next waiter gets the lock.
func TestSessionTTLExpiryHandsOn(t *testing.T) {
	ts := start(t, Options{SessionTTL: time.Second}, core.Options{})
	a, b := testutil.Dial(t, ts.Addr), testutil.Dial(t, ts.Addr)
	sid, secret := nameSession(t, a, "", "1")
	expectGrant(t, a.Do("l", "k", "0 600"), "ok", "600")
	chB := bg(b)
	b.Req("l", "k", "30")
	eventually(t, "b queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })
	dropConn(a)
	expectGrant(t, recv(t, chB), "ok", "33") // within the 5 s read deadline
	c := testutil.Dial(t, ts.Addr)
	c.Expect("resume", sid, secret, "error_session")
}

func TestSessionTTLIsCapped(t *testing.T) {
	ts := start(t, Options{SessionTTL: 5 * time.Second, SessionTTLMax: 60 * time.Second}, core.Options{})
	a := testutil.Dial(t, ts.Addr)
	nameSession(t, a, "", "5")
	nameSession(t, a, "61", "60")
	nameSession(t, a, "9223372036", "60")
	a.Expect("session", "_", "0", "error")
	a.Expect("session", "_", "x", "error")
	nameSession(t, a, "7", "7")
}

// Take-over: resuming a session whose connection is still open closes
// that connection, and the resumer gets everything, a blocked l included.
func TestSessionTakeOverClosesTheOldConnection(t *testing.T) {
	ts := start(t, Options{}, core.Options{})
	holder, a := testutil.Dial(t, ts.Addr), testutil.Dial(t, ts.Addr)
	tok := expectGrant(t, holder.Do("l", "k", "0"), "ok", "33")
	sid, secret := nameSession(t, a, "", "15")
	ta := expectGrant(t, a.Do("l", "a-key", "0"), "ok", "33")
	a.Req("l", "k", "30")
	eventually(t, "a queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })
	b := testutil.Dial(t, ts.Addr)
	b.Expect("resume", sid, secret, "ok 1 1")
	a.ExpectClosed()
	holder.Expect("r", "k", tok, "ok")
	expectGrant(t, b.Do("w", "k", "5"), "ok", "33")
	b.Expect("r", "a-key", ta, "ok")
	if st := ts.Engine.SessionStats(); st.Attached != 1 || st.Detached != 0 {
		t.Fatalf("session stats = %+v", st)
	}
}

func TestStatsCountsSessions(t *testing.T) {
	ts := start(t, Options{}, core.Options{})
	a, b, c := testutil.Dial(t, ts.Addr), testutil.Dial(t, ts.Addr), testutil.Dial(t, ts.Addr)
	nameSession(t, a, "", "15")
	nameSession(t, b, "", "15")
	dropConn(b)
	eventually(t, "b detached", func() bool { return ts.Engine.SessionStats().Detached == 1 })
	_, raw := wireStats(t, c)
	var n, d int
	if err := json.Unmarshal(raw["sessions"], &n); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw["detached_sessions"], &d); err != nil {
		t.Fatal(err)
	}
	if n != 1 || d != 1 {
		t.Fatalf("stats sessions = %d, detached_sessions = %d; want 1, 1", n, d)
	}
}

// Inspect names the session of a holder and says when it is detached; a
// resume points it at the new connection.
func TestInspectShowsSessions(t *testing.T) {
	ts := start(t, Options{}, core.Options{})
	a, c := testutil.Dial(t, ts.Addr), testutil.Dial(t, ts.Addr)
	sid, secret := nameSession(t, a, "", "15")
	expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	holderOf := func() inspectHolder {
		t.Helper()
		line := c.Do("inspect", "k", "")
		var body inspectBody
		if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "ok ")), &body); err != nil || len(body.Holders) != 1 {
			t.Fatalf("inspect = %q (%v)", line, err)
		}
		return body.Holders[0]
	}
	if h := holderOf(); h.Session != sid || h.Detached {
		t.Fatalf("holder = %+v; want session %s, attached", h, sid)
	}
	dropConn(a)
	eventually(t, "a detached", func() bool { return ts.Engine.SessionStats().Detached == 1 })
	if h := holderOf(); !h.Detached {
		t.Fatalf("holder = %+v; want detached", h)
	}
	b := testutil.Dial(t, ts.Addr)
	b.Expect("name", "_", "resumer", "ok")
	b.Expect("resume", sid, secret, "ok 1 0")
	if h := holderOf(); h.Detached || h.Name != "resumer" || h.Remote != b.Conn.LocalAddr().String() {
		t.Fatalf("holder after resume = %+v; want the new connection", h)
	}
}

// Shutdown does not keep named sessions: the server is going away.
func TestShutdownEndsNamedSessions(t *testing.T) {
	ts := start(t, Options{}, core.Options{})
	a := testutil.Dial(t, ts.Addr)
	nameSession(t, a, "", "15")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if st := ts.Engine.SessionStats(); st.Attached+st.Detached != 0 {
		t.Fatalf("session stats after shutdown = %+v", st)
	}
}

// A named session's owner is counted exactly once by the metrics however
// it moves: attached, detached, resumed on another connection, expired.
func TestMetrics_SessionOwnerCountedOnce(t *testing.T) {
	ts, clk := startClock(t, Options{SessionTTL: 5 * time.Second}, core.Options{})
	reg := metricsRegistry(t, ts.Server)
	grants := func() float64 { return metricValue(t, reg, "dflockd_grants_total", "path", "immediate") }
	released := func() float64 { return metricValue(t, reg, "dflockd_leases_ended_total", "reason", "release") }
	a := ts.dial(t)
	sid, secret := nameSession(t, a, "", "5")
	expectGrant(t, a.Do("l", "x", "0 100"), "ok", "100")
	tok := expectGrant(t, a.Do("l", "y", "0 100"), "ok", "100")
	if g := grants(); g != 2 {
		t.Fatalf("grants = %v; want 2", g)
	}
	dropConn(a)
	eventually(t, "a detached", func() bool { return ts.Engine.SessionStats().Detached == 1 })
	if g := grants(); g != 2 {
		t.Fatalf("grants while detached = %v; want 2", g)
	}
	if v := metricValue(t, reg, "dflockd_sessions", "state", "detached"); v != 1 {
		t.Fatalf("sessions{detached} = %v", v)
	}
	b := ts.dial(t)
	b.Expect("resume", sid, secret, "ok 2 0")
	b.Expect("r", "y", tok, "ok")
	if g, r := grants(), released(); g != 2 || r != 1 {
		t.Fatalf("after resume: grants = %v, released = %v; want 2, 1", g, r)
	}
	if v := metricValue(t, reg, "dflockd_sessions_resumed_total"); v != 1 {
		t.Fatalf("sessions_resumed_total = %v", v)
	}
	dropConn(b)
	eventually(t, "b detached", func() bool { return ts.Engine.SessionStats().Detached == 1 })
	clk.Advance(5 * time.Second)
	ts.Engine.ExpireSessions()
	compareMetrics(t, reg, `
# HELP dflockd_sessions_expired_total Detached named sessions ended at the end of their TTL (what they held released).
# TYPE dflockd_sessions_expired_total counter
dflockd_sessions_expired_total 1
# HELP dflockd_sessions Named sessions (the session extension), by state: attached (a connection holds the session) or detached (waiting to be resumed).
# TYPE dflockd_sessions gauge
dflockd_sessions{state="attached"} 0
dflockd_sessions{state="detached"} 0
`, "dflockd_sessions_expired_total", "dflockd_sessions")
	if g, r, d := grants(), released(), metricValue(t, reg, "dflockd_leases_ended_total", "reason", "disconnect"); g != 2 || r != 1 || d != 1 {
		t.Fatalf("after expiry: grants = %v, released = %v, disconnect = %v; want 2, 1, 1", g, r, d)
	}
}

// namedTokens authenticates each token as the identity of the same name.
type namedTokens struct{}

func (namedTokens) Authenticate(_ context.Context, _ auth.Peer, cred string) (auth.Identity, error) {
	if cred == "" {
		return auth.Identity{}, auth.ErrDenied
	}
	return auth.Identity{Name: cred}, nil
}

// A session is resumed only under the identity that named it; any other
// identity gets error_session, as for a wrong secret.
func TestResumeNeedsTheSameIdentity(t *testing.T) {
	ts := start(t, Options{Auth: namedTokens{}}, core.Options{})
	login := func(who string) *testutil.LineClient {
		c := testutil.Dial(t, ts.Addr)
		c.Expect("auth", "_", who, "ok")
		return c
	}
	a := login("alice")
	sid, secret := nameSession(t, a, "", "15")
	expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	dropConn(a)
	eventually(t, "a detached", func() bool { return ts.Engine.SessionStats().Detached == 1 })
	login("bob").Expect("resume", sid, secret, "error_session")
	login("alice").Expect("resume", sid, secret, "ok 1 0")
}

// Past --max-sessions, session is answered error and the connection
// carries on unnamed.
func TestMaxSessionsRefusesNaming(t *testing.T) {
	ts := start(t, Options{}, core.Options{MaxSessions: 1})
	a, b := testutil.Dial(t, ts.Addr), testutil.Dial(t, ts.Addr)
	nameSession(t, a, "", "15")
	b.Expect("session", "_", "", "error")
	expectGrant(t, b.Do("l", "k", "0"), "ok", "33")
	dropConn(a)
	eventually(t, "a detached", func() bool { return ts.Engine.SessionStats().Detached == 1 })
	b.Expect("session", "_", "", "error") // a detached session still counts
}

// bye releases before it answers: the lock is free by the time ok is read.
func TestByeReleasesBeforeAnswering(t *testing.T) {
	ts := start(t, Options{}, core.Options{})
	a := testutil.Dial(t, ts.Addr)
	nameSession(t, a, "", "15")
	expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	a.Expect("bye", "_", "", "ok")
	if n := ts.Engine.SessionStats(); n.Attached+n.Detached != 0 {
		t.Fatalf("session still known after bye answered: %+v", n)
	}
	b := testutil.Dial(t, ts.Addr)
	expectGrant(t, b.Do("l", "k", "0"), "ok", "33")
}
