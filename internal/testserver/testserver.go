// Package testserver runs an in-process dflockd server on a loopback
// listener of any registered transport, for tests in packages that sit
// above the server (client, chaos, linearizability, ...). Every server is
// stopped by the test that started it.
package testserver

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/inproc"
	"github.com/dflockd/dflockd/internal/testutil"
	"github.com/dflockd/dflockd/server"
	"github.com/dflockd/dflockd/transport"
)

// Transports lists every transport a conformance-style test should cover.
var Transports = []string{"tcp", "tls", "unix", "quic"}

// Config tunes Start.
type Config = inproc.Config

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
	s, err := inproc.Start(context.Background(), cfg, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	if len(s.Missing) > 0 {
		t.Skipf("transport %s not available in this build", name)
	}
	ts := &Server{Server: s.Server, Engine: s.Engine, Transport: name, Endpoint: s.Endpoints[name]}
	ts.Addr = ts.Endpoint.String()
	if name == "tls" || name == "quic" {
		ts.TLS = s.ClientTLS
	}
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
