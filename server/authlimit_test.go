package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/testutil"
	"github.com/dflockd/dflockd/transport"
)

// The authentication failure limiter, the pause before error_auth, the
// rate-limited logging of refused connections, and Unix peers named by
// their credentials.

// testLimiter returns a limiter with the default settings on clk.
func testLimiter(clk *testutil.Clock, sources int) *authLimiter {
	o := Options{AuthSources: sources, now: clk.Now}
	s := &Server{opts: o}
	s.initAuthLimits()
	return s.authLim
}

func TestAuthLimiter_BlocksAfterFailuresInWindow(t *testing.T) {
	clk := testutil.NewClock()
	l := testLimiter(clk, 0)
	for i := 1; i < DefaultAuthFailures; i++ {
		if v := l.fail("a"); v != (failVerdict{}) {
			t.Fatalf("failure %d: %+v; want no block yet", i, v)
		}
		clk.Advance(time.Second)
	}
	if _, b := l.blocked("a"); b {
		t.Fatal("blocked before the limit")
	}
	if v := l.fail("a"); v.blockedFor != DefaultAuthBackoff || v.refused {
		t.Fatalf("failure %d: %+v; want a block of %v", DefaultAuthFailures, v, DefaultAuthBackoff)
	}
	if left, b := l.blocked("a"); !b || left != DefaultAuthBackoff {
		t.Fatalf("blocked = %v, %v; want %v left", left, b, DefaultAuthBackoff)
	}
	if _, b := l.blocked("b"); b {
		t.Fatal("another source is blocked too")
	}
	// A failure of a connection accepted before the block is refused
	// and does not extend the block.
	if v := l.fail("a"); !v.refused || v.blockedFor != 0 {
		t.Fatalf("failure while blocked: %+v; want refused", v)
	}
	clk.Advance(DefaultAuthBackoff - time.Millisecond)
	if _, b := l.blocked("a"); !b {
		t.Fatal("block ended early")
	}
	clk.Advance(time.Millisecond)
	if _, b := l.blocked("a"); b {
		t.Fatal("block did not end after the back-off")
	}
}

// Failures further apart than the window do not add up.
func TestAuthLimiter_WindowRestarts(t *testing.T) {
	clk := testutil.NewClock()
	l := testLimiter(clk, 0)
	for range 3 {
		for range DefaultAuthFailures - 1 {
			if v := l.fail("a"); v != (failVerdict{}) {
				t.Fatalf("%+v; want no block", v)
			}
		}
		clk.Advance(DefaultAuthFailWindow)
	}
}

// Each further block doubles the back-off up to the maximum; after a quiet
// AuthBackoffMax it starts again from AuthBackoff.
func TestAuthLimiter_BackoffDoublesAndResets(t *testing.T) {
	clk := testutil.NewClock()
	l := testLimiter(clk, 0)
	block := func() time.Duration {
		t.Helper()
		var v failVerdict
		for range DefaultAuthFailures {
			v = l.fail("a")
		}
		if v.blockedFor == 0 {
			t.Fatal("not blocked")
		}
		return v.blockedFor
	}
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, 60 * time.Second, 60 * time.Second}
	for i, w := range want {
		got := block()
		if got != w {
			t.Fatalf("block %d: %v; want %v", i+1, got, w)
		}
		clk.Advance(got)
	}
	clk.Advance(DefaultAuthBackoffMax - time.Second)
	if got := block(); got != DefaultAuthBackoffMax {
		t.Fatalf("block after a short quiet: %v; want still %v", got, DefaultAuthBackoffMax)
	}
	clk.Advance(DefaultAuthBackoffMax + DefaultAuthBackoffMax)
	if got := block(); got != DefaultAuthBackoff {
		t.Fatalf("block after a quiet %v: %v; want %v again", DefaultAuthBackoffMax, got, DefaultAuthBackoff)
	}
}

