package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/client"
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/cliflag"
	"github.com/dflockd/dflockd/internal/completion"
	"github.com/dflockd/dflockd/internal/tlsflags"
	"github.com/dflockd/dflockd/internal/version"
	"github.com/dflockd/dflockd/protocol"
	"github.com/dflockd/dflockd/transport"
)

// CLI is the dflockctl command line: global connection flags and one
// command.
type CLI struct {
	Server        []string `name:"server" short:"s" default:"127.0.0.1:6388" sep:"," envvar:"DFLOCKD_SERVER" placeholder:"ADDR" help:"Server address: host[:port] (port 6388 when omitted), a socket path (/run/dflockd.sock, ./d.sock), or a URL: tcp://, tls://host:port, unix:///path.sock, quic://host:port. lock and semaphore accept several (comma-separated) and pick one by the CRC-32 of the key, like the other clients."`
	Cluster       []string `name:"cluster" sep:"none" envvar:"DFLOCKD_CLUSTER" placeholder:"ADDR,ADDR,..." help:"The client addresses of the members of one replicated cluster, comma-separated (addresses as for --server; give them all: the leader is found through whichever answers). lock and semaphore follow its leader through failovers; the cluster commands talk to it; signal, listen, stats, inspect and top talk to its leader. lock and semaphore accept the flag several times: keys are then sharded over those clusters as over --server addresses. Not with --server."`
	Transport     string   `name:"transport" envvar:"DFLOCKD_TRANSPORT" placeholder:"NAME" help:"Transport for addresses without a scheme (${transports}); default tcp, or tls when a TLS flag is set."`
	AuthToken     string   `name:"auth-token" envvar:"DFLOCKD_AUTH_TOKEN" placeholder:"TOKEN" help:"Shared secret, if the server requires one (trimmed)."`
	AuthTokenFile string   `name:"auth-token-file" envvar:"DFLOCKD_AUTH_TOKEN_FILE" placeholder:"FILE" help:"File holding the shared secret (trimmed); keeps it out of the process list."`
	TLSCA         string   `name:"tls-ca" envvar:"DFLOCKD_TLS_CA" placeholder:"FILE" help:"PEM CA certificates to verify the server with (default: the system roots). Implies TLS for host:port addresses."`
	TLSCert       string   `name:"tls-cert" envvar:"DFLOCKD_CLIENT_CERT" placeholder:"FILE" help:"PEM client certificate, for servers that require mutual TLS (with --tls-key)."`
	TLSKey        string   `name:"tls-key" envvar:"DFLOCKD_CLIENT_KEY" placeholder:"FILE" help:"PEM private key of --tls-cert."`
	Name          string   `name:"name" envvar:"DFLOCKCTL_NAME" placeholder:"NAME" help:"Name this connection (1-64 printable ASCII bytes), shown by the server in inspect, stats and its logs, e.g. backup-job-7. Servers that do not support names (1.x) ignore it."`
	TLSServerName string   `name:"tls-server-name" envvar:"DFLOCKD_TLS_SERVER_NAME" placeholder:"NAME" help:"Name to verify the server certificate against (default: the host of the address)."`

	DialTimeout    duration         `name:"dial-timeout" default:"5s" placeholder:"DURATION" help:"How long connecting may take, TLS and auth handshakes included (default 5s; 0 = no limit)."`
	CommandTimeout duration         `name:"command-timeout" default:"10s" placeholder:"DURATION" help:"How long to wait for the server's answer to a request (default 10s; 0 = no limit). A lock or semaphore wait may take --timeout plus this; with --timeout forever it is not bounded."`
	Version        kong.VersionFlag `name:"version" help:"Print the version and exit."`

	Lock       LockCmd      `cmd:"" help:"Run a command while holding a lock."`
	Semaphore  SemaphoreCmd `cmd:"" help:"Run a command while holding one slot of a semaphore."`
	Signal     SignalCmd    `cmd:"" help:"Send a signal and print how many listeners received it."`
	Listen     ListenCmd    `cmd:"" help:"Print signals matching a pattern, one \"channel payload\" line each, until interrupted."`
	Stats      StatsCmd     `cmd:"" help:"Show the server's locks, semaphores, idle keys, signal channels and clients."`
	Inspect    InspectCmd   `cmd:"" help:"Show who holds a lock or semaphore key and who waits for it, in queue order."`
	Top        TopCmd       `cmd:"" help:"Live view of the server: connections, ops/s, held, waiting, longest queues, oldest holders."`
	ClusterOps ClusterCmd   `cmd:"" name:"cluster" help:"Show a replicated cluster's members, add or remove one, move leadership."`

	Completion completion.Cmd `cmd:"" help:"Print a shell completion script (bash, zsh, fish)."`

	env     *envResolver
	command string // the selected command's name
}

