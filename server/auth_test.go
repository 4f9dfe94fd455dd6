package server

import (
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/testutil"
)

// Authentication handshake (§7.1, §2.4; edges 31, 32).

// authFailed checks the §7.1 failure path on c after its first request
// was sent at sent: `error_auth` after the ~100 ms pause, then a close.
// (TestAuth_PauseBeforeAnswer checks the order structurally.)
func authFailed(t *testing.T, c *testutil.LineClient, sent time.Time) {
	t.Helper()
	expectLine(t, c, "error_auth")
	if el := expectClosedAfter(t, c, sent); el < 80*time.Millisecond {
		t.Fatalf("closed %v after the request; want the ~100ms pause first", el)
	}
}

// manyFailures lets a test fail authentication more often than the
// failure limiter allows one source by default (all test clients are
// 127.0.0.1); the limiter itself is tested in authlimit_test.go.
const manyFailures = 100

// §7.1: the correct token as the first request answers `ok` and the
// connection is then served; the token is the trimmed arg line, CRLF
// works; a second `auth` answers `error` and keeps the connection (edge
// 32).
func TestAuth_CorrectTokenThenServed(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{Auth: auth.Token("s3cret")}, core.Options{})
	c := ts.dial(t)
	c.Expect("auth", "_", "s3cret", "ok")
	tok := expectGrant(t, c.Do("l", "k", "0"), "ok", "33")
	c.Expect("auth", "_", "s3cret", "error")
	c.Expect("auth", "_", "wrong", "error")
	ping(t, c)
	c.Expect("r", "k", tok, "ok")

	c = ts.dial(t)
	c.Expect("auth", "anything", "  s3cret \t", "ok")
	ping(t, c)
	c = ts.dial(t)
	c.Send("auth\r\n_\r\ns3cret\r\n")
	expectLine(t, c, "ok")
	ping(t, c)
}

// Edge 31: a wrong token gets `error_auth` after ~100 ms, and a close.
func TestAuth_WrongTokenGetsErrorAuthAndClose(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{Auth: auth.Token("s3cret"), AuthFailures: manyFailures}, core.Options{})
	for _, tok := range []string{"wrong", "", "s3cre", "s3cret2", "S3CRET", "s3 cret"} {
		c := ts.dial(t)
		sent := time.Now()
		c.Req("auth", "_", tok)
		authFailed(t, c, sent)
	}
}

// Edge 31 / §7.1: any other first command gets `error_auth` and a close,
// and is not executed: an `l` first must not create a lock.
func TestAuth_OtherFirstCommandNotExecuted(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{Auth: auth.Token("s3cret"), AuthFailures: manyFailures}, core.Options{})
	for _, req := range [][3]string{
		{"l", "k", "0"}, {"sl", "s", "0 2"}, {"e", "k", ""}, {"ping", "_", ""}, {"stats", "_", ""},
		{"l", "k", "s3cret"}, // the token in the wrong command does not count
	} {
		c := ts.dial(t)
		sent := time.Now()
		c.Req(req[0], req[1], req[2])
		authFailed(t, c, sent)
	}
	if n := ts.Engine.Keys(); n != 0 {
		t.Fatalf("unauthenticated requests created %d keys", n)
	}
}

// Edge 31: a malformed first request (parse error, unknown command,
// oversized line) gets `error_auth` and a close, not `error`.
func TestAuth_MalformedFirstRequestGetsErrorAuth(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{Auth: auth.Token("s3cret"), AuthFailures: manyFailures}, core.Options{})
	for name, raw := range map[string]string{
		"parse error":    "l\nk\nabc\n",
		"bad key":        "l\n\n0\n",
		"unknown verb":   "frob\n_\ns3cret\n",
		"oversized line": "auth\n" + strings.Repeat("_", 300) + "\ns3cret\n",
		"oversized auth": "auth\n_\n" + strings.Repeat("s", 64<<10+1) + "\n",
	} {
		c := ts.dial(t)
		sent := time.Now()
		c.Send(raw)
		if got := c.ReadLine(); got != "error_auth" {
			t.Fatalf("%s: answer %q; want error_auth", name, got)
		}
		if el := expectClosedAfter(t, c, sent); el < 80*time.Millisecond {
			t.Fatalf("%s: closed after %v; want the ~100ms pause first", name, el)
		}
	}
}

// §1 [v1.15+]: the auth token line may hold 64 KiB.
func TestAuth_64KiBTokenLine(t *testing.T) {
	t.Parallel()
	secret := strings.Repeat("t", 64<<10)
	ts := start(t, Options{Auth: auth.Token(secret)}, core.Options{})
	c := ts.dial(t)
	c.Expect("auth", "_", secret, "ok")
	ping(t, c)
}

// §7.1: requests pipelined behind a failed handshake are never executed.
func TestAuth_PipelinedAfterFailureNotExecuted(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{Auth: auth.Token("s3cret")}, core.Options{})
	c := ts.dial(t)
	sent := time.Now()
	c.Send("auth\n_\nwrong\n" + "l\nk\n0\n" + "sl\ns\n0 3\n")
	authFailed(t, c, sent)
	if n := ts.Engine.Keys(); n != 0 {
		t.Fatalf("requests after a failed handshake created %d keys", n)
	}
	// Pipelined behind a good handshake they are served.
	c = ts.dial(t)
	c.Send("auth\n_\ns3cret\n" + "l\nk\n0\n")
	expectLine(t, c, "ok")
	expectGrant(t, c.ReadLine(), "ok", "33")
}

// §5: connections still in the handshake count in stats.
func TestAuth_HandshakingConnectionsCounted(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{Auth: auth.Token("s3cret")}, core.Options{})
	ts.dial(t) // connected, never authenticates (accepted first: FIFO)
	c := ts.dial(t)
	c.Expect("auth", "_", "s3cret", "ok")
	st, _ := wireStats(t, c)
	if st.Connections != 2 {
		t.Fatalf("connections = %d; want 2 (one still authenticating)", st.Connections)
	}
}

// §7.1 + §1: an idle unauthenticated connection is dropped at the read
// timeout like any other (the answer is `error` or `error_auth`).
func TestAuth_IdleBeforeHandshakeClosedAtReadTimeout(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{Auth: auth.Token("s3cret"), ReadTimeout: 200 * time.Millisecond}, core.Options{})
	c := ts.dial(t)
	if got := c.ReadLine(); got != "error" && got != "error_auth" {
		t.Fatalf("answer %q; want error or error_auth", got)
	}
	c.ExpectClosed()
}
