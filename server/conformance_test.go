package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/testutil"
	"github.com/dflockd/dflockd/transport"
)

// The cross-transport conformance suite: one set of protocol checks,
// written once and run over every registered transport on loopback. A
// transport is added by registering it (package transport) and adding a
// setup entry to conformanceSetups; TestConformance fails for a
// registered transport that has none.

// confEnv is one transport's loopback setup: a listener bound through the
// transport registry and what a client needs to reach it.
type confEnv struct {
	name string
	l    net.Listener
	ep   transport.Endpoint // the endpoint clients dial
	cli  transport.Options  // the options clients dial with
}

// conformanceSetups binds a fresh loopback listener for each transport.
// Listeners are closed by the server that serves them.
var conformanceSetups = map[string]func(t testing.TB) confEnv{
	"tcp": func(t testing.TB) confEnv {
		return listenConformance(t, "tcp", "127.0.0.1:0", transport.Options{}, transport.Options{})
	},
	"tls": func(t testing.TB) confEnv {
		srv, cli := testutil.SelfSigned(t)
		return listenConformance(t, "tls", "127.0.0.1:0", transport.Options{TLS: srv}, transport.Options{TLS: cli})
	},
	"unix": func(t testing.TB) confEnv {
		return listenConformance(t, "unix", shortSocketPath(t), transport.Options{}, transport.Options{})
	},
	"quic": func(t testing.TB) confEnv {
		srv, cli := testutil.SelfSigned(t)
		return listenConformance(t, "quic", "127.0.0.1:0", transport.Options{TLS: srv}, transport.Options{TLS: cli})
	},
}

// listenConformance binds addr with the named transport. A transport left
// out of this build (e.g. quic under the noquic tag) skips the test.
func listenConformance(t testing.TB, name, addr string, srv, cli transport.Options) confEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l, err := transport.Listen(ctx, transport.Endpoint{Transport: name, Addr: addr}, srv)
	if errors.Is(err, transport.ErrDisabled) {
		t.Skipf("transport %s: %v", name, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return confEnv{name: name, l: l, ep: transport.Endpoint{Transport: name, Addr: l.Addr().String()}, cli: cli}
}

// confServer is a server on one conformance listener.
type confServer struct {
	*Server
	Engine *core.Engine
	env    confEnv
}

// serveConformance binds a listener for the named transport and serves it
// with ServeListener until the test ends; the engine's expiry loop runs
// too. opts.Engine must be nil.
func serveConformance(t testing.TB, name string, opts Options) *confServer {
	t.Helper()
	env := conformanceSetups[name](t)
	opts.Engine = core.New(core.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = opts.Engine.Run(ctx) }()
	s := New(opts)
	served := make(chan error, 1)
	go func() { served <- s.ServeListener(env.l, Listener{Transport: name}) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-served; err != ErrServerClosed {
			t.Errorf("ServeListener returned %v; want ErrServerClosed", err)
		}
		cancel()
		<-runDone
	})
	return &confServer{Server: s, Engine: opts.Engine, env: env}
}

// dialConn opens a client connection through the transport registry,
// bounded by 5s. The caller owns it.
func (cs *confServer) dialConn(t testing.TB) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, cs.env.ep, cs.env.cli)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// dial opens a client connection, closed when the test ends.
func (cs *confServer) dial(t testing.TB) *testutil.LineClient {
	t.Helper()
	return testutil.NewLineClient(t, cs.dialConn(t))
}

// conformanceCases are run, each against its own server, over every
// transport.
var conformanceCases = []struct {
	name string
	run  func(t *testing.T, transportName string)
}{
	{"Lock", confLock},
	{"FIFOThreeClients", confFIFOThreeClients},
	{"TwoPhase", confTwoPhase},
	{"SessionResume", confSessionResume},
	{"SessionRefusals", confSessionRefusals},
	{"ResumeAfterAcquire", confResumeAfterAcquire},
	{"SessionPipelined", confSessionPipelined},
	{"BlockedLockParked", confBlockedLockParked},
	{"Bye", confBye},
	{"Semaphore", confSemaphore},
	{"SignalRoundTrip", confSignalRoundTrip},
	{"Auth", confAuth},
	{"DisconnectReleasesLock", confDisconnectReleasesLock},
	{"ReadTimeout", confReadTimeout},
	{"OversizedLine", confOversizedLine},
	{"PipelinedRequests", confPipelinedRequests},
	{"ShutdownDrain", confShutdownDrain},
}

