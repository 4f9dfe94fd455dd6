package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/cliflag"
	"github.com/dflockd/dflockd/internal/completion"
	"github.com/dflockd/dflockd/internal/version"
	"github.com/dflockd/dflockd/server"
	"github.com/dflockd/dflockd/transport"
)

// buildVersion returns the version logged at start (see internal/version).
func buildVersion() string { return version.Version() }

// maxSeconds is the largest whole number of seconds whose nanosecond form
// fits in an int64 (a time.Duration): 9223372036.
const maxSeconds = math.MaxInt64 / int64(time.Second)

// CLI is the dflockd command line (PROTOCOL.md §8). The server is the
// default command, so `dflockd --port 7000` serves; gen-cert writes
// certificates.
type CLI struct {
	Serve      ServeCmd         `cmd:"" default:"withargs" help:"Run the server (the default command)."`
	GenCert    GenCertCmd       `cmd:"" name:"gen-cert" help:"Write a CA, a server certificate and a client certificate for TLS, mTLS and QUIC."`
	Version    VersionCmd       `cmd:"" help:"Print the version."`
	Completion completion.Cmd   `cmd:"" help:"Print a shell completion script (bash, zsh, fish)."`
	VersionF   kong.VersionFlag `name:"version" help:"Print the version and exit."`

	env     *envResolver // shared with Serve
	command string       // the selected command: "serve" or "gen-cert"
}

