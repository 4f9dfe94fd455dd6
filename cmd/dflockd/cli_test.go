package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/testutil"
	"github.com/dflockd/dflockd/protocol"
	"github.com/dflockd/dflockd/server"
	"github.com/dflockd/dflockd/transport"
)

// env returns a lookupEnv over the given variables: a key present with
// "" is set but empty.
func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

// mustParse parses a server command line and returns the server's
// configuration.
func mustParse(t *testing.T, args []string, vars map[string]string) *ServeCmd {
	t.Helper()
	c, err := parse(args, env(vars), io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("parse(%q, %v): %v", args, vars, err)
	}
	if c.command != "serve" {
		t.Fatalf("parse(%q, %v) selected %q", args, vars, c.command)
	}
	return &c.Serve
}

func parseErr(t *testing.T, args []string, vars map[string]string) error {
	t.Helper()
	c, err := parse(args, env(vars), io.Discard, io.Discard)
	if err == nil {
		t.Fatalf("parse(%q, %v) succeeded: %+v", args, vars, c)
	}
	return err
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, nil, nil)
	if got, want := c.endpoint(), (transport.Endpoint{Transport: "tcp", Addr: "127.0.0.1:6388"}); got != want {
		t.Errorf("endpoint = %v, want %v", got, want)
	}
	wantEngine := core.Options{
		DefaultTTL:    33 * time.Second,
		SweepInterval: time.Second,
		GCInterval:    5 * time.Second,
		GCMaxIdle:     60 * time.Second,
		MaxKeys:       1024,
	}
	if got := c.engineOptions(); got.DefaultTTL != wantEngine.DefaultTTL || got.SweepInterval != wantEngine.SweepInterval ||
		got.GCInterval != wantEngine.GCInterval || got.GCMaxIdle != wantEngine.GCMaxIdle ||
		got.MaxKeys != wantEngine.MaxKeys || got.MaxWaiters != 0 || got.KeepOnDisconnect {
		t.Errorf("engineOptions = %+v, want %+v", got, wantEngine)
	}
	so := c.serverOptions(nil, nil)
	if so.ReadTimeout != 23*time.Second || so.WriteTimeout != 5*time.Second || so.MaxConns != 0 ||
		so.MaxConnsPerIP != 0 || so.MaxSubscriptions != 0 || so.PushQueueBytes != 1<<20 || so.PushQueue != 0 || so.Auth != nil ||
		so.StatsMaxItems != 1000 || so.SessionTTL != 15*time.Second || so.SessionTTLMax != 300*time.Second {
		t.Errorf("serverOptions = %+v", so)
	}
	if c.shutdownTimeout() != 30*time.Second {
		t.Errorf("shutdownTimeout = %v", c.shutdownTimeout())
	}
	if !c.AutoReleaseOnDisconnect || c.Debug || c.token != "" {
		t.Errorf("AutoRelease=%v Debug=%v token=%q", c.AutoReleaseOnDisconnect, c.Debug, c.token)
	}
	if ts, err := c.loadTLS(); ts != nil || err != nil {
		t.Errorf("loadTLS = %v, %v; want nil, nil", ts, err)
	}
	if len(c.env.warnings) != 0 {
		t.Errorf("warnings = %v", c.env.warnings)
	}
}

// settings returns the observable configuration as one comparable value.
type settings struct {
	endpoint  transport.Endpoint
	engine    core.Options
	server    server.Options
	shutdown  time.Duration
	debug     bool
	token     string
	endpoints []transport.Endpoint
	transport transport.Options
	clientCA  string
	uids      []uint32
	gids      []uint32
	admin     adminSettings
}

// adminSettings is the admin listener's configuration.
type adminSettings struct {
	listen     string
	tls, pprof bool
}

func settingsOf(c *ServeCmd) settings {
	so := c.serverOptions(nil, nil)
	so.Auth = nil // compared through token
	return settings{c.endpoint(), c.engineOptions(), so, c.shutdownTimeout(), c.Debug, c.token,
		c.endpoints(), c.transportOptions(nil), c.TLSClientCA, c.UnixAllowUID, c.UnixAllowGID,
		adminSettings{c.AdminListen, c.AdminTLS, c.AdminPprof}}
}

