package faultproxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer answers every line with the same line until the client
// closes. It records how many connections ended.
type echoServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	ended int
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
				s.mu.Lock()
				s.ended++
				s.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

func (s *echoServer) endedConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended
}

func startProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := Listen(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

type lineConn struct {
	net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *lineConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &lineConn{Conn: c, r: bufio.NewReader(c)}
}

// roundTrip writes line and reads it back.
func (c *lineConn) roundTrip(line string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	got, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return got[:len(got)-1], nil
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestForwardAndFind(t *testing.T) {
	echo := startEcho(t)
	p := startProxy(t, echo.ln.Addr().String())
	c := dial(t, p.Addr())
	for _, s := range []string{"hello", "", "x y z"} {
		got, err := c.roundTrip(s)
		if err != nil || got != s {
			t.Fatalf("roundTrip(%q) = %q, %v", s, got, err)
		}
	}
	info, ok := p.Find(c.LocalAddr().String())
	if !ok {
		t.Fatalf("Find(%s): not found; conns %v", c.LocalAddr(), p.Conns())
	}
	if info.Upstream == "" || info.ID == 0 {
		t.Fatalf("Find = %+v; want upstream address and id", info)
	}
	if n := len(p.Conns()); n != 1 {
		t.Fatalf("Conns() has %d entries; want 1", n)
	}
}

func TestCutOne(t *testing.T) {
	echo := startEcho(t)
	p := startProxy(t, echo.ln.Addr().String())
	a, b := dial(t, p.Addr()), dial(t, p.Addr())
	for _, c := range []*lineConn{a, b} {
		if _, err := c.roundTrip("ping"); err != nil {
			t.Fatal(err)
		}
	}
	ia, _ := p.Find(a.LocalAddr().String())
	if !p.Cut(ia.ID) {
		t.Fatal("Cut of a live pair reported false")
	}
	if p.Cut(ia.ID) {
		t.Fatal("second Cut of the same pair reported true")
	}
	// The client sees its connection end...
	if _, err := a.roundTrip("after"); err == nil {
		t.Fatal("round trip over a cut connection succeeded")
	}
	// ...the server side ends too...
	waitFor(t, "server side of the cut pair to end", func() bool { return echo.endedConns() == 1 })
	// ...and the other pair is untouched.
	if got, err := b.roundTrip("still"); err != nil || got != "still" {
		t.Fatalf("other pair: %q, %v", got, err)
	}
	if p.Cuts() != 1 {
		t.Fatalf("Cuts() = %d; want 1", p.Cuts())
	}
	if _, ok := p.Find(a.LocalAddr().String()); ok {
		t.Fatal("Find found a cut pair")
	}
}

func TestCutAllThenReconnect(t *testing.T) {
	echo := startEcho(t)
	p := startProxy(t, echo.ln.Addr().String())
	var conns []*lineConn
	for range 5 {
		c := dial(t, p.Addr())
		if _, err := c.roundTrip("hi"); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	if n := p.CutAll(); n != 5 {
		t.Fatalf("CutAll() = %d; want 5", n)
	}
	for i, c := range conns {
		if _, err := c.roundTrip("x"); err == nil {
			t.Fatalf("conn %d survived CutAll", i)
		}
	}
	waitFor(t, "all server sides to end", func() bool { return echo.endedConns() == 5 })
	waitFor(t, "pairs to be forgotten", func() bool { return len(p.Conns()) == 0 })
	c := dial(t, p.Addr())
	if got, err := c.roundTrip("again"); err != nil || got != "again" {
		t.Fatalf("after CutAll: %q, %v", got, err)
	}
}

func TestClientCloseEndsUpstream(t *testing.T) {
	echo := startEcho(t)
	p := startProxy(t, echo.ln.Addr().String())
	c := dial(t, p.Addr())
	if _, err := c.roundTrip("hi"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitFor(t, "upstream to end after client close", func() bool { return echo.endedConns() == 1 })
	waitFor(t, "pair to be forgotten", func() bool { return len(p.Conns()) == 0 })
}

func TestUnreachableTarget(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	ln.Close() // nothing listens there now
	p := startProxy(t, target)
	c := dial(t, p.Addr())
	if _, err := c.roundTrip("x"); err == nil {
		t.Fatal("round trip through a proxy with a dead target succeeded")
	}
}

func TestCloseTwice(t *testing.T) {
	echo := startEcho(t)
	p, err := Listen(context.Background(), echo.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	if _, err := c.roundTrip("hi"); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v; want ErrClosed", err)
	}
	if _, err := c.roundTrip("x"); err == nil {
		t.Fatal("connection survived Close")
	}
}

// TestRefuse: while refusing, new clients get the end of the stream and
// never reach the target, live pairs keep working; afterwards new clients
// are forwarded again.
func TestRefuse(t *testing.T) {
	echo := startEcho(t)
	p := startProxy(t, echo.ln.Addr().String())
	live := dial(t, p.Addr())
	if _, err := live.roundTrip("hi"); err != nil {
		t.Fatal(err)
	}
	p.Refuse(true)
	for i := range 3 {
		c := dial(t, p.Addr())
		if got, err := c.roundTrip("x"); err == nil {
			t.Fatalf("refused client %d got %q", i, got)
		}
	}
	if n := p.Refused(); n != 3 {
		t.Fatalf("Refused() = %d; want 3", n)
	}
	if n := len(p.Conns()); n != 1 {
		t.Fatalf("Conns() has %d entries while refusing; want the live one", n)
	}
	if got, err := live.roundTrip("still"); err != nil || got != "still" {
		t.Fatalf("live pair while refusing: %q, %v", got, err)
	}
	p.Refuse(false)
	c := dial(t, p.Addr())
	if got, err := c.roundTrip("back"); err != nil || got != "back" {
		t.Fatalf("after Refuse(false): %q, %v", got, err)
	}
	if echo.endedConns() != 0 {
		t.Fatalf("%d upstream connections ended; refused clients must not reach the target", echo.endedConns())
	}
}
