package server

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
)

// failingListener fails every Accept with a non-closed error until closed.
type failingListener struct {
	calls  atomic.Int64
	once   sync.Once
	closed chan struct{}
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.calls.Add(1)
	select {
	case <-l.closed:
		return nil, net.ErrClosed
	default:
		return nil, errors.New("accept: too many open files")
	}
}

func (l *failingListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *failingListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// Edge 52: persistent accept errors back off (5 ms doubling to 1 s)
// instead of spinning.
func TestEdge52_AcceptErrorsBackOff(t *testing.T) {
	l := &failingListener{closed: make(chan struct{})}
	s := New(Options{Engine: core.New(core.Options{})})
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	// In 300 ms a spinning loop makes millions of calls; with back-off
	// 5+10+20+40+80+160 ms the count stays in single digits.
	time.Sleep(300 * time.Millisecond)
	n := l.calls.Load()
	if n < 2 || n > 12 {
		t.Errorf("Accept called %d times in 300ms; want a few (exponential back-off)", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrServerClosed) {
			t.Fatalf("Serve = %v; want ErrServerClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close during back-off")
	}
}
