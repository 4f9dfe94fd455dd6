package client

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/dflockd/dflockd/transport"
)

// TestEndpointRules: bare addresses follow transport.ParseAddr (default
// port, paths are Unix sockets), with Transport or TLS choosing the
// transport of a bare host.
func TestEndpointRules(t *testing.T) {
	for _, tc := range []struct {
		addr, transport string
		want            transport.Endpoint
	}{
		{"db1", "", transport.Endpoint{Transport: "tcp", Addr: "db1:6388"}},
		{"db1", "tls", transport.Endpoint{Transport: "tls", Addr: "db1:6388"}},
		{"db1:7", "quic", transport.Endpoint{Transport: "quic", Addr: "db1:7"}},
		{"/run/d.sock", "", transport.Endpoint{Transport: "unix", Addr: "/run/d.sock"}},
		{"/run/d.sock", "unix", transport.Endpoint{Transport: "unix", Addr: "/run/d.sock"}},
	} {
		o := Options{Transport: tc.transport}
		got, err := o.endpoint(tc.addr)
		if err != nil || got != tc.want {
			t.Errorf("endpoint(%q) with transport %q = %+v, %v; want %+v", tc.addr, tc.transport, got, err, tc.want)
		}
	}
	o := Options{Transport: "tcp"}
	if _, err := o.endpoint("/run/d.sock"); !errors.Is(err, ErrInvalid) {
		t.Errorf("socket path with transport tcp: %v", err)
	}
}

// TestDialErrorRefused: a refused connect names the endpoint once and
// keeps the cause matchable.
func TestDialErrorRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = Dial(t.Context(), addr, Options{})
	de, ok := errors.AsType[*DialError](err)
	if !ok || de.Handshake || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Dial: %v (%T)", err, err)
	}
	if want := "client: dial tcp://" + addr + ": connection refused"; err.Error() != want {
		t.Errorf("message %q, want %q", err.Error(), want)
	}
	_, err = Dial(t.Context(), filepath.Join(t.TempDir(), "none.sock"), Options{})
	if !errors.Is(err, syscall.ENOENT) {
		t.Errorf("missing socket: %v", err)
	}
}

// TestDialErrorHandshake: a server that closes the connection during the
// auth handshake is a handshake DialError; one that never answers runs
// into the dial timeout.
func TestDialErrorHandshake(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	defer func() {
		l.Close()
		for c := range accepted {
			c.Close()
		}
	}()
	done := make(chan error, 1)
	go func() {
		_, err := Dial(t.Context(), l.Addr().String(), Options{AuthToken: "s", DialTimeout: 5 * time.Second})
		done <- err
	}()
	(<-accepted).Close()
	err = <-done
	if de, ok := errors.AsType[*DialError](err); !ok || !de.Handshake {
		t.Fatalf("closed during auth: %v (%T)", err, err)
	}
	_, err = Dial(t.Context(), l.Addr().String(), Options{AuthToken: "s", DialTimeout: 50 * time.Millisecond})
	if de, ok := errors.AsType[*DialError](err); !ok || !errors.Is(err, context.DeadlineExceeded) || Cause(de.Err) != "timed out" {
		t.Fatalf("silent server: %v (%T)", err, err)
	}
}