func TestConformance(t *testing.T) {
	names := transport.Names()
	for want := range conformanceSetups {
		if !slices.Contains(names, want) {
			t.Errorf("transport %q has a conformance setup but is not registered", want)
		}
	}
	before := serverGoroutines()
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if conformanceSetups[name] == nil {
				t.Fatalf("transport %q is registered but has no entry in conformanceSetups; add one", name)
			}
			for _, tc := range conformanceCases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.run(t, name)
				})
			}
		})
	}
	// Every server, listener and connection above has been closed by its
	// subtest's cleanups: nothing they started may still be running.
	deadline := time.Now().Add(5 * time.Second)
	for {
		leaked := newGoroutines(before, serverGoroutines())
		if len(leaked) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines still running after the suite:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serverGoroutines returns the stacks, by goroutine id, of the running
// goroutines that are not test goroutines and are inside the server,
// engine, transport or quic-go code.
func serverGoroutines() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := make(map[string]string)
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		s := string(g)
		if strings.Contains(s, "testing.tRunner") {
			continue
		}
		if !strings.Contains(s, "dflockd/dflockd/server.") && !strings.Contains(s, "dflockd/dflockd/core.") &&
			!strings.Contains(s, "dflockd/dflockd/transport.") && !strings.Contains(s, "github.com/quic-go/quic-go") {
			continue
		}
		id, _, _ := strings.Cut(strings.TrimPrefix(s, "goroutine "), " ")
		out[id] = s
	}
	return out
}

// newGoroutines lists the stacks in after whose ids are not in before.
func newGoroutines(before, after map[string]string) []string {
	var out []string
	for id, s := range after {
		if _, ok := before[id]; !ok {
			out = append(out, s)
		}
	}
	return out
}