// holdFlags are the flags shared by lock and semaphore.
type holdFlags struct {
	Timeout      waitTime        `name:"timeout" short:"t" default:"forever" placeholder:"DURATION" help:"How long to wait: whole seconds (30, 30s, 5m; 500ms or 1.5s are refused) or forever (the default); 0 tries once."`
	TTL          cliflag.Seconds `name:"ttl" default:"0" placeholder:"DURATION" help:"Lease to ask for, in whole seconds (30, 30s, 5m), renewed in the background while held (0 = the server's default)."`
	KillAfter    duration        `name:"kill-after" default:"10s" placeholder:"DURATION" help:"When the lease is lost the command gets SIGTERM, then SIGKILL after this long (default 10s)."`
	ShellCommand string          `name:"command" short:"c" placeholder:"STRING" help:"Run STRING with sh -c instead of COMMAND (as flock -c)."`
	ConflictExit int             `name:"conflict-exit-code" short:"E" default:"1" placeholder:"N" help:"Exit status when not acquired within --timeout (0-255, default 1), to tell it from COMMAND's own (as flock -E)."`
}

// LockCmd runs a command while holding a lock.
type LockCmd struct {
	Key     string   `arg:"" name:"key" help:"Lock key (1-256 bytes, no whitespace)."`
	Command []string `arg:"" optional:"" name:"command" passthrough:"partial" help:"Command to run, with its arguments (after --). Without one (and without -c), hold until interrupted."`
	holdFlags
}

// holdHelp is the detailed help of lock and semaphore.
const holdHelp = `Acquires the %[1]s, runs COMMAND (or -c STRING through sh -c) with the %[1]s
held and releases it when COMMAND exits. The lease is renewed in the
background. If the connection drops, dflockctl reconnects and resumes its
session: the server keeps the %[1]s (and a place in the queue) for the
session TTL, 15s unless configured, so COMMAND carries on. With --cluster
it also follows the cluster's leader: when the leader dies, dflockctl
finds the new one and resumes its session there. If the lease is
lost anyway (server unreachable for longer than that, lease expired, a
server without sessions), COMMAND gets SIGTERM and, --kill-after later,
SIGKILL. SIGINT, SIGTERM and SIGHUP are
forwarded to COMMAND (while waiting for the %[1]s they abort the wait).
COMMAND sees DFLOCKCTL_KEY and DFLOCKCTL_TOKEN, the lease token, which also
serves as a fencing token.

Without COMMAND and -c, dflockctl prints what it holds and keeps the %[1]s
until SIGINT or SIGTERM (Ctrl-C; exit 0 after releasing it) or until the
lease is lost (exit 4), as etcdctl lock does.

Timeouts: connecting is bounded by --dial-timeout; the wait itself by
--timeout, and the server's answer may then take --command-timeout more
before dflockctl gives up on it (with --timeout forever the wait is not
bounded). Durations sent to the server are whole seconds.

Exit status: COMMAND's own; 1 (or --conflict-exit-code) if the %[1]s was not
acquired within --timeout; 2 on a usage or configuration error; 3 on a
server or connection error; 4 if the lease was lost (COMMAND was stopped);
126 if COMMAND could not be started; 127 if it was not found; 128+N if
COMMAND was killed by signal N or the wait was interrupted by signal N.`

// Help implements kong.HelpProvider.
func (LockCmd) Help() string { return fmt.Sprintf(holdHelp, "lock") }

// Help implements kong.HelpProvider.
func (SemaphoreCmd) Help() string { return fmt.Sprintf(holdHelp, "slot") }

// SemaphoreCmd runs a command while holding a semaphore slot.
type SemaphoreCmd struct {
	Key     string   `arg:"" name:"key" help:"Semaphore key (1-256 bytes, no whitespace)."`
	Limit   int      `arg:"" name:"limit" help:"Number of slots; every user of the key must give the same limit."`
	Command []string `arg:"" optional:"" name:"command" passthrough:"partial" help:"Command to run, with its arguments (after --). Without one (and without -c), hold until interrupted."`
	holdFlags
}