// ServeCmd is the server's configuration. Durations are whole seconds.
// Each flag's environment variable is named by its envvar tag (and a
// deprecated alias by envalias); envResolver reads them, so an explicit flag
// beats the variable, which beats the default.
type ServeCmd struct {
	Listen []transport.Endpoint `name:"listen" envvar:"DFLOCKD_LISTEN" placeholder:"URL" group:"Network" help:"Listen on URL; repeatable or comma-separated: tcp://HOST:PORT, tls://HOST:PORT, unix:///ABS/PATH.sock, quic://HOST:PORT (transports: ${transports}); a bare HOST[:PORT] is TCP (port 6388 by default) and a bare path (with a / or starting with .) a Unix socket. Replaces --host/--port."`
	Host   string               `name:"host" default:"127.0.0.1" envvar:"DFLOCKD_HOST" group:"Network" help:"Address to bind when --listen is not given; IPv6 literals such as ::1 are fine."`
	Port   int                  `name:"port" default:"6388" envvar:"DFLOCKD_PORT" group:"Network" help:"Port to listen on when --listen is not given, 0-65535 (0 = any free port)."`

	UnixSocketMode string `name:"unix-socket-mode" default:"0660" envvar:"DFLOCKD_UNIX_SOCKET_MODE" placeholder:"MODE" group:"Network" help:"Permission of Unix socket files, in octal (default 0660: owner and group may connect)."`

	TLSCert       string   `name:"tls-cert" envvar:"DFLOCKD_TLS_CERT" placeholder:"FILE" group:"Security" help:"PEM certificate for tls and quic listeners (TLS 1.2+; reloaded on SIGHUP). Without --listen, the --host/--port listener speaks TLS."`
	TLSKey        string   `name:"tls-key" envvar:"DFLOCKD_TLS_KEY" placeholder:"FILE" group:"Security" help:"PEM private key for --tls-cert (reloaded with it)."`
	TLSClientCA   string   `name:"tls-client-ca" envvar:"DFLOCKD_TLS_CLIENT_CA" placeholder:"FILE" group:"Security" help:"PEM CA certificates: tls and quic clients must present a certificate they signed (mutual TLS); its name becomes the client's identity."`
	UnixAllowUID  []uint32 `name:"unix-allow-uid" envvar:"DFLOCKD_UNIX_ALLOW_UID" placeholder:"UID" group:"Security" help:"Admit Unix socket clients running as this user id; repeatable or comma-separated (with --unix-allow-gid: either matches)."`
	UnixAllowGID  []uint32 `name:"unix-allow-gid" envvar:"DFLOCKD_UNIX_ALLOW_GID" placeholder:"GID" group:"Security" help:"Admit Unix socket clients whose effective group id is this; repeatable or comma-separated."`
	AuthToken     string   `name:"auth-token" envvar:"DFLOCKD_AUTH_TOKEN" placeholder:"TOKEN" group:"Security" help:"Shared secret every connection must present first (send it only over TLS)."`
	AuthTokenFile string   `name:"auth-token-file" envvar:"DFLOCKD_AUTH_TOKEN_FILE" placeholder:"FILE" group:"Security" help:"File holding the shared secret (trimmed)."`

	DefaultLeaseTTL         cliflag.Seconds `name:"default-lease-ttl" default:"33" envvar:"DFLOCKD_DEFAULT_LEASE_TTL_S" group:"Locks" help:"Lease length in seconds when a request names none (> 0)."`
	LeaseSweepInterval      cliflag.Seconds `name:"lease-sweep-interval" default:"1" envvar:"DFLOCKD_LEASE_SWEEP_INTERVAL_S" group:"Locks" help:"Seconds between sweeps of expired leases (> 0)."`
	GCInterval              cliflag.Seconds `name:"gc-interval" default:"5" envvar:"DFLOCKD_GC_INTERVAL_S" envalias:"DFLOCKD_GC_LOOP_SLEEP" group:"Locks" help:"Seconds between idle-key collections (> 0)."`
	GCMaxIdle               cliflag.Seconds `name:"gc-max-idle" default:"60" envvar:"DFLOCKD_GC_MAX_IDLE_S" envalias:"DFLOCKD_GC_MAX_UNUSED_TIME" group:"Locks" help:"Idle seconds after which a key is collected (>= 0; 0 = next GC tick)."`
	SessionTTL              cliflag.Seconds `name:"session-ttl" default:"15" envvar:"DFLOCKD_SESSION_TTL_S" group:"Locks" help:"Seconds a named session is kept after its connection is lost, for the client to resume it, when the client asks no TTL (> 0, at most --session-ttl-max)."`
	SessionTTLMax           cliflag.Seconds `name:"session-ttl-max" default:"300" envvar:"DFLOCKD_SESSION_TTL_MAX_S" group:"Locks" help:"Largest session TTL a client may ask for; longer ones are cut to it (> 0)."`
	AutoReleaseOnDisconnect bool            `name:"auto-release-on-disconnect" default:"true" envvar:"DFLOCKD_AUTO_RELEASE_ON_DISCONNECT" group:"Locks" help:"Release a connection's leases when it closes; =false keeps them until they expire (default true)."`

	MaxLocks            int `name:"max-locks" default:"1024" envvar:"DFLOCKD_MAX_LOCKS" group:"Limits" help:"Live locks plus semaphores (> 0)."`
	MaxConnections      int `name:"max-connections" default:"0" envvar:"DFLOCKD_MAX_CONNECTIONS" group:"Limits" help:"Open connections (0 = unlimited)."`
	MaxConnectionsPerIP int `name:"max-connections-per-ip" default:"0" envvar:"DFLOCKD_MAX_CONNECTIONS_PER_IP" group:"Limits" help:"Open connections per client IP (0 = unlimited)."`
	MaxWaiters          int `name:"max-waiters" default:"0" envvar:"DFLOCKD_MAX_WAITERS" group:"Limits" help:"Queued waiters per key (0 = unlimited)."`
	MaxSessions         int `name:"max-sessions" default:"10000" envvar:"DFLOCKD_MAX_SESSIONS" group:"Limits" help:"Named sessions, with a connection or detached (0 = unlimited); past it session is answered error and the client carries on without one."`
	MaxSubscriptions    int `name:"max-subscriptions" default:"0" envvar:"DFLOCKD_MAX_SUBSCRIPTIONS" group:"Limits" help:"Signal subscriptions per connection (0 = unlimited)."`
	SignalQueueBytes    int `name:"signal-queue-bytes" default:"1048576" envvar:"DFLOCKD_SIGNAL_QUEUE_BYTES" group:"Limits" help:"Signal bytes a connection may have waiting to be written; a listener that falls this far behind is closed as a slow consumer (> 0; default 1 MiB)."`
	SignalQueue         int `name:"signal-queue" default:"0" envvar:"DFLOCKD_SIGNAL_QUEUE" group:"Limits" help:"Optional cap on the same waiting signals in frames, on top of --signal-queue-bytes (0 = no frame cap)."`
	StatsMaxItems       int `name:"stats-max-items" default:"1000" envvar:"DFLOCKD_STATS_MAX_ITEMS" group:"Limits" help:"Entries listed in each array of a stats answer; totals always count everything (>= 0; 0 = totals only)."`

	ReadTimeout     cliflag.Seconds `name:"read-timeout" default:"23" envvar:"DFLOCKD_READ_TIMEOUT_S" group:"Timeouts" help:"Idle seconds before a silent connection is dropped (> 0); also bounds the TLS handshake."`
	WriteTimeout    cliflag.Seconds `name:"write-timeout" default:"5" envvar:"DFLOCKD_WRITE_TIMEOUT_S" group:"Timeouts" help:"Seconds allowed for each write to a client (>= 0; 0 = no deadline)."`
	ShutdownTimeout cliflag.Seconds `name:"shutdown-timeout" default:"30" envvar:"DFLOCKD_SHUTDOWN_TIMEOUT_S" group:"Timeouts" help:"Seconds to drain connections on SIGINT/SIGTERM (>= 0; 0 = wait forever); a second signal closes them all and exits at once (status 130 or 143)."`
	QUICIdleTimeout cliflag.Seconds `name:"quic-idle-timeout" default:"30" envvar:"DFLOCKD_QUIC_IDLE_TIMEOUT_S" group:"Timeouts" help:"Seconds after which an idle QUIC connection is closed (> 0)."`
	QUICKeepAlive   cliflag.Seconds `name:"quic-keepalive" default:"10" envvar:"DFLOCKD_QUIC_KEEPALIVE_S" group:"Timeouts" help:"Seconds between QUIC keep-alive packets (>= 0; 0 = none)."`

	AdminListen string `name:"admin-listen" envvar:"DFLOCKD_ADMIN_LISTEN" placeholder:"HOST:PORT" group:"Monitoring" help:"Serve /metrics (Prometheus), /healthz, /readyz and, with --admin-pprof, /debug/pprof/ over HTTP on HOST:PORT, e.g. 127.0.0.1:9388 (default: off). With an auth token, /metrics and /debug/pprof/ need it as a bearer token."`
	AdminTLS    bool   `name:"admin-tls" default:"false" envvar:"DFLOCKD_ADMIN_TLS" group:"Monitoring" help:"Serve the admin listener over HTTPS with --tls-cert/--tls-key (no client certificate asked)."`
	AdminPprof  bool   `name:"admin-pprof" default:"false" envvar:"DFLOCKD_ADMIN_PPROF" group:"Monitoring" help:"Serve the Go profiler under /debug/pprof/ on the admin listener."`

	ClusterFlags `embed:""`

	Debug bool `name:"debug" default:"false" envvar:"DFLOCKD_DEBUG" help:"Log at debug level."`

	env         *envResolver // records which settings came from the environment
	token       string       // resolved auth token; "" = auth off
	tokenSource string       // flag or variable the token came from
	unixMode    fs.FileMode  // parsed --unix-socket-mode
}

