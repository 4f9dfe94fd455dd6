package bench

import (
	"context"
	"fmt"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/inproc"
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
	stop   func() error
}

// StartLocal starts a server of the given kind on a loopback listener of
// the named transport ("tcp", "unix", "tls", "quic"). TLS and QUIC use a
// fresh self-signed certificate, Unix a socket in a new temporary
// directory. A transport left out of this build gives an error wrapping
// transport.ErrDisabled. Close stops it.
func StartLocal(ctx context.Context, name string, kind Kind) (*Local, error) {
	if _, err := transport.Lookup(name); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	switch kind {
	case KindEcho:
		l, err := inproc.Listen(ctx, name, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		s := &EchoServer{}
		done := make(chan struct{})
		go func() { defer close(done); _ = s.Serve(l) }()
		stop := func() error {
			err := s.Close()
			<-done
			l.Close() // removes a unix socket's directory
			return err
		}
		return &Local{Endpoint: l.Endpoint, Client: transport.Options{TLS: l.ClientTLS}, stop: stop}, nil
	case KindDflockd:
		s, err := inproc.Start(ctx, inproc.Config{Engine: core.Options{MaxKeys: localMaxKeys}}, name)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		if len(s.Missing) > 0 {
			s.Close()
			return nil, fmt.Errorf("bench: %s: %w", name, transport.ErrDisabled)
		}
		return &Local{Endpoint: s.Endpoints[name], Client: transport.Options{TLS: s.ClientTLS}, stop: s.Close}, nil
	}
	return nil, fmt.Errorf("bench: unknown server kind %q", kind)
}

// Close stops the server and waits for its goroutines.
func (l *Local) Close() error { return l.stop() }