// flagCases lists, for every setting, a flag and a variable form with the
// same non-default value and what it changes.
var flagCases = []struct {
	args  []string
	env   map[string]string
	check func(s *settings) bool
}{
	{[]string{"--host", "0.0.0.0"}, map[string]string{"DFLOCKD_HOST": "0.0.0.0"},
		func(s *settings) bool { return s.endpoint.Addr == "0.0.0.0:6388" }},
	{[]string{"--port", "7000"}, map[string]string{"DFLOCKD_PORT": "7000"},
		func(s *settings) bool { return s.endpoint.Addr == "127.0.0.1:7000" }},
	{[]string{"--default-lease-ttl", "40"}, map[string]string{"DFLOCKD_DEFAULT_LEASE_TTL_S": "40"},
		func(s *settings) bool { return s.engine.DefaultTTL == 40*time.Second }},
	{[]string{"--lease-sweep-interval", "2"}, map[string]string{"DFLOCKD_LEASE_SWEEP_INTERVAL_S": "2"},
		func(s *settings) bool { return s.engine.SweepInterval == 2*time.Second }},
	{[]string{"--gc-interval", "7"}, map[string]string{"DFLOCKD_GC_INTERVAL_S": "7"},
		func(s *settings) bool { return s.engine.GCInterval == 7*time.Second }},
	{[]string{"--gc-max-idle", "90"}, map[string]string{"DFLOCKD_GC_MAX_IDLE_S": "90"},
		func(s *settings) bool { return s.engine.GCMaxIdle == 90*time.Second }},
	{[]string{"--max-locks", "10"}, map[string]string{"DFLOCKD_MAX_LOCKS": "10"},
		func(s *settings) bool { return s.engine.MaxKeys == 10 }},
	{[]string{"--max-connections", "11"}, map[string]string{"DFLOCKD_MAX_CONNECTIONS": "11"},
		func(s *settings) bool { return s.server.MaxConns == 11 }},
	{[]string{"--max-connections-per-ip", "12"}, map[string]string{"DFLOCKD_MAX_CONNECTIONS_PER_IP": "12"},
		func(s *settings) bool { return s.server.MaxConnsPerIP == 12 }},
	{[]string{"--max-waiters", "13"}, map[string]string{"DFLOCKD_MAX_WAITERS": "13"},
		func(s *settings) bool { return s.engine.MaxWaiters == 13 }},
	{[]string{"--max-subscriptions", "14"}, map[string]string{"DFLOCKD_MAX_SUBSCRIPTIONS": "14"},
		func(s *settings) bool { return s.server.MaxSubscriptions == 14 }},
	{[]string{"--signal-queue", "128"}, map[string]string{"DFLOCKD_SIGNAL_QUEUE": "128"},
		func(s *settings) bool { return s.server.PushQueue == 128 }},
	{[]string{"--signal-queue-bytes", "65536"}, map[string]string{"DFLOCKD_SIGNAL_QUEUE_BYTES": "65536"},
		func(s *settings) bool { return s.server.PushQueueBytes == 65536 }},
	{[]string{"--stats-max-items", "20"}, map[string]string{"DFLOCKD_STATS_MAX_ITEMS": "20"},
		func(s *settings) bool { return s.server.StatsMaxItems == 20 }},
	{[]string{"--stats-max-items", "0"}, map[string]string{"DFLOCKD_STATS_MAX_ITEMS": "0"},
		func(s *settings) bool { return s.server.StatsMaxItems < 0 }},
	{[]string{"--read-timeout", "15"}, map[string]string{"DFLOCKD_READ_TIMEOUT_S": "15"},
		func(s *settings) bool { return s.server.ReadTimeout == 15*time.Second }},
	{[]string{"--max-sessions", "7"}, map[string]string{"DFLOCKD_MAX_SESSIONS": "7"},
		func(s *settings) bool { return s.engine.MaxSessions == 7 }},
	{[]string{"--session-ttl", "20"}, map[string]string{"DFLOCKD_SESSION_TTL_S": "20"},
		func(s *settings) bool { return s.server.SessionTTL == 20*time.Second }},
	{[]string{"--session-ttl-max", "60"}, map[string]string{"DFLOCKD_SESSION_TTL_MAX_S": "60"},
		func(s *settings) bool { return s.server.SessionTTLMax == 60*time.Second }},
	{[]string{"--write-timeout", "16"}, map[string]string{"DFLOCKD_WRITE_TIMEOUT_S": "16"},
		func(s *settings) bool { return s.server.WriteTimeout == 16*time.Second }},
	{[]string{"--shutdown-timeout", "17"}, map[string]string{"DFLOCKD_SHUTDOWN_TIMEOUT_S": "17"},
		func(s *settings) bool { return s.shutdown == 17*time.Second }},
	{[]string{"--auto-release-on-disconnect=false"}, map[string]string{"DFLOCKD_AUTO_RELEASE_ON_DISCONNECT": "false"},
		func(s *settings) bool { return s.engine.KeepOnDisconnect }},
	{[]string{"--debug"}, map[string]string{"DFLOCKD_DEBUG": "true"},
		func(s *settings) bool { return s.debug }},
	{[]string{"--auth-token", "s3cret"}, map[string]string{"DFLOCKD_AUTH_TOKEN": "s3cret"},
		func(s *settings) bool { return s.token == "s3cret" }},
	{[]string{"--tls-cert", "c.pem", "--tls-key", "k.pem"}, map[string]string{"DFLOCKD_TLS_CERT": "c.pem", "DFLOCKD_TLS_KEY": "k.pem"},
		func(s *settings) bool { return s.endpoint.Transport == "tls" }},
	{[]string{"--listen", "tcp://127.0.0.1:7001"}, map[string]string{"DFLOCKD_LISTEN": "tcp://127.0.0.1:7001"},
		func(s *settings) bool {
			return slices.Equal(s.endpoints, []transport.Endpoint{{Transport: "tcp", Addr: "127.0.0.1:7001"}})
		}},
	{[]string{"--tls-client-ca", "ca.pem", "--tls-cert", "c.pem", "--tls-key", "k.pem"},
		map[string]string{"DFLOCKD_TLS_CLIENT_CA": "ca.pem", "DFLOCKD_TLS_CERT": "c.pem", "DFLOCKD_TLS_KEY": "k.pem"},
		func(s *settings) bool { return s.clientCA == "ca.pem" }},
	{[]string{"--unix-socket-mode", "0600"}, map[string]string{"DFLOCKD_UNIX_SOCKET_MODE": "0600"},
		func(s *settings) bool { return s.transport.UnixMode == 0o600 }},
	{[]string{"--unix-allow-uid", "1000"}, map[string]string{"DFLOCKD_UNIX_ALLOW_UID": "1000"},
		func(s *settings) bool { return slices.Equal(s.uids, []uint32{1000}) }},
	{[]string{"--unix-allow-gid", "50"}, map[string]string{"DFLOCKD_UNIX_ALLOW_GID": "50"},
		func(s *settings) bool { return slices.Equal(s.gids, []uint32{50}) }},
	{[]string{"--quic-idle-timeout", "45"}, map[string]string{"DFLOCKD_QUIC_IDLE_TIMEOUT_S": "45"},
		func(s *settings) bool { return s.transport.QUICIdleTimeout == 45*time.Second }},
	{[]string{"--quic-keepalive", "3"}, map[string]string{"DFLOCKD_QUIC_KEEPALIVE_S": "3"},
		func(s *settings) bool { return s.transport.QUICKeepAlive == 3*time.Second }},
	{[]string{"--admin-listen", "127.0.0.1:9388"}, map[string]string{"DFLOCKD_ADMIN_LISTEN": "127.0.0.1:9388"},
		func(s *settings) bool { return s.admin == adminSettings{listen: "127.0.0.1:9388"} }},
	{[]string{"--admin-listen", "[::1]:0", "--admin-pprof"}, map[string]string{"DFLOCKD_ADMIN_LISTEN": "[::1]:0", "DFLOCKD_ADMIN_PPROF": "true"},
		func(s *settings) bool { return s.admin == adminSettings{listen: "[::1]:0", pprof: true} }},
	{[]string{"--admin-listen", ":9388", "--admin-tls", "--tls-cert", "c.pem", "--tls-key", "k.pem"},
		map[string]string{"DFLOCKD_ADMIN_LISTEN": ":9388", "DFLOCKD_ADMIN_TLS": "1", "DFLOCKD_TLS_CERT": "c.pem", "DFLOCKD_TLS_KEY": "k.pem"},
		func(s *settings) bool { return s.admin == adminSettings{listen: ":9388", tls: true} }},
}

