package client

import (
	"context"
	"crypto/tls"
	"os"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/leakcheck"
	"github.com/dflockd/dflockd/internal/testcluster"
	"github.com/dflockd/dflockd/internal/testserver"
	"github.com/dflockd/dflockd/server"
)

// transports are the transports every end-to-end test runs over.
var transports = []string{"tcp", "tls", "unix", "quic"}

// TestMain fails the run if a goroutine outlives the tests: every
// renewal, reader and heartbeat goroutine must be owned and stopped
// (go.uber.org/goleak, retried patiently by leakcheck).
//
// A wait on a raft future stranded by a killed cluster node stays
// until the process exits (testcluster.IgnoreStrandedFutures).
func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m, testcluster.IgnoreStrandedFutures)) }

// testServer is an in-process dflockd server on one loopback listener.
type testServer struct {
	Server    *server.Server
	Engine    *core.Engine
	Transport string
	Addr      string      // endpoint URL to pass to Dial or Lock.Servers
	TLS       *tls.Config // client TLS configuration (tls, quic)
}

// Opts returns client options that reach the server.
func (ts *testServer) Opts() Options { return Options{TLS: ts.TLS} }

// serverConfig tunes startServer.
type serverConfig struct {
	server server.Options
	engine core.Options
	noRun  bool // do not run the engine's expiry loop
}

// startServer runs a server (its own engine) on a loopback listener of the
// named transport and stops it when the test ends. It skips the test when
// the transport is not available in this build.
func startServer(t testing.TB, name string, cfg serverConfig) *testServer {
	t.Helper()
	ts := testserver.Start(t, name, testserver.Config{Server: cfg.server, Engine: cfg.engine, NoRun: cfg.noRun})
	return &testServer{Server: ts.Server, Engine: ts.Engine, Transport: name, Addr: ts.Addr, TLS: ts.TLS}
}

// dial connects a Conn to ts and closes it when the test ends.
func (ts *testServer) dial(t testing.TB) *Conn {
	t.Helper()
	c, err := Dial(ctxT(t), ts.Addr, ts.Opts())
	if err != nil {
		t.Fatalf("Dial %s: %v", ts.Addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ctxT returns a context that ends with the test, bounded to 20s so that
// a hung call fails instead of hanging the run.
func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or 5s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lockStat returns the stats entry of a lock key, if listed.
func lockStat(t testing.TB, c *Conn, key string) (LockStat, bool) {
	t.Helper()
	st, err := c.Stats(ctxT(t))
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	for _, l := range st.Locks {
		if l.Key == key {
			return l, true
		}
	}
	return LockStat{}, false
}

// held reports whether key is a lock with a holder.
func held(t testing.TB, c *Conn, key string) bool {
	l, ok := lockStat(t, c, key)
	return ok && l.OwnerConnID != 0
}

// whenQueued runs fn in a goroutine once key has at least n waiters on
// c's server (or after 5s, letting the test fail on its own). It does not
// use t, so it is safe off the test goroutine; the returned func waits for
// the goroutine to end.
func whenQueued(c *Conn, key string, n int, fn func()) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer fn()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for ctx.Err() == nil {
			if st, err := c.Stats(ctx); err == nil {
				for _, l := range st.Locks {
					if l.Key == key && l.Waiters >= n {
						return
					}
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return func() { <-done }
}
