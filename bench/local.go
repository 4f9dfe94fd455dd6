package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/selfsigned"
	"github.com/dflockd/dflockd/server"
	"github.com/dflockd/dflockd/transport"
)

// Kind selects what StartLocal runs.
type Kind string

// The kinds of local server.
const (
	KindDflockd Kind = "dflockd" // the real server, default options
	KindEcho    Kind = "echo"    // the baseline
)

// localMaxKeys lifts the engine's key cap for local runs: per-worker and
// per-slot keys of the largest matrix runs must all fit.
const localMaxKeys = 1 << 20

// Local is an in-process server on a loopback listener, for the matrix
// and the baseline.
type Local struct {
	// Endpoint is where it listens.
	Endpoint transport.Endpoint
	// Client holds the dial options (TLS trust) that reach it.
	Client transport.Options
	stop   func()
}

// StartLocal starts a server of the given kind on a loopback listener of
// the named transport ("tcp", "unix", "tls", "quic"). TLS and QUIC use a
// fresh self-signed certificate, Unix a socket in a new temporary
// directory. Close stops it.
func StartLocal(ctx context.Context, name string, kind Kind) (*Local, error) {
	ep := transport.Endpoint{Transport: name, Addr: "127.0.0.1:0"}
	var srvOpts transport.Options
	loc := &Local{}
	var dir string
	switch name {
	case "tls", "quic":
		s, c, err := selfsigned.Configs()
		if err != nil {
			return nil, err
		}
		srvOpts.TLS, loc.Client.TLS = s, c
	case "unix":
		var err error
		dir, err = os.MkdirTemp("", "dflbench")
		if err != nil {
			return nil, fmt.Errorf("bench: socket directory: %w", err)
		}
		ep.Addr = filepath.Join(dir, "s.sock")
	}
	removeDir := func() {
		if dir != "" {
			os.RemoveAll(dir)
		}
	}
	l, err := transport.Listen(ctx, ep, srvOpts)
	if err != nil {
		removeDir()
		return nil, fmt.Errorf("bench: listen %s: %w", name, err)
	}
	if name != "unix" {
		ep.Addr = l.Addr().String()
	}
	loc.Endpoint = ep
	switch kind {
	case KindEcho:
		loc.stop = serveEcho(l)
	case KindDflockd:
		loc.stop = serveDflockd(l, name)
	default:
		l.Close()
		removeDir()
		return nil, fmt.Errorf("bench: unknown server kind %q", kind)
	}
	stop := loc.stop
	loc.stop = func() { stop(); removeDir() }
	return loc, nil
}

// Close stops the server and waits for its goroutines.
func (l *Local) Close() error {
	l.stop()
	return nil
}

func serveEcho(l net.Listener) (stop func()) {
	s := &EchoServer{}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(l) }()
	return func() { s.Close(); <-done }
}

func serveDflockd(l net.Listener, name string) (stop func()) {
	eng := core.New(core.Options{MaxKeys: localMaxKeys})
	srv := server.New(server.Options{Engine: eng})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); _ = eng.Run(ctx) }()
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.ServeListener(l, server.Listener{Transport: name}); err != nil && !errors.Is(err, server.ErrServerClosed) {
			fmt.Fprintf(os.Stderr, "bench: local server: %v\n", err)
		}
	}()
	return func() {
		srv.Close()
		<-served
		cancel()
		<-ran
	}
}