// confClients returns stats.clients as seen by c.
func confClients(t testing.TB, c *testutil.LineClient) []clientStat {
	t.Helper()
	line := c.Do("stats", "_", "")
	body, ok := strings.CutPrefix(line, "ok ")
	if !ok {
		t.Fatalf("stats = %q", line)
	}
	var st struct {
		Clients []clientStat `json:"clients"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("stats JSON %q: %v", body, err)
	}
	return st.Clients
}

// Lock: the l, r and n answer formats, mutual exclusion between
// connections, and the transport name in stats.
func confLock(t *testing.T, name string) {
	ts := serveConformance(t, name, Options{})
	a, b := ts.dial(t), ts.dial(t)
	tok := expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	expectGrant(t, a.Do("l", "k2", "0 7"), "ok", "7")
	b.Expect("l", "k", "0", "timeout")
	a.Expect("n", "k", tok, "ok 33")
	a.Expect("n", "k", tok+" 5", "ok 5")
	b.Expect("r", "k", strings.Repeat("0", 32), "error")
	b.Expect("n", "k", strings.Repeat("0", 32), "error")
	a.Expect("r", "k", tok, "ok")
	a.Expect("r", "k", tok, "error") // already released
	tok = expectGrant(t, b.Do("l", "k", "0 9"), "ok", "9")
	a.Expect("r", "k", tok, "ok") // a token works from any connection

	cs := confClients(t, a)
	if len(cs) != 2 {
		t.Fatalf("clients = %+v; want 2", cs)
	}
	for _, c := range cs {
		if c.Transport != name {
			t.Fatalf("clients = %+v; want transport %q", cs, name)
		}
	}
}

// FIFOThreeClients: a holder and two queued clients are granted strictly
// in arrival order, and a newcomer never jumps the queue.
func confFIFOThreeClients(t *testing.T, name string) {
	ts := serveConformance(t, name, Options{})
	a, b, c := ts.dial(t), ts.dial(t), ts.dial(t)
	ta := expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	ping(t, b)
	ping(t, c)
	chB := bg(b)
	b.Req("l", "k", "30")
	eventually(t, "b queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })
	chC := bg(c)
	c.Req("l", "k", "30 8")
	eventually(t, "c queued", func() bool { return waitersOf(ts.Engine, "k") == 2 })

	a.Expect("r", "k", ta, "ok")
	tb := expectGrant(t, recv(t, chB), "ok", "33")
	pending(t, chC)
	a.Expect("l", "k", "0", "timeout") // no overtaking of c
	b.Expect("r", "k", tb, "ok")
	tc := expectGrant(t, recv(t, chC), "ok", "8")
	c.Expect("r", "k", tc, "ok")
	expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
}

// TwoPhase: e answers acquired or queued, w collects the grant.
func confTwoPhase(t *testing.T, name string) {
	ts := serveConformance(t, name, Options{})
	a, b := ts.dial(t), ts.dial(t)
	a.Expect("w", "k", "0", "error_not_enqueued")
	ta := expectGrant(t, a.Do("e", "k", ""), "acquired", "33")
	a.Expect("e", "k", "", "error_already_enqueued")
	b.Expect("e", "k", "6", "queued")
	b.Expect("w", "k", "0", "timeout") // drops b from the queue
	b.Expect("w", "k", "0", "error_not_enqueued")
	b.Expect("e", "k", "6", "queued")
	if got := expectGrant(t, a.Do("w", "k", "5"), "ok", "33"); got != ta {
		t.Fatalf("w after acquired returned token %s; want %s", got, ta)
	}
	chB := bg(b)
	b.Req("w", "k", "30")
	// b's w is in flight (or about to be): the release hands the slot to
	// b's queued record either way.
	a.Expect("r", "k", ta, "ok")
	tb := expectGrant(t, recv(t, chB), "ok", "6")
	a.Expect("l", "k", "0", "timeout")
	b.Expect("r", "k", tb, "ok")
}

// Semaphore: limit 2 admits two holders, queues the third, hands a freed
// slot to it; the limit is fixed while the key lives.
func confSemaphore(t *testing.T, name string) {
	ts := serveConformance(t, name, Options{})
	a, b, c := ts.dial(t), ts.dial(t), ts.dial(t)
	t1 := expectGrant(t, a.Do("sl", "s", "0 2"), "ok", "33")
	t2 := expectGrant(t, b.Do("sl", "s", "0 2 4"), "ok", "4")
	c.Expect("sl", "s", "0 2", "timeout")
	c.Expect("sl", "s", "0 3", "error_limit_mismatch")
	a.Expect("sn", "s", t1+" 11", "ok 11")
	// The lock namespace is separate: l on the same key is independent.
	expectGrant(t, c.Do("l", "s", "0"), "ok", "33")

	chC := bg(c)
	c.Req("sl", "s", "30 2")
	eventually(t, "c queued", func() bool { return semWaitersOf(ts.Engine, "s") == 1 })
	b.Expect("sr", "s", t2, "ok")
	t3 := expectGrant(t, recv(t, chC), "ok", "33")
	a.Expect("sl", "s", "0 2", "timeout")
	a.Expect("sr", "s", t1, "ok")
	c.Expect("sr", "s", t3, "ok")
}

// SignalRoundTrip: a listener receives the frame of a signal published on
// another connection, counted in the answer; unlisten stops delivery.
func confSignalRoundTrip(t *testing.T, name string) {
	ts := serveConformance(t, name, Options{})
	l, p := ts.dial(t), ts.dial(t)
	p.Expect("signal", "a.b", "hello", "ok 0")
	l.Expect("listen", "a.b", "", "ok")
	l.Expect("listen", "ev.>", "", "ok")
	p.Expect("signal", "a.b", "hello  world", "ok 1")
	expectLine(t, l, "sig a.b hello  world")
	p.Expect("signal", "ev.x.y", "p", "ok 1")
	expectLine(t, l, "sig ev.x.y p")
	// The publisher's own subscription gets the frame too, in any order
	// relative to the answer.
	p.Expect("listen", "self", "", "ok")
	p.Req("signal", "self", "me")
	got := []string{p.ReadLine(), p.ReadLine()}
	if !(got[0] == "ok 1" && got[1] == "sig self me") && !(got[0] == "sig self me" && got[1] == "ok 1") {
		t.Fatalf("signal to own subscription: %q; want ok 1 and sig self me", got)
	}
	l.Expect("unlisten", "a.b", "", "ok")
	p.Expect("signal", "a.b", "x", "ok 0")
	ping(t, l)
}

// Auth: a wrong token, or any other first request, gets error_auth and a
// close; the right token is answered ok and the connection is served.
func confAuth(t *testing.T, name string) {
	ts := serveConformance(t, name, Options{Auth: auth.Token("s")})
	for _, req := range [][3]string{{"auth", "_", "wrong"}, {"l", "k", "0"}} {
		c := ts.dial(t)
		c.Req(req[0], req[1], req[2])
		expectLine(t, c, "error_auth")
		c.ExpectClosed()
	}
	if n := ts.Engine.Keys(); n != 0 {
		t.Fatalf("unauthenticated requests created %d keys", n)
	}
	// The refused sessions end (are forgotten) shortly after the client
	// sees the close.
	eventually(t, "refused sessions gone", func() bool { return ts.Connections() == 0 })
	c := ts.dial(t)
	c.Expect("auth", "_", "s", "ok")
	tok := expectGrant(t, c.Do("l", "k", "0"), "ok", "33")
	c.Expect("r", "k", tok, "ok")
	if cs := confClients(t, c); len(cs) != 1 || cs[0].Identity != "token" || cs[0].Transport != name {
		t.Fatalf("clients = %+v; want one %s client with identity token", cs, name)
	}
}

// DisconnectReleasesLock: when the holder closes its connection the lock
// goes to the waiter at once, long before the lease or the wait ends.
func confDisconnectReleasesLock(t *testing.T, name string) {
	ts := serveConformance(t, name, Options{})
	a, b := ts.dial(t), ts.dial(t)
	expectGrant(t, a.Do("l", "k", "0 600"), "ok", "600")
	ping(t, b)
	chB := bg(b)
	b.Req("l", "k", "30")
	eventually(t, "b queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })
	if err := a.Conn.Close(); err != nil {
		t.Fatalf("close holder: %v", err)
	}
	tb := expectGrant(t, recv(t, chB), "ok", "33")
	eventually(t, "holder's session gone", func() bool { return ts.Connections() == 1 })
	b.Expect("r", "k", tb, "ok")
}

// confIdleTimeout is the read timeout used by the ReadTimeout case.
const confIdleTimeout = 300 * time.Millisecond

// ReadTimeout: an idle client gets `error` once the read timeout passes,
// then the connection is closed and its lock released.
func confReadTimeout(t *testing.T, name string) {
	ts := serveConformance(t, name, Options{ReadTimeout: confIdleTimeout})
	c := ts.dial(t)
	// The first request also opens the session (a QUIC stream exists for
	// the server only once the client has written to it).
	ping(t, c)
	expectGrant(t, c.Do("l", "k", "0"), "ok", "33")
	idle := time.Now()
	expectLine(t, c, "error")
	if el := time.Since(idle); el < confIdleTimeout*3/4 {
		t.Fatalf("read timeout fired after %v; want about %v", el, confIdleTimeout)
	}
	c.ExpectClosed()
	eventually(t, "lock released", func() bool { return !busy(ts.Engine) })
	eventually(t, "session gone", func() bool { return ts.Connections() == 0 })
}

// OversizedLine: 256 bytes are fine; a 257-byte line gets `error` and a
// close, and creates nothing.
func confOversizedLine(t *testing.T, name string) {
	ts := serveConformance(t, name, Options{})
	ok := ts.dial(t)
	tok := expectGrant(t, ok.Do("l", strings.Repeat("k", 256), "0"), "ok", "33")
	ok.Expect("r", strings.Repeat("k", 256), tok, "ok")

	c := ts.dial(t)
	ping(t, c)
	c.Send("l\n" + strings.Repeat("x", 257) + "\n0\n")
	expectLine(t, c, "error")
	c.ExpectClosed()
	if n := ts.Engine.Keys(); n > 1 {
		t.Fatalf("%d keys; the oversized request must not create one", n)
	}
	ping(t, ok)
}

// PipelinedRequests: twenty requests in one write get twenty answers, in
// request order.
func confPipelinedRequests(t *testing.T, name string) {
	ts := serveConformance(t, name, Options{})
	c := ts.dial(t)
	var req strings.Builder
	var want []string // "" = a grant with ttl i+1
	for i := range 20 {
		switch i % 4 {
		case 0, 1:
			fmt.Fprintf(&req, "l\nk%d\n0 %d\n", i, i+1)
			want = append(want, "")
		case 2:
			req.WriteString("ping\n_\n\n")
			want = append(want, "ok")
		case 3:
			req.WriteString("l\nk\nabc\n")
			want = append(want, "error")
		}
	}
	c.Send(req.String())
	for i, w := range want {
		got := c.ReadLine()
		if w == "" {
			expectGrant(t, got, "ok", strconv.Itoa(i+1))
		} else if got != w {
			t.Fatalf("answer %d = %q; want %q", i, got, w)
		}
	}
	ping(t, c)
}
