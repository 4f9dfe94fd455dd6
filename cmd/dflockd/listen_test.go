package main

import (
	"crypto/tls"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/internal/testutil"
	"github.com/dflockd/dflockd/transport"
)

// Parsing of the multi-transport and authentication flags.

func ep(transportName, addr string) transport.Endpoint {
	return transport.Endpoint{Transport: transportName, Addr: addr}
}

func TestListenEndpoints(t *testing.T) {
	tlsArgs := []string{"--tls-cert", "c.pem", "--tls-key", "k.pem"}
	all := []transport.Endpoint{
		ep("tcp", "127.0.0.1:7001"), ep("tls", "[::1]:7002"), ep("unix", "/run/dflockd.sock"), ep("quic", "0.0.0.0:7003"),
	}
	tests := []struct {
		name string
		args []string
		vars map[string]string
		want []transport.Endpoint
	}{
		{name: "default is --host/--port", want: []transport.Endpoint{ep("tcp", "127.0.0.1:6388")}},
		{name: "default with a certificate is tls", args: tlsArgs, want: []transport.Endpoint{ep("tls", "127.0.0.1:6388")}},
		{name: "repeated",
			args: append([]string{"--listen", "tcp://127.0.0.1:7001", "--listen=tls://[::1]:7002",
				"--listen", "unix:///run/dflockd.sock", "--listen", "quic://0.0.0.0:7003"}, tlsArgs...),
			want: all},
		{name: "comma-separated",
			args: append([]string{"--listen", "tcp://127.0.0.1:7001,tls://[::1]:7002,unix:///run/dflockd.sock,quic://0.0.0.0:7003"}, tlsArgs...),
			want: all},
		{name: "environment",
			vars: map[string]string{"DFLOCKD_LISTEN": "tcp://127.0.0.1:7001,tls://[::1]:7002,unix:///run/dflockd.sock,quic://0.0.0.0:7003",
				"DFLOCKD_TLS_CERT": "c.pem", "DFLOCKD_TLS_KEY": "k.pem"},
			want: all},
		{name: "flag beats environment",
			args: []string{"--listen", "unix:///tmp/a.sock"},
			vars: map[string]string{"DFLOCKD_LISTEN": "tcp://127.0.0.1:7001"},
			want: []transport.Endpoint{ep("unix", "/tmp/a.sock")}},
		{name: "go flag syntax", args: []string{"-listen", "tcp://[::1]:0"}, want: []transport.Endpoint{ep("tcp", "[::1]:0")}},
		{name: "bare host:port is tcp", args: []string{"--listen", "127.0.0.1:9"}, want: []transport.Endpoint{ep("tcp", "127.0.0.1:9")}},
		{name: "host and port ignored",
			args: []string{"--host", "10.0.0.1", "--port", "1", "--listen", "tcp://127.0.0.1:7001"},
			want: []transport.Endpoint{ep("tcp", "127.0.0.1:7001")}},
		{name: "explicit serve command", args: []string{"serve", "--listen", "tcp://127.0.0.1:7001"},
			want: []transport.Endpoint{ep("tcp", "127.0.0.1:7001")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tt.args, tt.vars)
			if got := c.endpoints(); !slices.Equal(got, tt.want) {
				t.Errorf("endpoints = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestListenErrors(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	tests := []struct {
		args    []string
		vars    map[string]string
		wantErr []string // substrings of the error
	}{
		{[]string{"--listen", "bogus://127.0.0.1:1"}, nil, []string{"--listen", "bogus", "known: quic, tcp, tls, unix"}},
		{[]string{"--listen", "unix://relative.sock"}, nil, []string{"--listen", "not absolute"}},
		{[]string{"--listen", "tcp://127.0.0.1"}, nil, []string{"--listen", "port"}},
		{[]string{"--listen", "tcp://::1:80"}, nil, []string{"--listen"}}, // IPv6 needs brackets
		{[]string{"--listen", "tls://127.0.0.1:1"}, nil, []string{"--listen tls://127.0.0.1:1 needs --tls-cert and --tls-key"}},
		{[]string{"--listen", "quic://127.0.0.1:1"}, nil, []string{"--listen quic://127.0.0.1:1 needs --tls-cert"}},
		{nil, map[string]string{"DFLOCKD_LISTEN": "tcp://127.0.0.1:1,quic://127.0.0.1:1"}, []string{"$DFLOCKD_LISTEN", "quic://127.0.0.1:1 needs --tls-cert"}},
		{[]string{"--tls-client-ca", ca}, nil, []string{"--tls-client-ca needs --tls-cert and --tls-key"}},
		{nil, map[string]string{"DFLOCKD_TLS_CLIENT_CA": ca}, []string{"--tls-client-ca (from $DFLOCKD_TLS_CLIENT_CA) needs --tls-cert"}},
		{[]string{"--unix-socket-mode", "0999"}, nil, []string{"--unix-socket-mode", "octal", "0999"}},
		{[]string{"--unix-socket-mode", "rw-rw----"}, nil, []string{"--unix-socket-mode"}},
		{[]string{"--unix-socket-mode", "01777"}, nil, []string{"--unix-socket-mode"}},
		{[]string{"--unix-socket-mode="}, nil, []string{"--unix-socket-mode"}},
		{nil, map[string]string{"DFLOCKD_UNIX_SOCKET_MODE": "8"}, []string{"DFLOCKD_UNIX_SOCKET_MODE"}},
		// A typo in an allow list must not quietly admit everybody.
		{[]string{"--unix-allow-uid", "alice"}, nil, []string{"--unix-allow-uid"}},
		{[]string{"--unix-allow-uid=-1"}, nil, []string{"--unix-allow-uid"}},
		{[]string{"--unix-allow-gid", "4294967296"}, nil, []string{"--unix-allow-gid"}},
		{nil, map[string]string{"DFLOCKD_UNIX_ALLOW_UID": "1000,x"}, []string{`DFLOCKD_UNIX_ALLOW_UID="1000,x"`, `"x"`}},
		{nil, map[string]string{"DFLOCKD_UNIX_ALLOW_GID": "-5"}, []string{`DFLOCKD_UNIX_ALLOW_GID="-5"`}},
		{[]string{"--quic-idle-timeout", "0"}, nil, []string{"--quic-idle-timeout: must be > 0"}},
		{[]string{"--quic-keepalive=-1"}, nil, []string{"--quic-keepalive: negative duration"}},
		{[]string{"--quic-idle-timeout", "9223372037"}, nil, []string{"--quic-idle-timeout", "more than the 9223372036"}},
		// gen-cert's flags are its own.
		{[]string{"--out", "x"}, nil, []string{"--out"}},
		{[]string{"--port", "1", "gen-cert", "--out", "x"}, nil, []string{"--port"}},
	}
	for _, tt := range tests {
		c, err := parse(tt.args, env(tt.vars), io.Discard, io.Discard)
		if err == nil {
			t.Errorf("%q %v: accepted (%+v)", tt.args, tt.vars, c)
			continue
		}
		for _, want := range tt.wantErr {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%q %v: error %q does not contain %q", tt.args, tt.vars, err, want)
			}
		}
	}
}

func TestUnixSocketMode(t *testing.T) {
	for arg, want := range map[string]os.FileMode{"0660": 0o660, "0600": 0o600, "600": 0o600, "0o640": 0, "0777": 0o777, "0": 0} {
		c, err := parse([]string{"--unix-socket-mode", arg}, env(nil), io.Discard, io.Discard)
		if arg == "0o640" {
			if err == nil {
				t.Errorf("%q accepted", arg)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", arg, err)
			continue
		}
		if got := c.Serve.transportOptions(nil).UnixMode; got != want {
			t.Errorf("%q: UnixMode %#o, want %#o", arg, got, want)
		}
	}
	if got := mustParse(t, nil, nil).transportOptions(nil).UnixMode; got != 0o660 {
		t.Errorf("default UnixMode %#o, want 0660", got)
	}
}

func TestUnixAllowLists(t *testing.T) {
	tests := []struct {
		args       []string
		vars       map[string]string
		uids, gids []uint32
	}{
		{nil, nil, nil, nil},
		{[]string{"--unix-allow-uid", "1000", "--unix-allow-uid", "0"}, nil, []uint32{1000, 0}, nil},
		{[]string{"--unix-allow-uid", "1000,1001", "--unix-allow-gid=50,51"}, nil, []uint32{1000, 1001}, []uint32{50, 51}},
		{nil, map[string]string{"DFLOCKD_UNIX_ALLOW_UID": "7,8", "DFLOCKD_UNIX_ALLOW_GID": "9"}, []uint32{7, 8}, []uint32{9}},
		{[]string{"--unix-allow-gid", "4294967295"}, map[string]string{"DFLOCKD_UNIX_ALLOW_GID": "1"}, nil, []uint32{4294967295}},
	}
	for _, tt := range tests {
		c := mustParse(t, tt.args, tt.vars)
		if !slices.Equal(c.UnixAllowUID, tt.uids) || !slices.Equal(c.UnixAllowGID, tt.gids) {
			t.Errorf("%q %v: uids %v gids %v, want %v %v", tt.args, tt.vars, c.UnixAllowUID, c.UnixAllowGID, tt.uids, tt.gids)
		}
		unix := c.peerAuth(ep("unix", "/s.sock"))
		if (unix != nil) != (len(tt.uids)+len(tt.gids) > 0) {
			t.Errorf("%q %v: unix peer authenticator %v", tt.args, tt.vars, unix)
		}
		if a := c.peerAuth(ep("tcp", "127.0.0.1:1")); a != nil {
			t.Errorf("tcp peer authenticator %v, want nil", a)
		}
	}
}

func TestQUICOptions(t *testing.T) {
	o := mustParse(t, nil, nil).transportOptions(nil)
	if o.QUICIdleTimeout != 30*time.Second || o.QUICKeepAlive != 10*time.Second {
		t.Errorf("defaults: idle %v keep-alive %v", o.QUICIdleTimeout, o.QUICKeepAlive)
	}
	// 0 disables keep-alives: the transport's "disabled" is negative.
	o = mustParse(t, []string{"--quic-keepalive", "0", "--quic-idle-timeout", "5"}, nil).transportOptions(nil)
	if o.QUICKeepAlive >= 0 || o.QUICIdleTimeout != 5*time.Second {
		t.Errorf("idle %v keep-alive %v; want 5s and disabled", o.QUICIdleTimeout, o.QUICKeepAlive)
	}
}

// --tls-client-ca turns on mutual TLS for tls and quic listeners, with the
// client certificate as their peer authenticator.
func TestTLSClientCA(t *testing.T) {
	certFile, keyFile := testutil.SelfSignedFiles(t)
	caFile, _ := testutil.SelfSignedFiles(t)
	c := mustParse(t, []string{"--tls-cert", certFile, "--tls-key", keyFile, "--tls-client-ca", caFile,
		"--listen", "tls://127.0.0.1:0", "--listen", "quic://127.0.0.1:0", "--listen", "tcp://127.0.0.1:0"}, nil)
	ts, err := c.loadTLS()
	if err != nil {
		t.Fatal(err)
	}
	if ts.cfg.ClientAuth != tls.RequireAndVerifyClientCert || ts.cfg.ClientCAs == nil {
		t.Errorf("client auth %v, CAs %v", ts.cfg.ClientAuth, ts.cfg.ClientCAs)
	}
	for _, e := range c.endpoints() {
		a := c.peerAuth(e)
		if e.Transport == "tcp" {
			if a != nil {
				t.Errorf("%v: peer authenticator %v, want nil", e, a)
			}
			continue
		}
		if a != auth.ClientCert() {
			t.Errorf("%v: peer authenticator %#v, want auth.ClientCert()", e, a)
		}
	}
	// Without the CA: plain TLS, no peer authenticator.
	c = mustParse(t, []string{"--tls-cert", certFile, "--tls-key", keyFile, "--listen", "tls://127.0.0.1:0"}, nil)
	if ts, err := c.loadTLS(); err != nil || ts.cfg.ClientAuth != tls.NoClientCert || c.peerAuth(c.endpoints()[0]) != nil {
		t.Errorf("without --tls-client-ca: %v, %v", ts, err)
	}
	// A CA file that is missing or holds no certificate is a startup error.
	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{empty, filepath.Join(t.TempDir(), "missing.pem")} {
		c := mustParse(t, []string{"--tls-cert", certFile, "--tls-key", keyFile, "--tls-client-ca", bad}, nil)
		if _, err := c.loadTLS(); err == nil || !strings.Contains(err.Error(), "--tls-client-ca") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
