package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
)

// Framing (§1) and parse-time argument rules (§2.2, §6.1).

// §2.2/§6.1 (edges 24, 25, 26, 29): every parse error is answered `error`
// and leaves the connection usable. Those rows live in the bad-input table
// (badinput_test.go), run over every transport by TestBadInput.

// Edge 26: the largest representable values are accepted and do not wrap
// into an instantly expired lease, also on a server that has been up for
// a while (the engine clock is an hour past its epoch).
func TestEdge26_MaxSecondsAccepted(t *testing.T) {
	t.Parallel()
	ts, clk := startClock(t, Options{}, core.Options{})
	clk.Advance(time.Hour)
	c := ts.dial(t)
	tok := expectGrant(t, c.Do("l", "k", "9223372036 9223372036"), "ok", "9223372036")
	other := ts.dial(t)
	other.Expect("l", "k", "0", "timeout") // the huge lease did not wrap
	c.Expect("n", "k", tok+" 9223372036", "ok 9223372036")
	other.Expect("l", "k", "0", "timeout")
	c.Expect("r", "k", tok, "ok")
	etok := expectGrant(t, c.Do("e", "k2", "9223372036"), "acquired", "9223372036")
	expectGrant(t, c.Do("w", "k2", "9223372036"), "ok", "9223372036")
	other.Expect("l", "k2", "0", "timeout")
	c.Expect("r", "k2", etok, "ok")
}

// §1/edge 29: an unknown command consumes exactly three lines.
func TestEdge29_UnknownCommandConsumesThreeLines(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	c := ts.dial(t)
	// Had only the first line been consumed, "l\nk\n" would start a lock
	// request whose arg is the next line ("ping" → error) and the answers
	// below would be shifted.
	c.Send("bogus\nl\nk\n" + "ping\n_\n\n" + "ping\n_\n\n")
	expectLine(t, c, "error")
	expectLine(t, c, "ok")
	expectLine(t, c, "ok")
	if n := ts.Engine.Keys(); n != 0 {
		t.Fatalf("unknown command created %d keys", n)
	}
	// Empty lines are legal lines.
	c.Send("\n\n\n")
	expectLine(t, c, "error")
	ping(t, c)
}

// §1/edge 30: CRLF requests behave exactly like LF ones; all trailing CRs
// are stripped and the server writes bare LF.
func TestEdge30_CRLFRequests(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	c := ts.dial(t)
	c.Send("l\r\nk\r\n10 20\r\n")
	line := c.ReadLine()
	if strings.Contains(line, "\r") {
		t.Fatalf("answer %q contains CR", line)
	}
	tok := expectGrant(t, line, "ok", "20")
	c.Send("n\r\nk\r\n" + tok + "\r\r\n")
	expectLine(t, c, "ok 33")
	st, _ := wireStats(t, c)
	if _, ok := findLock(st.Locks, "k"); !ok || len(st.Locks) != 1 {
		t.Fatalf("stats locks = %+v; want exactly key \"k\"", st.Locks)
	}
	c.Send("r\r\nk\r\n" + tok + "\r\n")
	expectLine(t, c, "ok")
	c.Send("ping\r\n_\r\n\r\n")
	expectLine(t, c, "ok")
	c.Send("e\r\nk\r\n\r\n")
	etok := expectGrant(t, c.ReadLine(), "acquired", "33")
	c.Send("w\r\nk\r\n0\r\n")
	if got := expectGrant(t, c.ReadLine(), "ok", "33"); got != etok {
		t.Fatalf("w token %s; want %s", got, etok)
	}
	c.Send("bogus\r\n_\r\n\r\n")
	expectLine(t, c, "error")
	ping(t, c)
}

// §1: a line may hold exactly 256 bytes (CR counted).
func TestFraming_256ByteLinesAccepted(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	c := ts.dial(t)
	key := strings.Repeat("k", 256)
	tok := expectGrant(t, c.Do("l", key, "0"), "ok", "33")
	c.Expect("r", key, tok, "ok")
	// 255 bytes + CR = 256: accepted, the CR is stripped.
	key = strings.Repeat("x", 255)
	c.Send("l\n" + key + "\r\n0\n")
	tok = expectGrant(t, c.ReadLine(), "ok", "33")
	c.Expect("r", key, tok, "ok")
	// A 256-byte arg line of spaces around the numbers.
	arg := "0 7" + strings.Repeat(" ", 253)
	expectGrant(t, c.Do("l", "k2", arg), "ok", "7")
	// ping and stats lines are capped too, but 256 is fine.
	c.Expect("ping", strings.Repeat("_", 256), strings.Repeat("_", 256), "ok")
}