// SignalCmd sends one signal.
type SignalCmd struct {
	Channel      string   `arg:"" name:"channel" help:"Channel to signal (no wildcards)."`
	Payload      []string `arg:"" name:"payload" help:"Payload; several words are joined with single spaces; - reads it from standard input (one line)."`
	MinReceivers int      `name:"min-receivers" default:"0" placeholder:"N" help:"Exit with status 1 when fewer than N listeners received the signal."`
}

// ListenCmd prints signals.
type ListenCmd struct {
	Pattern string `arg:"" name:"pattern" help:"Channel or pattern: * matches one dot-separated token, a final > the rest."`
	Group   string `name:"group" short:"g" placeholder:"NAME" help:"Join this queue group: each signal goes to one member of the group."`
	Count   int    `name:"count" short:"n" default:"0" placeholder:"N" help:"Exit after N signals (0 = run until interrupted)."`
	JSON    bool   `name:"json" help:"Print one JSON object per signal: {\"time\":RFC 3339 with nanoseconds,\"channel\":...,\"payload\":...}."`
}

// StatsCmd prints the server's state.
type StatsCmd struct {
	JSON bool `name:"json" help:"Print the server's raw JSON answer instead of a table."`
}

// waitTime is the --timeout flag: whole seconds (cliflag.Seconds) or
// "forever".
type waitTime struct {
	d       time.Duration
	forever bool
}

// UnmarshalText implements encoding.TextUnmarshaler for kong.
func (w *waitTime) UnmarshalText(b []byte) error {
	switch strings.ToLower(strings.TrimSpace(string(b))) {
	case "forever", "inf", "infinite":
		*w = waitTime{forever: true}
		return nil
	}
	var s cliflag.Seconds
	if err := s.UnmarshalText(b); err != nil {
		return err
	}
	*w = waitTime{d: s.Duration()}
	return nil
}

// acquireTimeout converts w into client.Lock.AcquireTimeout, where zero
// means the client's default and a negative value means "try once".
func (w waitTime) acquireTimeout() time.Duration {
	switch {
	case w.forever:
		return time.Duration(protocol.MaxSeconds) * time.Second
	case w.d == 0:
		return -1
	}
	return w.d
}

// duration is a non-negative duration flag for what dflockctl times
// itself (not sent to the server, so fractions are fine); a bare number is
// seconds ("30" = 30s).
type duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler for kong.
func (d *duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > protocol.MaxSeconds {
			return fmt.Errorf("%d seconds is out of range [0, %d]", n, protocol.MaxSeconds)
		}
		*d = duration(time.Duration(n) * time.Second)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as 30s or 5m, or a number of seconds: %w", err)
	}
	if v < 0 {
		return fmt.Errorf("negative duration %s", s)
	}
	*d = duration(v)
	return nil
}

// usageError is a command-line or configuration error (exit status 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef returns a usageError with a formatted message.
func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// exitRequest reports that kong asked to exit early (--help).
type exitRequest struct{ code int }

func (e *exitRequest) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// exitPanic carries a kong exit request out of kong.Parse.
type exitPanic int

// parse builds the command line from args and the environment (read
// through getenv) and validates it. --help prints to stdout and yields an
// *exitRequest; any other error is a *usageError.
func parse(args []string, getenv func(string) string, stdout, stderr io.Writer) (cli *CLI, err error) {
	cli = &CLI{env: newEnvResolver(getenv)}
	k, err := kong.New(cli,
		kong.Name("dflockctl"),
		kong.Description("Command-line client of the dflockd lock server: run a command under a lock or a semaphore slot, send and watch signals, show server state."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(exitPanic(code)) }),
		kong.Resolvers(cli.env),
		kong.ValueFormatter(helpWithEnv),
		kong.Vars{"transports": strings.Join(transport.Names(), ", "), "version": version.String("dflockctl")},
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
			cli, err = nil, &exitRequest{code: int(code)}
		}
	}()
	completion.Complete(k) // exits when the shell asks for completions
	kctx, err := k.Parse(args)
	if err != nil {
		return nil, usagef("%w (see dflockctl --help)", err)
	}
	cli.command = kctx.Selected().Name
	if p := kctx.Selected().Parent; p != nil && p.Name == "cluster" {
		cli.command = "cluster " + cli.command
	}
	if err := cli.validate(); err != nil {
		return nil, err
	}
	return cli, nil
}