// A client spraying source addresses cannot grow the limiter past its cap:
// the oldest sources are forgotten, the newest remembered; sources with
// nothing left to remember are dropped as time passes.
func TestAuthLimiter_MemoryCapped(t *testing.T) {
	clk := testutil.NewClock()
	l := testLimiter(clk, 100)
	for i := range 10000 {
		l.fail(fmt.Sprintf("2001:db8:%x::/64", i))
		if n := l.len(); n > 100 {
			t.Fatalf("%d sources remembered; want at most 100", n)
		}
	}
	for range DefaultAuthFailures - 1 {
		l.fail("newest")
	}
	if v := l.fail("newest"); v.blockedFor == 0 {
		t.Fatal("the newest source is not counted")
	}
	if e := l.sources["2001:db8:0::/64"]; e != nil {
		t.Fatal("the oldest source is still remembered")
	}
	clk.Advance(DefaultAuthFailWindow)
	l.fail("later")
	if n := l.len(); n != 2 {
		t.Fatalf("%d sources after the window; want 2 (the blocked one and the new one)", n)
	}
	clk.Advance(DefaultAuthBackoff + DefaultAuthBackoffMax)
	l.fail("last")
	if n := l.len(); n != 1 {
		t.Fatalf("%d sources after the back-off expired; want 1", n)
	}
}

func TestSourceKey(t *testing.T) {
	for _, tt := range []struct {
		addr net.Addr
		cred *auth.UnixCred
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 1234}, nil, "192.0.2.7"},
		{&net.UDPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 99}, nil, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:3:4:5:6"), Port: 1}, nil, "2001:db8:1:2::/64"},
		{&net.UDPAddr{IP: net.ParseIP("2001:db8:1:2:ffff::1"), Port: 1}, nil, "2001:db8:1:2::/64"},
		{&net.UnixAddr{Name: "@", Net: "unix"}, &auth.UnixCred{UID: 1000, PID: 7}, "uid:1000"},
		{&net.UnixAddr{Name: "", Net: "unix"}, nil, ""},
		{nil, nil, ""},
	} {
		if got := sourceKey(tt.addr, tt.cred); got != tt.want {
			t.Errorf("sourceKey(%v, %+v) = %q; want %q", tt.addr, tt.cred, got, tt.want)
		}
	}
}

func TestLogGate(t *testing.T) {
	clk := testutil.NewClock()
	g := newLogGate(clk.Now, 3, time.Second)
	for i := range 3 {
		if n, ok := g.allow(); !ok || n != 0 {
			t.Fatalf("line %d: %d, %v; want allowed", i, n, ok)
		}
	}
	for range 4 {
		if _, ok := g.allow(); ok {
			t.Fatal("line past the burst allowed")
		}
	}
	clk.Advance(time.Second)
	if n, ok := g.allow(); !ok || n != 4 {
		t.Fatalf("after a second: %d, %v; want allowed with 4 suppressed", n, ok)
	}
	if _, ok := g.allow(); ok {
		t.Fatal("second line in the same second allowed")
	}
}

