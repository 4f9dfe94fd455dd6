package transport_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/internal/testutil"
	"github.com/dflockd/dflockd/transport"
)

// fakeTransport is a do-nothing Transport for registry tests.
type fakeTransport struct{}

func (fakeTransport) Listen(context.Context, string, transport.Options) (net.Listener, error) {
	return nil, errors.New("fake")
}

func (fakeTransport) Dial(context.Context, string, transport.Options) (net.Conn, error) {
	return nil, errors.New("fake")
}

func mustPanic(t *testing.T, name string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", name)
		}
	}()
	f()
}

func TestRegisterRules(t *testing.T) {
	for _, name := range []string{"", "TCP", "Tcp", "zz-test", "zz_test", "1zz", "zz test", "zzé"} {
		mustPanic(t, "Register("+name+")", func() { transport.Register(name, fakeTransport{}) })
	}
	mustPanic(t, "Register(nil)", func() { transport.Register("zztestnil", nil) })
	if _, err := transport.Lookup("zztestnil"); err == nil {
		t.Error("nil transport was registered")
	}
	mustPanic(t, "Register(tcp) twice", func() { transport.Register("tcp", fakeTransport{}) })

	const name = "zztest1"
	transport.Register(name, fakeTransport{})
	t.Cleanup(func() { transport.Unregister(name) })
	if _, err := transport.Lookup(name); err != nil {
		t.Fatalf("Lookup(%q): %v", name, err)
	}
	if !slices.Contains(transport.Names(), name) {
		t.Errorf("Names() = %v, missing %q", transport.Names(), name)
	}
	mustPanic(t, "duplicate", func() { transport.Register(name, fakeTransport{}) })
}

func TestLookupUnknown(t *testing.T) {
	_, err := transport.Lookup("x")
	if !errors.Is(err, transport.ErrUnknown) {
		t.Fatalf("err = %v, want ErrUnknown", err)
	}
	want := `transport: unknown "x" (known: ` + strings.Join(transport.Names(), ", ") + ")"
	if err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
	if !strings.Contains(err.Error(), "tcp, tls") {
		t.Errorf("err = %q, should list tcp and tls", err)
	}
}

func TestNamesSorted(t *testing.T) {
	names := transport.Names()
	if !slices.IsSorted(names) {
		t.Errorf("Names() = %v, not sorted", names)
	}
	for _, want := range []string{"tcp", "tls"} {
		if !slices.Contains(names, want) {
			t.Errorf("Names() = %v, missing %q", names, want)
		}
	}
	names[0] = "mutated"
	if transport.Names()[0] == "mutated" {
		t.Error("Names() returned shared storage")
	}
}