// helpWithEnv appends a flag's environment variable to its help text.
func helpWithEnv(v *kong.Value) string {
	if name := v.Tag.Get("envvar"); name != "" {
		return v.Help + " ($" + name + ")"
	}
	return v.Help
}

// validate checks what kong cannot: cross-flag rules and the command's
// arguments.
func (c *CLI) validate() error {
	if len(c.Server) == 0 {
		return usagef("--server: no address given")
	}
	for _, s := range c.Server {
		if strings.TrimSpace(s) == "" {
			return usagef("--server: empty address in %q", strings.Join(c.Server, ","))
		}
	}
	for _, s := range c.Cluster {
		for _, a := range strings.Split(s, ",") {
			if strings.TrimSpace(a) == "" {
				return usagef("--cluster: empty address in %q", s)
			}
		}
	}
	if len(c.Cluster) > 0 && c.env.explicit("server") {
		return usagef("give --cluster or --server, not both")
	}
	cluster := strings.HasPrefix(c.command, "cluster ")
	switch c.command {
	case "signal", "listen", "stats", "inspect", "top":
		if len(c.Cluster) > 1 {
			return usagef("%s talks to one cluster; --cluster is given %d times", c.command, len(c.Cluster))
		}
		if len(c.Server) > 1 && len(c.Cluster) == 0 {
			return usagef("%s talks to one server; --server lists %d (for a cluster's members, use --cluster)", c.command, len(c.Server))
		}
	}
	if cluster && len(c.Cluster) > 1 {
		return usagef("%s talks to one cluster; --cluster is given %d times", c.command, len(c.Cluster))
	}
	if c.Name != "" && !protocol.ValidName([]byte(c.Name)) {
		return usagef("--name %q: want 1 to %d bytes of printable ASCII, without leading or trailing space", c.Name, protocol.MaxName)
	}
	if c.command == "inspect" && !protocol.ValidKey(c.Inspect.Key) {
		return usagef("inspect: bad key %q: want 1 to %d bytes without whitespace", c.Inspect.Key, protocol.MaxLine)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return usagef("--tls-cert and --tls-key must be given together")
	}
	if c.tlsWanted() {
		for _, s := range slices.Concat(c.Server, c.clusterMembers()) {
			if name := c.transportOf(s); name == "tcp" || name == "unix" {
				return usagef("TLS flags given, but %q uses the %s transport (use tls:// or quic://)", s, name)
			}
		}
	}
	hold := func(cmd []string, h holdFlags) error {
		switch {
		case h.ShellCommand != "" && len(cmd) > 0:
			return usagef("%s: give either -c STRING or COMMAND, not both", c.command)
		case len(cmd) > 0 && len(commandArgs(cmd)) == 0:
			return usagef("%s: no command given after -- (dflockctl %s KEY ... -- COMMAND [ARG...]; leave out -- to hold until interrupted)", c.command, c.command)
		case h.ConflictExit < 0 || h.ConflictExit > 255:
			return usagef("--conflict-exit-code must be 0-255, got %d", h.ConflictExit)
		}
		return nil
	}
	switch c.command {
	case "lock":
		return hold(c.Lock.Command, c.Lock.holdFlags)
	case "semaphore":
		if c.Semaphore.Limit < 1 {
			return usagef("semaphore: limit must be at least 1, got %d", c.Semaphore.Limit)
		}
		return hold(c.Semaphore.Command, c.Semaphore.holdFlags)
	case "listen":
		if c.Listen.Count < 0 {
			return usagef("--count must be >= 0, got %d", c.Listen.Count)
		}
		if p := c.Listen.Pattern; !core.ValidPattern(p) || len(p) > protocol.MaxLine {
			return usagef("listen: bad pattern %q: want 1 to %d bytes without whitespace, where * stands for one whole dot-separated token and > for the rest, only as the last token (e.g. jobs.*.done, jobs.>)", p, protocol.MaxLine)
		}
	case "signal":
		if c.Signal.MinReceivers < 0 {
			return usagef("--min-receivers must be >= 0, got %d", c.Signal.MinReceivers)
		}
		if ch := c.Signal.Channel; !protocol.ValidChannel(ch) {
			return usagef("signal: bad channel %q: want 1 to %d bytes without whitespace, '*' or '>' (wildcards are for listen)", ch, protocol.MaxLine)
		}
	}
	return nil
}

// tlsWanted reports whether a TLS flag is set.
func (c *CLI) tlsWanted() bool {
	return c.TLSCA != "" || c.TLSCert != "" || c.TLSServerName != ""
}

