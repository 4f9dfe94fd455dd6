package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/server"
	"github.com/dflockd/dflockd/transport"
)

// version is the build version; release builds set it with
// -ldflags "-X main.version=v1.2.3". Empty means "ask the Go build info".
var version = ""

// buildVersion returns the version printed by --version and logged at start.
func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// maxSeconds is the largest whole number of seconds whose nanosecond form
// fits in an int64 (a time.Duration): 9223372036.
const maxSeconds = math.MaxInt64 / int64(time.Second)

// CLI is the dflockd command line (PROTOCOL.md §8). Durations are whole
// seconds. Each flag's environment variable is named by its envvar tag (and
// a deprecated alias by envalias); envResolver reads them, so an explicit
// flag beats the variable, which beats the default.
type CLI struct {
	Host string `name:"host" default:"127.0.0.1" envvar:"DFLOCKD_HOST" group:"Network" help:"Address to bind; IPv6 literals such as ::1 are fine."`
	Port int    `name:"port" default:"6388" envvar:"DFLOCKD_PORT" group:"Network" help:"TCP port to listen on, 0-65535 (0 = any free port)."`

	TLSCert       string `name:"tls-cert" envvar:"DFLOCKD_TLS_CERT" placeholder:"FILE" group:"Security" help:"PEM certificate; with --tls-key the server speaks only TLS 1.2+."`
	TLSKey        string `name:"tls-key" envvar:"DFLOCKD_TLS_KEY" placeholder:"FILE" group:"Security" help:"PEM private key for --tls-cert."`
	AuthToken     string `name:"auth-token" envvar:"DFLOCKD_AUTH_TOKEN" placeholder:"TOKEN" group:"Security" help:"Shared secret every connection must present first (send it only over TLS)."`
	AuthTokenFile string `name:"auth-token-file" envvar:"DFLOCKD_AUTH_TOKEN_FILE" placeholder:"FILE" group:"Security" help:"File holding the shared secret (trimmed)."`

	DefaultLeaseTTL         int64 `name:"default-lease-ttl" default:"33" envvar:"DFLOCKD_DEFAULT_LEASE_TTL_S" group:"Locks" help:"Lease length in seconds when a request names none (> 0)."`
	LeaseSweepInterval      int64 `name:"lease-sweep-interval" default:"1" envvar:"DFLOCKD_LEASE_SWEEP_INTERVAL_S" group:"Locks" help:"Seconds between sweeps of expired leases (> 0)."`
	GCInterval              int64 `name:"gc-interval" default:"5" envvar:"DFLOCKD_GC_INTERVAL_S" envalias:"DFLOCKD_GC_LOOP_SLEEP" group:"Locks" help:"Seconds between idle-key collections (> 0)."`
	GCMaxIdle               int64 `name:"gc-max-idle" default:"60" envvar:"DFLOCKD_GC_MAX_IDLE_S" envalias:"DFLOCKD_GC_MAX_UNUSED_TIME" group:"Locks" help:"Idle seconds after which a key is collected (>= 0; 0 = next GC tick)."`
	AutoReleaseOnDisconnect bool  `name:"auto-release-on-disconnect" default:"true" envvar:"DFLOCKD_AUTO_RELEASE_ON_DISCONNECT" group:"Locks" help:"Release a connection's leases when it closes; =false keeps them until they expire (default true)."`

	MaxLocks            int `name:"max-locks" default:"1024" envvar:"DFLOCKD_MAX_LOCKS" group:"Limits" help:"Live locks plus semaphores (> 0)."`
	MaxConnections      int `name:"max-connections" default:"0" envvar:"DFLOCKD_MAX_CONNECTIONS" group:"Limits" help:"Open connections (0 = unlimited)."`
	MaxConnectionsPerIP int `name:"max-connections-per-ip" default:"0" envvar:"DFLOCKD_MAX_CONNECTIONS_PER_IP" group:"Limits" help:"Open connections per client IP (0 = unlimited)."`
	MaxWaiters          int `name:"max-waiters" default:"0" envvar:"DFLOCKD_MAX_WAITERS" group:"Limits" help:"Queued waiters per key (0 = unlimited)."`
	MaxSubscriptions    int `name:"max-subscriptions" default:"0" envvar:"DFLOCKD_MAX_SUBSCRIPTIONS" group:"Limits" help:"Signal subscriptions per connection (0 = unlimited)."`
	SignalQueue         int `name:"signal-queue" default:"64" envvar:"DFLOCKD_SIGNAL_QUEUE" group:"Limits" help:"Signal frames a connection may have waiting to be written; a listener that falls this far behind is closed as a slow consumer (> 0)."`

	ReadTimeout     int64 `name:"read-timeout" default:"23" envvar:"DFLOCKD_READ_TIMEOUT_S" group:"Timeouts" help:"Idle seconds before a silent connection is dropped (> 0)."`
	WriteTimeout    int64 `name:"write-timeout" default:"5" envvar:"DFLOCKD_WRITE_TIMEOUT_S" group:"Timeouts" help:"Seconds allowed for each write to a client (>= 0; 0 = no deadline)."`
	ShutdownTimeout int64 `name:"shutdown-timeout" default:"30" envvar:"DFLOCKD_SHUTDOWN_TIMEOUT_S" group:"Timeouts" help:"Seconds to drain connections on SIGINT/SIGTERM (>= 0; 0 = wait forever)."`

	Debug   bool             `name:"debug" default:"false" envvar:"DFLOCKD_DEBUG" help:"Log at debug level."`
	Version kong.VersionFlag `name:"version" help:"Print the version and exit."`

	env         *envResolver // records which settings came from the environment
	token       string       // resolved auth token; "" = auth off
	tokenSource string       // flag or variable the token came from
}

