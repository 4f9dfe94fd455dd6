package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dflockd/dflockd/internal/testutil"
	"github.com/dflockd/dflockd/transport"
)

// Run-level tests of serving several transports from one process.

var listeningLine = regexp.MustCompile(`msg="dflockd listening" transport=(\S+) addr=(\S+)`)

// startRunListening runs the command like startRun and waits until it
// reports n listeners. It returns their endpoints in the order logged.
func startRunListening(t *testing.T, n int, args ...string) (eps []transport.Endpoint, stop func(), stderr *testutil.SyncBuffer) {
	t.Helper()
	done, stop, stderr := launch(t, args...)
	var ms [][]string
	waitFor(t, done, stderr, strconv.Itoa(n)+" listeners", func(log string) bool {
		ms = listeningLine.FindAllStringSubmatch(log, -1)
		return len(ms) >= n
	})
	for _, m := range ms {
		eps = append(eps, transport.Endpoint{Transport: m[1], Addr: m[2]})
	}
	return eps, stop, stderr
}

// lineConn is a protocol client over any net.Conn.
type lineConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func newLineConn(t *testing.T, c net.Conn) *lineConn {
	t.Cleanup(func() { c.Close() })
	return &lineConn{t: t, c: c, r: bufio.NewReaderSize(c, 1<<20)}
}

// do sends one request and reads the answer line; err reports I/O
// failure (such as the server closing the connection).
func (l *lineConn) do(cmd, key, arg string) (string, error) {
	_ = l.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := l.c.Write([]byte(cmd + "\n" + key + "\n" + arg + "\n")); err != nil {
		return "", err
	}
	line, err := l.r.ReadString('\n')
	return strings.TrimSuffix(line, "\n"), err
}

func (l *lineConn) must(cmd, key, arg string) string {
	l.t.Helper()
	line, err := l.do(cmd, key, arg)
	if err != nil {
		l.t.Fatalf("%s %q %q: %v", cmd, key, arg, err)
	}
	return line
}

// client is one entry of stats.clients.
type client struct {
	ID        uint64 `json:"id"`
	Transport string `json:"transport"`
	Remote    string `json:"remote"`
	Identity  string `json:"identity"`
}