// §1/edge 27: a 257-byte line (CR included) yields `error` and a close,
// after the rest of the line has been drained.
func TestEdge27_OversizedLineErrorAndClose(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	cases := map[string]string{
		"key 257":           "l\n" + strings.Repeat("k", 257) + "\n0\n",
		"key 256+CR":        "l\n" + strings.Repeat("k", 256) + "\r\n0\n",
		"command 257":       strings.Repeat("l", 257) + "\nk\n0\n",
		"arg 257":           "l\nk\n0" + strings.Repeat(" ", 256) + "\n",
		"ping key 257":      "ping\n" + strings.Repeat("_", 257) + "\n\n",
		"stats arg 257":     "stats\n_\n" + strings.Repeat("_", 257) + "\n",
		"beyond buffer 10k": "l\n" + strings.Repeat("k", 10000) + "\n0\n",
	}
	for name, req := range cases {
		c := ts.dial(t)
		ping(t, c)
		c.Send(req)
		if got := c.ReadLine(); got != "error" {
			t.Fatalf("%s: answer %q; want error", name, got)
		}
		c.ExpectClosed()
	}
	if n := ts.Engine.Keys(); n != 0 {
		t.Fatalf("oversized requests created %d keys", n)
	}
}

// Edge 27: the answer comes only once the oversized line has been drained
// up to its LF.
func TestEdge27_OversizedLineDrainedBeforeAnswer(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	c := ts.dial(t)
	c.Send("l\n" + strings.Repeat("k", 300))
	expectQuiet(t, c, 100*time.Millisecond)
	c.Send(strings.Repeat("k", 5000)) // past the 4 KiB read buffer
	expectQuiet(t, c, 100*time.Millisecond)
	c.Send("\n")
	expectLine(t, c, "error")
	c.ExpectClosed()
}

// §1 [v1.15+]: the `auth` arg line may hold 64 KiB even when no token is
// configured (it is then answered `error`, connection open); one byte
// more is an oversized line. Other commands' args keep the 256-byte cap.
func TestFraming_AuthArgLine64KiB(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	c := ts.dial(t)
	c.Expect("auth", "_", strings.Repeat("a", 64<<10), "error")
	ping(t, c)
	c.Expect("auth", "_", strings.Repeat("a", 64<<10-1)+"\r", "error")
	ping(t, c)
	c.Req("auth", "_", strings.Repeat("a", 64<<10+1))
	expectLine(t, c, "error")
	c.ExpectClosed()

	// The key line of auth keeps the 256 cap.
	c = ts.dial(t)
	c.Req("auth", strings.Repeat("_", 257), "x")
	expectLine(t, c, "error")
	c.ExpectClosed()
}

// §1 pipelining: 50 requests sent in one write are answered in order, in
// a single write by the server.
func TestPipeline_FiftyRequestsInOneWrite(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	c := ts.dial(t)
	var req strings.Builder
	var want []string // "" = a grant with ttl i+1
	for i := range 50 {
		switch i % 5 {
		case 0, 1, 2:
			fmt.Fprintf(&req, "l\nk%d\n0 %d\n", i, i+1)
			want = append(want, "")
		case 3:
			req.WriteString("ping\n_\n\n")
			want = append(want, "ok")
		case 4:
			req.WriteString("l\nk\nabc\n")
			want = append(want, "error")
		}
	}
	c.Send(req.String())

	// Read raw: all fifty answers should arrive as one chunk.
	buf := make([]byte, 64<<10)
	_ = c.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	got := buf[:n]
	if lines := strings.Count(string(got), "\n"); lines != 50 {
		t.Errorf("first read returned %d of 50 answers; want all of them in one write", lines)
		for strings.Count(string(got), "\n") < 50 {
			m, err := c.Conn.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, buf[:m]...)
		}
	}
	lines := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
	if len(lines) != 50 {
		t.Fatalf("got %d answers; want 50", len(lines))
	}
	for i, line := range lines {
		if want[i] == "" {
			expectGrant(t, line, "ok", fmt.Sprint(i+1))
		} else if line != want[i] {
			t.Fatalf("answer %d = %q; want %q", i, line, want[i])
		}
	}
}

// §1: requests pipelined behind a blocking `l` are kept and answered, in
// order, after it.
func TestPipeline_RequestsBehindBlockedLock(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a, b := ts.dial(t), ts.dial(t)
	tok := expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	b.Send("l\nk\n10\n" + "ping\n_\n\n" + "l\nk2\n0 4\n")
	eventually(t, "b queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })
	expectQuiet(t, b, 50*time.Millisecond)
	a.Expect("r", "k", tok, "ok")
	expectGrant(t, b.ReadLine(), "ok", "33")
	expectLine(t, b, "ok")
	expectGrant(t, b.ReadLine(), "ok", "4")
}

// §1 [v1.15+]: a client that pipelines more than the 4 KiB read buffer
// while a request of it is blocked is dropped, and its waiter goes.
func TestPipeline_OverflowWhileBlockedDropsConnection(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a, b := ts.dial(t), ts.dial(t)
	expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	b.Req("l", "k", "30")
	eventually(t, "b queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })
	b.Send(strings.Repeat("ping\n_\n\n", 1000)) // 8000 bytes
	b.ExpectClosed()
	eventually(t, "b's waiter removed", func() bool { return waitersOf(ts.Engine, "k") == 0 })
	ping(t, a)
}
