package server

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/testutil"
	"github.com/dflockd/dflockd/protocol"
)

// FuzzSession is a stateful fuzz target: it writes an arbitrary byte
// stream to a live session, half-closes the connection and reads every
// line the server sends until it closes. It checks that the server
// answers or closes as §6 says:
//
//   - every line is a valid response or push frame (protocol.ParseResponse);
//   - answers come one per request, in order: the same Decoder the server
//     uses, run over the stream, says which requests there are; a parse
//     error is answered exactly "error", a fatal one (oversized line) is
//     answered "error" and is the last answer; a valid request gets a
//     status that §2.5 allows for its command;
//   - the server stops answering early only at a request that may block
//     (l, sl, w, sw with a timeout), which the half-close cancels, or
//     after answering `bye`, after which it closes;
//
// and that the engine's invariants hold afterwards: a fresh connection
// is served, and once the fuzz connection is gone no subscription of it
// remains; no holder or waiter either, unless the stream named its
// session (the session extension) and did not say bye: then exactly that
// one session is left detached, and once the test clock has passed every
// session TTL and the engine has expired it, nothing of it remains; and
// no key outlives an idle collection.
//
// No session can be resumed by a stream: every session an iteration
// leaves is expired before the next one, and ids are random; so resume
// may only be refused.
//
// One server (on a Unix socket: no TIME_WAIT, cheap half-close) is shared
// by all iterations of a fuzz worker and stopped when the target ends.
// Its engine runs on a test clock, which only the target moves.
func FuzzSession(f *testing.F) {
	for _, s := range sessionSeeds() {
		f.Add([]byte(s))
	}
	l, err := net.Listen("unix", shortSocketPath(f))
	if err != nil {
		f.Fatal(err)
	}
	clk := testutil.NewClock()
	ts := startOn(f, l, Options{
		ReadTimeout:    10 * time.Second, // the stream is complete: never reached
		WriteTimeout:   10 * time.Second,
		PushQueueBytes: 1 << 30, // no slow-consumer eviction: answers are all read
	}, core.Options{GCInterval: time.Hour, SweepInterval: time.Hour, Now: clk.Now}, true)
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzOneSession(t, ts, clk, in)
	})
}

// fuzzOneSession runs one iteration of FuzzSession.
func fuzzOneSession(t *testing.T, ts *testServer, clk *testutil.Clock, in []byte) {
	want := expectedAnswers(in)

	c, err := net.DialTimeout("unix", ts.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	uc := c.(*net.UnixConn)
	_ = uc.SetDeadline(time.Now().Add(20 * time.Second))
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		_, _ = uc.Write(in) // fails if the server closes first: fine
		_ = uc.CloseWrite()
	}()
	var got []string // answers, push frames left out
	r := bufio.NewReaderSize(uc, 64<<10)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				t.Fatalf("answer line longer than 64 KiB: %.80q", line)
			}
			if len(line) > 0 {
				t.Fatalf("server sent a partial line %q (%v)", line, err)
			}
			if isTimeout(err) {
				t.Fatal("server neither answered nor closed within 20s")
			}
			break
		}
		line = line[:len(line)-1]
		var resp protocol.Response
		if err := protocol.ParseResponse(line, &resp); err != nil {
			t.Fatalf("invalid line from the server: %v", err)
		}
		if resp.Status == protocol.StatusSignal {
			continue
		}
		got = append(got, string(line))
	}
	<-wrote

	if len(got) > len(want) {
		t.Fatalf("%d answers to %d requests: %q", len(got), len(want), got)
	}
	named := "" // the session's "<sid> <secret>", once named
	for i, line := range got {
		if msg := want[i].check(line); msg != "" {
			t.Fatalf("answer %d (%s) = %q: %s", i, want[i], line, msg)
		}
		if want[i].cmd == protocol.CmdSession && !want[i].parseErr && line != "error" {
			f := strings.Fields(line)
			if id := f[1] + " " + f[2]; named == "" {
				named = id
			} else if id != named {
				t.Fatalf("answer %d: session %q; the connection's session is %q", i, id, named)
			}
		}
		if want[i].cmd == protocol.CmdBye && !want[i].parseErr {
			if i != len(got)-1 {
				t.Fatalf("answers after bye: %q", got[i+1:])
			}
			named = "" // ended
		}
	}
	if len(got) < len(want) && !want[len(got)].mayBlock {
		t.Fatalf("server stopped after %d of %d answers, at %s, which cannot block; answers %q",
			len(got), len(want), want[len(got)], got)
	}

	// A fresh connection is served meanwhile.
	fc, err := net.DialTimeout("unix", ts.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	fresh := &wire{conn: fc, r: bufio.NewReader(fc)}
	if got, err := fresh.do("ping", "_", ""); got != "ok" || err != nil {
		t.Fatalf("fresh connection: ping = %q, %v", got, err)
	}
	fresh.close()

	// Once the fuzz session has ended, nothing of it is left.
	deadline := time.Now().Add(10 * time.Second)
	for ts.Connections() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions still open", ts.Connections())
		}
		time.Sleep(time.Millisecond)
	}
	if ch := ts.Engine.SignalStats(); len(ch) != 0 {
		t.Fatalf("subscriptions left after the session ended: %+v", ch)
	}
	detached := 0
	if named != "" {
		detached = 1 // kept for its TTL, with whatever it holds or waits for
	}
	if ss := ts.Engine.SessionStats(); ss.Attached != 0 || ss.Detached != detached {
		t.Fatalf("after the connection ended: %d attached and %d detached sessions; want 0 and %d", ss.Attached, ss.Detached, detached)
	}
	if detached > 0 {
		clk.Advance(DefaultSessionTTLMax + time.Second) // past every TTL
		ts.Engine.ExpireSessions()
		if ss := ts.Engine.SessionStats(); ss.Detached != 0 {
			t.Fatalf("%d sessions left after every TTL passed", ss.Detached)
		}
	}
	st := ts.Engine.Stats()
	if len(st.Locks) != 0 || len(st.Semaphores) != 0 {
		t.Fatalf("holders or waiters left after the session ended: locks %+v semaphores %+v", st.Locks, st.Semaphores)
	}
	ts.Engine.CollectIdle()
	if n := ts.Engine.Keys(); n != 0 {
		t.Fatalf("%d keys left after an idle collection", n)
	}
}