// VersionCmd is `dflockd version`: the same line as --version.
type VersionCmd struct{}

// BeforeApply prints the version and exits with status 0.
func (VersionCmd) BeforeApply(app *kong.Kong, vars kong.Vars) error {
	fmt.Fprintln(app.Stdout, vars["version"])
	app.Exit(0)
	return nil
}

// exitError reports that kong asked to exit early (--help, --version).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// exitPanic carries a kong exit request out of kong.Parse.
type exitPanic int

// parse builds the configuration from args and the environment (read
// through lookupEnv, os.LookupEnv in main). --help and --version write to
// stdout and yield an *exitError with the status to exit with. Any other
// error is a configuration error.
func parse(args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) (cli *CLI, err error) {
	cli = newCLI(lookupEnv)
	k, err := newKong(cli, stdout, stderr)
	if err != nil {
		return nil, err
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
	completion.Complete(k) // exits when the shell asks for completions
	kctx, err := k.Parse(goFlagArgs(args, flagKinds(k.Model)))
	if cli.env.err != nil {
		// A bad variable, reported as it is (kong would prefix the flag).
		return nil, cli.env.err
	}
	if err != nil {
		return nil, err
	}
	cli.command = kctx.Selected().Name
	if cli.command == "serve" {
		// Checked here rather than in a kong Validate hook, which would
		// prefix every message with the command name nobody typed.
		if err := cli.Serve.validate(); err != nil {
			return nil, err
		}
	}
	return cli, nil
}

// newKong builds the parser for cli.
func newKong(cli *CLI, stdout, stderr io.Writer) (*kong.Kong, error) {
	k, err := kong.New(cli,
		kong.Name("dflockd"),
		kong.Description("A distributed lock, semaphore and signal server. Without a command it serves."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(exitPanic(code)) }),
		kong.Resolvers(cli.env),
		kong.ValueFormatter(helpWithEnv),
		kong.Help(printHelp),
		kong.Vars{
			"version":    version.String("dflockd"),
			"transports": strings.Join(transport.Names(), ", "),
		},
	)
	if err != nil {
		return nil, fmt.Errorf("build command line: %w", err)
	}
	return k, nil
}

