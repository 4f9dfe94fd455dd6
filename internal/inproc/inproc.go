// Package inproc runs a dflockd server inside the current process on
// loopback listeners of any transports: the bench tool's local server,
// and the test servers of the packages above the server. It owns the
// details every such server shares: a fresh self-signed certificate for
// tls and quic, a short socket path in a temporary directory for unix,
// the engine's expiry loop, and an orderly stop.
package inproc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/selfsigned"
	"github.com/dflockd/dflockd/server"
	"github.com/dflockd/dflockd/transport"
)

// Listener is a loopback listener with the endpoint and client TLS
// settings that reach it.
type Listener struct {
	net.Listener
	Endpoint  transport.Endpoint
	ClientTLS *tls.Config // trust for tls and quic; nil otherwise
	dir       string      // temporary directory of a unix socket
}

// Close closes the listener and removes a unix socket's directory.
func (l *Listener) Close() error {
	err := l.Listener.Close()
	if l.dir != "" {
		os.RemoveAll(l.dir)
	}
	return err
}

// Listen opens a loopback listener of the named transport: 127.0.0.1 on
// a free port, or a socket in a new temporary directory for unix (not a
// test's TempDir: socket paths must stay short). tls and quic use srvTLS,
// or a fresh self-signed certificate when it is nil, whose trust is then
// in ClientTLS. A transport left out of this build gives an error
// wrapping transport.ErrDisabled.
func Listen(ctx context.Context, name string, srvTLS, cliTLS *tls.Config) (*Listener, error) {
	ep := transport.Endpoint{Transport: name, Addr: "127.0.0.1:0"}
	l := &Listener{}
	switch name {
	case "tls", "quic":
		if srvTLS == nil {
			var err error
			if srvTLS, cliTLS, err = selfsigned.Configs(); err != nil {
				return nil, err
			}
		}
		l.ClientTLS = cliTLS
	case "unix":
		dir, err := os.MkdirTemp("", "dfl")
		if err != nil {
			return nil, fmt.Errorf("inproc: socket directory: %w", err)
		}
		l.dir = dir
		ep.Addr = filepath.Join(dir, "s.sock")
	}
	nl, err := transport.Listen(ctx, ep, transport.Options{TLS: srvTLS})
	if err != nil {
		if l.dir != "" {
			os.RemoveAll(l.dir)
		}
		return nil, fmt.Errorf("inproc: listen %s: %w", name, err)
	}
	if name != "unix" {
		ep.Addr = nl.Addr().String()
	}
	l.Listener, l.Endpoint = nl, ep
	return l, nil
}

// Config tunes Start.
type Config struct {
	Server server.Options // its Engine is ignored: Start makes one from Engine
	Engine core.Options
	NoRun  bool // do not run the engine's expiry loop (the caller drives it)
}

// Server is a running in-process server: one engine and one server.Server
// serving a listener per transport.
type Server struct {
	Engine *core.Engine
	Server *server.Server
	// Transports lists the transports it listens on, in the order asked;
	// Missing those left out of this build.
	Transports, Missing []string
	Endpoints           map[string]transport.Endpoint
	// ClientTLS trusts the server's certificate (tls, quic; nil when
	// neither is served).
	ClientTLS *tls.Config

	listeners []*Listener
	served    []chan error
	cancel    context.CancelFunc
	ran       chan struct{}
}

// Start runs a server listening on every named transport; one
// certificate serves both tls and quic. Transports left out of this build
// are skipped and named in Missing; any other failure stops what was
// started and is returned.
func Start(ctx context.Context, cfg Config, names ...string) (*Server, error) {
	var srvTLS, cliTLS *tls.Config
	if slices.Contains(names, "tls") || slices.Contains(names, "quic") {
		var err error
		if srvTLS, cliTLS, err = selfsigned.Configs(); err != nil {
			return nil, err
		}
	}
	s := &Server{Endpoints: make(map[string]transport.Endpoint), ClientTLS: cliTLS}
	for _, name := range names {
		l, err := Listen(ctx, name, srvTLS, cliTLS)
		if errors.Is(err, transport.ErrDisabled) || errors.Is(err, transport.ErrUnknown) {
			s.Missing = append(s.Missing, name)
			continue
		}
		if err != nil {
			for _, l := range s.listeners {
				l.Close()
			}
			return nil, err
		}
		s.listeners = append(s.listeners, l)
		s.Transports = append(s.Transports, name)
		s.Endpoints[name] = l.Endpoint
	}
	s.Engine = core.New(cfg.Engine)
	opts := cfg.Server
	opts.Engine = s.Engine
	s.Server = server.New(opts)
	for i, l := range s.listeners {
		ch := make(chan error, 1)
		s.served = append(s.served, ch)
		go func() { ch <- s.Server.ServeListener(l, server.Listener{Transport: s.Transports[i]}) }()
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel, s.ran = cancel, make(chan struct{})
	if cfg.NoRun {
		close(s.ran)
	} else {
		go func() { defer close(s.ran); _ = s.Engine.Run(runCtx) }()
	}
	return s, nil
}

// Close closes the server and its connections, waits for its goroutines
// and removes socket directories. It returns what a listener's serve loop
// ended with, if that was anything but server.ErrServerClosed.
func (s *Server) Close() error {
	s.Server.Close()
	var errs []error
	for _, ch := range s.served {
		if err := <-ch; !errors.Is(err, server.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("inproc: serve: %w", err))
		}
	}
	for _, l := range s.listeners {
		l.Close() // already closed by the server; removes the socket directory
	}
	s.cancel()
	<-s.ran
	return errors.Join(errs...)
}