func TestEachFlag(t *testing.T) {
	for _, tc := range flagCases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			for _, args := range [][]string{tc.args, joinEquals(tc.args)} {
				s := settingsOf(mustParse(t, args, nil))
				if !tc.check(&s) {
					t.Errorf("%q: settings %+v", args, s)
				}
			}
			if s := settingsOf(mustParse(t, nil, nil)); tc.check(&s) {
				t.Error("check also passes with defaults; the case proves nothing")
			}
		})
	}
}

// joinEquals rewrites "--flag value" pairs as "--flag=value".
func joinEquals(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") && !strings.Contains(args[i], "=") {
			out = append(out, args[i]+"="+args[i+1])
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

func TestEachEnvVar(t *testing.T) {
	for _, tc := range flagCases {
		for name := range tc.env {
			t.Run(name, func(t *testing.T) {
				c := mustParse(t, nil, tc.env)
				s := settingsOf(c)
				if !tc.check(&s) {
					t.Errorf("settings %+v", s)
				}
				if len(c.env.warnings) != 0 {
					t.Errorf("unexpected warnings %v", c.env.warnings)
				}
			})
		}
	}
}

func TestGoFlagSyntax(t *testing.T) {
	c := mustParse(t, []string{"-port", "7001", "-debug", "-auto-release-on-disconnect=false", "-host=::1"}, nil)
	if c.Port != 7001 || !c.Debug || c.AutoReleaseOnDisconnect || c.Host != "::1" {
		t.Errorf("got %+v", c)
	}
	// A value that looks like a flag is never rewritten into one.
	if got := goFlagArgs([]string{"--auth-token", "-debug"}, flagKindsForTest(t)); !slices.Equal(got, []string{"--auth-token", "-debug"}) {
		t.Errorf("goFlagArgs = %q", got)
	}
	c = mustParse(t, []string{"--auth-token=-debug"}, nil)
	if c.token != "-debug" || c.Debug {
		t.Errorf("token %q debug %v", c.token, c.Debug)
	}
	if got := goFlagArgs([]string{"-port", "1", "--", "-debug"}, map[string]bool{"port": false, "debug": true}); !slices.Equal(got, []string{"--port", "1", "--", "-debug"}) {
		t.Errorf("goFlagArgs = %q", got)
	}
	if got := goFlagArgs([]string{"-h", "-x", "-debug=false"}, map[string]bool{"debug": true}); !slices.Equal(got, []string{"-h", "-x", "--debug=false"}) {
		t.Errorf("goFlagArgs = %q", got)
	}
}

func TestGCAliases(t *testing.T) {
	tests := []struct {
		vars      map[string]string
		interval  time.Duration
		maxIdle   time.Duration
		nWarnings int
	}{
		{map[string]string{"DFLOCKD_GC_LOOP_SLEEP": "8"}, 8 * time.Second, 60 * time.Second, 1},
		{map[string]string{"DFLOCKD_GC_MAX_UNUSED_TIME": "0"}, 5 * time.Second, 0, 1},
		{map[string]string{"DFLOCKD_GC_LOOP_SLEEP": "8", "DFLOCKD_GC_MAX_UNUSED_TIME": "9"}, 8 * time.Second, 9 * time.Second, 2},
		// The canonical name wins over the alias (which still warns).
		{map[string]string{"DFLOCKD_GC_LOOP_SLEEP": "8", "DFLOCKD_GC_INTERVAL_S": "3"}, 3 * time.Second, 60 * time.Second, 1},
		{map[string]string{"DFLOCKD_GC_MAX_UNUSED_TIME": "8", "DFLOCKD_GC_MAX_IDLE_S": "4"}, 5 * time.Second, 4 * time.Second, 1},
	}
	for _, tt := range tests {
		c := mustParse(t, nil, tt.vars)
		o := c.engineOptions()
		if o.GCInterval != tt.interval || o.GCMaxIdle != tt.maxIdle {
			t.Errorf("%v: interval %v idle %v, want %v %v", tt.vars, o.GCInterval, o.GCMaxIdle, tt.interval, tt.maxIdle)
		}
		if len(c.env.warnings) != tt.nWarnings {
			t.Errorf("%v: %d warnings %v, want %d", tt.vars, len(c.env.warnings), c.env.warnings, tt.nWarnings)
		}
	}
	// An explicit flag beats both names.
	c := mustParse(t, []string{"--gc-interval", "2"}, map[string]string{"DFLOCKD_GC_LOOP_SLEEP": "8", "DFLOCKD_GC_INTERVAL_S": "3"})
	if c.GCInterval != 2 {
		t.Errorf("GCInterval = %d, want 2", c.GCInterval)
	}
}

func TestAliasWarningLogged(t *testing.T) {
	var stderr bytes.Buffer
	c, err := parse(nil, env(map[string]string{"DFLOCKD_GC_LOOP_SLEEP": "8"}), io.Discard, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	c.env.logWarnings(newLogger(&stderr, false))
	out := stderr.String()
	if strings.Count(out, "DFLOCKD_GC_LOOP_SLEEP") != 1 || !strings.Contains(out, "level=WARN") ||
		!strings.Contains(out, "DFLOCKD_GC_INTERVAL_S") {
		t.Errorf("log = %q", out)
	}
}

func TestFlagBeatsEnv(t *testing.T) {
	vars := map[string]string{
		"DFLOCKD_PORT":                       "8000",
		"DFLOCKD_HOST":                       "10.0.0.1",
		"DFLOCKD_DEBUG":                      "true",
		"DFLOCKD_AUTO_RELEASE_ON_DISCONNECT": "false",
		"DFLOCKD_READ_TIMEOUT_S":             "0", // invalid, but overridden
		"DFLOCKD_MAX_LOCKS":                  "5",
	}
	c := mustParse(t, []string{"--port=7000", "--host", "::1", "--debug=false", "--auto-release-on-disconnect=true",
		"--read-timeout", "9", "--max-locks", "1024"}, vars)
	if c.Port != 7000 || c.Host != "::1" || c.Debug || !c.AutoReleaseOnDisconnect || c.ReadTimeout != 9 || c.MaxLocks != 1024 {
		t.Errorf("flags did not win: %+v", c)
	}
	// Without the flags the environment applies.
	c = mustParse(t, nil, map[string]string{"DFLOCKD_PORT": "8000", "DFLOCKD_DEBUG": "true"})
	if c.Port != 8000 || !c.Debug {
		t.Errorf("env not applied: port %d debug %v", c.Port, c.Debug)
	}
}

// TestEnvRefused: a variable that is set but empty, or whose value does not
// parse, stops the server with a message naming it (and the value), never
// falling back to the default or switching a protection off.
func TestEnvRefused(t *testing.T) {
	tests := []struct {
		name string
		args []string
		vars map[string]string
		want string // the whole error
	}{
		{"empty token", nil, map[string]string{"DFLOCKD_AUTH_TOKEN": ""}, "DFLOCKD_AUTH_TOKEN is set but empty"},
		{"blank token", nil, map[string]string{"DFLOCKD_AUTH_TOKEN": "  "}, "DFLOCKD_AUTH_TOKEN is set but empty"},
		{"empty token beside a token file", nil, map[string]string{"DFLOCKD_AUTH_TOKEN": "", "DFLOCKD_AUTH_TOKEN_FILE": "/x"}, "DFLOCKD_AUTH_TOKEN is set but empty"},
		{"empty token file", nil, map[string]string{"DFLOCKD_AUTH_TOKEN_FILE": ""}, "DFLOCKD_AUTH_TOKEN_FILE is set but empty"},
		{"blank token file", nil, map[string]string{"DFLOCKD_AUTH_TOKEN_FILE": "\n"}, "DFLOCKD_AUTH_TOKEN_FILE is set but empty"},
		{"empty uid list", nil, map[string]string{"DFLOCKD_UNIX_ALLOW_UID": ""}, "DFLOCKD_UNIX_ALLOW_UID is set but empty"},
		{"blank gid list", nil, map[string]string{"DFLOCKD_UNIX_ALLOW_GID": " \t"}, "DFLOCKD_UNIX_ALLOW_GID is set but empty"},
		{"empty tls cert", nil, map[string]string{"DFLOCKD_TLS_CERT": "", "DFLOCKD_TLS_KEY": "k.pem"}, "DFLOCKD_TLS_CERT is set but empty"},
		{"empty tls key", nil, map[string]string{"DFLOCKD_TLS_CERT": "c.pem", "DFLOCKD_TLS_KEY": ""}, "DFLOCKD_TLS_KEY is set but empty"},
		{"empty client ca", []string{"--tls-cert", "c.pem", "--tls-key", "k.pem"}, map[string]string{"DFLOCKD_TLS_CLIENT_CA": ""}, "DFLOCKD_TLS_CLIENT_CA is set but empty"},
		{"empty listen", nil, map[string]string{"DFLOCKD_LISTEN": ""}, "DFLOCKD_LISTEN is set but empty"},
		{"empty port", nil, map[string]string{"DFLOCKD_PORT": ""}, "DFLOCKD_PORT is set but empty"},
		{"empty host", nil, map[string]string{"DFLOCKD_HOST": ""}, "DFLOCKD_HOST is set but empty"},
		{"empty bool", nil, map[string]string{"DFLOCKD_DEBUG": ""}, "DFLOCKD_DEBUG is set but empty"},
		{"port abc", nil, map[string]string{"DFLOCKD_PORT": "abc"}, `DFLOCKD_PORT="abc" is not an integer`},
		{"port 1.5", nil, map[string]string{"DFLOCKD_PORT": "1.5"}, `DFLOCKD_PORT="1.5" is not an integer`},
		{"port with a space", nil, map[string]string{"DFLOCKD_PORT": " 7000"}, `DFLOCKD_PORT=" 7000" is not an integer`},
		{"fraction of a second", nil, map[string]string{"DFLOCKD_READ_TIMEOUT_S": "1.5"}, `DFLOCKD_READ_TIMEOUT_S="1.5": 1.5: must be whole seconds (the server counts whole seconds; e.g. 1s, 30s, 5m)`},
		{"sub-second duration", nil, map[string]string{"DFLOCKD_READ_TIMEOUT_S": "500ms"}, `DFLOCKD_READ_TIMEOUT_S="500ms": 500ms: must be whole seconds (the server counts whole seconds; e.g. 1s, 30s, 5m)`},
		{"port with a unit", nil, map[string]string{"DFLOCKD_PORT": "7000s"}, `DFLOCKD_PORT="7000s" is not an integer`},
		{"hex", nil, map[string]string{"DFLOCKD_MAX_LOCKS": "0x10"}, `DFLOCKD_MAX_LOCKS="0x10" is not an integer`},
		{"too big", nil, map[string]string{"DFLOCKD_READ_TIMEOUT_S": "99999999999999999999"}, `DFLOCKD_READ_TIMEOUT_S="99999999999999999999": 99999999999999999999 seconds is more than the 9223372036 the server accepts`},
		{"bad bool", nil, map[string]string{"DFLOCKD_DEBUG": "maybe"}, `DFLOCKD_DEBUG="maybe" is not a boolean (want 1/yes/true or 0/no/false)`},
		{"bool on", nil, map[string]string{"DFLOCKD_AUTO_RELEASE_ON_DISCONNECT": "on"}, `DFLOCKD_AUTO_RELEASE_ON_DISCONNECT="on" is not a boolean (want 1/yes/true or 0/no/false)`},
		{"bool with a space", nil, map[string]string{"DFLOCKD_DEBUG": " true"}, `DFLOCKD_DEBUG=" true" is not a boolean (want 1/yes/true or 0/no/false)`},
		{"bad uid", nil, map[string]string{"DFLOCKD_UNIX_ALLOW_UID": "1000,x"}, `DFLOCKD_UNIX_ALLOW_UID="1000,x": "x" is not a valid uint32`},
		{"uid list with a hole", nil, map[string]string{"DFLOCKD_UNIX_ALLOW_UID": "1000,"}, `DFLOCKD_UNIX_ALLOW_UID="1000,": "" is not a valid uint32`},
		{"bad listen", nil, map[string]string{"DFLOCKD_LISTEN": "tcp://127.0.0.1:1,bogus://x:1"}, `DFLOCKD_LISTEN="tcp://127.0.0.1:1,bogus://x:1": `},
		// Deprecated aliases follow the same rules, even when the
		// canonical name overrides them.
		{"empty alias", nil, map[string]string{"DFLOCKD_GC_LOOP_SLEEP": ""}, "DFLOCKD_GC_LOOP_SLEEP is set but empty"},
		{"bad alias", nil, map[string]string{"DFLOCKD_GC_MAX_UNUSED_TIME": "soon"}, `DFLOCKD_GC_MAX_UNUSED_TIME="soon": want whole seconds such as 30, 30s or 5m: time: invalid duration "soon"`},
		{"bad alias beside canonical", nil, map[string]string{"DFLOCKD_GC_MAX_UNUSED_TIME": "x", "DFLOCKD_GC_MAX_IDLE_S": "4"}, `DFLOCKD_GC_MAX_UNUSED_TIME="x": want whole seconds such as 30, 30s or 5m: time: invalid duration "x"`},
		{"empty canonical beside alias", nil, map[string]string{"DFLOCKD_GC_INTERVAL_S": "", "DFLOCKD_GC_LOOP_SLEEP": "8"}, "DFLOCKD_GC_INTERVAL_S is set but empty"},
		// A variable is read only when its own flag is absent: here
		// --auth-token-file leaves DFLOCKD_AUTH_TOKEN to be read.
		{"empty token, file flag", []string{"--auth-token-file", "/x"}, map[string]string{"DFLOCKD_AUTH_TOKEN": ""}, "DFLOCKD_AUTH_TOKEN is set but empty"},
		{"bad admin pprof bool", nil, map[string]string{"DFLOCKD_ADMIN_PPROF": "on"}, `DFLOCKD_ADMIN_PPROF="on" is not a boolean (want 1/yes/true or 0/no/false)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := parseErr(t, tt.args, tt.vars)
			if got := err.Error(); got != tt.want && !(strings.HasSuffix(tt.want, ": ") && strings.HasPrefix(got, tt.want)) {
				t.Errorf("error %q, want %q", got, tt.want)
			}
		})
	}
}

// TestEveryEnvVarRefusesEmpty: the rule holds for every variable, the
// harmless ones included (a template with a missing value fails loudly).
func TestEveryEnvVarRefusesEmpty(t *testing.T) {
	names := []string{"DFLOCKD_GC_LOOP_SLEEP", "DFLOCKD_GC_MAX_UNUSED_TIME", "DFLOCKD_AUTH_TOKEN_FILE"}
	for _, tc := range flagCases {
		for name := range tc.env {
			names = append(names, name)
		}
	}
	for _, name := range names {
		for _, v := range []string{"", " "} {
			err := parseErr(t, nil, map[string]string{name: v})
			if want := name + " is set but empty"; err.Error() != want {
				t.Errorf("%s=%q: error %q, want %q", name, v, err, want)
			}
		}
	}
}

// TestEnvExplicitFlagWins: a variable is not read when its flag is given,
// so an empty or bad one is no error then.
func TestEnvExplicitFlagWins(t *testing.T) {
	c := mustParse(t, []string{"--auth-token", "s3cret", "--port", "7000", "--debug"},
		map[string]string{"DFLOCKD_AUTH_TOKEN": "", "DFLOCKD_PORT": "abc", "DFLOCKD_DEBUG": "maybe"})
	if c.token != "s3cret" || c.Port != 7000 || !c.Debug {
		t.Errorf("token %q port %d debug %v", c.token, c.Port, c.Debug)
	}
}

func TestEnvBool(t *testing.T) {
	for value, want := range map[string]bool{
		"1": true, "yes": true, "true": true, "TRUE": true, "Yes": true,
		"0": false, "no": false, "false": false, "FALSE": false, "No": false,
	} {
		c := mustParse(t, nil, map[string]string{"DFLOCKD_DEBUG": value, "DFLOCKD_AUTO_RELEASE_ON_DISCONNECT": value})
		if c.Debug != want || c.AutoReleaseOnDisconnect != want {
			t.Errorf("%q: debug %v auto-release %v, want %v", value, c.Debug, c.AutoReleaseOnDisconnect, want)
		}
		if len(c.env.warnings) != 0 {
			t.Errorf("%q: warnings %v", value, c.env.warnings)
		}
	}
}

func TestValidation(t *testing.T) {
	const max = "9223372036"
	const over = "9223372037"
	tests := []struct {
		args    []string
		wantErr string // "" = accepted; else a substring of the error
	}{
		{[]string{"--port", "70000"}, "--port"},
		{[]string{"--port", "65536"}, "--port"},
		{[]string{"--port=-1"}, "--port"},
		{[]string{"--port", "65535"}, ""},
		{[]string{"--port", "0"}, ""},
		{[]string{"--port", "abc"}, "--port"},
		{[]string{"--default-lease-ttl", "0"}, "--default-lease-ttl"},
		{[]string{"--lease-sweep-interval", "0"}, "--lease-sweep-interval"},
		{[]string{"--gc-interval", "0"}, "--gc-interval"},
		{[]string{"--gc-max-idle", "0"}, ""},
		{[]string{"--gc-max-idle=-1"}, "--gc-max-idle"},
		{[]string{"--max-locks", "0"}, "--max-locks"},
		{[]string{"--max-locks", "1"}, ""},
		{[]string{"--max-connections", "0"}, ""},
		{[]string{"--max-connections=-1"}, "--max-connections"},
		{[]string{"--max-connections-per-ip=-1"}, "--max-connections-per-ip"},
		{[]string{"--max-waiters=-1"}, "--max-waiters"},
		{[]string{"--max-sessions=-1"}, "--max-sessions"},
		{[]string{"--max-sessions", "0"}, ""},
		{[]string{"--max-subscriptions=-1"}, "--max-subscriptions"},
		{[]string{"--signal-queue", "0"}, ""},
		{[]string{"--signal-queue=-1"}, "--signal-queue"},
		{[]string{"--signal-queue-bytes", "0"}, "--signal-queue-bytes"},
		{[]string{"--stats-max-items=-1"}, "--stats-max-items"},
		{[]string{"--read-timeout", "0"}, "--read-timeout"},
		{[]string{"--session-ttl", "0"}, "--session-ttl"},
		{[]string{"--session-ttl-max", "0"}, "--session-ttl-max"},
		{[]string{"--session-ttl", "301"}, "--session-ttl: must be at most --session-ttl-max (300), got 301"},
		{[]string{"--session-ttl", "301", "--session-ttl-max", "600"}, ""},
		{[]string{"--write-timeout", "0"}, ""},
		{[]string{"--write-timeout=-1"}, "--write-timeout"},
		{[]string{"--shutdown-timeout", "0"}, ""},
		{[]string{"--shutdown-timeout=-1"}, "--shutdown-timeout"},
		{[]string{"--read-timeout", "1.5"}, "--read-timeout: 1.5: must be whole seconds"},
		{[]string{"--read-timeout", "500ms"}, "--read-timeout: 500ms: must be whole seconds"},
		{[]string{"--read-timeout", "2m"}, ""},
		{[]string{"--default-lease-ttl", max}, ""},
		{[]string{"--default-lease-ttl", over}, "--default-lease-ttl"},
		{[]string{"--lease-sweep-interval", over}, "--lease-sweep-interval"},
		{[]string{"--gc-interval", over}, "--gc-interval"},
		{[]string{"--gc-max-idle", over}, "--gc-max-idle"},
		{[]string{"--read-timeout", over}, "--read-timeout"},
		{[]string{"--write-timeout", over}, "--write-timeout"},
		{[]string{"--shutdown-timeout", over}, "--shutdown-timeout"},
		{[]string{"--shutdown-timeout", max}, ""},
		{[]string{"--tls-cert", "c.pem"}, "--tls-key"},
		{[]string{"--tls-key", "k.pem"}, "--tls-cert"},
		{[]string{"--unknown"}, "--unknown"},
		{[]string{"extra"}, "extra"},
	}
	for _, tt := range tests {
		c, err := parse(tt.args, env(nil), io.Discard, io.Discard)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%q: %v", tt.args, err)
		case tt.wantErr != "" && err == nil:
			t.Errorf("%q: accepted (%+v)", tt.args, c)
		case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
			t.Errorf("%q: error %q does not name %s", tt.args, err, tt.wantErr)
		}
	}
	// Overflow from the environment is rejected too.
	err := parseErr(t, nil, map[string]string{"DFLOCKD_READ_TIMEOUT_S": over})
	if !strings.Contains(err.Error(), "more than the 9223372036 the server accepts") {
		t.Errorf("error %q", err)
	}
	// The largest accepted value converts without wrapping.
	c := mustParse(t, []string{"--default-lease-ttl", max}, nil)
	if d := c.engineOptions().DefaultTTL; d <= 0 {
		t.Errorf("DefaultTTL = %v", d)
	}
}

func TestHost(t *testing.T) {
	for host, want := range map[string]string{
		"::1":       "[::1]:6388",
		"[::1]":     "[::1]:6388",
		"0.0.0.0":   "0.0.0.0:6388",
		"localhost": "localhost:6388",
		"":          ":6388",
	} {
		if got := mustParse(t, []string{"--host", host}, nil).endpoint().Addr; got != want {
			t.Errorf("--host %q: addr %q, want %q", host, got, want)
		}
	}
}

func TestTLSFiles(t *testing.T) {
	certFile, keyFile := testutil.SelfSignedFiles(t)
	c := mustParse(t, []string{"--tls-cert", certFile, "--tls-key", keyFile}, nil)
	ts, err := c.loadTLS()
	if err != nil {
		t.Fatal(err)
	}
	// The pair is served through GetCertificate (so SIGHUP can swap it),
	// which tls consults for every handshake only without Certificates.
	cfg := ts.cfg
	if cert, err := cfg.GetCertificate(&tls.ClientHelloInfo{}); len(cfg.Certificates) != 0 || err != nil || cert == nil ||
		cfg.MinVersion != tls.VersionTLS12 || cfg.ClientAuth != tls.NoClientCert {
		t.Errorf("config: %d certs, GetCertificate %v, %v, min version %x, client auth %v",
			len(cfg.Certificates), cert, err, cfg.MinVersion, cfg.ClientAuth)
	}
	if c.endpoint().Transport != "tls" {
		t.Errorf("endpoint %v", c.endpoint())
	}
	c = mustParse(t, []string{"--tls-cert", certFile, "--tls-key", filepath.Join(t.TempDir(), "missing.pem")}, nil)
	if _, err := c.loadTLS(); err == nil || !strings.Contains(err.Error(), "--tls-key") {
		t.Errorf("missing key: %v", err)
	}
	// The pair may come from the environment.
	c = mustParse(t, nil, map[string]string{"DFLOCKD_TLS_CERT": certFile, "DFLOCKD_TLS_KEY": keyFile})
	if _, err := c.loadTLS(); err != nil {
		t.Error(err)
	}
	// One from the environment and one flag still counts as both.
	if _, err := parse([]string{"--tls-cert", certFile}, env(map[string]string{"DFLOCKD_TLS_KEY": keyFile}), io.Discard, io.Discard); err != nil {
		t.Error(err)
	}
	if _, err := parse(nil, env(map[string]string{"DFLOCKD_TLS_KEY": keyFile}), io.Discard, io.Discard); err == nil {
		t.Error("key without cert accepted")
	}
}

func TestAuthTokenPrecedence(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flagFile := write("flag", "  from-flag-file\n")
	envFile := write("env", "from-env-file\n")
	emptyFile := write("empty", "")
	blankFile := write("blank", " \n\t\n")
	multiLine := write("multi", "abc\ndef\n")
	crFile := write("cr", "abc\rdef")
	hugeFile := write("huge", strings.Repeat("t", protocol.MaxLongLine+1)+"\n")
	missing := filepath.Join(dir, "missing")

	tests := []struct {
		name    string
		args    []string
		vars    map[string]string
		want    string // expected token when wantErr is ""
		wantErr string
	}{
		{name: "none"},
		{name: "flag", args: []string{"--auth-token", " s3cret "}, want: "s3cret"},
		{name: "flag file", args: []string{"--auth-token-file", flagFile}, want: "from-flag-file"},
		{name: "env", vars: map[string]string{"DFLOCKD_AUTH_TOKEN": "\tenv-token\n"}, want: "env-token"},
		{name: "env file", vars: map[string]string{"DFLOCKD_AUTH_TOKEN_FILE": envFile}, want: "from-env-file"},
		{name: "flag beats everything",
			args: []string{"--auth-token", "flag", "--auth-token-file", flagFile},
			vars: map[string]string{"DFLOCKD_AUTH_TOKEN": "env", "DFLOCKD_AUTH_TOKEN_FILE": envFile},
			want: "flag"},
		{name: "flag file beats env",
			args: []string{"--auth-token-file", flagFile},
			vars: map[string]string{"DFLOCKD_AUTH_TOKEN": "env", "DFLOCKD_AUTH_TOKEN_FILE": envFile},
			want: "from-flag-file"},
		{name: "env beats env file",
			vars: map[string]string{"DFLOCKD_AUTH_TOKEN": "env", "DFLOCKD_AUTH_TOKEN_FILE": envFile},
			want: "env"},
		{name: "flag beats bad env file",
			args: []string{"--auth-token", "flag"},
			vars: map[string]string{"DFLOCKD_AUTH_TOKEN_FILE": missing},
			want: "flag"},
		{name: "explicit empty flag", args: []string{"--auth-token="},
			vars: map[string]string{"DFLOCKD_AUTH_TOKEN": "env"}, wantErr: "--auth-token: auth token is empty"},
		{name: "explicit empty file flag", args: []string{"--auth-token-file="},
			vars: map[string]string{"DFLOCKD_AUTH_TOKEN": "env"}, wantErr: "--auth-token-file"},
		{name: "empty env is refused", vars: map[string]string{"DFLOCKD_AUTH_TOKEN": "", "DFLOCKD_AUTH_TOKEN_FILE": envFile},
			wantErr: "DFLOCKD_AUTH_TOKEN is set but empty"},
		{name: "empty file", args: []string{"--auth-token-file", emptyFile}, wantErr: "--auth-token-file"},
		{name: "blank file", args: []string{"--auth-token-file", blankFile}, wantErr: "empty"},
		{name: "empty env file", vars: map[string]string{"DFLOCKD_AUTH_TOKEN_FILE": emptyFile}, wantErr: "DFLOCKD_AUTH_TOKEN_FILE"},
		{name: "missing file", args: []string{"--auth-token-file", missing}, wantErr: "--auth-token-file"},
		{name: "blank flag", args: []string{"--auth-token", "  "}, wantErr: "empty"},
		{name: "blank env", vars: map[string]string{"DFLOCKD_AUTH_TOKEN": "   "}, wantErr: "DFLOCKD_AUTH_TOKEN is set but empty"},
		{name: "newline in flag", args: []string{"--auth-token", "a\nb"}, wantErr: "CR or LF"},
		{name: "CR in env", vars: map[string]string{"DFLOCKD_AUTH_TOKEN": "a\rb"}, wantErr: "CR or LF"},
		{name: "newline in file", args: []string{"--auth-token-file", multiLine}, wantErr: "CR or LF"},
		{name: "CR in file", args: []string{"--auth-token-file", crFile}, wantErr: "CR or LF"},
		// A token the auth line cannot carry could never be presented.
		{name: "token file over 64 KiB", args: []string{"--auth-token-file", hugeFile}, wantErr: "--auth-token-file: token file " + hugeFile + ": auth token is longer than the 65536 bytes"},
		{name: "env token file over 64 KiB", vars: map[string]string{"DFLOCKD_AUTH_TOKEN_FILE": hugeFile}, wantErr: "(from $DFLOCKD_AUTH_TOKEN_FILE): token file " + hugeFile + ": auth token is longer"},
		{name: "token over 64 KiB", args: []string{"--auth-token", strings.Repeat("t", protocol.MaxLongLine+1)}, wantErr: "--auth-token: auth token is longer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(tt.args, env(tt.vars), io.Discard, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Serve.token != tt.want {
				t.Errorf("token = %q, want %q", c.Serve.token, tt.want)
			}
			if auth := c.Serve.serverOptions(nil, nil).Auth; (auth != nil) != (tt.want != "") {
				t.Errorf("Auth = %v with token %q", auth, tt.want)
			}
		})
	}
}

func TestEngineAndServerOptions(t *testing.T) {
	c := mustParse(t, []string{"--auto-release-on-disconnect=false", "--write-timeout", "0", "--gc-max-idle", "0"}, nil)
	eo := c.engineOptions()
	if !eo.KeepOnDisconnect || eo.GCMaxIdle != 0 {
		t.Errorf("engine options %+v", eo)
	}
	if so := c.serverOptions(nil, nil); so.WriteTimeout != 0 {
		t.Errorf("WriteTimeout = %v, want 0 (disabled)", so.WriteTimeout)
	}
	if mustParse(t, []string{"--shutdown-timeout", "0"}, nil).shutdownTimeout() != 0 {
		t.Error("shutdown timeout 0 not kept")
	}
}

func TestRunVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-version"}, {"--version", "--port", "70000"}} {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), args, &stdout, &stderr, env(nil)); code != 0 {
			t.Errorf("%q: exit %d, stderr %q", args, code, stderr.String())
		}
		if got := stdout.String(); !strings.HasPrefix(got, "dflockd ") || strings.Count(got, "\n") != 1 {
			t.Errorf("%q: stdout %q", args, got)
		}
	}
}

func TestRunHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"--help"}, &stdout, &stderr, env(nil)); code != 0 {
		t.Fatalf("exit %d", code)
	}
	help := stdout.String()
	for _, tc := range flagCases {
		for name := range tc.env {
			if !strings.Contains(help, "$"+name) {
				t.Errorf("help does not mention $%s", name)
			}
		}
		if !strings.Contains(help, strings.SplitN(tc.args[0], "=", 2)[0]) {
			t.Errorf("help does not mention %s", tc.args[0])
		}
	}
	if !strings.Contains(help, "--auth-token-file") || !strings.Contains(help, "--version") {
		t.Error("help misses flags")
	}
}

func TestRunConfigErrors(t *testing.T) {
	certFile, _ := testutil.SelfSignedFiles(t)
	tests := []struct {
		args []string
		vars map[string]string
		want string
	}{
		{[]string{"--port", "70000"}, nil, "--port"},
		{nil, map[string]string{"DFLOCKD_PORT": "70000"}, "DFLOCKD_PORT"},
		{[]string{"--bogus"}, nil, "--bogus"},
		{[]string{"--tls-cert", certFile}, nil, "--tls-key"},
		{[]string{"--tls-cert", certFile, "--tls-key", certFile}, nil, "--tls-cert/--tls-key"},
		{[]string{"--auth-token", "a\nb"}, nil, "--auth-token"},
		{nil, map[string]string{"DFLOCKD_AUTH_TOKEN": ""}, "configuration error: DFLOCKD_AUTH_TOKEN is set but empty\n"},
		{nil, map[string]string{"DFLOCKD_UNIX_ALLOW_UID": ""}, "configuration error: DFLOCKD_UNIX_ALLOW_UID is set but empty\n"},
		{nil, map[string]string{"DFLOCKD_PORT": "abc"}, "configuration error: DFLOCKD_PORT=\"abc\" is not an integer\n"},
		{nil, map[string]string{"DFLOCKD_DEBUG": "maybe"}, "configuration error: DFLOCKD_DEBUG=\"maybe\" is not a boolean"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), tt.args, &stdout, &stderr, env(tt.vars)); code != 1 {
			t.Errorf("%q: exit %d, want 1", tt.args, code)
		}
		out := stderr.String()
		if !strings.HasPrefix(out, "configuration error: ") || strings.Count(out, "\n") != 1 ||
			!strings.Contains(out, tt.want) {
			t.Errorf("%q %v: stderr %q", tt.args, tt.vars, out)
		}
		if stdout.Len() != 0 {
			t.Errorf("%q: stdout %q", tt.args, stdout.String())
		}
	}
}

// flagKindsForTest returns the real flag table of the command.
func flagKindsForTest(t *testing.T) map[string]bool {
	t.Helper()
	k, err := newKong(newCLI(env(nil)), io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return flagKinds(k.Model)
}

func TestProcessEnvIgnored(t *testing.T) {
	// parse reads only the getenv it is given.
	t.Setenv("DFLOCKD_PORT", "7777")
	if c := mustParse(t, nil, nil); c.Port != 6388 {
		t.Errorf("Port = %d: the process environment leaked in", c.Port)
	}
}

func TestRunListenFailure(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"--port", port}, &stdout, &stderr, env(nil)); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if out := stderr.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "tcp://127.0.0.1:"+port) {
		t.Errorf("stderr %q", out)
	}
}

// mainChildEnv is set in the environment of a test binary re-run by
// runMain to make it run main instead of the tests.
const mainChildEnv = "DFLOCKD_CMD_TEST_RUN_MAIN"

// runMain runs main in a child process (this test binary, re-run) with
// args and the given variables added to an environment cleared of DFLOCKD_*
// variables, and returns its exit status and stderr. The child is killed
// if it runs for more than 20 s.
func runMain(t *testing.T, testName string, args []string, vars map[string]string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+testName+"$")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DFLOCKD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, mainChildEnv+"="+strings.Join(args, "\n"))
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("main did not exit: %s", stderr.String())
	}
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stderr.String()
}

// childMain runs main with the arguments runMain passed, if this process
// is runMain's child; it does not return then.
func childMain() {
	args, ok := os.LookupEnv(mainChildEnv)
	if !ok {
		return
	}
	os.Args = []string{"dflockd"}
	if args != "" {
		os.Args = append(os.Args, strings.Split(args, "\n")...)
	}
	main()
	os.Exit(0)
}

// TestMainRefusesEmptyEnv runs the real process: main must read the
// environment with os.LookupEnv, so that a variable set but empty is told
// from an unset one, and exit 1.
func TestMainRefusesEmptyEnv(t *testing.T) {
	childMain()
	for _, tt := range []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"DFLOCKD_AUTH_TOKEN": ""}, "configuration error: DFLOCKD_AUTH_TOKEN is set but empty\n"},
		{map[string]string{"DFLOCKD_UNIX_ALLOW_UID": ""}, "configuration error: DFLOCKD_UNIX_ALLOW_UID is set but empty\n"},
		{map[string]string{"DFLOCKD_PORT": "abc"}, "configuration error: DFLOCKD_PORT=\"abc\" is not an integer\n"},
	} {
		// Should the check fail, the server binds a free port rather
		// than 6388, and is killed at runMain's deadline.
		code, stderr := runMain(t, "TestMainRefusesEmptyEnv", []string{"--listen", "tcp://127.0.0.1:0"}, tt.vars)
		if code != 1 || stderr != tt.want {
			t.Errorf("%v: exit %d, stderr %q; want 1, %q", tt.vars, code, stderr, tt.want)
		}
	}
}
