package server

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/testutil"
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

// goodClient is a well-behaved client working next to a hostile one: on
// its own connection it takes, checks and releases its own lock and pings,
// round after round, and every answer must be exactly right. It runs in
// its own goroutine (errors are collected, not fatal) until finish.
type goodClient struct {
	rounds atomic.Int64
	stop   chan struct{}
	done   chan struct{}
	e      errs
}

// startGood starts a well-behaved client on addr using key.
func startGood(t *testing.T, addr, key string, dial func(string) (*wire, error)) *goodClient {
	t.Helper()
	if dial == nil {
		dial = dialWire
	}
	w, err := dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	g := &goodClient{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(g.done)
		defer w.close()
		for {
			select {
			case <-g.stop:
				return
			default:
			}
			line, err := w.do("l", key, "0 7")
			m := grantRE.FindStringSubmatch(line)
			if err != nil || m == nil || m[1] != "ok" || m[3] != "7" {
				g.e.add(fmt.Errorf("good client: l %s = %q, %v", key, line, err))
				return
			}
			if line, err := w.do("r", key, m[2]); line != "ok" || err != nil {
				g.e.add(fmt.Errorf("good client: r = %q, %v", line, err))
				return
			}
			if line, err := w.do("ping", "_", ""); line != "ok" || err != nil {
				g.e.add(fmt.Errorf("good client: ping = %q, %v", line, err))
				return
			}
			g.rounds.Add(1)
		}
	}()
	t.Cleanup(func() { g.halt() })
	return g
}

func (g *goodClient) halt() {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	<-g.done
}

// progress waits until the good client has completed n more rounds,
// showing it is served while the hostile client is being dealt with.
func (g *goodClient) progress(t *testing.T, n int64) {
	t.Helper()
	from := g.rounds.Load()
	eventually(t, "good client served", func() bool {
		select {
		case <-g.done:
			return true // stopped by an error: reported below
		default:
		}
		return g.rounds.Load() >= from+n
	})
	g.e.check(t)
}

// finish stops the good client and fails on any wrong answer it saw.
func (g *goodClient) finish(t *testing.T) {
	t.Helper()
	g.halt()
	g.e.check(t)
	if g.rounds.Load() == 0 {
		t.Fatal("good client completed no round")
	}
}

// Slowloris: many connections trickle a request one byte at a time, each
// byte well within the read timeout but the line as a whole slower than
// it. Each gets `error` and a close about one read timeout after its line
// began (the deadline is per line, not per byte; see also
// TestReadTimeout_PerLineDeadline), holding nothing; a well-behaved client
// is served throughout.
func TestHostile_Slowloris(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	ts := start(t, Options{ReadTimeout: timeout}, core.Options{})
	g := startGood(t, ts.Addr, "good", nil)
	const n = 20
	type result struct {
		err     error
		elapsed time.Duration
	}
	results := make(chan result, n)
	for i := range n {
		go func() {
			c, err := net.DialTimeout("tcp", ts.Addr, 5*time.Second)
			if err != nil {
				results <- result{err: err}
				return
			}
			defer c.Close()
			start := time.Now()
			req := fmt.Sprintf("l\nslow%d-%s\n0\n", i, strings.Repeat("k", 200))
			stop := time.Now().Add(10 * time.Second)
			go func() { // trickle until the server closes or 10s pass
				for j := 0; j < len(req) && time.Now().Before(stop); j++ {
					if _, err := c.Write([]byte{req[j]}); err != nil {
						return
					}
					time.Sleep(timeout / 6)
				}
			}()
			_ = c.SetReadDeadline(stop)
			line, err := bufio.NewReader(c).ReadString('\n')
			if line != "error\n" {
				results <- result{err: fmt.Errorf("slowloris got %q, %v; want error", line, err)}
				return
			}
			results <- result{elapsed: time.Since(start)}
		}()
	}
	g.progress(t, 20)
	for range n {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.elapsed < timeout*3/4 || r.elapsed > timeout+5*time.Second {
			t.Fatalf("slowloris cut after %v; want about %v", r.elapsed, timeout)
		}
	}
	eventually(t, "slowloris sessions gone", func() bool { return ts.Connections() == 1 })
	g.progress(t, 5)
	g.finish(t)
	if _, ok := findLock(ts.Engine.Stats().Locks, "good"); ok || busy(ts.Engine) {
		t.Fatalf("locks left: %+v", ts.Engine.Stats())
	}
}