// The pause comes before the answer: while the server pauses a failed
// handshake, nothing is readable; error_auth arrives once it ends.
func TestAuth_PauseBeforeAnswer(t *testing.T) {
	t.Parallel()
	paused := make(chan struct{})
	release := make(chan struct{})
	pause := func(ctx context.Context) {
		paused <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	ts := start(t, Options{Auth: auth.Token("s3cret"), authPause: pause}, core.Options{})
	c := ts.dial(t)
	c.Req("auth", "_", "wrong")
	<-paused
	expectQuiet(t, c, 100*time.Millisecond)
	close(release)
	expectLine(t, c, "error_auth")
	c.ExpectClosed()
}

// failOnce makes one connection fail the token handshake and checks the
// answer.
func failOnce(t *testing.T, ts *testServer) {
	t.Helper()
	c := ts.dial(t)
	c.Expect("auth", "_", "wrong", "error_auth")
	c.ExpectClosed()
}

// noPause skips the pause before error_auth.
func noPause(context.Context) {}

// After AuthFailures failures within the window, the next connection
// from that address is closed at once without a byte read or written,
// even one with the right token; the block is logged once; another
// address is served; after the back-off the right token is served again,
// and the next block lasts twice as long.
func TestAuthLimit_BlocksSourceThenBacksOff(t *testing.T) {
	t.Parallel()
	clk := testutil.NewClock()
	log, logs := logger()
	ts := start(t, Options{Auth: auth.Token("s3cret"), Logger: log, now: clk.Now, authPause: noPause}, core.Options{})
	for range DefaultAuthFailures {
		failOnce(t, ts)
	}
	for range 3 {
		// Nothing is sent: a connection that was read would stay open
		// until the read timeout.
		expectRefused(t, ts.dial(t).Conn)
	}
	c := ts.dial(t)
	c.Send("auth\n_\ns3cret\n")
	expectRefused(t, c.Conn)
	if n := strings.Count(logs.String(), blockedMsg); n != 1 {
		t.Fatalf("block logged %d times; want once:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"authentication failures: source blocked\" source=127.0.0.1") ||
		!strings.Contains(logs.String(), "blocked_for=5s") {
		t.Fatalf("block log line missing its fields:\n%s", logs)
	}
	if n := strings.Count(logs.String(), "msg=\"authentication failed\""); n != DefaultAuthFailures {
		t.Fatalf("%d failures logged; want %d (refused connections are not failures)", n, DefaultAuthFailures)
	}

	other := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	if oc, err := other.Dial("tcp", ts.Addr); err == nil {
		testutil.NewLineClient(t, oc).Expect("auth", "_", "s3cret", "ok")
	} else {
		t.Logf("cannot dial from 127.0.0.2 (%v); skipping the other-address check", err)
	}

	clk.Advance(DefaultAuthBackoff)
	good := ts.dial(t)
	good.Expect("auth", "_", "s3cret", "ok")
	ping(t, good)

	for range DefaultAuthFailures {
		failOnce(t, ts)
	}
	expectRefused(t, ts.dial(t).Conn)
	clk.Advance(DefaultAuthBackoff)
	expectRefused(t, ts.dial(t).Conn)
	clk.Advance(DefaultAuthBackoff)
	ts.dial(t).Expect("auth", "_", "s3cret", "ok")
	if !strings.Contains(logs.String(), "blocked_for=10s") {
		t.Fatalf("second block not logged with a doubled back-off:\n%s", logs)
	}
}

// A connection accepted before its address was blocked is closed without
// its credential being judged, even when it is right.
func TestAuthLimit_InFlightConnectionNotJudged(t *testing.T) {
	t.Parallel()
	clk := testutil.NewClock()
	ts := start(t, Options{Auth: auth.Token("s3cret"), now: clk.Now, authPause: noPause}, core.Options{})
	early := ts.dial(t)
	eventually(t, "accepted", func() bool { return ts.Connections() == 1 })
	for range DefaultAuthFailures {
		failOnce(t, ts)
	}
	early.Send("auth\n_\ns3cret\n")
	expectRefused(t, early.Conn)
}

// Negative AuthFailures turns the limiter off.
func TestAuthLimit_Off(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{Auth: auth.Token("s3cret"), AuthFailures: -1, authPause: noPause}, core.Options{})
	for range DefaultAuthFailures + 2 {
		failOnce(t, ts)
	}
	ts.dial(t).Expect("auth", "_", "s3cret", "ok")
	if ts.authLim != nil {
		t.Fatal("limiter built with AuthFailures < 0")
	}
}

// listenUnixT listens on a fresh Unix socket through the unix transport.
func listenUnixT(t *testing.T) (net.Listener, transport.Endpoint) {
	t.Helper()
	ep := transport.Endpoint{Transport: "unix", Addr: shortSocketPath(t)}
	l, err := transport.Listen(t.Context(), ep, transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return l, ep
}

func dialUnixT(t *testing.T, ep transport.Endpoint) *testutil.LineClient {
	t.Helper()
	c, err := transport.Dial(t.Context(), ep, transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return testutil.NewLineClient(t, c)
}

// On a Unix socket failures count per peer uid: token failures block the
// uid's next connections (the TCP listener's 127.0.0.1 is another
// source).
func TestAuthLimit_PerUIDOnUnix(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self"); err != nil {
		t.Skip("needs SO_PEERCRED (Linux)")
	}
	clk := testutil.NewClock()
	log, logs := logger()
	ul, ep := listenUnixT(t)
	tl := listenTCP(t)
	serveListeners(t, Options{Auth: auth.Token("s3cret"), Logger: log, now: clk.Now, authPause: noPause},
		map[net.Listener]Listener{ul: {Transport: "unix"}, tl: {Transport: "tcp"}})
	for range DefaultAuthFailures {
		c := dialUnixT(t, ep)
		c.Expect("auth", "_", "wrong", "error_auth")
		c.ExpectClosed()
	}
	expectRefused(t, dialUnixT(t, ep).Conn)
	src := "source=uid:" + strconv.Itoa(os.Getuid())
	if !strings.Contains(logs.String(), src) {
		t.Fatalf("block not logged for %s:\n%s", src, logs)
	}
	tc := testutil.NewLineClient(t, mustDialTCP(t, tl.Addr().String()))
	tc.Expect("auth", "_", "s3cret", "ok")
	clk.Advance(DefaultAuthBackoff)
	dialUnixT(t, ep).Expect("auth", "_", "s3cret", "ok")
}

func mustDialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Peer authentication failures count too: a uid refused by the allow list
// five times is then closed at accept, and the refusals stop being logged
// one by one.
func TestAuthLimit_PeerRefusalsCount(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self"); err != nil {
		t.Skip("needs SO_PEERCRED (Linux)")
	}
	clk := testutil.NewClock()
	log, logs := logger()
	ul, ep := listenUnixT(t)
	s := serveListeners(t, Options{Logger: log, now: clk.Now},
		map[net.Listener]Listener{ul: {Transport: "unix", Peer: auth.UnixCreds([]uint32{uint32(os.Getuid()) + 1}, nil)}})
	for range DefaultAuthFailures + 3 {
		expectDropped(t, wrapWire(dialUnixT(t, ep).Conn))
	}
	eventually(t, "connections forgotten", func() bool { return s.Connections() == 0 })
	out := logs.String()
	if n := strings.Count(out, "msg=\"authentication failed\""); n != DefaultAuthFailures {
		t.Fatalf("%d refusals judged; want %d, then closed at accept:\n%s", n, DefaultAuthFailures, out)
	}
	if n := strings.Count(out, blockedMsg); n != 1 {
		t.Fatalf("block logged %d times; want once:\n%s", n, out)
	}
}

// A listener without any authentication never consults the limiter.
func TestAuthLimit_NotUsedWithoutAuth(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	c := ts.dial(t)
	ping(t, c)
	if n := ts.authLim.len(); n != 0 {
		t.Fatalf("%d sources with auth off", n)
	}
	if pi := ts.inspect(c.Conn, Listener{}); pi.limited {
		t.Fatal("connection limited with auth off")
	}
}

// Item 4: TLS handshake failures are logged at info level with the
// remote, transport and error, at most refusedLogBurst at once; the next
// line allowed carries the number held back.
func TestTLSHandshakeFailureLogRateLimited(t *testing.T) {
	t.Parallel()
	clk := testutil.NewClock()
	srvCfg, _ := testutil.SelfSigned(t)
	l := tls.NewListener(listenTCP(t), srvCfg)
	log, logs := logger()
	s := serveListeners(t, Options{Logger: log, now: clk.Now}, map[net.Listener]Listener{l: {Transport: "tls"}})
	plain := func() {
		c := mustDialTCP(t, l.Addr().String())
		defer c.Close()
		_, _ = c.Write([]byte("ping\n_\n\n"))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var b [512]byte
		for {
			if _, err := c.Read(b[:]); err != nil {
				if isTimeout(err) {
					t.Fatal("plaintext connection not closed")
				}
				return
			}
		}
	}
	const extra = 5
	for range refusedLogBurst + extra {
		plain()
	}
	eventually(t, "connections forgotten", func() bool { return s.Connections() == 0 })
	if n := strings.Count(logs.String(), "level=INFO msg=\"tls handshake failed\""); n != refusedLogBurst {
		t.Fatalf("%d handshake failures logged; want %d (the burst):\n%s", n, refusedLogBurst, logs)
	}
	clk.Advance(refusedLogEvery)
	plain()
	want := fmt.Sprintf("suppressed=%d", extra)
	eventually(t, "line with the suppressed count", func() bool { return strings.Contains(logs.String(), want) })
	line := lastLine(logs.String(), "tls handshake failed")
	for _, f := range []string{"transport=tls", "remote=127.0.0.1:", "err="} {
		if !strings.Contains(line, f) {
			t.Fatalf("log line %q lacks %s", line, f)
		}
	}
}

// lastLine returns the last line of out that contains s.
func lastLine(out, s string) string {
	lines := strings.Split(out, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], s) {
			return lines[i]
		}
	}
	return ""
}

