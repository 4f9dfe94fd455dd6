package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/server"
)

// TestUsageErrors: bad command lines and configurations exit with
// status 2 and say why on stderr, without contacting a server.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{nil, "expected one of"},
		{[]string{"frobnicate"}, "unexpected argument"},
		{[]string{"lock", "k", "--"}, "no command given"},
		{[]string{"lock", "k", "-c", "true", "--", "true"}, "not both"},
		{[]string{"lock", "-E", "256", "k", "--", "true"}, "--conflict-exit-code"},
		{[]string{"lock", "--timeout", "500ms", "k", "--", "true"}, "must be whole seconds"},
		{[]string{"lock", "--timeout", "1.5", "k", "--", "true"}, "must be whole seconds"},
		{[]string{"semaphore", "--ttl", "1.5s", "k", "2", "--", "true"}, "must be whole seconds"},
		{[]string{"listen", "jobs*"}, "* stands for one whole dot-separated token"},
		{[]string{"listen", "a.>.b"}, "bad pattern"},
		{[]string{"signal", "--min-receivers", "-1", "c", "p"}, "--min-receivers"},
		{[]string{"--server", "127.0.0.1:1", "signal", "jobs.*", "p"}, "wildcards are for listen"},
		{[]string{"--server", "/tmp/d.sock", "--tls-ca", "ca.pem", "stats"}, "unix transport"},
		{[]string{"lock", "--timeout=-1s", "k", "--", "true"}, "negative duration"},
		{[]string{"lock", "--ttl", "soon", "k", "--", "true"}, "--ttl"},
		{[]string{"semaphore", "k", "0", "--", "true"}, "limit must be at least 1"},
		{[]string{"listen", "p", "--count", "-1"}, "--count"},
		{[]string{"--tls-cert", "c.pem", "stats"}, "--tls-cert and --tls-key"},
		{[]string{"--tls-ca", missing, "stats"}, "--tls-ca"},
		{[]string{"--tls-ca", "ca.pem", "--server", "unix:///tmp/d.sock", "stats"}, "unix transport"},
		{[]string{"--server", "a:1,b:2", "stats"}, "one server"},
		{[]string{"--auth-token", " ", "stats"}, "empty auth token"},
		{[]string{"--auth-token-file", missing, "stats"}, "--auth-token-file"},
		{[]string{"--transport", "carrier-pigeon", "stats"}, "carrier-pigeon"},
	} {
		p := runCLI(t, nil, tc.args...)
		if p.code != exitUsage || !strings.Contains(p.stderr.String(), tc.msg) {
			t.Errorf("dflockctl %q: exit %d, stderr %q; want %d and %q", tc.args, p.code, p.stderr.String(), exitUsage, tc.msg)
		}
	}
}

// TestHelp: --help prints usage on stdout and exits 0.
func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"lock", "--help"}} {
		p := runCLI(t, nil, args...)
		if p.code != 0 || !strings.Contains(p.stdout.String(), "Usage: dflockctl") {
			t.Errorf("dflockctl %q: exit %d, stdout %q", args, p.code, p.stdout.String())
		}
	}
	p := runCLI(t, nil, "lock", "--help")
	if !strings.Contains(p.stdout.String(), "Exit status") {
		t.Errorf("lock --help does not document the exit status:\n%s", p.stdout.String())
	}
}

// TestServerUnreachable: a server that does not answer is exit status 3.
func TestServerUnreachable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	for _, args := range [][]string{{"stats"}, {"lock", "k", "--", "true"}, {"signal", "c", "p"}, {"listen", "p"}} {
		p := runCLI(t, nil, append([]string{"--server", addr}, args...)...)
		if p.code != exitFailure || !strings.Contains(p.stderr.String(), "refused") {
			t.Errorf("dflockctl %q: exit %d, stderr %q; want %d", args, p.code, p.stderr.String(), exitFailure)
		}
	}
}

// TestEnvironment: the server address and auth token come from the
// environment; flags beat variables, and --auth-token-file beats
// $DFLOCKD_AUTH_TOKEN.
func TestEnvironment(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, server.Options{Auth: auth.Token("s3cret")})
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want int
	}{
		{"env", map[string]string{"DFLOCKD_SERVER": ts.addr, "DFLOCKD_AUTH_TOKEN": " s3cret\n"}, nil, 0},
		{"env token file", map[string]string{"DFLOCKD_SERVER": ts.addr, "DFLOCKD_AUTH_TOKEN_FILE": tokenFile}, nil, 0},
		{"no token", map[string]string{"DFLOCKD_SERVER": ts.addr}, nil, exitFailure},
		{"wrong token", map[string]string{"DFLOCKD_SERVER": ts.addr, "DFLOCKD_AUTH_TOKEN": "nope"}, nil, exitFailure},
		{"flag beats env", map[string]string{"DFLOCKD_SERVER": "127.0.0.1:1", "DFLOCKD_AUTH_TOKEN": "nope"},
			[]string{"--server", ts.addr, "--auth-token", "s3cret"}, 0},
		{"file flag beats env token", map[string]string{"DFLOCKD_SERVER": ts.addr, "DFLOCKD_AUTH_TOKEN": "nope"},
			[]string{"--auth-token-file", tokenFile}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(tc.args, "lock", "env", "--", "true")
			p := runCLI(t, tc.env, args...)
			if p.code != tc.want {
				t.Fatalf("exit %d, want %d; stderr:\n%s", p.code, tc.want, p.stderr.String())
			}
		})
	}
}
