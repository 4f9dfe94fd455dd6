// Package testserver runs an in-process dflockd server on a loopback
// listener of any registered transport, for tests in packages that sit
// above the server (client, chaos, linearizability, ...). Every server is
// stopped by the test that started it.
package testserver

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/testutil"
	"github.com/dflockd/dflockd/server"
	"github.com/dflockd/dflockd/transport"
)

// Transports lists every transport a conformance-style test should cover.
var Transports = []string{"tcp", "tls", "unix", "quic"}

// Config tunes Start.
type Config struct {
	Server server.Options // Engine is ignored: Start makes one from Engine below
	Engine core.Options
	NoRun  bool // do not run the engine's expiry loop (the test drives it)
}

// Server is a running in-process server.
type Server struct {
	Server    *server.Server
	Engine    *core.Engine
	Transport string
	// Addr is the endpoint URL ("tcp://127.0.0.1:1234", "unix:///tmp/x/s.sock")
	// for transport.ParseEndpoint or client.Dial.
	Addr     string
	Endpoint transport.Endpoint
	TLS      *tls.Config // client TLS configuration (tls, quic); nil otherwise
}

// Start runs a server (with its own engine) on a loopback listener of the
// named transport and stops it when the test ends. It skips the test when
// the transport is not available in this build.
func Start(t testing.TB, name string, cfg Config) *Server {
	t.Helper()
	ts := &Server{Transport: name}
	ep := transport.Endpoint{Transport: name, Addr: "127.0.0.1:0"}
	var topts transport.Options
	switch name {
	case "tls", "quic":
		srvTLS, cliTLS := testutil.SelfSigned(t)
		topts.TLS, ts.TLS = srvTLS, cliTLS
	case "unix":
		// Not t.TempDir: socket paths must stay short (108 bytes).
		dir, err := os.MkdirTemp("", "dfl")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		ep.Addr = filepath.Join(dir, "s.sock")
	}
	if _, err := transport.Lookup(name); err != nil {
		t.Skipf("transport %s not available: %v", name, err)
	}
	l, err := transport.Listen(context.Background(), ep, topts)
	if errors.Is(err, transport.ErrDisabled) {
		t.Skipf("transport %s disabled in this build: %v", name, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if name != "unix" {
		ep.Addr = l.Addr().String()
	}
	ts.Endpoint = ep
	ts.Addr = ep.String()

	ts.Engine = core.New(cfg.Engine)
	opts := cfg.Server
	opts.Engine = ts.Engine
	ts.Server = server.New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	if cfg.NoRun {
		close(runDone)
	} else {
		go func() { defer close(runDone); _ = ts.Engine.Run(ctx) }()
	}
	served := make(chan error, 1)
	go func() { served <- ts.Server.ServeListener(l, server.Listener{Transport: name}) }()
	t.Cleanup(func() {
		ts.Server.Close()
		if err := <-served; !errors.Is(err, server.ErrServerClosed) {
			t.Errorf("ServeListener: %v; want ErrServerClosed", err)
		}
		cancel()
		<-runDone
	})
	return ts
}

// Dial opens a raw protocol connection to the server; the caller closes it.
func (ts *Server) Dial(ctx context.Context) (net.Conn, error) {
	return transport.Dial(ctx, ts.Endpoint, transport.Options{TLS: ts.TLS})
}

// DialT is Dial for tests: it fails the test on error (within 5 s) and
// closes the connection when the test ends.
func (ts *Server) DialT(t testing.TB) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := ts.Dial(ctx)
	if err != nil {
		t.Fatalf("dial %s: %v", ts.Addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Line dials like DialT and wraps the connection in a LineClient.
func (ts *Server) Line(t testing.TB) *testutil.LineClient {
	t.Helper()
	return testutil.NewLineClient(t, ts.DialT(t))
}
