package server

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
)

// Hostile and careless clients: each test shows the misbehaving client is
// handled as §1/§6/§7 say while a well-behaved client, working at the same
// time, gets every answer right.

// A client that sends complete requests followed by the start of one it
// never finishes, then shuts down its sending side, still gets the
// answers it is owed (found by FuzzSession: the answers were held back
// while the unfinished request sat in the buffer, then dropped at EOF).
func TestHostile_HalfCloseMidRequestKeepsAnswers(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	for _, tail := range []string{"0", "l\nk\n", "l\nk\n0"} {
		c, err := net.DialTimeout("tcp", ts.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("ping\n_\n\n\n\n\nl\nk\n0 5\n" + tail)); err != nil {
			t.Fatal(err)
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		w := &wire{conn: c, r: newLineReader(c)}
		for i, want := range []string{"ok", "error", "ok <token> 5"} {
			got, err := w.readLine()
			if err != nil || !answerMatches(got, want) {
				t.Fatalf("tail %q: answer %d = %q, %v; want %q", tail, i, got, err, want)
			}
		}
		if got, err := w.readLine(); err == nil {
			t.Fatalf("tail %q: extra answer %q", tail, got)
		}
	}
	eventually(t, "sessions gone, lock released", func() bool { return ts.Connections() == 0 && !busy(ts.Engine) })
}

// newLineReader buffers a connection for wire.readLine.
func newLineReader(c net.Conn) *bufio.Reader { return bufio.NewReaderSize(c, 64<<10) }
