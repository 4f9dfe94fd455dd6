//go:build !noquic

package transport_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/dflockd/dflockd/internal/testutil"
	"github.com/dflockd/dflockd/transport"
)

// checkGoroutines records the goroutine count now and, when the test ends
// (after the cleanups registered later, which run first), waits for the
// count to come back near it.
func checkGoroutines(t *testing.T) {
	t.Helper()
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		const slack = 2
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > base+slack {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutines: %d at start, %d now\n%s", base, runtime.NumGoroutine(), buf)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// quicPair is a quic listener on loopback plus matching client options.
type quicPair struct {
	l          net.Listener
	addr       string
	clientOpts transport.Options
}

func newQUICPair(t *testing.T, serverOpts transport.Options) quicPair {
	t.Helper()
	serverTLS, clientTLS := testutil.SelfSigned(t)
	serverOpts.TLS = serverTLS
	l, err := transport.Listen(t.Context(), transport.Endpoint{Transport: "quic", Addr: "127.0.0.1:0"}, serverOpts)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return quicPair{l: l, addr: l.Addr().String(), clientOpts: transport.Options{TLS: clientTLS}}
}

func (p quicPair) dialSession(t *testing.T) *transport.QUICSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := transport.DialQUIC(ctx, p.addr, p.clientOpts)
	if err != nil {
		t.Fatalf("DialQUIC: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openConn(t *testing.T, s *transport.QUICSession) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := s.OpenConn(ctx)
	if err != nil {
		t.Fatalf("OpenConn: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// serveAll accepts until l closes and runs handle on each conn in its own
// goroutine. At the end of the test it closes l and waits for all of them.
func serveAll(t *testing.T, l net.Listener, handle func(net.Conn)) {
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
}

func echo(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.Copy(c, c)
}

func TestQUICManyStreamsOneConnection(t *testing.T) {
	checkGoroutines(t)
	p := newQUICPair(t, transport.Options{})
	const n = 20
	remotes := make(chan string, n)
	serveAll(t, p.l, func(c net.Conn) {
		remotes <- c.RemoteAddr().String()
		echo(c)
	})

	s := p.dialSession(t)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		c := openConn(t, s)
		wg.Go(func() {
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			msg := bytes.Repeat([]byte(fmt.Sprintf("stream %02d|", i)), 1000)
			go func() { _, _ = c.Write(msg) }()
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil {
				errs <- fmt.Errorf("stream %d: %w", i, err)
				return
			}
			if !bytes.Equal(got, msg) {
				errs <- fmt.Errorf("stream %d: echo differs", i)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var first string
	for i := range n {
		select {
		case r := <-remotes:
			if i == 0 {
				first = r
			} else if r != first {
				t.Errorf("stream %d came from %s, stream 0 from %s: not one connection", i, r, first)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("accepted %d streams, want %d", i, n)
		}
	}
}

func TestQUICSessionCloseEndsServerStreams(t *testing.T) {
	checkGoroutines(t)
	p := newQUICPair(t, transport.Options{})
	const n = 5
	ready := make(chan struct{}, n)
	readErrs := make(chan error, n)
	serveAll(t, p.l, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		b := make([]byte, 1)
		if _, err := c.Read(b); err != nil {
			readErrs <- fmt.Errorf("first read: %w", err)
			return
		}
		ready <- struct{}{}
		_, err := c.Read(b) // blocks until the session goes
		readErrs <- err
	})

	s := p.dialSession(t)
	for range n {
		c := openConn(t, s)
		if _, err := c.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		select {
		case <-ready:
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d server streams ready", i, n)
		}
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i := range n {
		select {
		case err := <-readErrs:
			if err == nil {
				t.Errorf("server Read after session Close returned no error")
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d server Reads returned after session Close", i, n)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("server Reads took %v to fail", d)
	}
	if err := s.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close = %v, want net.ErrClosed", err)
	}
	if _, err := s.OpenConn(t.Context()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("OpenConn after Close = %v, want net.ErrClosed", err)
	}
}

func TestQUICTLSState(t *testing.T) {
	checkGoroutines(t)
	p := newQUICPair(t, transport.Options{})
	states := make(chan tls.ConnectionState, 1)
	serveAll(t, p.l, func(c net.Conn) {
		states <- c.(transport.TLSConner).ConnectionState()
		echo(c)
	})

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, transport.Endpoint{Transport: "quic", Addr: p.addr}, p.clientOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hi")); err != nil { // the server sees the stream only now
		t.Fatal(err)
	}
	var server tls.ConnectionState
	select {
	case server = <-states:
	case <-time.After(5 * time.Second):
		t.Fatal("no stream accepted")
	}
	client := c.(transport.TLSConner).ConnectionState()
	for side, st := range map[string]tls.ConnectionState{"client": client, "server": server} {
		if !st.HandshakeComplete {
			t.Errorf("%s: handshake not complete", side)
		}
		if st.NegotiatedProtocol != transport.ALPN {
			t.Errorf("%s: ALPN %q, want %q", side, st.NegotiatedProtocol, transport.ALPN)
		}
		if st.Version != tls.VersionTLS13 {
			t.Errorf("%s: TLS version %#x, want TLS 1.3", side, st.Version)
		}
		if st.DidResume {
			t.Errorf("%s: resumed session", side)
		}
	}
	if len(client.PeerCertificates) == 0 {
		t.Error("client saw no server certificate")
	}
}

func TestQUICDeadlines(t *testing.T) {
	checkGoroutines(t)
	p := newQUICPair(t, transport.Options{})
	release := make(chan struct{})
	serveAll(t, p.l, func(c net.Conn) {
		<-release // neither read nor write: the client's window fills up
	})
	s := p.dialSession(t)
	c := openConn(t, s)
	// Let the server end its side before the client's Close, which
	// otherwise waits quicCloseLinger for it.
	t.Cleanup(func() { close(release) })

	if err := c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read past deadline = %v, want a Timeout() net.Error", err)
	}

	if err := c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 64<<20) // far more than the flow-control windows
	start := time.Now()
	n, err := c.Write(big)
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Write past deadline = %d, %v; want a Timeout() net.Error", n, err)
	}
	if n >= len(big) {
		t.Errorf("Write wrote all %d bytes to a peer that does not read", n)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Write took %v to time out", d)
	}
}

func TestQUICCloseUnblocksIO(t *testing.T) {
	checkGoroutines(t)
	p := newQUICPair(t, transport.Options{})
	release := make(chan struct{})
	serveAll(t, p.l, func(c net.Conn) { <-release })
	s := p.dialSession(t)
	t.Cleanup(func() { close(release) }) // before the session's Close

	for _, op := range []string{"read", "write"} {
		c := openConn(t, s)
		if _, err := c.Write([]byte{0}); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			var err error
			if op == "read" {
				_, err = c.Read(make([]byte, 1))
			} else {
				_, err = c.Write(make([]byte, 64<<20))
			}
			done <- err
		}()
		time.Sleep(50 * time.Millisecond) // let it block
		closed := make(chan error, 1)
		go func() { closed <- c.Close() }()
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("%s during Close = %v, want net.ErrClosed", op, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Close did not unblock %s", op)
		}
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatalf("Close (%s) did not return", op)
		}
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read after Close = %v", err)
		}
		if _, err := c.Write([]byte{1}); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Write after Close = %v", err)
		}
		if err := c.Close(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("second Close = %v", err)
		}
	}
}

func TestQUICListenerCloseEndsConnections(t *testing.T) {
	checkGoroutines(t)
	p := newQUICPair(t, transport.Options{})
	serverErr := make(chan error, 1)
	accepted := make(chan struct{})
	go func() {
		c, err := p.l.Accept()
		if err != nil {
			serverErr <- err
			return
		}
		defer c.Close()
		close(accepted)
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		_, err = io.Copy(io.Discard, c)
		serverErr <- err
	}()
	s := p.dialSession(t)
	c := openConn(t, s)
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("stream not accepted")
	}
	pending := make(chan error, 1)
	go func() {
		c, err := p.l.Accept()
		if c != nil {
			c.Close()
		}
		pending <- err
	}()
	clientErr := make(chan error, 1)
	go func() {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, err := c.Read(make([]byte, 1))
		clientErr <- err
	}()
	time.Sleep(20 * time.Millisecond)

	if err := p.l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for name, ch := range map[string]chan error{"pending Accept": pending, "server stream": serverErr, "client stream": clientErr} {
		select {
		case err := <-ch:
			if err == nil {
				t.Errorf("%s: no error after listener Close", name)
			}
			if name == "pending Accept" && !errors.Is(err, net.ErrClosed) {
				t.Errorf("%s = %v, want net.ErrClosed", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s still blocked after listener Close", name)
		}
	}
	if _, err := p.l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close = %v", err)
	}
	if err := p.l.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
	// New dials fail: nothing listens on the port any more.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if s2, err := transport.DialQUIC(ctx, p.addr, p.clientOpts); err == nil {
		s2.Close()
		t.Error("DialQUIC to a closed listener succeeded")
	}
}

func TestQUICIdleTimeout(t *testing.T) {
	checkGoroutines(t)
	idle := transport.Options{QUICIdleTimeout: 300 * time.Millisecond, QUICKeepAlive: -1}
	p := newQUICPair(t, idle)
	p.clientOpts.QUICIdleTimeout = idle.QUICIdleTimeout
	p.clientOpts.QUICKeepAlive = idle.QUICKeepAlive
	readErr := make(chan error, 1)
	serveAll(t, p.l, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		_, err := io.Copy(io.Discard, c)
		readErr <- err
	})
	s := p.dialSession(t)
	c := openConn(t, s)
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	select {
	case err := <-readErr:
		if err == nil {
			t.Error("server stream ended cleanly, want an idle-timeout error")
		}
		if d := time.Since(start); d < 200*time.Millisecond {
			t.Errorf("connection ended after %v, before the idle timeout", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("idle connection was not closed")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("client Read on an idle-closed connection = %v", err)
	}
}

func TestQUICKeepAliveKeepsIdleConnection(t *testing.T) {
	checkGoroutines(t)
	opts := transport.Options{QUICIdleTimeout: 400 * time.Millisecond, QUICKeepAlive: 100 * time.Millisecond}
	p := newQUICPair(t, opts)
	p.clientOpts.QUICIdleTimeout = opts.QUICIdleTimeout
	p.clientOpts.QUICKeepAlive = opts.QUICKeepAlive
	serveAll(t, p.l, echo)
	s := p.dialSession(t)
	c := openConn(t, s)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	for range 2 {
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // idle for well over the idle timeout
	}
}

func TestQUICDialFailures(t *testing.T) {
	checkGoroutines(t)
	p := newQUICPair(t, transport.Options{})
	serveAll(t, p.l, echo)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	// A QUIC client speaking another application protocol.
	other := p.clientOpts.TLS.Clone()
	other.NextProtos = []string{"h3"}
	if c, err := quic.DialAddr(ctx, p.addr, other, nil); err == nil {
		c.CloseWithError(0, "")
		t.Error("dial with ALPN h3 succeeded")
	} else if !strings.Contains(err.Error(), "application protocol") {
		t.Logf("wrong ALPN: %v", err) // still a failure, just a different message
	}

	// A client that does not trust the server's certificate.
	_, untrusted := testutil.SelfSigned(t)
	for name, opts := range map[string]transport.Options{
		"system roots": {},
		"other CA":     {TLS: untrusted},
		"wrong servername": {TLS: func() *tls.Config {
			c := p.clientOpts.TLS.Clone()
			c.ServerName = "not-the-server.example"
			return c
		}()},
	} {
		if s, err := transport.DialQUIC(ctx, p.addr, opts); err == nil {
			s.Close()
			t.Errorf("%s: dial succeeded", name)
		}
	}

	// The server needs a certificate.
	for _, opts := range []transport.Options{{}, {TLS: &tls.Config{}}} {
		l, err := transport.Listen(ctx, transport.Endpoint{Transport: "quic", Addr: "127.0.0.1:0"}, opts)
		if err == nil {
			l.Close()
			t.Fatal("Listen without a certificate succeeded")
		}
		if !errors.Is(err, transport.ErrNoTLSConfig) {
			t.Errorf("Listen(%+v) = %v, want ErrNoTLSConfig", opts, err)
		}
	}
}

func TestQUICCallerTLSConfigUntouched(t *testing.T) {
	checkGoroutines(t)
	serverTLS, clientTLS := testutil.SelfSigned(t)
	serverTLS.NextProtos = []string{"x"}
	clientTLS.NextProtos = []string{"y"}
	l, err := transport.Listen(t.Context(), transport.Endpoint{Transport: "quic", Addr: "127.0.0.1:0"}, transport.Options{TLS: serverTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	serveAll(t, l, echo)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, transport.Endpoint{Transport: "quic", Addr: l.Addr().String()}, transport.Options{TLS: clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if serverTLS.NextProtos[0] != "x" || clientTLS.NextProtos[0] != "y" || serverTLS.MinVersion != tls.VersionTLS12 {
		t.Error("the caller's tls.Config was modified")
	}
	l.Close()
}

func TestQUICGetConfigForClient(t *testing.T) {
	checkGoroutines(t)
	serverTLS, clientTLS := testutil.SelfSigned(t)
	inner := serverTLS.Clone()
	outer := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return inner, nil }}
	l, err := transport.Listen(t.Context(), transport.Endpoint{Transport: "quic", Addr: "127.0.0.1:0"}, transport.Options{TLS: outer})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	serveAll(t, l, echo)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, transport.Endpoint{Transport: "quic", Addr: l.Addr().String()}, transport.Options{TLS: clientTLS})
	if err != nil {
		t.Fatalf("Dial through GetConfigForClient: %v", err)
	}
	defer c.Close()
	if p := c.(transport.TLSConner).ConnectionState().NegotiatedProtocol; p != transport.ALPN {
		t.Errorf("ALPN %q", p)
	}
	if len(inner.NextProtos) != 0 {
		t.Error("the config returned by GetConfigForClient was modified")
	}
	c.Close()
	l.Close()
}

func TestQUICDialClosesConnection(t *testing.T) {
	checkGoroutines(t)
	p := newQUICPair(t, transport.Options{})
	got := make(chan []byte, 1)
	serveAll(t, p.l, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c)
		got <- b
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, transport.Endpoint{Transport: "quic", Addr: p.addr}, p.clientOpts)
	if err != nil {
		t.Fatal(err)
	}
	// Write and close at once: the bytes and the end of stream must still
	// arrive although the connection goes with the stream.
	msg := bytes.Repeat([]byte("last words "), 10000)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, msg) {
			t.Errorf("server read %d bytes, want %d", len(b), len(msg))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server did not see the end of the stream")
	}
}

func TestQUICSessionStreamsCloseThenSessionClose(t *testing.T) {
	checkGoroutines(t)
	p := newQUICPair(t, transport.Options{})
	const n = 5
	got := make(chan []byte, n)
	serveAll(t, p.l, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c)
		got <- b
	})
	s := p.dialSession(t)
	for i := range n {
		c := openConn(t, s)
		if _, err := fmt.Fprintf(c, "session %d", i); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Closing the session right after its conns must not cut their data.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range n {
		select {
		case b := <-got:
			seen[string(b)] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d streams ended", len(seen))
		}
	}
	for i := range n {
		if !seen[fmt.Sprintf("session %d", i)] {
			t.Errorf("session %d: data lost; got %v", i, seen)
		}
	}
}