// newCLI returns an empty command line whose commands share one
// environment resolver.
func newCLI(lookupEnv func(string) (string, bool)) *CLI {
	env := newEnvResolver(lookupEnv)
	return &CLI{env: env, Serve: ServeCmd{env: env}}
}

// printHelp prints kong's help, except that `dflockd --help` describes the
// server (the default command) with all its flags and then lists the
// other commands.
func printHelp(opts kong.HelpOptions, ctx *kong.Context) error {
	if ctx.Selected() != nil {
		return kong.DefaultHelpPrinter(opts, ctx)
	}
	serve, err := kong.Trace(ctx.Kong, []string{"serve"})
	if err != nil {
		return err
	}
	if err := kong.DefaultHelpPrinter(opts, serve); err != nil {
		return err
	}
	w := ctx.Stdout
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, cmd := range ctx.Model.Children {
		if cmd.Hidden {
			continue
		}
		fmt.Fprintf(w, "  %-10s %s\n", cmd.Name, cmd.Help)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, `Run "dflockd <command> --help" for more information on a command.`)
	return nil
}

// helpWithEnv appends a flag's environment variable to its help text.
func helpWithEnv(v *kong.Value) string {
	name := v.Tag.Get("envvar")
	if name == "" {
		return v.Help
	}
	return v.Help + " ($" + name + ")"
}

// flagKinds maps each long flag name, of every command, to whether it is a
// boolean flag. Commands that share a name (--host) agree on its kind.
func flagKinds(app *kong.Application) map[string]bool {
	kinds := map[string]bool{}
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		for _, f := range n.Flags {
			kinds[f.Name] = f.IsBool()
		}
		for _, child := range n.Children {
			walk(child)
		}
	}
	walk(app.Node)
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

