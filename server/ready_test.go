package server

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/testutil"
)

// readyIs polls s.Ready until its answer is want ("" = ready) or 5 s pass.
func readyIs(t *testing.T, s *Server, want string) {
	t.Helper()
	var got error
	eventually(t, "Ready() = "+want, func() bool {
		got = s.Ready()
		if want == "" {
			return got == nil
		}
		return got != nil && got.Error() == want
	})
}

// Ready says "not serving any listener" before Serve, nil once a listener
// is served, "server: draining" from the moment Shutdown begins (while a
// lease holder keeps the drain waiting), and "server: closed" after Close.
func TestReady_Lifecycle(t *testing.T) {
	t.Parallel()
	s := New(Options{Engine: core.New(core.Options{})})
	if err := s.Ready(); !errors.Is(err, errNoListener) || err.Error() != "server: not serving any listener" {
		t.Fatalf("Ready before Serve = %v", err)
	}
	l := listenTCP(t)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	readyIs(t, s, "")

	holder := testutil.Dial(t, l.Addr().String())
	holder.Token("l", "k", "0", "ok")
	drained := make(chan error, 1)
	go func() { drained <- s.Shutdown(context.Background()) }()
	readyIs(t, s, "server: draining")
	select {
	case err := <-drained:
		t.Fatalf("Shutdown returned %v while a lease holder was connected", err)
	default:
	}
	holder.Conn.Close()
	if err := <-drained; err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve = %v", err)
	}
	if err := s.Ready(); err == nil || err.Error() != "server: draining" {
		t.Fatalf("Ready after Shutdown = %v", err)
	}
	s.Close()
	if err := s.Ready(); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Ready after Close = %v", err)
	}
}

// flakyListener fails every Accept while failing is set, and otherwise
// blocks until it is closed.
type flakyListener struct {
	failing atomic.Bool
	once    sync.Once
	closed  chan struct{}
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.failing.Load() {
		select {
		case <-l.closed:
			return nil, net.ErrClosed
		default:
			return nil, errors.New("accept: too many open files")
		}
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *flakyListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *flakyListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9} }

// A listener whose Accept fails makes the server unready, naming it and the
// error, while the other listener serves; once Accept works again the
// server is ready again.
func TestReady_AcceptBackingOff(t *testing.T) {
	t.Parallel()
	bad := &flakyListener{closed: make(chan struct{})}
	bad.failing.Store(true)
	good := listenTCP(t)
	s := serveListeners(t, Options{}, map[net.Listener]Listener{
		bad:  {Transport: "tcp"},
		good: {Transport: "tcp"},
	})
	readyIs(t, s, "server: listener tcp://127.0.0.1:9 is not accepting: accept: too many open files")
	ping(t, testutil.Dial(t, good.Addr().String())) // the other listener still serves
	bad.failing.Store(false)
	readyIs(t, s, "") // at most one back-off step (≤ 1 s) later
}

// A listener closed by someone else ends its accept loop: the server no
// longer serves it and stays unready, naming it.
func TestReady_ListenerClosedUnderneath(t *testing.T) {
	t.Parallel()
	s := New(Options{Engine: core.New(core.Options{})})
	defer s.Close()
	l := listenTCP(t)
	addr := l.Addr().String()
	served := make(chan error, 1)
	go func() { served <- s.ServeListener(l, Listener{Transport: "tcp"}) }()
	readyIs(t, s, "")
	l.Close()
	select {
	case err := <-served:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ServeListener = %v; want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeListener did not return after its listener closed")
	}
	err := s.Ready()
	if want := "server: listener tcp://" + addr + " stopped: "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Ready = %v; want %q...", err, want)
	}
}