// A client that pipelines large requests and never reads its answers is
// closed by the write timeout (TestEdge48_WriteTimeoutClosesNonReadingClient
// shows the close itself); a well-behaved client keeps being served
// while that write is blocked and after.
func TestHostile_NeverReadsAnswers(t *testing.T) {
	t.Parallel()
	ts := startSmallSend(t, Options{WriteTimeout: 200 * time.Millisecond})
	g := startGood(t, ts.Addr, "good", nil)
	g.progress(t, 5)
	bad := ts.dial(t)
	ping(t, bad)
	bad.Send(strings.Repeat("stats\n_\n\n", statsRequests))
	g.progress(t, 10)
	eventually(t, "non-reading client dropped", func() bool { return ts.Connections() == 1 })
	g.progress(t, 10)
	g.finish(t)
}

// A client that floods requests behind a blocked `l` is dropped once it
// has sent more than the 4 KiB read buffer (see
// TestPipeline_OverflowWhileBlockedDropsConnection); one that pipelines
// less is answered in order when the lock comes. The holder, and a
// well-behaved client on another key, are unaffected.
func TestHostile_PipelineFloodWhileBlocked(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	g := startGood(t, ts.Addr, "good", nil)
	holder := ts.dial(t)
	tok := expectGrant(t, holder.Do("l", "x", "0"), "ok", "33")

	flood := ts.dial(t)
	polite := ts.dial(t)
	flood.Req("l", "x", "30")
	eventually(t, "flooder queued", func() bool { return waitersOf(ts.Engine, "x") == 1 })
	polite.Send("l\nx\n30\n" + strings.Repeat("ping\n_\n\n", 400)) // 3.6 KB behind the l
	eventually(t, "polite client queued", func() bool { return waitersOf(ts.Engine, "x") == 2 })
	g.progress(t, 5)
	for range 16 { // 64 KiB in all; writes fail once the server has closed
		if _, err := flood.Conn.Write([]byte(strings.Repeat("ping\n_\n\n", 512))); err != nil {
			break
		}
	}
	flood.ExpectClosed()
	eventually(t, "flooder's waiter removed", func() bool { return waitersOf(ts.Engine, "x") == 1 })
	g.progress(t, 5)
	holder.Expect("n", "x", tok, "ok 33")
	holder.Expect("r", "x", tok, "ok")
	expectGrant(t, polite.ReadLine(), "ok", "33")
	for i := range 400 {
		if got := polite.ReadLine(); got != "ok" {
			t.Fatalf("pipelined ping %d = %q", i, got)
		}
	}
	g.finish(t)
}

// A subscriber that never reads is evicted as a slow consumer (see
// TestPubSub_Edge39_SlowConsumerEvicted and
// TestPubSub_Edge42_EvictionDoesNotStallOthers); the publisher gets every
// answer, a reading listener every frame in order, and a well-behaved
// lock client keeps being served.
func TestHostile_SubscriberNeverReads(t *testing.T) {
	t.Parallel()
	ts := startSmallSendPS(t, Options{PushQueue: 4})
	g := startGood(t, ts.Addr, "good", nil)
	stalled := mustDialPS(t, ts.Addr)
	mustExpect(t, stalled, "listen", "big", "", "ok")
	reader := mustDialPS(t, ts.Addr)
	mustExpect(t, reader, "listen", "big", "", "ok")
	p := ts.dial(t)
	// The reading listener checks every frame, in order, and acknowledges
	// it: the publisher goes in lock-step with it, so only the stalled
	// subscriber can fall behind.
	acks := make(chan error, 1)
	go func() {
		_ = reader.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		for i := 0; ; i++ {
			line, err := reader.r.ReadString('\n')
			if err != nil {
				acks <- fmt.Errorf("reader: frame %d: %v", i, err)
				return
			}
			if seq, ok := bigSeq(strings.TrimSuffix(line, "\n"), "big"); !ok || seq != i {
				acks <- fmt.Errorf("reader: frame %d = %.40q", i, line)
				return
			}
			acks <- nil
		}
	}()
	ack := func(i int) {
		t.Helper()
		select {
		case err := <-acks:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("reader did not receive frame %d", i)
		}
	}
	evicted := -1
	for i := 0; i < 2000 && evicted < 0; i++ {
		switch line := p.Do("signal", "big", bigPayload(i)); line {
		case "ok 2":
		case "ok 1":
			evicted = i
		default:
			t.Fatalf("signal %d = %q", i, line)
		}
		ack(i)
	}
	if evicted < 0 {
		t.Fatal("the stalled subscriber was never evicted")
	}
	for i := evicted + 1; i < evicted+20; i++ {
		p.Expect("signal", "big", bigPayload(i), "ok 1")
		ack(i)
	}
	if sc := slowConsumers(t, p); sc != 1 {
		t.Fatalf("slow_consumers = %d; want 1", sc)
	}
	g.progress(t, 5)
	g.finish(t)
}