// exitError reports that kong asked to exit early (--help, --version).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// exitPanic carries a kong exit request out of kong.Parse.
type exitPanic int

// parse builds the configuration from args and the environment (read
// through getenv). --help and --version write to stdout and yield an
// *exitError with the status to exit with. Any other error is a
// configuration error.
func parse(args []string, getenv func(string) string, stdout, stderr io.Writer) (cli *CLI, err error) {
	cli = &CLI{env: newEnvResolver(getenv)}
	k, err := kong.New(cli,
		kong.Name("dflockd"),
		kong.Description("A distributed lock, semaphore and signal server."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(exitPanic(code)) }),
		kong.Resolvers(cli.env),
		kong.ValueFormatter(helpWithEnv),
		kong.Vars{"version": "dflockd " + buildVersion()},
	)
	if err != nil {
		return nil, fmt.Errorf("build command line: %w", err)
	}
	defer func() {
		if r := recover(); r != nil {
			code, ok := r.(exitPanic)
			if !ok {
				panic(r)
			}
			cli, err = nil, &exitError{code: int(code)}
		}
	}()
	if _, err := k.Parse(goFlagArgs(args, flagKinds(k.Model))); err != nil {
		return nil, err
	}
	return cli, nil
}

// helpWithEnv appends a flag's environment variable to its help text.
func helpWithEnv(v *kong.Value) string {
	name := v.Tag.Get("envvar")
	if name == "" {
		return v.Help
	}
	return v.Help + " ($" + name + ")"
}

// flagKinds maps each long flag name to whether it is a boolean flag.
func flagKinds(app *kong.Application) map[string]bool {
	kinds := map[string]bool{}
	for _, group := range app.AllFlags(true) {
		for _, f := range group {
			kinds[f.Name] = f.IsBool()
		}
	}
	return kinds
}

// goFlagArgs accepts Go flag syntax on top of kong's: a known long flag
// written with one dash (-port 6388, -debug=false) is rewritten with two.
// Values of non-boolean flags and everything after "--" are left alone.
func goFlagArgs(args []string, kinds map[string]bool) []string {
	out := make([]string, 0, len(args))
	takesValue := false
	for i, a := range args {
		if takesValue {
			out = append(out, a)
			takesValue = false
			continue
		}
		if a == "--" {
			return append(out, args[i:]...)
		}
		body, ok := strings.CutPrefix(a, "--")
		if !ok {
			if body, ok = strings.CutPrefix(a, "-"); ok {
				name, _, _ := strings.Cut(body, "=")
				if _, known := kinds[name]; known && len(name) > 1 {
					a = "-" + a
				}
			}
		}
		if ok {
			name, _, hasValue := strings.Cut(body, "=")
			isBool, known := kinds[name]
			takesValue = known && !isBool && !hasValue
		}
		out = append(out, a)
	}
	return out
}

// Validate checks ranges and cross-field rules and resolves the auth token.
// kong calls it after flags and environment are applied. Errors name the
// offending flag (and variable, when the value came from one).
func (c *CLI) Validate() error {
	counts := func(v int) int64 { return int64(v) }
	checks := []struct {
		flag     string
		v        int64
		min, max int64
		seconds  bool
	}{
		{"port", counts(c.Port), 0, 65535, false},
		{"default-lease-ttl", c.DefaultLeaseTTL, 1, maxSeconds, true},
		{"lease-sweep-interval", c.LeaseSweepInterval, 1, maxSeconds, true},
		{"gc-interval", c.GCInterval, 1, maxSeconds, true},
		{"gc-max-idle", c.GCMaxIdle, 0, maxSeconds, true},
		{"max-locks", counts(c.MaxLocks), 1, math.MaxInt64, false},
		{"max-connections", counts(c.MaxConnections), 0, math.MaxInt64, false},
		{"max-connections-per-ip", counts(c.MaxConnectionsPerIP), 0, math.MaxInt64, false},
		{"max-waiters", counts(c.MaxWaiters), 0, math.MaxInt64, false},
		{"max-subscriptions", counts(c.MaxSubscriptions), 0, math.MaxInt64, false},
		{"signal-queue", counts(c.SignalQueue), 1, math.MaxInt32, false},
		{"read-timeout", c.ReadTimeout, 1, maxSeconds, true},
		{"write-timeout", c.WriteTimeout, 0, maxSeconds, true},
		{"shutdown-timeout", c.ShutdownTimeout, 0, maxSeconds, true},
	}
	for _, ck := range checks {
		var rule string
		switch {
		case ck.v >= ck.min && ck.v <= ck.max:
			continue
		case ck.max == 65535:
			rule = "must be between 0 and 65535"
		case ck.v < ck.min && ck.min == 1:
			rule = "must be > 0"
		case ck.v < ck.min:
			rule = "must be >= 0"
		case ck.seconds:
			rule = fmt.Sprintf("must be at most %d seconds (larger overflows a duration)", ck.max)
		default:
			rule = fmt.Sprintf("must be at most %d", ck.max)
		}
		return fmt.Errorf("%s: %s, got %d", c.flagRef(ck.flag), rule, ck.v)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key must be given together")
	}
	token, source, err := c.resolveAuthToken()
	if err != nil {
		return err
	}
	c.token, c.tokenSource = token, source
	return nil
}

