package server

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/testutil"
)

// Read and write timeouts (§1; edges 28, 48, 49).

const shortRead = 200 * time.Millisecond

// Edge 28: a connection idle for longer than the read timeout receives
// `error` and is closed; its locks are released like on any disconnect.
func TestEdge28_IdleConnectionGetsErrorAndClose(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{ReadTimeout: shortRead}, core.Options{})
	c := ts.dial(t)
	expectGrant(t, c.Do("l", "k", "0"), "ok", "33")
	idle := time.Now()
	expectLine(t, c, "error")
	if el := time.Since(idle); el < shortRead*3/4 {
		t.Fatalf("read timeout fired after %v; want about %v", el, shortRead)
	}
	c.ExpectClosed()
	eventually(t, "lock released", func() bool { return !busy(ts.Engine) })
}

// Edge 28: a client that sends `ping` more often than the read timeout
// survives well past it.
func TestEdge28_PingKeepsConnectionAlive(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{ReadTimeout: shortRead}, core.Options{})
	c := ts.dial(t)
	deadline := time.Now().Add(4 * shortRead)
	for time.Now().Before(deadline) {
		ping(t, c)
		time.Sleep(shortRead / 3)
	}
	ping(t, c)
}

// §1: the deadline is armed per line, so a request trickled one line at a
// time (each faster than the timeout) is served, while a line that takes
// longer than the timeout to arrive gets `error` and a close.
func TestReadTimeout_PerLineDeadline(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{ReadTimeout: shortRead}, core.Options{})
	c := ts.dial(t)
	for _, part := range []string{"l\n", "k\n", "0 9\n"} {
		time.Sleep(shortRead / 2)
		c.Send(part)
	}
	expectGrant(t, c.ReadLine(), "ok", "9")

	c = ts.dial(t)
	c.Send("pi")
	expectLine(t, c, "error")
	c.ExpectClosed()
}

// storeKeys fills the engine with n held locks with 256-byte keys, so
// that one `stats` answer is about n × 330 bytes.
func storeKeys(t *testing.T, e *core.Engine, n int) {
	t.Helper()
	o := core.NewOwner(1 << 40)
	for i := range n {
		key := fmt.Sprintf("%0256d", i)
		if _, _, err := e.Acquire(o, core.KindLock, key, core.AcquireOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// statsRequests `stats` answers of about 130 KB each (with 400 stored
// keys) are many times what the socket buffers hold once the server's
// send buffer is small (see smallSendBuffers) and the client does not
// read, so the server's write blocks. (Shrinking the client's SO_RCVBUF
// instead works too, but on Linux it makes draining the backlog later
// crawl through a tiny window.)
const statsRequests = 20

// smallSendBuffers wraps a TCP listener so that accepted connections get a
// small SO_SNDBUF.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(8 << 10)
	}
	return c, err
}

// startSmallSend starts a server whose connections have small send
// buffers, with 400 held keys so that `stats` answers are large.
func startSmallSend(t *testing.T, opts Options) *testServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := startOn(t, smallSendBuffers{l}, opts, core.Options{}, true)
	storeKeys(t, ts.Engine, 400)
	return ts
}

// Edge 48: with a positive write timeout a client that stops reading is
// disconnected once a write blocks longer than the timeout.
func TestEdge48_WriteTimeoutClosesNonReadingClient(t *testing.T) {
	t.Parallel()
	ts := startSmallSend(t, Options{WriteTimeout: 100 * time.Millisecond})
	c := ts.dial(t)
	ping(t, c) // admitted: Connections counts it from now on
	c.Send(strings.Repeat("stats\n_\n\n", statsRequests))
	eventually(t, "server dropped the non-reading client", func() bool { return ts.Connections() == 0 })
	// The client sees fewer than all answers, then the close.
	r := bufio.NewReaderSize(c.Conn, 1<<20)
	_ = c.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) || !isTimeout(err) {
				break
			}
			t.Fatalf("connection not closed after %d answers: %v", got, err)
		}
		if !strings.HasPrefix(line, "ok {") {
			t.Fatalf("answer %.40q; want stats", line)
		}
		got++
	}
	if got >= statsRequests {
		t.Fatalf("received all %d answers; want the connection cut short", got)
	}
}

// Edge 48: with write timeout 0 there is no write deadline: the same
// non-reading client stays connected and later receives every answer.
func TestEdge48_WriteTimeoutZeroDisablesDeadline(t *testing.T) {
	t.Parallel()
	ts := startSmallSend(t, Options{WriteTimeout: 0})
	c := ts.dial(t)
	ping(t, c) // admitted: Connections counts it from now on
	c.Send(strings.Repeat("stats\n_\n\n", statsRequests))
	time.Sleep(300 * time.Millisecond) // three times the other test's write timeout
	if ts.Connections() != 1 {
		t.Fatal("connection dropped without a write timeout")
	}
	for i := range statsRequests {
		if line := c.ReadLine(); !strings.HasPrefix(line, "ok {") {
			t.Fatalf("answer %d = %.40q; want stats", i, line)
		}
	}
	ping(t, c)
}

// Edge 49: a read timeout surfacing through TLS is still a read timeout
// (`error`, then close), not a silent disconnect.
func TestEdge49_ReadTimeoutOverTLS(t *testing.T) {
	t.Parallel()
	srvCfg, cliCfg := testutil.SelfSigned(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := startOn(t, tls.NewListener(l, srvCfg), Options{ReadTimeout: shortRead}, core.Options{}, true)
	conn, err := tls.Dial("tcp", ts.Addr, cliCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r := bufio.NewReader(conn)
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("l\nk\n0\n")); err != nil {
		t.Fatal(err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	expectGrant(t, strings.TrimSuffix(line, "\n"), "ok", "33")
	line, err = r.ReadString('\n') // idle: the read timeout fires
	if err != nil || line != "error\n" {
		t.Fatalf("after idling: %q, %v; want error", line, err)
	}
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("connection still open after the read timeout")
	}
	eventually(t, "lock released", func() bool { return !busy(ts.Engine) })
}
