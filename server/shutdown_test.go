package server

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
)

// Graceful shutdown (§7.6; edge 51).

// shutdownAsync runs ts.Shutdown(ctx) in a goroutine.
func shutdownAsync(ts *testServer, ctx context.Context) <-chan error {
	done := make(chan error, 1)
	go func() { done <- ts.Shutdown(ctx) }()
	return done
}

// Edge 51: Shutdown cancels a blocked `l` (`error`), refuses new dials,
// answers the next request of every connection with `error_draining` and
// closes it without executing it, and returns once all sessions ended;
// the disconnects release the locks.
func TestEdge51_ShutdownDrains(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	h, a, b := ts.dial(t), ts.dial(t), ts.dial(t)
	tok := expectGrant(t, h.Do("l", "k", "0"), "ok", "33")
	ping(t, b)
	chA := bg(a)
	a.Req("l", "k", "30")
	eventually(t, "a queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })

	done := shutdownAsync(ts, context.Background())
	if got := recv(t, chA); got != "error" {
		t.Fatalf("blocked l answered %q during shutdown; want error", got)
	}
	if c, err := net.DialTimeout("tcp", ts.Addr, time.Second); err == nil {
		c.Close()
		t.Fatal("dial succeeded during shutdown; want refused")
	}

	b.Req("l", "k2", "0") // not executed
	expectLine(t, b, "error_draining")
	b.ExpectClosed()
	a.Req("ping", "_", "")
	expectLine(t, a, "error_draining")
	a.ExpectClosed()

	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v while a session was still open", err)
	case <-time.After(50 * time.Millisecond):
	}
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
	// b's blocked l was cancelled: it may see `error` before the close.
	_ = b.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var buf [64]byte
	for {
		n, err := b.Conn.Read(buf[:])
		if err != nil {
			break
		}
		if got := string(buf[:n]); got != "error\n" {
			t.Fatalf("b received %q; want nothing or error", got)
		}
	}
	if ts.Connections() != 0 || busy(ts.Engine) {
		t.Fatalf("after Close: %d connections, stats %+v", ts.Connections(), ts.Engine.Stats())
	}
	if err := ts.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown after Close = %v; want nil", err)
	}
}