func TestParseEndpoint(t *testing.T) {
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in      string
		want    transport.Endpoint
		wantErr error
	}{
		{in: "tcp://127.0.0.1:0", want: transport.Endpoint{Transport: "tcp", Addr: "127.0.0.1:0"}},
		{in: "tcp://127.0.0.1:6388", want: transport.Endpoint{Transport: "tcp", Addr: "127.0.0.1:6388"}},
		{in: "tls://[::1]:6388", want: transport.Endpoint{Transport: "tls", Addr: "[::1]:6388"}},
		{in: "TLS://example.com:6388", want: transport.Endpoint{Transport: "tls", Addr: "example.com:6388"}},
		{in: "127.0.0.1:6388", want: transport.Endpoint{Transport: "tcp", Addr: "127.0.0.1:6388"}},
		{in: "[::1]:6388", want: transport.Endpoint{Transport: "tcp", Addr: "[::1]:6388"}},
		{in: "localhost:6388", want: transport.Endpoint{Transport: "tcp", Addr: "localhost:6388"}},
		{in: ":6388", want: transport.Endpoint{Transport: "tcp", Addr: ":6388"}},
		// A bare host means the default port; a bare path the Unix socket.
		{in: "db1", want: transport.Endpoint{Transport: "tcp", Addr: "db1:6388"}},
		{in: "127.0.0.1", want: transport.Endpoint{Transport: "tcp", Addr: "127.0.0.1:6388"}},
		{in: "::1", want: transport.Endpoint{Transport: "tcp", Addr: "[::1]:6388"}},
		{in: "[::1]", want: transport.Endpoint{Transport: "tcp", Addr: "[::1]:6388"}},
		{in: "/run/dflockd.sock", want: transport.Endpoint{Transport: "unix", Addr: "/run/dflockd.sock"}},
		{in: "./d.sock", want: transport.Endpoint{Transport: "unix", Addr: filepath.Join(cwd, "d.sock")}},
		{in: "run/d.sock", want: transport.Endpoint{Transport: "unix", Addr: filepath.Join(cwd, "run/d.sock")}},
		{in: "db1:", wantErr: transport.ErrEndpoint},
		{in: "bogus://127.0.0.1:6388", wantErr: transport.ErrUnknown},
		{in: "tcp://", wantErr: transport.ErrEndpoint},
		{in: "tls://", wantErr: transport.ErrEndpoint},
		{in: "", wantErr: transport.ErrEndpoint},
		{in: "://127.0.0.1:1", wantErr: transport.ErrEndpoint},
		{in: "tcp://127.0.0.1", wantErr: transport.ErrEndpoint},
		{in: "tcp://::1:6388", wantErr: transport.ErrEndpoint},
		{in: "tcp://127.0.0.1:70000", wantErr: transport.ErrEndpoint},
		{in: "tcp://127.0.0.1:http", wantErr: transport.ErrEndpoint},
		{in: "tcp://127.0.0.1:6388/path", wantErr: transport.ErrEndpoint},
		{in: "tcp://127.0.0.1:", wantErr: transport.ErrEndpoint},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := transport.ParseEndpoint(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ParseEndpoint(%q) = %v, %v; want error %v", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseEndpoint(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseEndpoint(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			// The canonical form parses back to the same endpoint.
			again, err := transport.ParseEndpoint(got.String())
			if err != nil || again != got {
				t.Errorf("round trip of %q: %+v, %v", got.String(), again, err)
			}
		})
	}
}

