package server

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/testutil"
)

// Helpers shared by the end-to-end tests of this package. Every test talks
// to a real server over loopback TCP.

// grantRE matches "ok <token> <ttl>" and "acquired <token> <ttl>".
var grantRE = regexp.MustCompile(`^(ok|acquired) ([0-9a-f]{32}) ([0-9]+)$`)

// expectGrant fails unless line is "<status> <32 hex> <ttl>" and returns
// the token.
func expectGrant(t testing.TB, line, status, ttl string) string {
	t.Helper()
	m := grantRE.FindStringSubmatch(line)
	if m == nil || m[1] != status || m[3] != ttl {
		t.Fatalf("answer %q; want %q <32 hex> %s", line, status, ttl)
	}
	return m[2]
}

// expectLine reads one line from c and fails unless it equals want.
func expectLine(t testing.TB, c *testutil.LineClient, want string) {
	t.Helper()
	if got := c.ReadLine(); got != want {
		t.Fatalf("answer %q; want %q", got, want)
	}
}

// expectQuiet fails if the server sends anything on c within d. It reads
// the socket directly, so it is only meaningful when c has no buffered
// bytes (every line the server sent so far has been read).
func expectQuiet(t testing.TB, c *testutil.LineClient, d time.Duration) {
	t.Helper()
	_ = c.Conn.SetReadDeadline(time.Now().Add(d))
	var b [64]byte
	n, err := c.Conn.Read(b[:])
	if n > 0 || !isTimeout(err) {
		t.Fatalf("expected silence for %v; got %q, %v", d, b[:n], err)
	}
}

// expectClosedAfter fails unless c is closed by the server, and returns how
// long after since that was observed.
func expectClosedAfter(t testing.TB, c *testutil.LineClient, since time.Time) time.Duration {
	t.Helper()
	c.ExpectClosed()
	return time.Since(since)
}

// expectRefused fails unless the server closes conn without writing a
// byte (the over-the-cap accept path).
func expectRefused(t testing.TB, conn net.Conn) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [16]byte
	n, err := conn.Read(b[:])
	if n > 0 {
		t.Fatalf("refused connection received %q", b[:n])
	}
	if err == nil || isTimeout(err) {
		t.Fatalf("connection not closed by the server: %v", err)
	}
}

// ping checks that c is still served.
func ping(t testing.TB, c *testutil.LineClient) {
	t.Helper()
	c.Expect("ping", "_", "", "ok")
}

// statsBodyT is the decoded `stats` answer.
type statsBodyT struct {
	Connections    int                  `json:"connections"`
	Locks          []core.LockStat      `json:"locks"`
	Semaphores     []core.SemaphoreStat `json:"semaphores"`
	IdleLocks      []core.IdleStat      `json:"idle_locks"`
	IdleSemaphores []core.IdleStat      `json:"idle_semaphores"`
	SignalChannels []json.RawMessage    `json:"signal_channels"`
}

// wireStats sends `stats` on c and returns the decoded body and its raw
// top-level members.
func wireStats(t testing.TB, c *testutil.LineClient) (statsBodyT, map[string]json.RawMessage) {
	t.Helper()
	line := c.Do("stats", "_", "")
	body, ok := strings.CutPrefix(line, "ok ")
	if !ok {
		t.Fatalf("stats answer %q; want ok <json>", line)
	}
	var st statsBodyT
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("stats JSON %q: %v", body, err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatalf("stats JSON %q: %v", body, err)
	}
	return st, raw
}

func findLock(ls []core.LockStat, key string) (core.LockStat, bool) {
	for _, l := range ls {
		if l.Key == key {
			return l, true
		}
	}
	return core.LockStat{}, false
}

func findSem(ss []core.SemaphoreStat, key string) (core.SemaphoreStat, bool) {
	for _, s := range ss {
		if s.Key == key {
			return s, true
		}
	}
	return core.SemaphoreStat{}, false
}

func findIdle(is []core.IdleStat, key string) (core.IdleStat, bool) {
	for _, s := range is {
		if s.Key == key {
			return s, true
		}
	}
	return core.IdleStat{}, false
}