// flagRef names a flag for an error message, with the environment variable
// that supplied its value, if any.
func (c *CLI) flagRef(flag string) string {
	if name := c.env.source(flag); name != "" {
		return "--" + flag + " (from $" + name + ")"
	}
	return "--" + flag
}

// resolveAuthToken picks the auth token by the v1.16 precedence:
// --auth-token > --auth-token-file > DFLOCKD_AUTH_TOKEN >
// DFLOCKD_AUTH_TOKEN_FILE. A source given explicitly is used even if empty;
// an empty variable counts as unset. Values are whitespace-trimmed; an
// empty result or one containing CR or LF is an error. It returns "" when
// no source is set (auth off).
func (c *CLI) resolveAuthToken() (token, source string, err error) {
	switch {
	case c.env.explicit("auth-token"):
		source = "--auth-token"
		token, err = checkToken(c.AuthToken)
	case c.env.explicit("auth-token-file"):
		source = "--auth-token-file"
		token, err = readToken(c.AuthTokenFile)
	case c.AuthToken != "":
		source = c.flagRef("auth-token")
		token, err = checkToken(c.AuthToken)
	case c.AuthTokenFile != "":
		source = c.flagRef("auth-token-file")
		token, err = readToken(c.AuthTokenFile)
	default:
		return "", "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", source, err)
	}
	return token, source, nil
}

// readToken reads and checks a token file.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	tok, err := checkToken(string(b))
	if err != nil {
		return "", fmt.Errorf("token file %s: %w", path, err)
	}
	return tok, nil
}

// checkToken trims s and rejects an empty token or one spanning lines.
func checkToken(s string) (string, error) {
	tok := strings.TrimSpace(s)
	if tok == "" {
		return "", errors.New("auth token is empty")
	}
	if strings.ContainsAny(tok, "\r\n") {
		return "", errors.New("auth token must not contain CR or LF")
	}
	return tok, nil
}

// seconds converts a validated count of seconds to a Duration.
func seconds(n int64) time.Duration { return time.Duration(n) * time.Second }

// serverTLS loads the key pair named by --tls-cert/--tls-key. It returns
// nil when TLS is off.
func (c *CLI) serverTLS() (*tls.Config, error) {
	if c.TLSCert == "" && c.TLSKey == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// endpoint returns where to listen: tls when a certificate is configured,
// tcp otherwise. The host may be written with or without IPv6 brackets.
func (c *CLI) endpoint() transport.Endpoint {
	name := "tcp"
	if c.TLSCert != "" {
		name = "tls"
	}
	host := c.Host
	if len(host) >= 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return transport.Endpoint{Transport: name, Addr: net.JoinHostPort(host, strconv.Itoa(c.Port))}
}

// engineOptions converts the configuration into core.Options.
func (c *CLI) engineOptions() core.Options {
	return core.Options{
		DefaultTTL:       seconds(c.DefaultLeaseTTL),
		SweepInterval:    seconds(c.LeaseSweepInterval),
		GCInterval:       seconds(c.GCInterval),
		GCMaxIdle:        seconds(c.GCMaxIdle),
		MaxKeys:          c.MaxLocks,
		MaxWaiters:       c.MaxWaiters,
		KeepOnDisconnect: !c.AutoReleaseOnDisconnect,
	}
}

// serverOptions converts the configuration into server.Options.
func (c *CLI) serverOptions(engine *core.Engine, log *slog.Logger) server.Options {
	opts := server.Options{
		Engine:           engine,
		Logger:           log,
		ReadTimeout:      seconds(c.ReadTimeout),
		WriteTimeout:     seconds(c.WriteTimeout),
		MaxConns:         c.MaxConnections,
		MaxConnsPerIP:    c.MaxConnectionsPerIP,
		MaxSubscriptions: c.MaxSubscriptions,
		PushQueue:        c.SignalQueue,
	}
	if c.token != "" {
		opts.Auth = auth.Token(c.token)
	}
	return opts
}

// shutdownTimeout is the grace period for Shutdown (0 = wait forever).
func (c *CLI) shutdownTimeout() time.Duration { return seconds(c.ShutdownTimeout) }
