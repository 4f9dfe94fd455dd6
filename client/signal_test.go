package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dflockd/dflockd/server"
)

// newSignalConn opens a SignalConn to ts and closes it when the test
// ends.
func (ts *testServer) signalConn(t testing.TB, sopts ...SignalOption) *SignalConn {
	t.Helper()
	s, err := NewSignalConn(ctxT(t), ts.Addr, ts.Opts(), sopts...)
	if err != nil {
		t.Fatalf("NewSignalConn: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// recvSignal waits up to 5s for the next signal.
func recvSignal(t testing.TB, s *SignalConn) Signal {
	t.Helper()
	select {
	case sig, ok := <-s.Signals():
		if !ok {
			t.Fatalf("Signals closed: %v", s.Err())
		}
		return sig
	case <-time.After(5 * time.Second):
		t.Fatal("no signal within 5s")
	}
	return Signal{}
}

// TestSignalTransports: listen, emit, receive, groups and unlisten over
// every transport.
func TestSignalTransports(t *testing.T) {
	for _, name := range transports {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, name, serverConfig{})
			ctx := ctxT(t)
			s := ts.signalConn(t)
			pub := ts.dial(t)
			if err := s.Listen(ctx, "jobs.>"); err != nil {
				t.Fatalf("Listen: %v", err)
			}
			if n, err := pub.Emit(ctx, "jobs.new", "  hello world "); err != nil || n != 1 {
				t.Fatalf("Emit = %d, %v; want 1", n, err)
			}
			if sig := recvSignal(t, s); sig != (Signal{Channel: "jobs.new", Payload: "  hello world "}) {
				t.Fatalf("signal %+v", sig)
			}
			// Its own signal comes back too.
			if n, err := s.Emit(ctx, "jobs.self", "me"); err != nil || n != 1 {
				t.Fatalf("own Emit = %d, %v", n, err)
			}
			if sig := recvSignal(t, s); sig.Channel != "jobs.self" || sig.Payload != "me" {
				t.Fatalf("own signal %+v", sig)
			}
			// Queue group: two members, one copy per signal.
			s2 := ts.signalConn(t)
			for _, c := range []*SignalConn{s, s2} {
				if err := c.Listen(ctx, "work.*", WithGroup("w")); err != nil {
					t.Fatalf("Listen group: %v", err)
				}
			}
			for i := range 4 {
				if n, err := pub.Emit(ctx, "work.a", fmt.Sprint(i)); err != nil || n != 1 {
					t.Fatalf("group Emit = %d, %v; want 1", n, err)
				}
			}
			got := 0
			for _, c := range []*SignalConn{s, s2} {
				for range 2 {
					if sig := recvSignal(t, c); sig.Channel != "work.a" {
						t.Fatalf("group signal %+v", sig)
					}
					got++
				}
			}
			if got != 4 {
				t.Fatalf("%d group signals", got)
			}
			st, err := s.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.SignalChannels) != 2 {
				t.Fatalf("signal_channels = %+v", st.SignalChannels)
			}
			if err := s.Unlisten(ctx, "jobs.>"); err != nil {
				t.Fatalf("Unlisten: %v", err)
			}
			if err := s.Unlisten(ctx, "work.*", WithGroup("w")); err != nil {
				t.Fatalf("Unlisten group: %v", err)
			}
			if n, err := pub.Emit(ctx, "jobs.new", "x"); err != nil || n != 0 {
				t.Fatalf("Emit after Unlisten = %d, %v; want 0", n, err)
			}
			if err := s.Listen(ctx, "a.>.b"); !errors.Is(err, ErrServer) {
				t.Fatalf("Listen bad pattern: %v; want ErrServer", err)
			}
			if err := s.Listen(ctx, "a b"); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Listen pattern with space: %v; want ErrInvalid", err)
			}
			if err := s.Listen(ctx, "a", WithGroup("x\ny")); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Listen group with LF: %v; want ErrInvalid", err)
			}
			if err := s.Ping(ctx); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if _, ok := <-s.Signals(); ok {
				t.Fatal("Signals not closed after Close")
			}
			if s.Err() != nil {
				t.Fatalf("Err after Close = %v", s.Err())
			}
			if err := s.Ping(ctx); !errors.Is(err, ErrClosed) {
				t.Fatalf("Ping after Close: %v; want ErrClosed", err)
			}
		})
	}
}

