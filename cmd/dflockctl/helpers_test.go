package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dflockd/dflockd/client"
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/leakcheck"
	"github.com/dflockd/dflockd/internal/testcluster"
	"github.com/dflockd/dflockd/internal/testutil"
	"github.com/dflockd/dflockd/server"
)

// TestMain fails the run if a goroutine of dflockctl, the client, the
// server or the engine (or anything else) outlives the tests
// (go.uber.org/goleak, retried patiently by leakcheck).
//
// A wait on a raft future stranded by a killed cluster node stays
// until the process exits (testcluster.IgnoreStrandedFutures).
func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m, testcluster.IgnoreStrandedFutures)) }

// testServer is an in-process dflockd on a loopback TCP port.
type testServer struct {
	addr   string
	engine *core.Engine
}

// startServer runs a server until the test ends. With a clock, the
// engine reads time from it and its expiry loop is not started: the test
// advances the clock and calls Sweep itself.
func startServer(t *testing.T, clk *testutil.Clock, opts server.Options) *testServer {
	t.Helper()
	eopts := core.Options{}
	if clk != nil {
		eopts.Now = clk.Now
	}
	engine := core.New(eopts)
	opts.Engine = engine
	srv := server.New(opts)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	if clk == nil {
		go func() { defer close(runDone); _ = engine.Run(ctx) }()
	} else {
		close(runDone)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, server.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
		cancel()
		<-runDone
	})
	return &testServer{addr: l.Addr().String(), engine: engine}
}

// dial opens a client connection that is closed when the test ends.
func (ts *testServer) dial(t *testing.T) *client.Conn {
	t.Helper()
	c, err := client.Dial(testCtx(t), ts.addr, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// stats returns the server's stats.
func (ts *testServer) stats(t *testing.T, c *client.Conn) *client.Stats {
	t.Helper()
	st, err := c.Stats(testCtx(t))
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	return st
}

// testCtx is a context that ends with the test, bounded so that a hung
// call fails instead of hanging the run.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// proc is one in-process run of dflockctl.
type proc struct {
	stdout, stderr testutil.SyncBuffer
	done           chan struct{}
	code           int // valid once done is closed
	cancel         context.CancelFunc
}

// start runs dflockctl with args (and the environment env) in a
// goroutine. When the test ends the run is cancelled, which stops a
// command it is running, and waited for.
func start(t *testing.T, env map[string]string, args ...string) *proc {
	t.Helper()
	return startIn(t, strings.NewReader(""), env, args...)
}

// startIn is start with stdin as dflockctl's standard input.
func startIn(t *testing.T, stdin io.Reader, env map[string]string, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	p := &proc{done: make(chan struct{}), cancel: cancel}
	getenv := func(k string) string { return env[k] }
	go func() {
		defer close(p.done)
		p.code = run(ctx, args, stdin, &p.stdout, &p.stderr, getenv)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
	})
	return p
}

// wait waits for the run to end and returns its exit status.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(10 * time.Second):
		t.Fatalf("dflockctl did not exit; stderr:\n%s", p.stderr.String())
		return -1
	}
}

// runCLI runs dflockctl to completion.
func runCLI(t *testing.T, env map[string]string, args ...string) *proc {
	t.Helper()
	p := start(t, env, args...)
	p.wait(t)
	return p
}

// eventually polls cond every 5ms until it holds, failing after 5s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// exists reports whether path exists.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// readPID waits for the command run by p to write its pid to path, and
// makes sure that process is killed when the test ends, should p still be
// running then (once p is done it has reaped the process, and the pid may
// belong to someone else).
func readPID(t *testing.T, p *proc, path string) int {
	t.Helper()
	var pid int
	eventually(t, "the command's pid in "+filepath.Base(path), func() bool {
		b, err := os.ReadFile(path)
		if err != nil || !bytes.HasSuffix(b, []byte("\n")) {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0
	})
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return pid
}

// alive reports whether process pid exists. dflockctl reaps its command
// before it returns, so afterwards a dead command does not linger as a
// zombie.
func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// lockHeld reports whether key is a lock with a holder.
func lockHeld(st *client.Stats, key string) bool {
	for _, l := range st.Locks {
		if l.Key == key && l.OwnerConnID != 0 {
			return true
		}
	}
	return false
}

// lockWaiters returns the number of waiters of lock key.
func lockWaiters(st *client.Stats, key string) int {
	for _, l := range st.Locks {
		if l.Key == key {
			return l.Waiters
		}
	}
	return 0
}