// TestParseAddr: a bare host takes the transport given; a path is still
// the Unix socket, and an explicit scheme wins.
func TestParseAddr(t *testing.T) {
	for in, want := range map[string]transport.Endpoint{
		"db1":            {Transport: "tls", Addr: "db1:6388"},
		"db1:7000":       {Transport: "tls", Addr: "db1:7000"},
		"/run/d.sock":    {Transport: "unix", Addr: "/run/d.sock"},
		"tcp://db1:7000": {Transport: "tcp", Addr: "db1:7000"},
	} {
		got, err := transport.ParseAddr(in, "TLS")
		if err != nil || got != want {
			t.Errorf("ParseAddr(%q, tls) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	if !transport.LooksLikePath("./x") || !transport.LooksLikePath("a/b") || transport.LooksLikePath("db1:6388") {
		t.Error("LooksLikePath")
	}
}

func TestEndpointText(t *testing.T) {
	var e transport.Endpoint
	if err := e.UnmarshalText([]byte("tls://[::1]:6388")); err != nil {
		t.Fatal(err)
	}
	if e.String() != "tls://[::1]:6388" {
		t.Errorf("String() = %q", e.String())
	}
	b, err := e.MarshalText()
	if err != nil || string(b) != "tls://[::1]:6388" {
		t.Errorf("MarshalText() = %q, %v", b, err)
	}
	if err := e.UnmarshalText([]byte("nope://x:1")); !errors.Is(err, transport.ErrUnknown) {
		t.Errorf("UnmarshalText(nope) = %v", err)
	}
	if e.String() != "tls://[::1]:6388" {
		t.Errorf("failed UnmarshalText changed the endpoint to %q", e.String())
	}
}

func TestListenDialUnknown(t *testing.T) {
	e := transport.Endpoint{Transport: "nope", Addr: "127.0.0.1:0"}
	if _, err := transport.Listen(t.Context(), e, transport.Options{}); !errors.Is(err, transport.ErrUnknown) ||
		!strings.Contains(err.Error(), "nope://127.0.0.1:0") {
		t.Errorf("Listen: %v", err)
	}
	if _, err := transport.Dial(t.Context(), e, transport.Options{}); !errors.Is(err, transport.ErrUnknown) ||
		!strings.Contains(err.Error(), "nope://127.0.0.1:0") {
		t.Errorf("Dial: %v", err)
	}
}

// conformanceSetup describes how to exercise one transport on loopback.
type conformanceSetup struct {
	addr       string // listen address
	listenOpts transport.Options
	dialOpts   transport.Options
	tls        bool // conns must implement TLSConner
}

// setups returns the loopback setup for every transport this package
// knows how to exercise. A newly registered transport without an entry
// fails TestConformance.
func setups(t testing.TB) map[string]conformanceSetup {
	serverTLS, clientTLS := testutil.SelfSigned(t)
	return map[string]conformanceSetup{
		"tcp": {addr: "127.0.0.1:0"},
		"tls": {
			addr:       "127.0.0.1:0",
			listenOpts: transport.Options{TLS: serverTLS},
			dialOpts:   transport.Options{TLS: clientTLS},
			tls:        true,
		},
		"unix": {addr: filepath.Join(shortTempDir(t), "c.sock")},
		"quic": {
			addr:       "127.0.0.1:0",
			listenOpts: transport.Options{TLS: serverTLS},
			dialOpts:   transport.Options{TLS: clientTLS},
			tls:        true,
		},
	}
}

// shortTempDir returns a fresh directory with a short path, removed at the
// end of the test. t.TempDir() paths can exceed the 107-byte limit of a
// Unix socket path.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dfl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestConformance(t *testing.T) {
	all := setups(t)
	for _, name := range transport.Names() {
		t.Run(name, func(t *testing.T) {
			s, ok := all[name]
			if !ok {
				t.Fatalf("transport %q has no conformance setup; add one to setups()", name)
			}
			t.Run("Echo", func(t *testing.T) { testEcho(t, name, s) })
			t.Run("CloseUnblocksAccept", func(t *testing.T) { testCloseUnblocksAccept(t, name, s) })
			t.Run("DialCanceled", func(t *testing.T) { testDialCanceled(t, name, s) })
			t.Run("ReadDeadline", func(t *testing.T) { testReadDeadline(t, name, s) })
		})
	}
}

func listen(t *testing.T, name string, s conformanceSetup) net.Listener {
	t.Helper()
	l, err := transport.Listen(t.Context(), transport.Endpoint{Transport: name, Addr: s.addr}, s.listenOpts)
	if errors.Is(err, transport.ErrDisabled) {
		t.Skipf("Listen: %v", err)
	}
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func dial(t *testing.T, name string, s conformanceSetup, l net.Listener) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, transport.Endpoint{Transport: name, Addr: l.Addr().String()}, s.dialOpts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testEcho(t *testing.T, name string, s conformanceSetup) {
	l := listen(t, name, s)

	type result struct {
		n   int64
		err error
		tls bool
	}
	served := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			served <- result{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		n, err := io.Copy(c, c)
		_, isTLS := c.(transport.TLSConner)
		served <- result{n: n, err: err, tls: isTLS}
	}()

	c := dial(t, name, s, l)
	if c.LocalAddr() == nil || c.RemoteAddr() == nil {
		t.Fatalf("conn addresses: local %v remote %v", c.LocalAddr(), c.RemoteAddr())
	}
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatalf("SetDeadline: %v", err)
	}
	payload := bytes.Repeat([]byte("dflockd echo 0123456789\n"), 4096) // ~96 KiB
	writeErr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		writeErr <- err
	}()
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if err := <-writeErr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("echoed bytes differ")
	}
	if tc, ok := c.(transport.TLSConner); ok != s.tls {
		t.Errorf("dialed conn implements TLSConner = %v, want %v", ok, s.tls)
	} else if ok && !tc.ConnectionState().HandshakeComplete {
		t.Error("dialed TLS conn: handshake not complete")
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}

	select {
	case r := <-served:
		if r.err != nil {
			t.Fatalf("server side: %v", r.err)
		}
		if r.n != int64(len(payload)) {
			t.Errorf("server echoed %d bytes, want %d", r.n, len(payload))
		}
		if r.tls != s.tls {
			t.Errorf("accepted conn implements TLSConner = %v, want %v", r.tls, s.tls)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server did not see the client close")
	}
}