// TestSignalDemux: while another connection floods signals at a
// SignalConn, its own commands (Listen, Emit, Ping, Unlisten) each get
// their own answer, and every frame arrives.
func TestSignalDemux(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "tcp", serverConfig{})
	ctx := ctxT(t)
	s := ts.signalConn(t)
	if err := s.Listen(ctx, "flood"); err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(ctx, "self.*"); err != nil {
		t.Fatal(err)
	}
	const flood, rounds = 2000, 200
	// At most window frames are ever on their way to the receiver, from
	// the flood and from the rounds' own self.x signals together: each
	// producer takes a slot before it publishes a frame and the receiver
	// frees one per frame it takes. The server rightly evicts a listener
	// that falls 64 frames behind and the client drops frames beyond its
	// 64-slot buffer; this test is about demultiplexing, not about a slow
	// consumer, so it stays well inside both.
	const window = 32
	slots := make(chan struct{}, window)
	counts := map[string]int{}
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for sig := range s.Signals() {
			counts[sig.Channel]++
			<-slots
			if counts["flood"] == flood && counts["self.x"] == rounds {
				return
			}
		}
	}()
	pub := ts.dial(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	defer wg.Wait()
	defer close(stop) // runs first: a failing test must not wait for the flood
	take := func() bool {
		select {
		case slots <- struct{}{}:
			return true
		case <-stop:
			return false
		}
	}
	floodErr := make(chan error, 1)
	wg.Go(func() {
		for i := range flood {
			if !take() {
				return
			}
			if n, err := pub.Emit(ctx, "flood", fmt.Sprint("frame ", i)); err != nil || n != 1 {
				floodErr <- fmt.Errorf("flood Emit %d = %d, %v (sigconn err %v)", i, n, err, s.Err())
				return
			}
		}
	})
	for i := range rounds {
		if err := s.Listen(ctx, "other.x"); err != nil {
			t.Fatalf("round %d Listen: %v", i, err)
		}
		take()
		if n, err := s.Emit(ctx, "self.x", "p"); err != nil || n != 1 {
			t.Fatalf("round %d Emit = %d, %v; want 1", i, n, err)
		}
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("round %d Ping: %v", i, err)
		}
		if n, err := s.Emit(ctx, "nobody", "p"); err != nil || n != 0 {
			t.Fatalf("round %d Emit to nobody = %d, %v; want 0", i, n, err)
		}
		if err := s.Unlisten(ctx, "other.x"); err != nil {
			t.Fatalf("round %d Unlisten: %v", i, err)
		}
	}
	wg.Wait()
	select {
	case err := <-floodErr:
		t.Fatal(err)
	default:
	}
	select {
	case <-recvDone:
	case <-time.After(10 * time.Second):
		t.Fatal("not all frames arrived")
	}
	if counts["flood"] != flood || counts["self.x"] != rounds || len(counts) != 2 {
		t.Fatalf("received %v", counts)
	}
	if d := s.DroppedSignals(); d != 0 {
		t.Fatalf("%d signals dropped", d)
	}
}

// TestSignalHeartbeat: the heartbeat keeps a listener alive past a short
// server read timeout; without it the server drops the connection.
func TestSignalHeartbeat(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "tcp", serverConfig{server: server.Options{ReadTimeout: 300 * time.Millisecond}})
	ctx := ctxT(t)
	alive := ts.signalConn(t, WithHeartbeatInterval(80*time.Millisecond))
	silent := ts.signalConn(t, WithHeartbeatInterval(0))
	for _, s := range []*SignalConn{alive, silent} {
		if err := s.Listen(ctx, "hb"); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case _, ok := <-silent.Signals():
		if ok {
			t.Fatal("unexpected signal")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("listener without heartbeat not dropped by the read timeout")
	}
	if silent.Err() == nil {
		t.Fatal("Err() nil after the server dropped the connection")
	}
	time.Sleep(700 * time.Millisecond) // > 3 read timeouts in total
	pub, err := Dial(ctx, ts.Addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if n, err := pub.Emit(ctx, "hb", "still here"); err != nil || n != 1 {
		t.Fatalf("Emit = %d, %v; want 1 listener", n, err)
	}
	if sig := recvSignal(t, alive); sig.Payload != "still here" {
		t.Fatalf("signal %+v", sig)
	}
}

// TestSignalDropped: frames arriving while the app does not drain the
// 64-entry channel are dropped locally and counted.
func TestSignalDropped(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "tcp", serverConfig{})
	ctx := ctxT(t)
	s := ts.signalConn(t)
	if err := s.Listen(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	pub := ts.dial(t)
	const sent = 100
	for i := range sent {
		if n, err := pub.Emit(ctx, "d", fmt.Sprint(i)); err != nil || n != 1 {
			t.Fatalf("Emit %d = %d, %v", i, n, err)
		}
		if i%32 == 31 { // stay well within the server's 64-frame push queue
			eventually(t, "frames read", func() bool { return uint64(len(s.Signals()))+s.DroppedSignals() == uint64(i+1) })
		}
	}
	eventually(t, "all frames read", func() bool { return s.DroppedSignals() == sent-DefaultSignalBuffer })
	for i := range DefaultSignalBuffer {
		if sig := recvSignal(t, s); sig.Payload != fmt.Sprint(i) {
			t.Fatalf("signal %d = %+v", i, sig)
		}
	}
	select {
	case sig := <-s.Signals():
		t.Fatalf("extra signal %+v", sig)
	default:
	}
	// A custom buffer size.
	small := ts.signalConn(t, WithSignalBuffer(2))
	if err := small.Listen(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := pub.Emit(ctx, "d", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "small buffer drops", func() bool { return small.DroppedSignals() == 3 })
}

// TestSignalCancel: a command whose context ends closes the SignalConn,
// which closes Signals.
func TestSignalCancel(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "tcp", serverConfig{})
	s := ts.signalConn(t)
	ctx, cancel := context.WithCancel(ctxT(t))
	cancel()
	if err := s.Ping(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Ping with a done context: %v", err)
	}
	if err := s.Ping(ctxT(t)); err != nil {
		t.Fatalf("Ping after a refused call: %v", err)
	}
	// Server gone: Signals closes and Err reports it.
	ts.Server.Close()
	select {
	case _, ok := <-s.Signals():
		if ok {
			t.Fatal("unexpected signal")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Signals not closed when the server went away")
	}
	if s.Err() == nil {
		t.Fatal("Err() nil after the server closed")
	}
}
