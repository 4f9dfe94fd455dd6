package server

import (
	"context"
	"errors"
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

// Graceful shutdown (§7.6; edge 51).

// shutdownAsync runs ts.Shutdown(ctx) in a goroutine.
func shutdownAsync(ts *testServer, ctx context.Context) <-chan error {
	done := make(chan error, 1)
	go func() { done <- ts.Shutdown(ctx) }()
	return done
}

// Edge 51, as changed by issue 11 #9: Shutdown refuses new dials; closes
// at once, with nothing written, every connection that holds nothing and
// has no request in flight (here an idle one and a pure listener);
// answers blocked `l` and `w` with `error_draining` and closes them; keeps
// connections that hold a lease or a queued place, answers their next
// request with `error_draining` (not executed) and closes them; and
// returns once all sessions ended. The disconnects release the locks.
func TestEdge51_ShutdownDrains(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	h, a, w, b, c, q := ts.dial(t), ts.dial(t), ts.dial(t), ts.dial(t), ts.dial(t), ts.dial(t)
	tok := expectGrant(t, h.Do("l", "k", "0"), "ok", "33")
	ping(t, b)
	c.Expect("listen", "ch.>", "", "ok")
	q.Expect("e", "k", "", "queued")
	chA := bg(a)
	a.Req("l", "k", "30")
	w.Expect("e", "k", "", "queued")
	chW := bg(w)
	w.Req("w", "k", "30")
	eventually(t, "a and w queued", func() bool { return waitersOf(ts.Engine, "k") == 3 })

	done := shutdownAsync(ts, context.Background())
	for name, ch := range map[string]<-chan string{"l": chA, "w": chW} {
		if got := recv(t, ch); got != "error_draining" {
			t.Fatalf("blocked %s answered %q during shutdown; want error_draining", name, got)
		}
	}
	// bg read the answer straight from the socket: the close follows.
	for _, cl := range []*testutil.LineClient{a, w, b, c} {
		cl.ExpectClosed()
	}
	if c, err := net.DialTimeout("tcp", ts.Addr, time.Second); err == nil {
		c.Close()
		t.Fatal("dial succeeded during shutdown; want refused")
	}

	expectQuiet(t, h, 50*time.Millisecond) // the holder stays, untouched
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v while a lease holder was still connected", err)
	default:
	}
	q.Req("l", "k2", "0") // not executed
	expectLine(t, q, "error_draining")
	q.ExpectClosed()
	h.Req("r", "k", tok) // not executed either; the disconnect releases k
	expectLine(t, h, "error_draining")
	h.ExpectClosed()

	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown = %v; want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the last session ended")
	}
	if ts.Connections() != 0 || busy(ts.Engine) || ts.Engine.Keys() != 1 {
		t.Fatalf("after shutdown: %d connections, stats %+v, %d keys; want 0, idle, 1 (k2 never created)",
			ts.Connections(), ts.Engine.Stats(), ts.Engine.Keys())
	}
}

// Issue 11 #9: a connection that holds nothing is closed as soon as the
// drain starts, also one that never authenticated; Shutdown returns at
// once, not after a read timeout.
func TestShutdownClosesIdleConnectionsAtOnce(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{Auth: auth.Token("s3cret")}, core.Options{})
	authed, fresh := ts.dial(t), ts.dial(t)
	authed.Expect("auth", "_", "s3cret", "ok")
	eventually(t, "two connections", func() bool { return ts.Connections() == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v; want nil before its deadline", err)
	}
	authed.ExpectClosed()
	fresh.ExpectClosed()
}

// Issue 11 #9: a connection kept by the drain because it holds a lease is
// closed once the lease runs out, though it never sends anything.
func TestShutdownClosesHolderWhenLeaseEnds(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	ts.drainPoke = 20 * time.Millisecond
	h := ts.dial(t)
	expectGrant(t, h.Do("l", "k", "0 1"), "ok", "1")
	done := shutdownAsync(ts, context.Background())
	h.ExpectClosed() // within ReadDeadline (5 s); the lease is 1 s
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown = %v; want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the holder was closed")
	}
}

// Issue 11 #9: while it waits, Shutdown logs at INFO how many connections
// and leases remain, and that all are closed at the end.
func TestShutdownLogsWhatItWaitsFor(t *testing.T) {
	t.Parallel()
	log, buf := logger()
	ts := start(t, Options{Logger: log}, core.Options{})
	ts.drainReport = 20 * time.Millisecond
	h, idle := ts.dial(t), ts.dial(t)
	tok := expectGrant(t, h.Do("l", "k", "0"), "ok", "33")
	expectGrant(t, h.Do("sl", "s", "0 2"), "ok", "33")
	ping(t, idle)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := shutdownAsync(ts, ctx)
	idle.ExpectClosed()
	eventually(t, "a report of one connection and two leases", func() bool {
		return strings.Contains(buf.String(), "connections=1 leases=2")
	})
	if conns, leases := ts.Remaining(); conns != 1 || leases != 2 {
		t.Fatalf("Remaining = %d, %d; want 1, 2", conns, leases)
	}
	for _, want := range []string{"level=INFO", "force_close_in="} {
		if !strings.Contains(buf.String(), want) {
			t.Fatalf("drain report lacks %q:\n%s", want, buf.String())
		}
	}
	h.Req("r", "k", tok)
	expectLine(t, h, "error_draining")
	if err := <-done; err != nil {
		t.Fatalf("Shutdown = %v; want nil", err)
	}
	if !strings.Contains(buf.String(), "shutdown: all connections closed") {
		t.Fatalf("no closing line:\n%s", buf.String())
	}
}

