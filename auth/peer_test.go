package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/dflockd/dflockd/internal/testutil"
)

// handshake runs a real TLS handshake over an in-memory pipe and returns
// the server's view of it. The server requires and verifies a client
// certificate against clientCAs when it is non-nil, and only asks for one
// otherwise.
func handshake(t *testing.T, clientCert *tls.Certificate, clientCAs *x509.CertPool) (tls.ConnectionState, error) {
	t.Helper()
	srvCfg, cliCfg := testutil.SelfSigned(t)
	srvCfg = srvCfg.Clone()
	if clientCAs != nil {
		srvCfg.ClientAuth, srvCfg.ClientCAs = tls.RequireAndVerifyClientCert, clientCAs
	} else {
		srvCfg.ClientAuth = tls.RequestClientCert
	}
	cliCfg = cliCfg.Clone()
	cliCfg.ServerName = "localhost"
	if clientCert != nil {
		cliCfg.Certificates = []tls.Certificate{*clientCert}
	}
	// Loopback TCP rather than net.Pipe: the kernel buffers alerts and
	// tickets, so neither side blocks on a peer that stopped reading.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		done <- tls.Client(c, cliCfg).HandshakeContext(t.Context())
	}()
	a, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	srv := tls.Server(a, srvCfg)
	err = srv.HandshakeContext(t.Context())
	<-done
	return srv.ConnectionState(), err
}

// keyPair loads a testutil certificate as a client certificate and
// returns it with a pool trusting it.
func keyPair(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	certPEM, keyPEM := testutil.SelfSignedPEM(t, "client.example")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(certPEM) {
		t.Fatal("bad PEM")
	}
	return cert, pool
}

func TestClientCertAcceptsVerifiedChain(t *testing.T) {
	cert, pool := keyPair(t)
	st, err := handshake(t, &cert, pool)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	id, err := ClientCert().AuthenticatePeer(context.Background(), Peer{Transport: "tls", TLS: &st})
	if err != nil {
		t.Fatalf("AuthenticatePeer: %v", err)
	}
	if id.Name != "cert:dflockd test" { // testutil's subject common name
		t.Fatalf("identity %q; want cert:dflockd test", id.Name)
	}
}

func TestClientCertDenies(t *testing.T) {
	// A certificate presented but not verified (the server only asked for
	// one) does not count.
	cert, _ := keyPair(t)
	unverified, err := handshake(t, &cert, nil)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if len(unverified.PeerCertificates) == 0 || len(unverified.VerifiedChains) != 0 {
		t.Fatalf("setup: peer certs %d, verified chains %d", len(unverified.PeerCertificates), len(unverified.VerifiedChains))
	}
	noCert, err := handshake(t, nil, nil)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	for name, p := range map[string]Peer{
		"not tls":         {Transport: "tcp"},
		"no certificate":  {Transport: "tls", TLS: &noCert},
		"unverified":      {Transport: "tls", TLS: &unverified},
		"empty chain":     {Transport: "quic", TLS: &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{}}}},
		"nameless leaf":   {Transport: "tls", TLS: chain(&x509.Certificate{})},
		"unix with creds": {Transport: "unix", Cred: &UnixCred{UID: 0}},
	} {
		id, err := ClientCert().AuthenticatePeer(context.Background(), p)
		if !errors.Is(err, ErrDenied) || id != (Identity{}) {
			t.Errorf("%s: %v, %v; want ErrDenied", name, id, err)
		}
		if err != nil && err.Error() == ErrDenied.Error() {
			t.Errorf("%s: error %q carries no reason", name, err)
		}
	}
}

// A certificate from another CA fails the handshake itself: ClientCert
// never sees it.
func TestClientCertOtherCAFailsHandshake(t *testing.T) {
	cert, _ := keyPair(t)
	_, otherPool := keyPair(t)
	if _, err := handshake(t, &cert, otherPool); err == nil {
		t.Fatal("handshake with a certificate from another CA succeeded")
	}
}

// chain wraps a leaf as a verified chain.
func chain(leaf *x509.Certificate) *tls.ConnectionState {
	return &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf}}}
}

func TestClientCertIdentityFallbacks(t *testing.T) {
	tests := []struct {
		leaf x509.Certificate
		want string
	}{
		{x509.Certificate{Subject: pkix.Name{CommonName: "alice"}, DNSNames: []string{"a.example"}}, "cert:alice"},
		{x509.Certificate{DNSNames: []string{"worker-1.example", "w1"}, EmailAddresses: []string{"x@example.com"}}, "cert:worker-1.example"},
		{x509.Certificate{EmailAddresses: []string{"bob@example.com"}}, "cert:bob@example.com"},
	}
	for _, tt := range tests {
		id, err := ClientCert().AuthenticatePeer(context.Background(), Peer{TLS: chain(&tt.leaf)})
		if err != nil || id.Name != tt.want {
			t.Errorf("%+v: %q, %v; want %q", tt.leaf.Subject, id.Name, err, tt.want)
		}
	}
}

func TestUnixCreds(t *testing.T) {
	tests := []struct {
		uids, gids []uint32
		cred       *UnixCred
		want       string // "" = denied
	}{
		{[]uint32{1000}, nil, &UnixCred{PID: 7, UID: 1000, GID: 1000}, "uid:1000"},
		{[]uint32{1000, 0}, nil, &UnixCred{UID: 0, GID: 5}, "uid:0"},
		{[]uint32{1000}, nil, &UnixCred{UID: 1001, GID: 1000}, ""}, // gid list empty: nobody by group
		{nil, []uint32{50}, &UnixCred{UID: 1001, GID: 50}, "uid:1001"},
		{nil, []uint32{50}, &UnixCred{UID: 50, GID: 51}, ""}, // uid list empty: nobody by user
		{[]uint32{1}, []uint32{2}, &UnixCred{UID: 3, GID: 2}, "uid:3"},
		{[]uint32{1}, []uint32{2}, &UnixCred{UID: 1, GID: 9}, "uid:1"},
		{[]uint32{1}, []uint32{2}, &UnixCred{UID: 3, GID: 4}, ""},
		{[]uint32{1000}, []uint32{1000}, nil, ""}, // no credentials
		{nil, nil, &UnixCred{UID: 0, GID: 0}, ""}, // both empty: nobody
	}
	for _, tt := range tests {
		a := UnixCreds(tt.uids, tt.gids)
		id, err := a.AuthenticatePeer(context.Background(), Peer{Transport: "unix", Cred: tt.cred})
		if tt.want == "" {
			if !errors.Is(err, ErrDenied) || id != (Identity{}) {
				t.Errorf("uids %v gids %v cred %+v: %v, %v; want ErrDenied", tt.uids, tt.gids, tt.cred, id, err)
			}
			if err != nil && !strings.Contains(err.Error(), ": ") {
				t.Errorf("error %q carries no reason", err)
			}
			continue
		}
		if err != nil || id.Name != tt.want {
			t.Errorf("uids %v gids %v cred %+v: %q, %v; want %q", tt.uids, tt.gids, tt.cred, id.Name, err, tt.want)
		}
	}
}

// UnixCreds keeps its own copy of the lists.
func TestUnixCredsCopiesLists(t *testing.T) {
	uids := []uint32{1000}
	a := UnixCreds(uids, nil)
	uids[0] = 2000
	if _, err := a.AuthenticatePeer(context.Background(), Peer{Cred: &UnixCred{UID: 1000}}); err != nil {
		t.Fatalf("uid 1000 denied after the caller's slice changed: %v", err)
	}
}
