package client

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/internal/faultproxy"
)

// proxied is a TCP test server behind a fault-injecting proxy.
type proxied struct {
	*testServer
	proxy *faultproxy.Proxy
	// Addr of the proxy, for clients that should see the faults.
	via string
}

// startProxied runs a TCP server and a faultproxy in front of it; both
// stop when the test ends.
func startProxied(t testing.TB, cfg serverConfig) *proxied {
	t.Helper()
	ts := startServer(t, "tcp", cfg)
	p, err := faultproxy.Listen(t.Context(), strings.TrimPrefix(ts.Addr, "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &proxied{testServer: ts, proxy: p, via: p.Addr()}
}

// TestSignalReconnect: with WithReconnect, a SignalConn whose connection is
// cut dials again and re-issues its listens (with their groups, without
// the ones it unlistened), so signals flow again; signals emitted while it
// cannot connect are lost. Without the option, the cut ends it.
func TestSignalReconnect(t *testing.T) {
	t.Parallel()
	ps := startProxied(t, serverConfig{})
	ctx := ctxT(t)
	s, err := NewSignalConn(ctx, ps.via, Options{}, WithReconnect(0), WithHeartbeatInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	plain, err := NewSignalConn(ctx, ps.via, Options{}, WithHeartbeatInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	pub := ps.dial(t) // direct: never cut

	for _, l := range []struct {
		pattern string
		opts    []ListenOption
	}{{"a.*", nil}, {"jobs", []ListenOption{WithGroup("workers")}}, {"gone", nil}} {
		if err := s.Listen(ctx, l.pattern, l.opts...); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Unlisten(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := plain.Listen(ctx, "plain"); err != nil {
		t.Fatal(err)
	}
	emit := func(ch, payload string, want int) {
		t.Helper()
		if n, err := pub.Emit(ctx, ch, payload); err != nil || n != want {
			t.Fatalf("Emit(%s) = %d, %v; want %d receivers", ch, n, err, want)
		}
	}
	emit("a.1", "before", 1)
	emit("plain", "before", 1)
	for _, sc := range []*SignalConn{s, plain} {
		if sig := recvSignal(t, sc); sig.Payload != "before" {
			t.Fatalf("signal %+v", sig)
		}
	}

	if n := ps.proxy.CutAll(); n != 2 {
		t.Fatalf("cut %d connections; want 2", n)
	}
	eventually(t, "the SignalConn to reconnect and listen again", func() bool { return s.Reconnects() == 1 })
	emit("a.2", "after", 1)
	if sig := recvSignal(t, s); sig != (Signal{Channel: "a.2", Payload: "after"}) {
		t.Fatalf("signal after reconnecting %+v", sig)
	}
	emit("jobs", "job", 1) // the group came back
	if sig := recvSignal(t, s); sig.Channel != "jobs" {
		t.Fatalf("group signal %+v", sig)
	}
	emit("gone", "x", 0) // unlistened before the cut: not re-issued

	// The plain SignalConn ended with the cut.
	select {
	case _, ok := <-plain.Signals():
		if ok {
			t.Fatal("the plain SignalConn delivered a signal after the cut")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the plain SignalConn's Signals not closed after the cut")
	}
	if plain.Err() == nil {
		t.Fatal("plain SignalConn: Err = nil after a cut")
	}

	// An outage: what is emitted meanwhile is lost.
	ps.proxy.Refuse(true)
	ps.proxy.CutAll()
	eventually(t, "reconnection attempts to be refused", func() bool { return ps.proxy.Refused() >= 2 })
	emit("a.3", "lost", 0)
	if err := s.Ping(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ping while disconnected = %v; want ErrClosed", err)
	}
	ps.proxy.Refuse(false)
	eventually(t, "the SignalConn to reconnect after the outage", func() bool { return s.Reconnects() == 2 })
	emit("a.4", "back", 1)
	if sig := recvSignal(t, s); sig.Payload != "back" {
		t.Fatalf("first signal after the outage %+v; want a.4 (a.3 was emitted while away)", sig)
	}
}

// TestSignalReconnectWindow: reconnecting gives up after the window; the
// SignalConn then ends as without WithReconnect, and Err says why.
func TestSignalReconnectWindow(t *testing.T) {
	t.Parallel()
	ps := startProxied(t, serverConfig{})
	ctx := ctxT(t)
	s, err := NewSignalConn(ctx, ps.via, Options{}, WithReconnect(300*time.Millisecond), WithHeartbeatInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Listen(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	ps.proxy.Refuse(true)
	ps.proxy.CutAll()
	select {
	case _, ok := <-s.Signals():
		if ok {
			t.Fatal("signal during an outage")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Signals not closed 10s into an outage with a 300ms window")
	}
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "not reconnected within") {
		t.Fatalf("Err = %v; want the window's error", err)
	}
	if s.Reconnects() != 0 {
		t.Fatalf("Reconnects = %d", s.Reconnects())
	}
}