func (l *lineConn) clients() []client {
	l.t.Helper()
	line := l.must("stats", "_", "")
	body, ok := strings.CutPrefix(line, "ok ")
	if !ok {
		l.t.Fatalf("stats = %q", line)
	}
	var st struct {
		Clients []client `json:"clients"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil || st.Clients == nil {
		l.t.Fatalf("stats %q: %v", body, err)
	}
	return st.Clients
}

// dial connects to e with opts (TLS for tls and quic).
func dial(t *testing.T, e transport.Endpoint, cfg *tls.Config) (*lineConn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, e, transport.Options{TLS: cfg})
	if err != nil {
		return nil, err
	}
	return newLineConn(t, c), nil
}

func mustDial(t *testing.T, e transport.Endpoint, cfg *tls.Config) *lineConn {
	t.Helper()
	c, err := dial(t, e, cfg)
	if err != nil {
		t.Fatalf("dial %v: %v", e, err)
	}
	return c
}

// clientTLS trusts the CA in dir (from gen-cert) and, when withCert is
// set, presents dir's client certificate.
func clientTLS(t *testing.T, dir string, withCert bool) *tls.Config {
	t.Helper()
	pool, err := loadCertPool(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if withCert {
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg
}

// socketPath returns a Unix socket path in a fresh directory that is short
// enough for sun_path (t.TempDir paths can exceed it).
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dfl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s.sock")
}

func byTransport(t *testing.T, eps []transport.Endpoint, name string) transport.Endpoint {
	t.Helper()
	for _, e := range eps {
		if e.Transport == name {
			return e
		}
	}
	t.Fatalf("no %s listener in %v", name, eps)
	return transport.Endpoint{}
}

// One process serves TCP, TLS, a Unix socket and QUIC from one engine: a
// lock taken over one transport is held for all the others.
func TestRunAllTransportsShareOneEngine(t *testing.T) {
	dir := genCert(t)
	sock := socketPath(t)
	eps, stop, stderr := startRunListening(t, 4,
		"--listen", "tcp://127.0.0.1:0", "--listen", "tls://127.0.0.1:0",
		"--listen", "unix://"+sock, "--listen", "quic://127.0.0.1:0",
		"--tls-cert", filepath.Join(dir, "server.pem"), "--tls-key", filepath.Join(dir, "server-key.pem"))

	order := []string{"tcp", "tls", "unix", "quic"}
	cfg := clientTLS(t, dir, false)
	conns := map[string]*lineConn{}
	for _, name := range order {
		conns[name] = mustDial(t, byTransport(t, eps, name), cfg)
		conns[name].must("ping", "_", "") // accepted in this order: ids 1-4
	}
	if got := conns["tcp"].must("l", "k", "0"); !strings.HasPrefix(got, "ok ") {
		t.Fatalf("l over tcp = %q", got)
	}
	for _, name := range order[1:] {
		if got := conns[name].must("l", "k", "0"); got != "timeout" {
			t.Errorf("l over %s while held over tcp = %q; want timeout", name, got)
		}
	}
	cs := conns["quic"].clients()
	if len(cs) != 4 {
		t.Fatalf("clients = %+v", cs)
	}
	for i, c := range cs {
		if c.ID != uint64(i+1) || c.Transport != order[i] || c.Identity != "" {
			t.Errorf("clients[%d] = %+v; want id %d over %s without identity", i, c, i+1, order[i])
		}
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket file: %v, %v; want mode 0660", fi, err)
	}

	for _, c := range conns {
		c.c.Close()
	}
	stop()
	waitLog(t, stderr, `msg=stopped`)
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket file left behind: %v", err)
	}
}

// waitLog waits until the log contains s.
func waitLog(t *testing.T, log *testutil.SyncBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log lacks %q: %s", s, log.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Mutual TLS on tls and quic: only the gen-cert client certificate is let
// in, and its name is the client's identity in stats.
func TestRunMutualTLS(t *testing.T) {
	dir := genCert(t)
	eps, _, stderr := startRunListening(t, 2,
		"--listen", "tls://127.0.0.1:0", "--listen", "quic://127.0.0.1:0",
		"--tls-cert", filepath.Join(dir, "server.pem"), "--tls-key", filepath.Join(dir, "server-key.pem"),
		"--tls-client-ca", filepath.Join(dir, "ca.pem"))
	if !strings.Contains(stderr.String(), "client_auth=client-certificate") {
		t.Errorf("listeners not logged with client_auth: %s", stderr.String())
	}

	stranger := clientTLS(t, dir, false)
	strangerCert, strangerKey := testutil.SelfSignedPEM(t) // another CA
	kp, err := tls.X509KeyPair(strangerCert, strangerKey)
	if err != nil {
		t.Fatal(err)
	}
	stranger.Certificates = []tls.Certificate{kp}
	for _, name := range []string{"tls", "quic"} {
		e := byTransport(t, eps, name)
		for what, cfg := range map[string]*tls.Config{"no certificate": clientTLS(t, dir, false), "other CA": stranger} {
			c, err := dial(t, e, cfg)
			if err != nil {
				continue // refused during the handshake
			}
			if line, err := c.do("ping", "_", ""); err == nil {
				t.Errorf("%s with %s: ping answered %q", name, what, line)
			}
		}
	}

	good := clientTLS(t, dir, true)
	tlsConn := mustDial(t, byTransport(t, eps, "tls"), good)
	tlsConn.must("ping", "_", "")
	quicConn := mustDial(t, byTransport(t, eps, "quic"), good)
	cs := quicConn.clients()
	want := map[string]bool{"tls": true, "quic": true}
	for _, c := range cs {
		if c.Identity != "cert:dflockd-client" || !want[c.Transport] {
			t.Errorf("client %+v; want cert:dflockd-client over tls or quic", c)
		}
		delete(want, c.Transport)
	}
	if len(want) != 0 {
		t.Errorf("clients %+v lack %v", cs, want)
	}
}

// On a Unix socket the allow lists admit by process credentials, and the
// socket file gets --unix-socket-mode.
func TestRunUnixCredentials(t *testing.T) {
	uid := os.Getuid()
	sock := socketPath(t)
	_, _, _ = startRunListening(t, 1, "--listen", "unix://"+sock, "--unix-socket-mode", "0600",
		"--unix-allow-uid", strconv.Itoa(uid))
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket file: %v, %v; want mode 0600", fi, err)
	}
	c := mustDial(t, transport.Endpoint{Transport: "unix", Addr: sock}, nil)
	if cs := c.clients(); len(cs) != 1 || cs[0].Identity != "uid:"+strconv.Itoa(uid) || cs[0].Transport != "unix" {
		t.Fatalf("clients = %+v; want uid:%d over unix", cs, uid)
	}

	other := socketPath(t)
	_, _, stderr := startRunListening(t, 1, "--listen", "unix://"+other, "--unix-allow-uid", strconv.Itoa(uid+1),
		"--unix-allow-gid", strconv.Itoa(os.Getgid()+1))
	c = mustDial(t, transport.Endpoint{Transport: "unix", Addr: other}, nil)
	if line, err := c.do("ping", "_", ""); err == nil {
		t.Fatalf("ping from a uid not allowed answered %q", line)
	}
	waitLog(t, stderr, `msg="authentication failed"`)
}

// --listen replaces --host/--port, which are then only noted in the log.
func TestRunListenIgnoresHostPort(t *testing.T) {
	eps, _, stderr := startRunListening(t, 1, "--port", "1", "--listen", "tcp://127.0.0.1:0")
	if len(eps) != 1 || eps[0].Transport != "tcp" || !strings.HasPrefix(eps[0].Addr, "127.0.0.1:") {
		t.Fatalf("listening on %v", eps)
	}
	if !strings.Contains(stderr.String(), `level=INFO msg="--host and --port are ignored because --listen is given"`) {
		t.Errorf("log: %s", stderr.String())
	}
	mustDial(t, eps[0], nil).must("ping", "_", "")
}

// IPv6 literals work in --listen.
func TestRunListenIPv6(t *testing.T) {
	if l, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	} else {
		l.Close()
	}
	dir := genCert(t)
	eps, _, _ := startRunListening(t, 2, "--listen", "tcp://[::1]:0", "--listen", "tls://[::1]:0",
		"--tls-cert", filepath.Join(dir, "server.pem"), "--tls-key", filepath.Join(dir, "server-key.pem"))
	for _, e := range eps {
		if !strings.HasPrefix(e.Addr, "[::1]:") {
			t.Fatalf("listening on %v; want [::1]", e)
		}
		mustDial(t, e, clientTLS(t, dir, false)).must("ping", "_", "")
	}
}

// When one listener cannot bind, the ones already bound are closed and the
// command fails.
func TestRunListenFailureClosesTheOthers(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	sock := socketPath(t)
	var stdout, stderr bytes.Buffer
	args := []string{"--listen", "unix://" + sock, "--listen", "tcp://" + busy.Addr().String()}
	if code := run(t.Context(), args, &stdout, &stderr, env(nil)); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), "tcp://"+busy.Addr().String()) {
		t.Errorf("stderr %q", stderr.String())
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the unix listener was not closed: %v", err)
	}
}

func TestRunMultiTransportConfigErrors(t *testing.T) {
	certFile, keyFile := testutil.SelfSignedFiles(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--listen", "tls://127.0.0.1:0"}, "--listen tls://127.0.0.1:0 needs --tls-cert"},
		{[]string{"--listen", "quic://127.0.0.1:0"}, "needs --tls-cert"},
		{[]string{"--tls-cert", certFile, "--tls-key", keyFile, "--tls-client-ca", filepath.Join(t.TempDir(), "none.pem")}, "--tls-client-ca"},
		{[]string{"--listen", "unix://relative"}, "--listen"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), tt.args, &stdout, &stderr, env(nil)); code != 1 {
			t.Errorf("%q: exit %d, want 1", tt.args, code)
		}
		if out := stderr.String(); !strings.HasPrefix(out, "configuration error: ") || !strings.Contains(out, tt.want) {
			t.Errorf("%q: stderr %q", tt.args, out)
		}
	}
}

// peerSerial connects to a TLS endpoint and returns the serial number of
// the certificate the server presented.
func peerSerial(t *testing.T, e transport.Endpoint, roots *x509.CertPool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, e, transport.Options{TLS: &tls.Config{RootCAs: roots, ServerName: "localhost"}})
	if err != nil {
		t.Fatalf("dial %v: %v", e, err)
	}
	defer c.Close()
	st := c.(transport.TLSConner).ConnectionState()
	return st.PeerCertificates[0].SerialNumber.String()
}

func serialOf(t *testing.T, certPEM []byte) string {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.String()
}

// The key pair is reloaded from disk on SIGHUP: new handshakes get the new
// certificate, open connections carry on, and a broken pair on disk is
// refused with the old one kept. The signal is a real SIGHUP to this test
// process; run has it registered with signal.Notify before it logs its
// listeners, so it never reaches the default (terminating) action.
func TestRunReloadsCertificateOnSIGHUP(t *testing.T) {
	certA, keyA := testutil.SelfSignedPEM(t)
	certB, keyB := testutil.SelfSignedPEM(t)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certA)
	roots.AppendCertsFromPEM(certB)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	write := func(cert, key []byte) {
		t.Helper()
		if err := os.WriteFile(certFile, cert, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(certA, keyA)
	eps, _, stderr := startRunListening(t, 2, "--listen", "tls://127.0.0.1:0", "--listen", "quic://127.0.0.1:0",
		"--tls-cert", certFile, "--tls-key", keyFile)
	tlsEP, quicEP := byTransport(t, eps, "tls"), byTransport(t, eps, "quic")
	for _, e := range []transport.Endpoint{tlsEP, quicEP} {
		if got := peerSerial(t, e, roots); got != serialOf(t, certA) {
			t.Fatalf("%s serves serial %s; want certificate A", e.Transport, got)
		}
	}
	open := mustDial(t, tlsEP, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	open.must("ping", "_", "")

	hup := func() {
		t.Helper()
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	write(certB, keyB)
	hup()
	waitLog(t, stderr, `msg="tls certificate reloaded"`)
	for _, e := range []transport.Endpoint{tlsEP, quicEP} {
		if got := peerSerial(t, e, roots); got != serialOf(t, certB) {
			t.Fatalf("%s serves serial %s after the reload; want certificate B", e.Transport, got)
		}
	}
	open.must("ping", "_", "") // not dropped

	// A broken pair (B's certificate with A's key) is refused; B stays.
	write(certB, keyA)
	hup()
	waitLog(t, stderr, `level=ERROR msg="tls reload failed; keeping the current certificate"`)
	if got := peerSerial(t, tlsEP, roots); got != serialOf(t, certB) {
		t.Fatalf("serves serial %s after a failed reload; want certificate B", got)
	}
	open.must("ping", "_", "")
}