// waitersOf returns the number of queued waiters of a limit-1 key
// (stats "locks"), read from the engine.
func waitersOf(e *core.Engine, key string) int {
	l, _ := findLock(e.Stats().Locks, key)
	return l.Waiters
}

// semWaitersOf is waitersOf for a semaphore key.
func semWaitersOf(e *core.Engine, key string) int {
	s, _ := findSem(e.Stats().Semaphores, key)
	return s.Waiters
}

// busy reports whether any key has a holder or a waiter.
func busy(e *core.Engine) bool {
	st := e.Stats()
	return len(st.Locks)+len(st.Semaphores) > 0
}

// startClock starts a server whose engine runs on a fake clock. The
// sweep and GC tickers are an hour apart, so expiry happens only when the
// test calls ExpireDue, Sweep or CollectIdle (or an acquire evicts).
func startClock(t testing.TB, opts Options, eopts core.Options) (*testServer, *testutil.Clock) {
	t.Helper()
	clk := testutil.NewClock()
	eopts.Now = clk.Now
	if eopts.SweepInterval == 0 {
		eopts.SweepInterval = time.Hour
	}
	if eopts.GCInterval == 0 {
		eopts.GCInterval = time.Hour
	}
	opts.Engine = core.New(eopts)
	return start(t, opts, core.Options{}), clk
}

// wire is a minimal client that returns errors instead of failing the
// test, for use from goroutines other than the test's own (only the test
// goroutine may call t.Fatal).
type wire struct {
	conn net.Conn
	r    *bufio.Reader
	buf  []byte
}

func dialWire(addr string) (*wire, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &wire{conn: c, r: bufio.NewReaderSize(c, 64<<10), buf: make([]byte, 0, 128)}, nil
}

// send writes one request.
func (w *wire) send(cmd, key, arg string) error {
	w.buf = append(w.buf[:0], cmd...)
	w.buf = append(w.buf, '\n')
	w.buf = append(w.buf, key...)
	w.buf = append(w.buf, '\n')
	w.buf = append(w.buf, arg...)
	w.buf = append(w.buf, '\n')
	_, err := w.conn.Write(w.buf)
	return err
}

// readLine reads one answer line (without LF) within 10 s.
func (w *wire) readLine() (string, error) {
	_ = w.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := w.r.ReadSlice('\n')
	if err != nil {
		return "", err
	}
	return string(line[:len(line)-1]), nil
}

// do sends one request and reads its answer.
func (w *wire) do(cmd, key, arg string) (string, error) {
	if err := w.send(cmd, key, arg); err != nil {
		return "", err
	}
	return w.readLine()
}

func (w *wire) close() { w.conn.Close() }

// errs collects failures from helper goroutines for the test goroutine.
type errs struct {
	mu   sync.Mutex
	list []error
}

func (e *errs) add(err error) {
	e.mu.Lock()
	e.list = append(e.list, err)
	e.mu.Unlock()
}

func (e *errs) check(t testing.TB) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, err := range e.list {
		if i == 10 {
			t.Errorf("... and %d more", len(e.list)-10)
			break
		}
		t.Error(err)
	}
	if len(e.list) > 0 {
		t.FailNow()
	}
}

// closedOrReset reports whether err means the peer closed the connection.
func closedOrReset(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || (err != nil && !isTimeout(err))
}

// bg runs f in a goroutine and returns a channel with its answer line, for
// requests that block. Errors are reported through the channel as
// "<error: ...>".
func bg(c *testutil.LineClient) <-chan string {
	ch := make(chan string, 1)
	go func() {
		_ = c.Conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		var sb strings.Builder
		var b [1]byte
		for {
			n, err := c.Conn.Read(b[:])
			if n == 1 {
				if b[0] == '\n' {
					ch <- sb.String()
					return
				}
				sb.WriteByte(b[0])
			}
			if err != nil {
				ch <- "<error: " + err.Error() + ">"
				return
			}
		}
	}()
	return ch
}

// recv waits for a background answer.
func recv(t testing.TB, ch <-chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no answer within 10s")
		return ""
	}
}

// pending fails if a background answer has already arrived.
func pending(t testing.TB, ch <-chan string) {
	t.Helper()
	select {
	case s := <-ch:
		t.Fatalf("unexpected answer %q while the request should block", s)
	default:
	}
}