// transportOf names the transport an address will use, as the client
// works it out: its scheme, else unix for a path, else --transport, else
// tls or tcp.
func (c *CLI) transportOf(addr string) string {
	if scheme, _, ok := strings.Cut(addr, "://"); ok {
		return strings.ToLower(scheme)
	}
	if transport.LooksLikePath(addr) {
		return "unix"
	}
	if c.Transport != "" {
		return strings.ToLower(c.Transport)
	}
	if c.tlsWanted() {
		return "tls"
	}
	return "tcp"
}

// clientOptions builds the connection options: transport, TLS and auth
// token. File errors are usage errors.
func (c *CLI) clientOptions() (client.Options, error) {
	opts := client.Options{Transport: c.Transport, Name: c.Name, DialTimeout: time.Duration(c.DialTimeout)}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = -1 // no limit, rather than the client's default
	}
	token, err := c.authToken()
	if err != nil {
		return opts, err
	}
	opts.AuthToken = token
	if opts.TLS, err = c.tlsConfig(); err != nil {
		return opts, err
	}
	return opts, nil
}

// authToken picks the token with the server's precedence: --auth-token,
// --auth-token-file, $DFLOCKD_AUTH_TOKEN, $DFLOCKD_AUTH_TOKEN_FILE. It
// returns "" when none is set.
func (c *CLI) authToken() (string, error) {
	var raw, source string
	switch {
	case c.env.explicit("auth-token"):
		raw, source = c.AuthToken, "--auth-token"
	case c.env.explicit("auth-token-file"):
		return readTokenFile(c.AuthTokenFile, "--auth-token-file")
	case c.AuthToken != "":
		raw, source = c.AuthToken, "$DFLOCKD_AUTH_TOKEN"
	case c.AuthTokenFile != "":
		return readTokenFile(c.AuthTokenFile, "$DFLOCKD_AUTH_TOKEN_FILE")
	default:
		return "", nil
	}
	return checkToken(raw, source)
}

// readTokenFile reads a token file named by source.
func readTokenFile(path, source string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", &usageError{fmt.Errorf("%s: %w", source, err)}
	}
	return checkToken(string(b), source+" "+path)
}

// checkToken cleans a token with auth.CleanSecret, naming source in the
// usage error.
func checkToken(raw, source string) (string, error) {
	tok, err := auth.CleanSecret(raw)
	switch {
	case errors.Is(err, auth.ErrEmptySecret):
		return "", usagef("%s: empty auth token", source)
	case err != nil:
		return "", usagef("%s: auth token must not contain a line break", source)
	}
	return tok, nil
}

// tlsConfig returns the TLS client configuration, or nil when no TLS flag
// is set (tls:// and quic:// addresses then verify against the system
// roots).
func (c *CLI) tlsConfig() (*tls.Config, error) {
	cfg, err := tlsflags.Client{CA: c.TLSCA, Cert: c.TLSCert, Key: c.TLSKey, ServerName: c.TLSServerName}.Config()
	if err != nil {
		return nil, &usageError{err}
	}
	return cfg, nil
}

// envResolver is a kong.Resolver reading each flag's envvar tag through an
// injectable getenv; an empty variable counts as unset. kong consults it
// only for flags absent from the command line, which is how explicit
// flags are told apart.
type envResolver struct {
	getenv func(string) string
	asked  map[string]bool // flags not given on the command line
}

var _ kong.Resolver = (*envResolver)(nil)

func newEnvResolver(getenv func(string) string) *envResolver {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	return &envResolver{getenv: getenv, asked: map[string]bool{}}
}

// Validate implements kong.Resolver.
func (r *envResolver) Validate(*kong.Application) error { return nil }

// Resolve implements kong.Resolver.
func (r *envResolver) Resolve(_ *kong.Context, _ *kong.Path, f *kong.Flag) (any, error) {
	r.asked[f.Name] = true
	name := f.Tag.Get("envvar")
	if name == "" {
		return nil, nil
	}
	if v := r.getenv(name); v != "" {
		return v, nil
	}
	return nil, nil
}

// explicit reports whether flag was given on the command line.
func (r *envResolver) explicit(flag string) bool { return !r.asked[flag] }

// commandArgs returns COMMAND and its arguments without the "--" that
// kong keeps in front of them.
func commandArgs(cmd []string) []string {
	if len(cmd) > 0 && cmd[0] == "--" {
		return cmd[1:]
	}
	return cmd
}