// Issue 11 #9: closing idle connections never races a request. Clients
// lock and release their own keys in a loop while the drain starts, with
// auto-release off so that a lock the server took but never answered
// would stay behind: at the end the held leases must be exactly those
// that clients were told they hold and could not release.
func TestShutdownNeverHalfProcessesARequest(t *testing.T) {
	t.Parallel()
	const clients = 12
	ts := start(t, Options{}, core.Options{KeepOnDisconnect: true})
	var (
		fail    errs
		wg      sync.WaitGroup
		held    atomic.Int32
		started sync.WaitGroup
		answers atomic.Int32
	)
	started.Add(clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cw, err := dialWire(ts.Addr)
			if err != nil {
				fail.add(err)
				started.Done()
				return
			}
			defer cw.close()
			key := fmt.Sprintf("k%d", i)
			first := true
			for {
				line, err := cw.do("l", key, "0 600")
				if first {
					started.Done()
					first = false
				}
				if err != nil { // closed between requests: nothing held
					return
				}
				answers.Add(1)
				f := strings.Fields(line)
				if line == "error_draining" {
					return
				}
				if len(f) != 3 || f[0] != "ok" {
					fail.add(fmt.Errorf("l answered %q", line))
					return
				}
				line, err = cw.do("r", key, f[1])
				if err != nil || line == "error_draining" {
					held.Add(1) // told it holds the lock, could not release it
					return
				}
				if line != "ok" {
					fail.add(fmt.Errorf("r answered %q", line))
					return
				}
			}
		}()
	}
	started.Wait()
	eventually(t, "traffic", func() bool { return answers.Load() > 10*clients })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v; want nil", err)
	}
	wg.Wait()
	fail.check(t)
	if got, want := ts.Engine.Leases(), int(held.Load()); got != want {
		t.Fatalf("%d leases left after shutdown; clients were told they hold %d", got, want)
	}
}

// Edge 51: when Shutdown's context ends first, the remaining connections
// are force-closed (no bytes written), their locks released by the
// normal disconnect cleanup, and Shutdown returns the context's error.
func TestEdge51_ShutdownDeadlineForceCloses(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a, b, c := ts.dial(t), ts.dial(t), ts.dial(t)
	expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	expectGrant(t, a.Do("sl", "s", "0 2"), "ok", "33")
	b.Expect("e", "k", "", "queued")
	ping(t, c)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	begin := time.Now()
	err := ts.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v; want context.DeadlineExceeded", err)
	}
	if el := time.Since(begin); el < 150*time.Millisecond {
		t.Fatalf("Shutdown returned after %v; want it to wait for its context", el)
	}
	for _, cl := range []interface{ ExpectClosed() }{a, b, c} {
		cl.ExpectClosed()
	}
	if ts.Connections() != 0 {
		t.Fatalf("%d connections after a forced shutdown", ts.Connections())
	}
	if busy(ts.Engine) {
		t.Fatalf("locks or waiters left after force-close: %+v", ts.Engine.Stats())
	}
}

// §7.6: Close ends everything at once, including blocked requests, and
// Serve returns ErrServerClosed (checked by start's cleanup).
func TestServer_CloseEndsBlockedSessions(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a, b := ts.dial(t), ts.dial(t)
	expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	b.Req("l", "k", "30")
	eventually(t, "b queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	a.ExpectClosed()
	// b's blocked l was cancelled: it may see `error_draining` before the
	// close.
	_ = b.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var buf [64]byte
	var got []byte
	for {
		n, err := b.Conn.Read(buf[:])
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	if s := string(got); s != "" && s != "error_draining\n" {
		t.Fatalf("b received %q; want nothing or error_draining", s)
	}
	if ts.Connections() != 0 || busy(ts.Engine) {
		t.Fatalf("after Close: %d connections, stats %+v", ts.Connections(), ts.Engine.Stats())
	}
	if err := ts.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown after Close = %v; want nil", err)
	}
}

// Conformance (issue 11 #9): over every transport, the drain closes an
// idle connection at once, answers a blocked l with error_draining, and
// keeps a lease holder, whose connection still reads after the poke (the
// read deadline moved and moved back) and answers its next request with
// error_draining.
func confShutdownDrain(t *testing.T, name string) {
	if name == "quic" {
		// Closing a QUIC listener closes its connections and UDP socket
		// (transport/quic.go), so a drain cannot keep QUIC sessions.
		t.Skip("quic: the listener's Close ends every connection at once")
	}
	cs := serveConformance(t, name, Options{})
	h, idle, a := cs.dial(t), cs.dial(t), cs.dial(t)
	tok := expectGrant(t, h.Do("l", "k", "0"), "ok", "33")
	ping(t, idle)
	chA := bg(a)
	a.Req("l", "k", "30")
	eventually(t, "a queued", func() bool { return waitersOf(cs.Engine, "k") == 1 })
	done := make(chan error, 1)
	go func() { done <- cs.Shutdown(context.Background()) }()
	if got := recv(t, chA); got != "error_draining" {
		t.Fatalf("blocked l answered %q during shutdown; want error_draining", got)
	}
	idle.ExpectClosed()
	a.ExpectClosed()
	h.Req("r", "k", tok)
	expectLine(t, h, "error_draining")
	h.ExpectClosed()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown = %v; want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the last session ended")
	}
}
