package server

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/testutil"
)

// testServer is a server on a loopback port with its engine.
type testServer struct {
	*Server
	Engine *core.Engine
	Addr   string
}

// start runs a server on 127.0.0.1:0 and stops it when the test ends.
// A nil engine gets a default one whose expiry loop runs too.
func start(t testing.TB, opts Options, eopts core.Options) *testServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startOn(t, l, opts, eopts, true)
}

// startOn serves l like start. With run unset the engine's Run loop is
// not started, so the test drives expiry and GC alone.
func startOn(t testing.TB, l net.Listener, opts Options, eopts core.Options, run bool) *testServer {
	t.Helper()
	if opts.Engine == nil {
		opts.Engine = core.New(eopts)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	if run {
		go func() { defer close(runDone); _ = opts.Engine.Run(ctx) }()
	} else {
		close(runDone)
	}
	s := New(opts)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-served; err != ErrServerClosed {
			t.Errorf("Serve returned %v; want ErrServerClosed", err)
		}
		cancel()
		<-runDone
	})
	return &testServer{Server: s, Engine: opts.Engine, Addr: l.Addr().String()}
}

func (ts *testServer) dial(t testing.TB) *testutil.LineClient { return testutil.Dial(t, ts.Addr) }

// eventually polls cond every few milliseconds until it holds or 5s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