// expected is what the server may answer to one request of the stream.
type expected struct {
	cmd      protocol.Command
	parseErr bool // exactly "error"
	mayBlock bool // the session may end while this request waits
}

func (e expected) String() string {
	if e.parseErr {
		return e.cmd.String() + " (malformed)"
	}
	return e.cmd.String()
}

// expectedAnswers decodes in as the server does and lists one expected
// answer per request the server must answer.
func expectedAnswers(in []byte) []expected {
	d := protocol.NewDecoder(bytes.NewReader(in))
	var out []expected
	var req protocol.Request
	for {
		err := d.ReadRequest(&req)
		var pe *protocol.Error
		switch {
		case err == nil:
			blocking := req.Timeout > 0 && (req.Cmd == protocol.CmdLock || req.Cmd == protocol.CmdSemLock ||
				req.Cmd == protocol.CmdWait || req.Cmd == protocol.CmdSemWait)
			out = append(out, expected{cmd: req.Cmd, mayBlock: blocking})
			if req.Cmd == protocol.CmdBye {
				return out // the server closes after answering it
			}
		case errors.As(err, &pe):
			out = append(out, expected{cmd: req.Cmd, parseErr: true})
			if pe.Fatal() {
				return out
			}
		default: // EOF, possibly inside a request: no answer
			return out
		}
	}
}

// check returns "" when line is an answer §2.5 allows, else why not.
func (e expected) check(line string) string {
	if e.parseErr {
		if line != "error" {
			return "want error"
		}
		return ""
	}
	var resp protocol.Response
	if err := protocol.ParseResponse([]byte(line), &resp); err != nil {
		return err.Error()
	}
	s := resp.Status
	bare := !resp.HasN && resp.Token == "" && resp.Body == nil
	grant := resp.Token != ""
	if s == protocol.StatusError && bare {
		return "" // a generic error is always possible
	}
	ok := false
	switch e.cmd {
	case protocol.CmdLock, protocol.CmdSemLock:
		ok = s == protocol.StatusOK && grant || bare && (s == protocol.StatusTimeout || s == protocol.StatusErrMaxLocks ||
			s == protocol.StatusErrMaxWaiters || s == protocol.StatusErrLimitMismatch || s == protocol.StatusErrLeaseExpired)
	case protocol.CmdRelease, protocol.CmdSemRelease, protocol.CmdPing, protocol.CmdListen, protocol.CmdUnlisten:
		ok = s == protocol.StatusOK && bare
	case protocol.CmdRenew, protocol.CmdSemRenew:
		ok = s == protocol.StatusOK && resp.HasN && resp.N > 0
	case protocol.CmdEnqueue, protocol.CmdSemEnqueue:
		ok = s == protocol.StatusAcquired && grant || bare && (s == protocol.StatusQueued || s == protocol.StatusErrAlreadyEnqueued ||
			s == protocol.StatusErrMaxLocks || s == protocol.StatusErrMaxWaiters || s == protocol.StatusErrLimitMismatch)
	case protocol.CmdWait, protocol.CmdSemWait:
		ok = s == protocol.StatusOK && grant || bare && (s == protocol.StatusTimeout || s == protocol.StatusErrNotEnqueued ||
			s == protocol.StatusErrLeaseExpired)
	case protocol.CmdSignal:
		ok = s == protocol.StatusOK && resp.HasN && resp.N >= 0
	case protocol.CmdStats, protocol.CmdInspect:
		ok = s == protocol.StatusOK && resp.Body != nil && len(resp.Body) > 0 && resp.Body[0] == '{'
	case protocol.CmdName:
		ok = s == protocol.StatusOK && bare
	case protocol.CmdAuth:
		ok = false // no token configured: only "error"
	case protocol.CmdSession:
		// "ok <sid> <secret> <ttl_s>", parsed as an ok with a body.
		f := strings.Fields(line)
		ttl, err := strconv.Atoi(f[len(f)-1])
		ok = s == protocol.StatusOK && len(f) == 4 && isLowerHex(f[1], 16) && isLowerHex(f[2], 32) &&
			err == nil && ttl >= 1 && time.Duration(ttl)*time.Second <= DefaultSessionTTLMax
	case protocol.CmdResume:
		ok = s == protocol.StatusErrSession && bare // nothing is resumable (see FuzzSession)
	case protocol.CmdBye:
		ok = s == protocol.StatusOK && bare
	}
	if !ok {
		return "not an answer " + e.cmd.String() + " may get"
	}
	if grant && (len(resp.Token) != 32 || resp.TTL < time.Second) {
		return "malformed grant"
	}
	return ""
}

