// Package exampletest runs in-process dflockd servers for the tests of
// the examples, so that each example's run function can be exercised
// against a real server over a real transport. It is for tests only.
package exampletest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/leakcheck"
	"github.com/dflockd/dflockd/internal/testutil"
	"github.com/dflockd/dflockd/server"
	"github.com/dflockd/dflockd/transport"
)

// Config says which server to start.
type Config struct {
	// Transport is "tcp" (the default), "unix", "tls" or "quic".
	Transport string
	// MutualTLS makes tls and quic servers require a client certificate
	// signed by the test CA.
	MutualTLS bool
}

// Server is a running test server.
type Server struct {
	// Addr is the address as the examples' -addr flag takes it:
	// "host:port" for tcp, tls and quic, the socket path for unix.
	Addr string
	// CertDir holds ca.pem, client.pem and client-key.pem, laid out as
	// `dflockd gen-cert` writes them (tls and quic only). The test
	// certificate is its own CA and serves as server and client
	// certificate alike.
	CertDir string
}

// Start runs a server with its own engine until the test ends.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	name := cfg.Transport
	if name == "" {
		name = "tcp"
	}
	s := &Server{}
	ep := transport.Endpoint{Transport: name, Addr: "127.0.0.1:0"}
	var (
		topts transport.Options
		lo    = server.Listener{Transport: name}
	)
	switch name {
	case "unix":
		// Socket paths are limited to about 100 bytes: t.TempDir can be
		// too deep.
		dir, err := os.MkdirTemp("", "dflex")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		ep.Addr = filepath.Join(dir, "d.sock")
	case "tls", "quic":
		certPEM, keyPEM := testutil.SelfSignedPEM(t)
		s.CertDir = t.TempDir()
		for file, data := range map[string][]byte{"ca.pem": certPEM, "client.pem": certPEM, "client-key.pem": keyPEM} {
			if err := os.WriteFile(filepath.Join(s.CertDir, file), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		topts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if cfg.MutualTLS {
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(certPEM)
			topts.TLS.ClientAuth, topts.TLS.ClientCAs = tls.RequireAndVerifyClientCert, pool
			lo.Peer = auth.ClientCert()
		}
	}
	l, err := transport.Listen(context.Background(), ep, topts)
	if errors.Is(err, transport.ErrDisabled) {
		t.Skipf("transport %s disabled in this build", name)
	}
	if err != nil {
		t.Fatal(err)
	}
	if name == "unix" {
		s.Addr = ep.Addr
	} else {
		s.Addr = l.Addr().String()
	}

	engine := core.New(core.Options{})
	srv := server.New(server.Options{Engine: engine})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); _ = engine.Run(ctx) }()
	served := make(chan error, 1)
	go func() { served <- srv.ServeListener(l, lo) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, server.ErrServerClosed) {
			t.Errorf("exampletest: serve: %v", err)
		}
		cancel()
		<-ran
	})
	return s
}

// Context returns a context that ends with the test, bounded so that a
// hung example fails instead of hanging the run.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Main runs the tests and then fails the run if a goroutine is still
// running (a leaked renewal, reader or session), as go.uber.org/goleak
// sees it, retried patiently by leakcheck. Call it from TestMain and pass
// its result to os.Exit.
func Main(m *testing.M) int { return leakcheck.Main(m) }