func testCloseUnblocksAccept(t *testing.T, name string, s conformanceSetup) {
	l := listen(t, name, s)
	accepted := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if c != nil {
			c.Close()
		}
		accepted <- err
	}()
	time.Sleep(20 * time.Millisecond) // let Accept block
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-accepted:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Accept")
	}
}

func testDialCanceled(t *testing.T, name string, s conformanceSetup) {
	l := listen(t, name, s)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	c, err := transport.Dial(ctx, transport.Endpoint{Transport: name, Addr: l.Addr().String()}, s.dialOpts)
	if err == nil {
		c.Close()
		t.Fatal("Dial with a canceled context succeeded")
	}
}

func testReadDeadline(t *testing.T, name string, s conformanceSetup) {
	l := listen(t, name, s)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		// Complete any handshake, then stay silent until the client leaves.
		_, _ = io.Copy(io.Discard, c)
	}()
	c := dial(t, name, s, l)
	if err := c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatalf("SetReadDeadline: %v", err)
	}
	_, err := c.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read past deadline = %v, want os.ErrDeadlineExceeded", err)
	}
}

func TestTLSListenNeedsCertificate(t *testing.T) {
	e := transport.Endpoint{Transport: "tls", Addr: "127.0.0.1:0"}
	for _, opts := range []transport.Options{{}, {TLS: &tls.Config{}}} {
		l, err := transport.Listen(t.Context(), e, opts)
		if err == nil {
			l.Close()
			t.Fatalf("Listen(%+v) succeeded", opts)
		}
		if !errors.Is(err, transport.ErrNoTLSConfig) {
			t.Errorf("Listen(%+v) = %v, want ErrNoTLSConfig", opts, err)
		}
	}
}

func TestTLSMinVersion(t *testing.T) {
	serverTLS, clientTLS := testutil.SelfSigned(t)
	serverTLS.MinVersion = tls.VersionTLS10 // must be raised, and the caller's config left alone
	l := listen(t, "tls", conformanceSetup{addr: "127.0.0.1:0", listenOpts: transport.Options{TLS: serverTLS}})
	if serverTLS.MinVersion != tls.VersionTLS10 {
		t.Error("Listen modified the caller's tls.Config")
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	addr := l.Addr().String()

	// A raw crypto/tls client capped at TLS 1.1 must be refused.
	old := clientTLS.Clone()
	old.MinVersion = tls.VersionTLS10
	old.MaxVersion = tls.VersionTLS11
	d := tls.Dialer{Config: old}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if c, err := d.DialContext(ctx, "tcp", addr); err == nil {
		c.Close()
		t.Error("TLS 1.1 handshake succeeded")
	}

	// A plaintext client gets no service.
	c, err := transport.Dial(ctx, transport.Endpoint{Transport: "tcp", Addr: addr}, transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("l\nkey\n10\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := c.Read(buf)
	if bytes.Contains(buf[:n], []byte("key")) {
		t.Error("plaintext bytes were echoed by a TLS listener")
	}

	// The normal client negotiates at least TLS 1.2.
	tc, err := transport.Dial(ctx, transport.Endpoint{Transport: "tls", Addr: addr}, transport.Options{TLS: clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if v := tc.(transport.TLSConner).ConnectionState().Version; v < tls.VersionTLS12 {
		t.Errorf("negotiated version %x", v)
	}
}

func TestKeepAliveDisabled(t *testing.T) {
	opts := transport.Options{KeepAlive: -1}
	l, err := transport.Listen(t.Context(), transport.Endpoint{Transport: "tcp", Addr: "127.0.0.1:0"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := transport.Dial(t.Context(), transport.Endpoint{Transport: "tcp", Addr: l.Addr().String()}, opts)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestIPv6Loopback(t *testing.T) {
	l, err := transport.Listen(t.Context(), transport.Endpoint{Transport: "tcp", Addr: "[::1]:0"}, transport.Options{})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	e, err := transport.ParseEndpoint("tcp://" + l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := transport.Dial(t.Context(), e, transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}
