package server

import (
	"bufio"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/testutil"
)

// pipeListener hands out the server ends of in-memory pipes. A pipe
// delivers a whole client write to one server read (up to the reader's
// buffer), so what the server finds buffered is deterministic.
type pipeListener struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// dial connects a client; server writes on the connection are recorded
// by w.
func (l *pipeListener) dial(t testing.TB) (client net.Conn, w *writeRecorder) {
	t.Helper()
	c, s := net.Pipe()
	t.Cleanup(func() { c.Close() })
	w = &writeRecorder{Conn: s}
	select {
	case l.conns <- w:
	case <-time.After(5 * time.Second):
		t.Fatal("server did not accept")
	}
	return c, w
}

// writeRecorder is a server-side conn that records the size of each
// write.
type writeRecorder struct {
	net.Conn
	mu     sync.Mutex
	writes []int
}

func (w *writeRecorder) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.writes = append(w.writes, len(p))
	w.mu.Unlock()
	return w.Conn.Write(p)
}

// reset returns the sizes written so far and forgets them.
func (w *writeRecorder) reset() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.writes
	w.writes = nil
	return out
}

// pipeline writes reqs in one write and reads n answer lines.
func pipeline(t *testing.T, c net.Conn, br *bufio.Reader, reqs string, n int) []string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	werr := make(chan error, 1)
	go func() { _, err := c.Write([]byte(reqs)); werr <- err }()
	lines := make([]string, n)
	for i := range lines {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("answer %d of %d: %v", i+1, n, err)
		}
		lines[i] = line
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	return lines
}

// A connection that pipelines many `stats` gets its answers written
// whenever more than flushAt bytes are pending, not all at once when its
// input runs dry: the server never holds more than flushAt plus one
// answer of its output. Small pipelined answers still share one write.
func TestPipelinedStatsFlushAtBound(t *testing.T) {
	t.Parallel()
	// A still clock: every answer has the same length.
	e := core.New(core.Options{Now: testutil.NewClock().Now})
	o := core.NewOwner(1 << 40)
	for i := range 40 {
		key := fmt.Sprintf("%s-%03d", strings.Repeat("k", 60), i)
		if _, tk, err := e.Acquire(o, core.KindLock, key, core.AcquireOptions{TTL: time.Hour}); err != nil || tk != nil {
			t.Fatalf("acquire %s: %v", key, err)
		}
	}
	l := newPipeListener()
	startOn(t, l, Options{Engine: e}, core.Options{}, false)
	c, w := l.dial(t)
	br := bufio.NewReaderSize(c, 1<<20)

	// 300 stats (2.7 KB) arrive in one read: all are buffered when the
	// first is answered.
	const n = 300
	answers := pipeline(t, c, br, strings.Repeat("stats\n_\n\n", n), n)
	// Every answer has the same length but for its request count (one
	// digit more from the 10th on); answer is the longest.
	requests := regexp.MustCompile(`"requests":[0-9]+`)
	answer, sum := 0, 0
	for i, a := range answers {
		if want := len(requests.ReplaceAllString(answers[0], "")); !strings.HasPrefix(a, "ok {") || len(requests.ReplaceAllString(a, "")) != want {
			t.Fatalf("answer %d = %.40q (%d bytes); want ok {...} of %d bytes and the request count", i, a, len(a), want)
		}
		answer = max(answer, len(a))
		sum += len(a)
	}
	if answer*n < 2*flushAt {
		t.Fatalf("answers of %d bytes are too small for this test", answer)
	}
	writes := w.reset()
	total := 0
	for _, sz := range writes {
		total += sz
		if sz > flushAt+answer {
			t.Fatalf("a write of %d bytes: pending output passed flushAt (%d) + one answer (%d); writes %v",
				sz, flushAt, answer, writes)
		}
	}
	if total != sum {
		t.Fatalf("wrote %d bytes; want %d", total, sum)
	}

	// Pipelined small answers still share one write.
	pipeline(t, c, br, strings.Repeat("ping\n_\n\n", 100), 100)
	if writes := w.reset(); len(writes) != 1 || writes[0] != 300 {
		t.Fatalf("100 pipelined pings written as %v; want one write of 300 bytes", writes)
	}
}