// validate checks ranges and cross-field rules, parses the socket mode and
// resolves the auth token. parse calls it after flags and environment are
// applied. Errors name the offending flag (and variable, when the value
// came from one).
func (c *ServeCmd) validate() error {
	counts := func(v int) int64 { return int64(v) }
	checks := []struct {
		flag     string
		v        int64
		min, max int64
		seconds  bool
	}{
		{"port", counts(c.Port), 0, 65535, false},
		{"default-lease-ttl", int64(c.DefaultLeaseTTL), 1, maxSeconds, true},
		{"lease-sweep-interval", int64(c.LeaseSweepInterval), 1, maxSeconds, true},
		{"gc-interval", int64(c.GCInterval), 1, maxSeconds, true},
		{"gc-max-idle", int64(c.GCMaxIdle), 0, maxSeconds, true},
		{"max-locks", counts(c.MaxLocks), 1, math.MaxInt64, false},
		{"max-connections", counts(c.MaxConnections), 0, math.MaxInt64, false},
		{"max-connections-per-ip", counts(c.MaxConnectionsPerIP), 0, math.MaxInt64, false},
		{"max-waiters", counts(c.MaxWaiters), 0, math.MaxInt64, false},
		{"max-sessions", counts(c.MaxSessions), 0, math.MaxInt64, false},
		{"max-subscriptions", counts(c.MaxSubscriptions), 0, math.MaxInt64, false},
		{"signal-queue-bytes", counts(c.SignalQueueBytes), 1, math.MaxInt32, false},
		{"signal-queue", counts(c.SignalQueue), 0, math.MaxInt32, false},
		{"stats-max-items", counts(c.StatsMaxItems), 0, math.MaxInt32, false},
		{"session-ttl", int64(c.SessionTTL), 1, maxSeconds, true},
		{"session-ttl-max", int64(c.SessionTTLMax), 1, maxSeconds, true},
		{"read-timeout", int64(c.ReadTimeout), 1, maxSeconds, true},
		{"write-timeout", int64(c.WriteTimeout), 0, maxSeconds, true},
		{"shutdown-timeout", int64(c.ShutdownTimeout), 0, maxSeconds, true},
		{"quic-idle-timeout", int64(c.QUICIdleTimeout), 1, maxSeconds, true},
		{"quic-keepalive", int64(c.QUICKeepAlive), 0, maxSeconds, true},
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
	if err := c.validateCluster(); err != nil {
		return err
	}
	if c.SessionTTL > c.SessionTTLMax {
		return fmt.Errorf("%s: must be at most %s (%d), got %d", c.flagRef("session-ttl"), c.flagRef("session-ttl-max"), c.SessionTTLMax, c.SessionTTL)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key must be given together")
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		return fmt.Errorf("%s needs --tls-cert and --tls-key", c.flagRef("tls-client-ca"))
	}
	for _, ep := range c.Listen {
		if needsTLS(ep) && c.TLSCert == "" {
			return fmt.Errorf("%s %s needs --tls-cert and --tls-key", c.flagRef("listen"), ep)
		}
	}
	mode, err := strconv.ParseUint(c.UnixSocketMode, 8, 32)
	if err != nil || mode > 0o777 {
		return fmt.Errorf("%s: want an octal permission such as 0660, got %q", c.flagRef("unix-socket-mode"), c.UnixSocketMode)
	}
	c.unixMode = fs.FileMode(mode)
	if err := c.validateAdmin(); err != nil {
		return err
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
func (c *ServeCmd) flagRef(flag string) string {
	if name := c.env.source(flag); name != "" {
		return "--" + flag + " (from $" + name + ")"
	}
	return "--" + flag
}

// resolveAuthToken picks the auth token by the v1.16 precedence:
// --auth-token > --auth-token-file > DFLOCKD_AUTH_TOKEN >
// DFLOCKD_AUTH_TOKEN_FILE. A source given explicitly is used even if empty
// (and refused); a variable set but empty has already been refused by the
// environment resolver. Values are whitespace-trimmed; an empty result, one
// containing CR or LF or one longer than the auth line is an error. It
// returns "" when no source is set (auth off).
func (c *ServeCmd) resolveAuthToken() (token, source string, err error) {
	switch {
	case c.env.explicit("auth-token"):
		source = "--auth-token"
		token, err = auth.CleanSecret(c.AuthToken)
	case c.env.explicit("auth-token-file"):
		source = "--auth-token-file"
		token, err = auth.ReadSecretFile(c.AuthTokenFile)
	case c.env.source("auth-token") != "":
		source = c.flagRef("auth-token")
		token, err = auth.CleanSecret(c.AuthToken)
	case c.env.source("auth-token-file") != "":
		source = c.flagRef("auth-token-file")
		token, err = auth.ReadSecretFile(c.AuthTokenFile)
	default:
		return "", "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", source, err)
	}
	return token, source, nil
}

// seconds converts a validated count of seconds to a Duration.
func seconds(n int64) time.Duration { return time.Duration(n) * time.Second }

// endpoint returns where to listen without --listen: tls when a
// certificate is configured, tcp otherwise. The host may be written with or
// without IPv6 brackets.
func (c *ServeCmd) endpoint() transport.Endpoint {
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

// endpoints returns every endpoint to listen on: the --listen URLs, or the
// one --host/--port endpoint.
func (c *ServeCmd) endpoints() []transport.Endpoint {
	if len(c.Listen) > 0 {
		return c.Listen
	}
	return []transport.Endpoint{c.endpoint()}
}

// hostPortSet reports whether --host or --port was set on the command line
// or in the environment.
func (c *ServeCmd) hostPortSet() bool {
	for _, f := range []string{"host", "port"} {
		if c.env.explicit(f) || c.env.source(f) != "" {
			return true
		}
	}
	return false
}

// needsTLS reports whether ep's transport needs a certificate.
func needsTLS(ep transport.Endpoint) bool { return ep.Transport == "tls" || ep.Transport == "quic" }

// peerAuth returns the connection-level authenticator for listeners on
// ep: the client certificate on tls and quic when --tls-client-ca is set,
// the process credentials on unix when an allow list is given, else nil.
func (c *ServeCmd) peerAuth(ep transport.Endpoint) auth.PeerAuthenticator {
	switch {
	case needsTLS(ep) && c.TLSClientCA != "":
		return auth.ClientCert()
	case ep.Transport == "unix" && (len(c.UnixAllowUID) > 0 || len(c.UnixAllowGID) > 0):
		return auth.UnixCreds(c.UnixAllowUID, c.UnixAllowGID)
	}
	return nil
}

// peerAuthName names peerAuth(ep) for the logs.
func (c *ServeCmd) peerAuthName(ep transport.Endpoint) string {
	if c.peerAuth(ep) == nil {
		return "none"
	}
	if ep.Transport == "unix" {
		return "unix-credentials"
	}
	return "client-certificate"
}

// transportOptions converts the configuration into transport.Options;
// tlsCfg is nil when TLS is off.
func (c *ServeCmd) transportOptions(tlsCfg *tls.Config) transport.Options {
	keepAlive := c.QUICKeepAlive.Duration()
	if keepAlive == 0 {
		keepAlive = -1 // transport: negative disables, 0 is the default
	}
	return transport.Options{
		TLS:             tlsCfg,
		UnixMode:        c.unixMode,
		QUICIdleTimeout: c.QUICIdleTimeout.Duration(),
		QUICKeepAlive:   keepAlive,
	}
}

// engineOptions converts the configuration into core.Options.
func (c *ServeCmd) engineOptions() core.Options {
	return core.Options{
		DefaultTTL:       c.DefaultLeaseTTL.Duration(),
		SweepInterval:    c.LeaseSweepInterval.Duration(),
		GCInterval:       c.GCInterval.Duration(),
		GCMaxIdle:        c.GCMaxIdle.Duration(),
		MaxKeys:          c.MaxLocks,
		MaxWaiters:       c.MaxWaiters,
		MaxSessions:      c.MaxSessions,
		KeepOnDisconnect: !c.AutoReleaseOnDisconnect,
	}
}

// serverOptions converts the configuration into server.Options.
func (c *ServeCmd) serverOptions(engine *core.Engine, log *slog.Logger) server.Options {
	opts := server.Options{
		Engine:           engine,
		Logger:           log,
		ReadTimeout:      c.ReadTimeout.Duration(),
		WriteTimeout:     c.WriteTimeout.Duration(),
		MaxConns:         c.MaxConnections,
		MaxConnsPerIP:    c.MaxConnectionsPerIP,
		MaxSubscriptions: c.MaxSubscriptions,
		PushQueueBytes:   c.SignalQueueBytes,
		PushQueue:        c.SignalQueue,
		StatsMaxItems:    c.StatsMaxItems,
		SessionTTL:       c.SessionTTL.Duration(),
		SessionTTLMax:    c.SessionTTLMax.Duration(),
	}
	if c.StatsMaxItems == 0 {
		opts.StatsMaxItems = -1 // totals only
	}
	if c.token != "" {
		opts.Auth = auth.Token(c.token)
	}
	return opts
}

// shutdownTimeout is the grace period for Shutdown (0 = wait forever).
func (c *ServeCmd) shutdownTimeout() time.Duration { return c.ShutdownTimeout.Duration() }