// Auth brute force: N parallel wrong-token attempts from one address.
// The failure limiter lets only DefaultAuthFailures of them be answered
// (error_auth, after the ~100 ms pause, then a close); the others are
// closed without an answer, their guess never judged. The pauses run side
// by side: all N end in far less than N pauses. A client with the right
// token from another address, arriving while they pause or after the
// block began, is answered at once; the guessing address is blocked.
func TestHostile_AuthBruteForceParallel(t *testing.T) {
	t.Parallel()
	// The limiter's clock stands still, so the block outlasts the test;
	// the pause runs on real time.
	ts := start(t, Options{Auth: auth.Token("s3cret"), now: testutil.NewClock().Now}, core.Options{})
	other := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	probe, err := other.Dial("tcp", ts.Addr)
	if err != nil {
		t.Skipf("cannot dial from 127.0.0.2: %v", err)
	}
	probe.Close()
	const n = 12
	begin := time.Now()
	var wg sync.WaitGroup
	var failures errs
	var answered atomic.Int32
	started := make(chan struct{}, n)
	for i := range n {
		wg.Go(func() {
			w, err := dialWire(ts.Addr)
			if err != nil {
				failures.add(err)
				started <- struct{}{}
				return
			}
			defer w.close()
			sent := time.Now()
			err = w.send("auth", "_", fmt.Sprintf("guess-%d", i))
			started <- struct{}{}
			if err != nil {
				failures.add(fmt.Errorf("attempt %d: send: %v", i, err))
				return
			}
			line, err := w.readLine()
			switch {
			case err == nil && line == "error_auth":
				answered.Add(1)
				if el := time.Since(sent); el < authFailPause*3/4 {
					failures.add(fmt.Errorf("attempt %d answered after %v; want the %v pause first", i, el, authFailPause))
				}
				if _, err := w.readLine(); err == nil || isTimeout(err) {
					failures.add(fmt.Errorf("attempt %d: not closed: %v", i, err))
				}
			case err == nil:
				failures.add(fmt.Errorf("attempt %d: %q; want error_auth or a close", i, line))
			case isTimeout(err):
				failures.add(fmt.Errorf("attempt %d: neither answered nor closed", i))
			}
		})
	}
	for range n {
		<-started
	}
	// All attempts are in (or past) their pause: the right token from
	// another address is served now, not after them.
	gc, err := other.Dial("tcp", ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	good := testutil.NewLineClient(t, gc)
	askedAt := time.Now()
	good.Expect("auth", "_", "s3cret", "ok")
	authIn := time.Since(askedAt)
	tok := expectGrant(t, good.Do("l", "k", "0"), "ok", "33")
	good.Expect("r", "k", tok, "ok")
	wg.Wait()
	all := time.Since(begin)
	failures.check(t)
	if got := answered.Load(); got != DefaultAuthFailures {
		t.Fatalf("%d of %d parallel wrong attempts answered; want %d (the rest refused unjudged)", got, n, DefaultAuthFailures)
	}
	if limit := n / 2 * authFailPause; all >= limit {
		t.Fatalf("%d parallel wrong attempts took %v; want well under %v (the pause is per connection)", n, all, limit)
	}
	if limit := n / 2 * authFailPause; authIn >= limit {
		t.Fatalf("correct token answered after %v; want it not to wait for the failing attempts", authIn)
	}
	// The guessing address is blocked now, even with the right token.
	expectRefused(t, ts.dial(t).Conn)
	t.Logf("%d parallel failures in %v; correct auth from another address answered in %v", n, all, authIn)
}

// Per-IP cap: a host that opens many connections gets only its share;
// the excess is closed without a byte (see TestMaxConnsPerIP), and a
// client from another address keeps being served and can still connect.
func TestHostile_PerIPConnectionFlood(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{MaxConnsPerIP: 3}, core.Options{})
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	probe, err := d.Dial("tcp", ts.Addr)
	if err != nil {
		t.Skipf("cannot dial from 127.0.0.2: %v", err)
	}
	probe.Close()
	eventually(t, "probe gone", func() bool { return ts.Connections() == 0 })
	g := startGood(t, ts.Addr, "good", nil) // from 127.0.0.1
	const flood = 40
	conns := make([]net.Conn, 0, flood)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range flood {
		c, err := d.Dial("tcp", ts.Addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	admitted := 0
	for _, c := range conns {
		_, _ = c.Write([]byte("ping\n_\n\n"))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		switch {
		case line == "ok\n":
			admitted++
		case line == "" && err != nil && !isTimeout(err):
			// refused: closed without a byte
		default:
			t.Fatalf("flood connection: %q, %v", line, err)
		}
	}
	if admitted != 3 {
		t.Fatalf("%d of %d connections from one address admitted; want 3", admitted, flood)
	}
	g.progress(t, 10)
	other := ts.dial(t) // 127.0.0.1 still has room
	ping(t, other)
	g.finish(t)
}

// Oversized lines and payloads, NUL bytes and invalid UTF-8, sent by many
// connections at once (the exact answers per request are in the bad-input
// table): each hostile connection gets exactly what the table says, a
// listener receives a maximal payload intact, and a well-behaved client is
// served throughout.
func TestHostile_GarbageFlood(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	g := startGood(t, ts.Addr, "good", nil)
	listener := ts.dial(t)
	listener.Expect("listen", "c", "", "ok")
	garbage := []struct {
		raw  string
		want string
		open bool
	}{
		{"l\n" + strings.Repeat("\x00", 1<<20) + "\n0\n", "error", false},
		{"l\n" + strings.Repeat("\xff\xfe", 1<<19) + "\n0\n", "error", false},
		{"signal\nc\n" + strings.Repeat("\x00", 64<<10+1) + "\n", "error", false},
		{strings.Repeat("\x00\x01\xff\n", 3000) + "ping\n_\n\n", "", true}, // 1000 requests
		{"signal\nc\n" + strings.Repeat("p", 65536-4-1-3) + "\xc3\x28\n", "ok 1", true},
	}
	var wg sync.WaitGroup
	var failures errs
	for round := range 3 {
		for i, gb := range garbage {
			wg.Go(func() {
				w, err := dialWire(ts.Addr)
				if err != nil {
					failures.add(err)
					return
				}
				defer w.close()
				go func() { _, _ = w.conn.Write([]byte(gb.raw)) }()
				if gb.want == "" { // 1000 unknown-command answers, then ping
					for j := range 1001 {
						want := "error"
						if j == 1000 {
							want = "ok"
						}
						if line, err := w.readLine(); line != want || err != nil {
							failures.add(fmt.Errorf("round %d garbage %d answer %d = %q, %v", round, i, j, line, err))
							return
						}
					}
				} else if line, err := w.readLine(); line != gb.want || err != nil {
					failures.add(fmt.Errorf("round %d garbage %d = %q, %v; want %q", round, i, line, err, gb.want))
					return
				}
				if gb.open {
					if line, err := w.do("ping", "_", ""); line != "ok" || err != nil {
						failures.add(fmt.Errorf("round %d garbage %d: ping = %q, %v", round, i, line, err))
					}
				} else if line, err := w.readLine(); err == nil || isTimeout(err) {
					failures.add(fmt.Errorf("round %d garbage %d: not closed (%q, %v)", round, i, line, err))
				}
			})
		}
	}
	wg.Wait()
	failures.check(t)
	want := "sig c " + strings.Repeat("p", 65536-4-1-3) + "\xc3\x28"
	for range 3 {
		if got := listener.ReadLine(); got != want {
			t.Fatalf("listener got %d bytes %.40q; want the maximal frame intact", len(got), got)
		}
	}
	g.progress(t, 5)
	g.finish(t)
	eventually(t, "hostile sessions gone", func() bool { return ts.Connections() == 1 })
	if busy(ts.Engine) || ts.Engine.Keys() > 1 {
		t.Fatalf("garbage left state: %d keys, %+v", ts.Engine.Keys(), ts.Engine.Stats())
	}
}