// isLowerHex reports whether s is n lowercase hex digits.
func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// sessionSeeds are the starting corpus of FuzzSession: well-formed
// sessions of every command, the malformed requests of the bad-input
// table, and streams that block, pipeline or end mid-request.
func sessionSeeds() []string {
	seeds := []string{
		"", "\n", "\n\n\n", "ping\n_\n\n", "stats\n_\n\n", "auth\n_\nx\n",
		"l\nk\n0\n", "l\nk\n0\nl\nk\n0\n", "l\nk\n0\nl\nk\n5\nping\n_\n\n",
		"l\nk\n0 5\nr\nk\n0123456789abcdef0123456789abcdef\n",
		"e\nk\n\ne\nk\n\nw\nk\n0\nw\nk\n0\n", "e\nk\n\nw\nk\n5\n",
		"sl\ns\n0 2\nsl\ns\n0 2\nsl\ns\n0 2\nsl\ns\n0 3\nsl\ns\n5 2\n",
		"se\ns\n2\nse\ns\n2\nsw\ns\n0\n",
		"listen\na.>\n\nsignal\na.b\nhello\nunlisten\na.>\n\nsignal\na.b\nx\n",
		"listen\na.*\ng\nlisten\na.*\ng\nsignal\na.b\n  spaced  \n",
		"listen\na.>.b\n\nsignal\na.*\nx\nsignal\na\n \t\n",
		"l\nk\n5\n", "l\nk\n0\nl\nk\n3\n" + string(bytes.Repeat([]byte("ping\n_\n\n"), 600)),
		"l\n" + string(bytes.Repeat([]byte("k"), 257)) + "\n0\nping\n_\n\n",
		"signal\nc\n" + string(bytes.Repeat([]byte("p"), 70000)) + "\n",
		"l\r\nk\r\n0\r\nstats\r\n_\r\n\r\n", "l\nk\n", "l\nk\n0",
		"name\n_\nworker 7\nl\nk\n0\ninspect\nk\n\ninspect\nk\nsem\nname\n_\n\xff\n",
		"l\x00\nk\n0\n", "l\nk\x00\n0\n", "l\n\xff\xfe\n0\nr\n\xff\xfe\n\xc3\x28\n",
	}
	// The session extension: naming (again, with TTLs valid, clamped or
	// not), resume of an id nobody was given, malformed or refused
	// resumes, bye alone or in the middle of pipelined requests, and
	// named sessions that end detached while holding, queued in e/se or
	// blocked in l/sl (which parks the place).
	const rid, rsec = "0123456789abcdef", "0123456789abcdef0123456789abcdef"
	seeds = append(seeds,
		"session\n_\n\n", "session\n_\n30\nsession\n_\n5\nl\nk\n0\n",
		"session\n_\n0\nsession\n_\nx\nsession\n_\n301\nsession\n_\n1\n",
		"session\n_\n\nl\nk\n0\nl\nk\n5\n", "sl\ns\n0 2\nsession\n_\n\nsl\ns\n0 2\nsl\ns\n5 2\n",
		"session\n_\n\ne\nk\n\nsl\ns\n0 2\nse\ns\n2\nsw\ns\n0\n", "session\n_\n2\ne\nk\n\ne\nk2\n\nw\nk\n5\n",
		"resume\n"+rid+"\n"+rsec+"\n", "resume\n"+rid+"\n\n", "resume\nzz\n"+rsec+"\nping\n_\n\n",
		"l\nk\n0\nresume\n"+rid+"\n"+rsec+"\n", "session\n_\n\nresume\n"+rid+"\n"+rsec+"\n",
		"resume\n"+rid+"\n"+rsec+"\nsession\n_\n\nresume\n"+rid+"\n"+rsec+"\nbye\n_\n\n",
		"bye\n_\n\n", "bye\nx\ny\nping\n_\n\n", "l\nk\n0\nbye\n_\n\nl\nk\n0\nping\n_\n\n",
		"session\n_\n\nl\nk\n0\nse\ns\n2\nbye\n_\n\nl\nk\n0\n", "session\n_\n\nl\nk\n0\nl\nk\n5\nbye\n_\n\n",
		"session\r\n_\r\n7\r\nstats\r\n_\r\n\r\nbye\r\n_\r\n\r\n",
	)
	for _, row := range badInputRows {
		seeds = append(seeds, row.raw)
	}
	return seeds
}