// Item 15: over a Unix socket, stats names a client by its peer's uid and
// pid, and so do the logs.
func TestStats_UnixRemoteIsUIDAndPID(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self"); err != nil {
		t.Skip("needs SO_PEERCRED (Linux)")
	}
	log, logs := logger()
	ul, ep := listenUnixT(t)
	serveListeners(t, Options{Logger: log}, map[net.Listener]Listener{ul: {Transport: "unix"}})
	w := wrapWire(dialUnixT(t, ep).Conn)
	cs := clientsOf(t, w)
	want := fmt.Sprintf("uid=%d pid=%d", os.Getuid(), os.Getpid())
	if len(cs) != 1 || cs[0].Remote != want || cs[0].Transport != "unix" {
		t.Fatalf("clients = %+v; want one unix client with remote %q", cs, want)
	}
	if !strings.Contains(logs.String(), fmt.Sprintf("remote=%q", want)) {
		t.Fatalf("logs do not name the peer as %q:\n%s", want, logs)
	}
}

// blockedMsg is the log message of a block.
const blockedMsg = `msg="authentication failures: source blocked"`

// Over QUIC the source is the client's IP: token failures on the streams
// of one connection block the next stream, even with the right token.
func TestAuthLimit_QUICCountsPerIP(t *testing.T) {
	t.Parallel()
	srvCfg, cliCfg := testutil.SelfSigned(t)
	l, err := transport.Listen(t.Context(), transport.Endpoint{Transport: "quic", Addr: "127.0.0.1:0"}, transport.Options{TLS: srvCfg})
	if err != nil {
		t.Skipf("quic: %v", err)
	}
	clk := testutil.NewClock()
	log, logs := logger()
	serveListeners(t, Options{Auth: auth.Token("s3cret"), Logger: log, now: clk.Now, authPause: noPause},
		map[net.Listener]Listener{l: {Transport: "quic"}})
	cliCfg = cliCfg.Clone()
	cliCfg.ServerName = "localhost"
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	qs, err := transport.DialQUIC(ctx, l.Addr().String(), transport.Options{TLS: cliCfg})
	if err != nil {
		t.Fatal(err)
	}
	defer qs.Close()
	stream := func() *wire {
		t.Helper()
		c, err := qs.OpenConn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return wrapWire(c)
	}
	for range DefaultAuthFailures {
		if got := mustDo(t, stream(), "auth", "_", "wrong"); got != "error_auth" {
			t.Fatalf("wrong token = %q", got)
		}
	}
	w := stream()
	if line, err := w.do("auth", "_", "s3cret"); err == nil || isTimeout(err) {
		t.Fatalf("stream of a blocked source: %q, %v; want it closed unanswered", line, err)
	}
	if !strings.Contains(logs.String(), blockedMsg+" source=127.0.0.1 transport=quic") {
		t.Fatalf("block not logged for 127.0.0.1 over quic:\n%s", logs)
	}
	clk.Advance(DefaultAuthBackoff)
	if got := mustDo(t, stream(), "auth", "_", "s3cret"); got != "ok" {
		t.Fatalf("right token after the back-off = %q", got)
	}
}
