package server

import (
	"bufio"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
)

// Connection caps (§7.1, §7.5; edge 46).

// §7.1: with MaxConns 2 the third socket is accepted and closed with no
// byte written; once a connection ends a new one is served.
func TestMaxConns_ThirdSocketClosedWithoutBytes(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{MaxConns: 2}, core.Options{})
	a, b := ts.dial(t), ts.dial(t)
	ping(t, a)
	ping(t, b)
	for range 3 {
		conn, err := net.Dial("tcp", ts.Addr)
		if err != nil {
			t.Fatal(err)
		}
		expectRefused(t, conn)
		conn.Close()
	}
	// A refused request is never executed.
	conn, err := net.Dial("tcp", ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write([]byte("l\nk\n0\n"))
	expectRefused(t, conn)
	conn.Close()
	if n := ts.Engine.Keys(); n != 0 {
		t.Fatalf("refused connection created %d keys", n)
	}
	if st, _ := wireStats(t, a); st.Connections != 2 {
		t.Fatalf("connections = %d; want 2", st.Connections)
	}
	b.Conn.Close()
	eventually(t, "b gone", func() bool { return ts.Connections() == 1 })
	c := ts.dial(t)
	ping(t, c)
}

// Edge 46: concurrent dials never exceed MaxConns; the excess sockets are
// closed without a response.
func TestEdge46_ConcurrentDialsNeverExceedMaxConns(t *testing.T) {
	t.Parallel()
	const max, dials = 3, 40
	ts := start(t, Options{MaxConns: max}, core.Options{})
	var (
		served, refused atomic.Int32
		peak            atomic.Int32
		fail            errs
		wg              sync.WaitGroup
		gate            = make(chan struct{})
		stop            = make(chan struct{})
		watcher         sync.WaitGroup
	)
	watcher.Add(1)
	go func() { // sample the server's count while the dials race
		defer watcher.Done()
		for {
			if n := int32(ts.Connections()); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			default:
				time.Sleep(100 * time.Microsecond)
			}
		}
	}()
	conns := make(chan *wire, dials)
	for range dials {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			w, err := dialWire(ts.Addr)
			if err != nil {
				fail.add(err)
				return
			}
			conns <- w // closed at the end: served ones keep their slot
			line, err := w.do("ping", "_", "")
			switch {
			case err == nil && line == "ok":
				served.Add(1)
			case err != nil && closedOrReset(err):
				refused.Add(1)
			default:
				fail.add(err)
			}
		}()
	}
	close(gate)
	wg.Wait()
	close(stop)
	watcher.Wait()
	close(conns)
	for w := range conns {
		w.close()
	}
	fail.check(t)
	if served.Load() != max || refused.Load() != dials-max {
		t.Fatalf("served %d, refused %d; want %d and %d", served.Load(), refused.Load(), max, dials-max)
	}
	if peak.Load() > max {
		t.Fatalf("server counted %d connections at once; cap is %d", peak.Load(), max)
	}
	eventually(t, "all gone", func() bool { return ts.Connections() == 0 })
}

// §7.1 [v1.16+]: MaxConnsPerIP caps connections per remote IP; other IPs
// (127.0.0.2 is loopback too) are unaffected.
func TestMaxConnsPerIP(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{MaxConnsPerIP: 2}, core.Options{})
	a, b := ts.dial(t), ts.dial(t)
	ping(t, a)
	ping(t, b)
	conn, err := net.Dial("tcp", ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	expectRefused(t, conn)
	conn.Close()

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	other, err := d.Dial("tcp", ts.Addr)
	if err != nil {
		t.Skipf("cannot dial from 127.0.0.2: %v", err)
	}
	defer other.Close()
	w := &wire{conn: other, r: bufio.NewReader(other)}
	if line, err := w.do("ping", "_", ""); err != nil || line != "ok" {
		t.Fatalf("ping from 127.0.0.2 = %q, %v; want ok", line, err)
	}
	a.Conn.Close()
	eventually(t, "a gone", func() bool { return ts.Connections() == 2 })
	c := ts.dial(t)
	ping(t, c)
}
