package client

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/transport"
)

// TestQUICSharedSession: several Conns opened as streams of one QUIC
// connection hold different locks at once, and closing the session
// releases all of them.
func TestQUICSharedSession(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "quic", serverConfig{})
	ctx := ctxT(t)
	sess, err := transport.DialQUIC(ctx, strings.TrimPrefix(ts.Addr, "quic://"), transport.Options{TLS: ts.TLS})
	if err != nil {
		t.Fatalf("DialQUIC: %v", err)
	}
	sessClosed := false
	t.Cleanup(func() {
		if !sessClosed {
			sess.Close()
		}
	})
	const n = 3
	conns := make([]*Conn, n)
	for i := range conns {
		if conns[i], err = Dial(ctx, "", Options{QUIC: sess}); err != nil {
			t.Fatalf("Dial over the session: %v", err)
		}
		defer conns[i].Close()
	}
	for i, c := range conns {
		if _, _, err := c.Acquire(ctx, fmt.Sprint("k", i), 0); err != nil {
			t.Fatalf("conn %d Acquire: %v", i, err)
		}
	}
	// The sessions are separate: one cannot take another's lock.
	if _, _, err := conns[0].Acquire(ctx, "k1", 0); !errors.Is(err, ErrTimeout) {
		t.Fatalf("conn 0 took conn 1's lock: %v", err)
	}
	// A SignalConn can share the connection too.
	sc, err := NewSignalConn(ctx, "", Options{QUIC: sess})
	if err != nil {
		t.Fatalf("NewSignalConn over the session: %v", err)
	}
	defer sc.Close()
	if err := sc.Listen(ctx, "q"); err != nil {
		t.Fatal(err)
	}
	if n, err := conns[2].Emit(ctx, "q", "over quic"); err != nil || n != 1 {
		t.Fatalf("Emit = %d, %v", n, err)
	}
	if sig := recvSignal(t, sc); sig.Payload != "over quic" {
		t.Fatalf("signal %+v", sig)
	}

	obs := ts.dial(t) // a QUIC connection of its own
	st, err := obs.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	owners := map[uint64]bool{}
	for _, l := range st.Locks {
		owners[l.OwnerConnID] = true
	}
	if len(st.Locks) != n || len(owners) != n || owners[0] {
		t.Fatalf("locks %+v; want %d held by distinct sessions", st.Locks, n)
	}
	if st.Connections != n+2 {
		t.Fatalf("%d connections; want %d", st.Connections, n+2)
	}

	sessClosed = true
	if err := sess.Close(); err != nil {
		t.Fatalf("session Close: %v", err)
	}
	eventually(t, "locks released", func() bool {
		st, err := obs.Stats(ctx)
		return err == nil && len(st.Locks) == 0
	})
	for i := range n {
		if _, _, err := obs.Acquire(ctx, fmt.Sprint("k", i), 0); err != nil {
			t.Fatalf("Acquire k%d after the session closed: %v", i, err)
		}
	}
	for i, c := range conns {
		if err := c.Ping(ctx); err == nil {
			t.Fatalf("conn %d still works after the session closed", i)
		}
	}
	select {
	case _, ok := <-sc.Signals():
		if ok {
			t.Fatal("unexpected signal")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SignalConn on the closed session still open")
	}
}
