package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/testutil"
	"github.com/dflockd/dflockd/transport"
)

// Per-listener serving: ServeListener, connection-level authentication,
// the TLS handshake before the first request, and stats.clients.

// logger returns a debug-level text logger writing to a new buffer.
func logger() (*slog.Logger, *testutil.SyncBuffer) {
	buf := &testutil.SyncBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// serveListeners runs one server (one engine) on every listener with its
// Listener description, and stops it when the test ends.
func serveListeners(t testing.TB, opts Options, ls map[net.Listener]Listener) *Server {
	t.Helper()
	if opts.Engine == nil {
		opts.Engine = core.New(core.Options{})
	}
	s := New(opts)
	served := make(chan error, len(ls))
	for l, lo := range ls {
		go func() { served <- s.ServeListener(l, lo) }()
	}
	t.Cleanup(func() {
		s.Close()
		for range ls {
			if err := <-served; err != ErrServerClosed {
				t.Errorf("ServeListener returned %v; want ErrServerClosed", err)
			}
		}
	})
	return s
}

// listenTCP binds a loopback TCP listener.
func listenTCP(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// mtlsConfigs returns a server config that requires a client certificate
// signed by the returned client certificate's own (self-signed) CA, the
// client certificate, and a client config trusting the server.
func mtlsConfigs(t testing.TB, clientAuth tls.ClientAuthType) (srv *tls.Config, clientCert tls.Certificate, cli *tls.Config) {
	t.Helper()
	srv, cli = testutil.SelfSigned(t)
	certPEM, keyPEM := testutil.SelfSignedPEM(t, "client.example")
	clientCert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	srv = srv.Clone()
	srv.ClientAuth, srv.ClientCAs = clientAuth, pool
	return srv, clientCert, cli
}

// dialTLS connects to addr with cfg (plus cert, if given) and completes
// the handshake from the client's side.
func dialTLS(t testing.TB, addr string, cfg *tls.Config, cert *tls.Certificate) (*wire, error) {
	t.Helper()
	cfg = cfg.Clone()
	cfg.ServerName = "localhost"
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	d := tls.Dialer{Config: cfg, NetDialer: &net.Dialer{Timeout: 5 * time.Second}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return wrapWire(c), nil
}

func wrapWire(c net.Conn) *wire {
	return &wire{conn: c, r: bufio.NewReaderSize(c, 64<<10), buf: make([]byte, 0, 128)}
}

// mustDo sends a request on w and returns the answer, failing on I/O
// errors.
func mustDo(t testing.TB, w *wire, cmd, key, arg string) string {
	t.Helper()
	line, err := w.do(cmd, key, arg)
	if err != nil {
		t.Fatalf("%s %q %q: %v", cmd, key, arg, err)
	}
	return line
}

// expectDropped fails unless the server closes w without sending a byte.
// A request is sent first, so a TLS 1.3 client (whose handshake ends
// before the server has judged its certificate) sees the close too.
func expectDropped(t testing.TB, w *wire) {
	t.Helper()
	_ = w.send("ping", "_", "")
	_ = w.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := w.r.ReadByte()
	if err == nil {
		rest, _ := w.r.ReadString('\n')
		t.Fatalf("connection answered %q; want it closed without a byte", string(b)+rest)
	}
	if isTimeout(err) {
		t.Fatal("connection not closed within the deadline")
	}
}

// clientsOf returns stats.clients as seen on w.
func clientsOf(t testing.TB, w *wire) []clientStat {
	t.Helper()
	line := mustDo(t, w, "stats", "_", "")
	body, ok := strings.CutPrefix(line, "ok ")
	if !ok {
		t.Fatalf("stats = %q", line)
	}
	var st struct {
		Clients []clientStat `json:"clients"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("stats JSON %q: %v", body, err)
	}
	if st.Clients == nil {
		t.Fatalf("stats.clients missing or null in %s", body)
	}
	return st.Clients
}

// mTLS: a verified client certificate is the connection's identity, shown
// in stats.clients; the connection is served without a token.
func TestServeListener_ClientCertIdentity(t *testing.T) {
	t.Parallel()
	srvCfg, cert, cliCfg := mtlsConfigs(t, tls.RequireAndVerifyClientCert)
	l := tls.NewListener(listenTCP(t), srvCfg)
	log, logs := logger()
	s := serveListeners(t, Options{Logger: log}, map[net.Listener]Listener{l: {Transport: "tls", Peer: auth.ClientCert()}})

	w, err := dialTLS(t, l.Addr().String(), cliCfg, &cert)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustDo(t, w, "ping", "_", ""); got != "ok" {
		t.Fatalf("ping = %q", got)
	}
	cs := clientsOf(t, w)
	want := clientStat{ID: 1, Transport: "tls", Remote: w.conn.LocalAddr().String(), Identity: "cert:dflockd test"}
	if len(cs) != 1 || cs[0] != want {
		t.Fatalf("clients = %+v; want [%+v]", cs, want)
	}
	// The identity is logged when the connection opens and closes.
	w.close()
	eventually(t, "connection gone", func() bool { return s.Connections() == 0 })
	out := logs.String()
	for _, msg := range []string{`msg="connection opened"`, `msg="connection closed"`} {
		i := strings.Index(out, msg)
		if i < 0 {
			t.Fatalf("log lacks %s: %s", msg, out)
		}
		line, _, _ := strings.Cut(out[i:], "\n")
		if !strings.Contains(line, `identity="cert:dflockd test"`) || !strings.Contains(line, "transport=tls") {
			t.Errorf("log line %q lacks the identity or transport", line)
		}
	}
}

// mTLS: no certificate, or one from another CA, fails the handshake; the
// connection is closed without an answer and the server forgets it.
func TestServeListener_ClientCertRejected(t *testing.T) {
	t.Parallel()
	srvCfg, _, cliCfg := mtlsConfigs(t, tls.RequireAndVerifyClientCert)
	_, stranger, _ := mtlsConfigs(t, tls.RequireAndVerifyClientCert) // another CA
	l := tls.NewListener(listenTCP(t), srvCfg)
	log, logs := logger()
	s := serveListeners(t, Options{Logger: log}, map[net.Listener]Listener{l: {Transport: "tls", Peer: auth.ClientCert()}})

	for name, cert := range map[string]*tls.Certificate{"no certificate": nil, "other CA": &stranger} {
		w, err := dialTLS(t, l.Addr().String(), cliCfg, cert)
		if err != nil {
			continue // TLS 1.2-style failure during the client's handshake
		}
		_ = w.send("ping", "_", "")
		line, err := w.readLine()
		if err == nil {
			t.Fatalf("%s: answered %q", name, line)
		}
	}
	eventually(t, "rejected connections forgotten", func() bool { return s.Connections() == 0 })
	eventually(t, "handshake failures logged", func() bool {
		return strings.Count(logs.String(), "tls handshake failed") == 2
	})
}

// A peer authenticator that refuses closes the connection at once, with
// no byte written, and logs the reason at info level.
func TestServeListener_PeerRefusedClosesSilently(t *testing.T) {
	t.Parallel()
	// The server asks for a certificate but does not verify it, so the
	// handshake succeeds and ClientCert is the one that refuses.
	srvCfg, cert, cliCfg := mtlsConfigs(t, tls.RequestClientCert)
	l := tls.NewListener(listenTCP(t), srvCfg)
	log, logs := logger()
	s := serveListeners(t, Options{Logger: log}, map[net.Listener]Listener{l: {Transport: "tls", Peer: auth.ClientCert()}})

	w, err := dialTLS(t, l.Addr().String(), cliCfg, &cert)
	if err != nil {
		t.Fatal(err)
	}
	expectDropped(t, w)
	eventually(t, "refusal logged", func() bool {
		out := logs.String()
		return strings.Contains(out, "level=INFO msg=\"authentication failed\"") &&
			strings.Contains(out, "no verified client certificate") && strings.Contains(out, "transport=tls")
	})
	eventually(t, "refused connection forgotten", func() bool { return s.Connections() == 0 })
	if n := s.opts.Engine.Keys(); n != 0 {
		t.Fatalf("%d keys after a refused connection", n)
	}
}

// refuser refuses every peer; it records what it was shown.
type refuser struct {
	mu    sync.Mutex
	peers []auth.Peer
}

func (r *refuser) AuthenticatePeer(_ context.Context, p auth.Peer) (auth.Identity, error) {
	r.mu.Lock()
	r.peers = append(r.peers, p)
	r.mu.Unlock()
	return auth.Identity{}, auth.ErrDenied
}

// A refused plain-TCP connection never has its pipelined requests run.
func TestServeListener_PeerRefusedBeforeAnyRequest(t *testing.T) {
	t.Parallel()
	l := listenTCP(t)
	r := &refuser{}
	s := serveListeners(t, Options{}, map[net.Listener]Listener{l: {Transport: "tcp", Peer: r}})
	c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := wrapWire(c)
	_ = w.send("l", "k", "0")
	expectDropped(t, w)
	eventually(t, "refused connection forgotten", func() bool { return s.Connections() == 0 })
	if n := s.opts.Engine.Keys(); n != 0 {
		t.Fatalf("a refused connection's request created %d keys", n)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.peers) != 1 || r.peers[0].Transport != "tcp" || r.peers[0].TLS != nil || r.peers[0].Cred != nil ||
		r.peers[0].RemoteAddr.String() != c.LocalAddr().String() {
		t.Fatalf("peers = %+v", r.peers)
	}
}

// Both checks apply when both are configured: the certificate first, then
// the token handshake. The identity stays the certificate's.
func TestServeListener_ClientCertPlusToken(t *testing.T) {
	t.Parallel()
	srvCfg, cert, cliCfg := mtlsConfigs(t, tls.RequireAndVerifyClientCert)
	l := tls.NewListener(listenTCP(t), srvCfg)
	s := serveListeners(t, Options{Auth: auth.Token("s3cret")}, map[net.Listener]Listener{l: {Transport: "tls", Peer: auth.ClientCert()}})

	w, err := dialTLS(t, l.Addr().String(), cliCfg, &cert)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustDo(t, w, "ping", "_", ""); got != "error_auth" {
		t.Fatalf("ping before the token = %q; want error_auth", got)
	}
	eventually(t, "refused connection gone", func() bool { return s.Connections() == 0 })
	w, err = dialTLS(t, l.Addr().String(), cliCfg, &cert)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustDo(t, w, "auth", "_", "s3cret"); got != "ok" {
		t.Fatalf("auth = %q", got)
	}
	if cs := clientsOf(t, w); len(cs) != 1 || cs[0].Identity != "cert:dflockd test" {
		t.Fatalf("clients = %+v; want the certificate identity", cs)
	}
}

// Token only: the identity is "token" once the handshake passed, "" before.
func TestServeListener_TokenIdentityInStats(t *testing.T) {
	t.Parallel()
	l := listenTCP(t)
	serveListeners(t, Options{Auth: auth.Token("s3cret")}, map[net.Listener]Listener{l: {}})
	pending, err := dialWire(l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer pending.close()
	w, err := dialWire(l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	// The first connection exists (is accepted) before the second one.
	if got := mustDo(t, w, "auth", "_", "s3cret"); got != "ok" {
		t.Fatalf("auth = %q", got)
	}
	cs := clientsOf(t, w)
	if len(cs) != 2 {
		t.Fatalf("clients = %+v; want 2", cs)
	}
	want := []clientStat{
		{ID: 1, Transport: "tcp", Remote: pending.conn.LocalAddr().String(), Identity: ""},
		{ID: 2, Transport: "tcp", Remote: w.conn.LocalAddr().String(), Identity: "token"},
	}
	for i := range want {
		if cs[i] != want[i] {
			t.Fatalf("clients = %+v; want %+v", cs, want)
		}
	}
}

// stats.clients lists every connection across listeners, sorted by id,
// each with its listener's transport; one engine serves them all.
func TestServeListener_SharedEngineAndClients(t *testing.T) {
	t.Parallel()
	srvCfg, cliCfg := testutil.SelfSigned(t)
	plain, secure := listenTCP(t), tls.NewListener(listenTCP(t), srvCfg)
	serveListeners(t, Options{}, map[net.Listener]Listener{plain: {}, secure: {Transport: "tls"}})

	var ws []*wire
	for i := range 4 {
		var w *wire
		var err error
		if i%2 == 0 {
			w, err = dialWire(plain.Addr().String())
		} else {
			w, err = dialTLS(t, secure.Addr().String(), cliCfg, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer w.close()
		// A round trip makes sure the connection is accepted before the
		// next one is dialled, so ids follow the dialling order.
		if got := mustDo(t, w, "ping", "_", ""); got != "ok" {
			t.Fatalf("ping = %q", got)
		}
		ws = append(ws, w)
	}
	if got := mustDo(t, ws[0], "l", "shared", "0"); !strings.HasPrefix(got, "ok ") {
		t.Fatalf("l over tcp = %q", got)
	}
	if got := mustDo(t, ws[1], "l", "shared", "0"); got != "timeout" {
		t.Fatalf("l over tls while held over tcp = %q; want timeout", got)
	}
	cs := clientsOf(t, ws[3])
	if len(cs) != 4 {
		t.Fatalf("clients = %+v", cs)
	}
	for i, c := range cs {
		wantTransport := "tcp"
		if i%2 == 1 {
			wantTransport = "tls"
		}
		if c.ID != uint64(i+1) || c.Transport != wantTransport || c.Remote != ws[i].conn.LocalAddr().String() || c.Identity != "" {
			t.Fatalf("clients[%d] = %+v; want id %d over %s from %s", i, c, i+1, wantTransport, ws[i].conn.LocalAddr())
		}
	}
}

// Serve(l) on a TLS listener reports "tls", as before ServeListener.
func TestServe_TLSListenerReportsTLS(t *testing.T) {
	t.Parallel()
	srvCfg, cliCfg := testutil.SelfSigned(t)
	l := tls.NewListener(listenTCP(t), srvCfg)
	start := func() {
		t.Helper()
		s := New(Options{Engine: core.New(core.Options{})})
		served := make(chan error, 1)
		go func() { served <- s.Serve(l) }()
		t.Cleanup(func() { s.Close(); <-served })
	}
	start()
	w, err := dialTLS(t, l.Addr().String(), cliCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cs := clientsOf(t, w); len(cs) != 1 || cs[0].Transport != "tls" {
		t.Fatalf("clients = %+v; want one over tls", cs)
	}
}

// A plaintext client on a TLS listener fails the handshake: the session
// ends without an answer, logged at info level with the reason.
func TestServeListener_PlaintextOnTLSDropped(t *testing.T) {
	t.Parallel()
	srvCfg, _ := testutil.SelfSigned(t)
	l := tls.NewListener(listenTCP(t), srvCfg)
	log, logs := logger()
	s := serveListeners(t, Options{Logger: log}, map[net.Listener]Listener{l: {Transport: "tls"}})
	w, err := dialWire(l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	_ = w.send("ping", "_", "")
	_ = w.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		// The TLS layer may answer with an alert record; never with a
		// protocol line.
		line, err := w.r.ReadString('\n')
		if err != nil {
			if isTimeout(err) {
				t.Fatal("connection not closed")
			}
			break
		}
		if line == "ok\n" {
			t.Fatal("plaintext ping answered")
		}
	}
	eventually(t, "connection forgotten", func() bool { return s.Connections() == 0 })
	eventually(t, "logged at info", func() bool {
		out := logs.String()
		return strings.Contains(out, "level=INFO msg=\"tls handshake failed\"") &&
			strings.Contains(out, "transport=tls") && strings.Contains(out, "remote=127.0.0.1:") && strings.Contains(out, "err=")
	})
}

// A client that connects to a TLS listener and never starts the handshake
// is dropped at the read timeout, and does not hold up Close.
func TestServeListener_HandshakeTimeout(t *testing.T) {
	t.Parallel()
	srvCfg, _ := testutil.SelfSigned(t)
	l := tls.NewListener(listenTCP(t), srvCfg)
	s := serveListeners(t, Options{ReadTimeout: 200 * time.Millisecond}, map[net.Listener]Listener{l: {Transport: "tls"}})
	w, err := dialWire(l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	eventually(t, "accepted", func() bool { return s.Connections() == 1 })
	eventually(t, "silent handshake dropped", func() bool { return s.Connections() == 0 })

	// Shutdown does not wait for the read timeout of a pending handshake.
	s2 := New(Options{Engine: core.New(core.Options{}), ReadTimeout: time.Hour})
	l2 := tls.NewListener(listenTCP(t), srvCfg)
	served := make(chan error, 1)
	go func() { served <- s2.ServeListener(l2, Listener{Transport: "tls"}) }()
	w2, err := dialWire(l2.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer w2.close()
	eventually(t, "accepted", func() bool { return s2.Connections() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s2.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with a pending handshake: %v", err)
	}
	if err := <-served; err != ErrServerClosed {
		t.Fatalf("ServeListener = %v", err)
	}
}

// shortSocketPath returns a Unix socket path short enough for sun_path,
// removed with its directory when the test ends.
func shortSocketPath(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dfl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s.sock")
}

// Unix socket peers are admitted by uid or gid; the identity is the uid.
func TestServeListener_UnixCreds(t *testing.T) {
	t.Parallel()
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	tests := []struct {
		name       string
		uids, gids []uint32
		ok         bool
	}{
		{"own uid", []uint32{uid}, nil, true},
		{"own gid", nil, []uint32{gid}, true},
		{"other uid", []uint32{uid + 1}, nil, false},
		{"other gid", nil, []uint32{gid + 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := shortSocketPath(t)
			ep := transport.Endpoint{Transport: "unix", Addr: path}
			l, err := transport.Listen(t.Context(), ep, transport.Options{})
			if err != nil {
				t.Fatal(err)
			}
			log, logs := logger()
			s := serveListeners(t, Options{Logger: log}, map[net.Listener]Listener{
				l: {Transport: "unix", Peer: auth.UnixCreds(tt.uids, tt.gids)},
			})
			c, err := transport.Dial(t.Context(), ep, transport.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			w := wrapWire(c)
			if !tt.ok {
				expectDropped(t, w)
				eventually(t, "refusal logged", func() bool {
					return strings.Contains(logs.String(), "authentication failed") && strings.Contains(logs.String(), "not allowed")
				})
				eventually(t, "connection forgotten", func() bool { return s.Connections() == 0 })
				return
			}
			cs := clientsOf(t, w)
			if len(cs) != 1 || cs[0].Transport != "unix" || cs[0].Identity != "uid:"+strconv.FormatUint(uint64(uid), 10) {
				t.Fatalf("clients = %+v; want one unix client uid:%d", cs, uid)
			}
		})
	}
}

// Without a peer authenticator a Unix socket still reports credentials to
// the token authenticator, and Serve names the transport after the
// listener's network.
func TestServe_UnixPeerSeesCredentials(t *testing.T) {
	t.Parallel()
	path := shortSocketPath(t)
	ep := transport.Endpoint{Transport: "unix", Addr: path}
	l, err := transport.Listen(t.Context(), ep, transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingAuth{}
	serveListeners(t, Options{Auth: rec}, map[net.Listener]Listener{l: {}})
	c, err := transport.Dial(t.Context(), ep, transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := wrapWire(c)
	if got := mustDo(t, w, "auth", "_", "x"); got != "ok" {
		t.Fatalf("auth = %q", got)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.peer.Transport != "unix" || rec.peer.Cred == nil || rec.peer.Cred.UID != uint32(os.Getuid()) || rec.peer.Cred.PID != int32(os.Getpid()) {
		t.Fatalf("peer = %+v (cred %+v)", rec.peer, rec.peer.Cred)
	}
}

// recordingAuth accepts any token and records the peer.
type recordingAuth struct {
	mu   sync.Mutex
	peer auth.Peer
}

func (r *recordingAuth) Authenticate(_ context.Context, p auth.Peer, _ string) (auth.Identity, error) {
	r.mu.Lock()
	r.peer = p
	r.mu.Unlock()
	return auth.Identity{Name: "rec"}, nil
}

// QUIC: every stream of one connection is its own session, each carrying
// the connection's verified client certificate as its identity.
func TestServeListener_QUICStreamsShareCertIdentity(t *testing.T) {
	t.Parallel()
	srvCfg, cert, cliCfg := mtlsConfigs(t, tls.RequireAndVerifyClientCert)
	l, err := transport.Listen(t.Context(), transport.Endpoint{Transport: "quic", Addr: "127.0.0.1:0"}, transport.Options{TLS: srvCfg})
	if err != nil {
		t.Fatal(err)
	}
	serveListeners(t, Options{}, map[net.Listener]Listener{l: {Transport: "quic", Peer: auth.ClientCert()}})

	cliCfg = cliCfg.Clone()
	cliCfg.ServerName = "localhost"
	cliCfg.Certificates = []tls.Certificate{cert}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	qs, err := transport.DialQUIC(ctx, l.Addr().String(), transport.Options{TLS: cliCfg})
	if err != nil {
		t.Fatal(err)
	}
	defer qs.Close()
	var ws []*wire
	for range 2 {
		c, err := qs.OpenConn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		w := wrapWire(c)
		if got := mustDo(t, w, "ping", "_", ""); got != "ok" { // the client speaks first on a stream
			t.Fatalf("ping = %q", got)
		}
		ws = append(ws, w)
	}
	if got := mustDo(t, ws[0], "l", "k", "0"); !strings.HasPrefix(got, "ok ") {
		t.Fatalf("l on stream 1 = %q", got)
	}
	if got := mustDo(t, ws[1], "l", "k", "0"); got != "timeout" {
		t.Fatalf("l on stream 2 = %q; want timeout (separate sessions)", got)
	}
	cs := clientsOf(t, ws[1])
	if len(cs) != 2 {
		t.Fatalf("clients = %+v", cs)
	}
	// The client's UDP socket is unbound (0.0.0.0:port): compare ports.
	_, port, _ := net.SplitHostPort(ws[0].conn.LocalAddr().String())
	for _, c := range cs {
		if c.Transport != "quic" || c.Identity != "cert:dflockd test" || !strings.HasSuffix(c.Remote, ":"+port) || c.Remote != cs[0].Remote {
			t.Fatalf("clients = %+v; want two quic sessions from port %s as cert:dflockd test", cs, port)
		}
	}

	// Without a certificate the QUIC handshake fails or the stream is
	// closed unanswered.
	plain := cliCfg.Clone()
	plain.Certificates = nil
	c, err := transport.Dial(ctx, transport.Endpoint{Transport: "quic", Addr: l.Addr().String()}, transport.Options{TLS: plain})
	if err == nil {
		defer c.Close()
		w := wrapWire(c)
		if line, err := w.do("ping", "_", ""); err == nil {
			t.Fatalf("ping without a certificate answered %q", line)
		}
	}
}