func TestQUICEndpoint(t *testing.T) {
	e, err := transport.ParseEndpoint("quic://[::1]:6388")
	if err != nil || e != (transport.Endpoint{Transport: "quic", Addr: "[::1]:6388"}) {
		t.Errorf("ParseEndpoint = %+v, %v", e, err)
	}
	for _, bad := range []string{"quic://", "quic://127.0.0.1", "quic://::1:6388"} {
		if _, err := transport.ParseEndpoint(bad); !errors.Is(err, transport.ErrEndpoint) {
			t.Errorf("ParseEndpoint(%q) = %v, want ErrEndpoint", bad, err)
		}
	}
}

func TestQUICCloseLingerBounded(t *testing.T) {
	checkGoroutines(t)
	p := newQUICPair(t, transport.Options{})
	release := make(chan struct{})
	sawEOF := make(chan error, 1)
	serveAll(t, p.l, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		_, err := io.Copy(io.Discard, c)
		sawEOF <- err
		<-release // read everything, but never end our side
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, transport.Endpoint{Transport: "quic", Addr: p.addr}, p.clientOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(release) })
	if _, err := c.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	if d < transport.QUICCloseLinger-100*time.Millisecond || d > transport.QUICCloseLinger+2*time.Second {
		t.Errorf("Close took %v, want about %v", d, transport.QUICCloseLinger)
	}
	select {
	case err := <-sawEOF:
		if err != nil {
			t.Errorf("server read %v, want EOF", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server did not see the end of the stream")
	}
}

func TestQUICDialHostName(t *testing.T) {
	checkGoroutines(t)
	p := newQUICPair(t, transport.Options{})
	serveAll(t, p.l, echo)
	_, port, err := net.SplitHostPort(p.addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	// The name is resolved, and verified against the certificate's DNS SAN.
	c, err := transport.Dial(ctx, transport.Endpoint{Transport: "quic", Addr: net.JoinHostPort("localhost", port)}, p.clientOpts)
	if err != nil {
		t.Fatalf("Dial localhost: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	if sn := c.(transport.TLSConner).ConnectionState().ServerName; sn != "localhost" {
		t.Errorf("ServerName %q, want localhost", sn)
	}
}
