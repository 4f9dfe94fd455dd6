package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"

	"github.com/alecthomas/kong"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/bench"
	"github.com/dflockd/dflockd/internal/cliflag"
	"github.com/dflockd/dflockd/internal/completion"
	"github.com/dflockd/dflockd/internal/tlsflags"
	"github.com/dflockd/dflockd/internal/version"
	"github.com/dflockd/dflockd/transport"
)

// CLI is the bench command line.
type CLI struct {
	Run        RunCmd           `cmd:"" default:"withargs" help:"Measure a server (the default command)."`
	Memory     MemoryCmd        `cmd:"" help:"Measure a dflockd binary's resident memory with idle connections and with held locks."`
	AuthGuess  AuthGuessCmd     `cmd:"" name:"auth-guess" help:"Measure how many wrong auth tokens a client can try per second."`
	Completion completion.Cmd   `cmd:"" help:"Print a shell completion script (bash, zsh, fish)."`
	Version    kong.VersionFlag `name:"version" help:"Print the version and exit."`
	StatsFlood StatsFloodCmd    `cmd:"" name:"stats-flood" help:"Measure a dflockd binary's memory and ping latency while connections pipeline stats."`
}

// RunCmd is a benchmark run, a baseline comparison or a matrix.
type RunCmd struct {
	Mode        []string        `name:"mode" default:"lock" sep:"," placeholder:"MODE" help:"What one operation does: lock (l+r), semaphore (sl+sr), twophase (e+w+r), handoff (all workers on one key), signal (publish; rate = delivered frames). --matrix accepts several, comma-separated."`
	Workers     int             `name:"workers" default:"10" help:"Concurrent workers (> 0)."`
	Rounds      int             `name:"rounds" default:"50" help:"Measured operations per worker (> 0)."`
	Warmup      int             `name:"warmup" default:"10" help:"Unmeasured operations per worker before timing starts (all workers finish warm-up first)."`
	Key         string          `name:"key" default:"bench" help:"Key, used as a prefix (<key>_<worker>) unless --shared-key; the channel in signal mode."`
	SharedKey   bool            `name:"shared-key" help:"All workers contend on the literal --key."`
	Timeout     cliflag.Seconds `name:"timeout" default:"30" placeholder:"SECONDS" help:"Acquire timeout sent with each l/sl/w, whole seconds (30, 30s, 5m; 500ms is refused)."`
	Lease       cliflag.Seconds `name:"lease" default:"10" placeholder:"SECONDS" help:"Lease sent with each acquire, whole seconds (0 = server default)."`
	Limit       int             `name:"limit" default:"0" help:"Semaphore size in semaphore mode (0 = --workers)."`
	Connections int             `name:"connections" default:"0" help:"Persistent connections per worker (0 = 1); operations rotate over them."`
	Pipeline    int             `name:"pipeline" default:"1" help:"Operations in flight per worker (needs per-worker keys)."`
	Listeners   int             `name:"listeners" default:"1" help:"Listening connections in signal mode."`
	Window      int             `name:"signal-window" default:"0" help:"Signal mode: publishes the publishers may run ahead of the slowest listener (0 = as many frames as fill half of dflockd's default 1 MiB push queue)."`
	PayloadSize int             `name:"payload-size" default:"0" help:"Signal mode: payload bytes per publish, the publish time padded with dots (0 = the publish time alone, 19 bytes)."`
	Servers     []string        `name:"servers" default:"127.0.0.1:6388" sep:"," placeholder:"ADDR" help:"Comma list of endpoints (host[:port] with port 6388 by default, a socket path, tls://host:port, unix:///path.sock, quic://host:port); worker i uses entry i mod n."`
	Transport   string          `name:"transport" placeholder:"NAME" help:"Transport for addresses without a scheme, and of --local and --baseline servers (${transports}; default tcp)."`

	AuthToken     string `name:"auth-token" envvar:"DFLOCKD_AUTH_TOKEN" placeholder:"TOKEN" help:"Shared secret sent first on every connection."`
	AuthTokenFile string `name:"auth-token-file" envvar:"DFLOCKD_AUTH_TOKEN_FILE" placeholder:"FILE" help:"File holding the shared secret (trimmed)."`
	TLSCA         string `name:"tls-ca" placeholder:"FILE" help:"PEM CA certificates to verify the server with (default: system roots)."`
	TLSCert       string `name:"tls-cert" placeholder:"FILE" help:"PEM client certificate for mutual TLS (with --tls-key)."`
	TLSKey        string `name:"tls-key" placeholder:"FILE" help:"PEM private key of --tls-cert."`
	TLSServerName string `name:"tls-server-name" placeholder:"NAME" help:"Name to verify the server certificate against."`

	Local            bool     `name:"local" help:"Measure an in-process dflockd on --transport (loopback) instead of --servers."`
	Baseline         string   `name:"baseline" enum:",echo" default:"" placeholder:"echo" help:"Also measure an in-process echo server over the same transport, alternating runs, and report efficiency = dflockd ops/s / echo ops/s."`
	Repeat           int      `name:"repeat" default:"3" help:"Runs per measurement with --baseline or --matrix (aggregated)."`
	Matrix           bool     `name:"matrix" help:"Run the modes over tcp, unix, tls and quic at 1, 10, 50 and 100 workers against in-process servers; one table per transport."`
	MatrixTransports []string `name:"matrix-transports" sep:"," placeholder:"NAMES" help:"Transports of --matrix (default tcp,unix,tls,quic)."`
	MatrixWorkers    []int    `name:"matrix-workers" sep:"," placeholder:"N,..." help:"Worker counts of --matrix (default 1,10,50,100)."`
	Report           string   `name:"report" placeholder:"FILE" help:"Also write the Markdown report (tables) to FILE."`
	JSON             bool     `name:"json" help:"Print results as JSON."`
	CPUProfile       string   `name:"cpuprofile" placeholder:"FILE" help:"Write a CPU profile of this process (with --local or --matrix it includes the in-process server) to FILE."`
	Progress         string   `name:"progress" enum:"auto,on,off" default:"auto" help:"Progress bar on stderr for runs over two seconds: auto (only when stderr is a terminal), on, off."`

	clusterFlags `embed:""`
}

// usageError is an invalid flag (exit status 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return &usageError{fmt.Errorf(format, args...)} }

// exitPanic carries a kong exit request (after --help) out of Parse.
type exitPanic int

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	var cli CLI
	k, err := kong.New(&cli,
		kong.Name("bench"),
		kong.Description("Measure a dflockd server's throughput and latency over any transport."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(exitPanic(code)) }),
		kong.Vars{"transports": strings.Join(transport.Names(), ", "), "version": version.String("bench")},
	)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	}
	defer func() {
		if r := recover(); r != nil {
			c, ok := r.(exitPanic)
			if !ok {
				panic(r)
			}
			code = int(c)
		}
	}()
	completion.Complete(k) // exits when the shell asks for completions
	kctx, err := k.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	}
	switch kctx.Command() {
	case "memory":
		err = cli.Memory.run(ctx, stdout, stderr)
	case "auth-guess":
		err = cli.AuthGuess.run(ctx, stdout)
	case "stats-flood":
		err = cli.StatsFlood.run(ctx, stdout, stderr)
	default:
		err = cli.Run.run(ctx, stdout, stderr)
	}
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	default:
		var we *bench.WorkerError
		if errors.As(err, &we) {
			fmt.Fprintln(stderr, we.Error())
		} else {
			fmt.Fprintf(stderr, "bench: %v\n", err)
		}
		return 1
	}
}

// config builds the run configuration from the flags.
func (c *RunCmd) config() (bench.Config, error) {
	cfg := bench.Config{
		Workers: c.Workers, Rounds: c.Rounds, Warmup: c.Warmup,
		Key: c.Key, SharedKey: c.SharedKey,
		Timeout: c.Timeout.Duration(), Lease: c.Lease.Duration(),
		Limit: c.Limit, Connections: c.Connections, Pipeline: c.Pipeline, Listeners: c.Listeners,
		SignalWindow: c.Window, PayloadSize: c.PayloadSize,
	}
	if err := c.validateCluster(); err != nil {
		return cfg, err
	}
	if len(c.Mode) != 1 && !c.Matrix && c.Cluster == 0 {
		return cfg, usagef("--mode takes one mode unless --matrix or --cluster is set")
	}
	for _, m := range c.Mode {
		if !validMode(m) {
			return cfg, usagef("unknown --mode %q (want one of %s)", m, modeNames())
		}
	}
	cfg.Mode = bench.Mode(c.Mode[0])
	if c.Repeat <= 0 { // --timeout and --lease are never negative: cliflag.Seconds refuses that
		return cfg, usagef("--repeat must be > 0")
	}
	tok, err := c.authToken()
	if err != nil {
		return cfg, err
	}
	cfg.AuthToken = tok
	tlsCfg, err := tlsflags.Client{CA: c.TLSCA, Cert: c.TLSCert, Key: c.TLSKey, ServerName: c.TLSServerName}.Config()
	if err != nil {
		return cfg, &usageError{err}
	}
	cfg.Transport.TLS = tlsCfg
	if c.Local || c.Matrix || c.Cluster > 0 {
		// In-process servers (or the cluster's): their endpoints are known once started.
		cfg.Servers = []transport.Endpoint{{Transport: c.localTransport(), Addr: "in-process"}}
		if err := cfg.Validate(); err != nil {
			return cfg, &usageError{err}
		}
		return cfg, nil
	}
	for _, s := range c.Servers {
		s = strings.TrimSpace(s)
		if s == "" {
			return cfg, usagef("empty --servers entry")
		}
		bare := c.Transport
		if bare == "" {
			bare = "tcp"
		}
		ep, err := transport.ParseAddr(s, bare)
		if err != nil {
			return cfg, usagef("--servers: %v", err)
		}
		cfg.Servers = append(cfg.Servers, ep)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, &usageError{err}
	}
	return cfg, nil
}

// authToken picks --auth-token, else the content of --auth-token-file,
// cleaned as the server cleans its own ("" when neither is set).
func (c *RunCmd) authToken() (string, error) {
	var (
		tok string
		err error
	)
	switch {
	case c.AuthToken != "":
		tok, err = auth.CleanSecret(c.AuthToken)
	case c.AuthTokenFile != "":
		tok, err = auth.ReadSecretFile(c.AuthTokenFile)
	default:
		return "", nil
	}
	if err != nil {
		return "", &usageError{fmt.Errorf("auth token: %w", err)}
	}
	return tok, nil
}

func validMode(m string) bool {
	for _, x := range bench.Modes {
		if string(x) == m {
			return true
		}
	}
	return false
}

func modeNames() string {
	var s []string
	for _, m := range bench.Modes {
		s = append(s, string(m))
	}
	return strings.Join(s, ", ")
}

// localTransport is the transport of in-process servers.
func (c *RunCmd) localTransport() string {
	if c.Transport != "" {
		return strings.ToLower(c.Transport)
	}
	return "tcp"
}

// run carries out the command.
func (c *RunCmd) run(ctx context.Context, stdout, stderr io.Writer) error {
	cfg, err := c.config()
	if err != nil {
		return err
	}
	if c.CPUProfile != "" {
		stop, err := startCPUProfile(c.CPUProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	bar := newProgress(c.Progress, stderr)
	cfg.Progress = bar.update
	defer bar.finish()
	if c.Matrix {
		return c.runMatrix(ctx, cfg, stdout, stderr)
	}
	if c.Cluster > 0 {
		return c.runCluster(ctx, cfg, stdout, stderr)
	}
	if c.Local {
		srv, err := bench.StartLocal(ctx, c.localTransport(), bench.KindDflockd)
		if err != nil {
			return err
		}
		defer srv.Close()
		cfg.Servers = []transport.Endpoint{srv.Endpoint}
		cfg.Transport = srv.Client
	}
	if c.Baseline == "echo" {
		return c.runBaseline(ctx, cfg, stdout)
	}
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if c.JSON {
		return bench.WriteJSON(stdout, res)
	}
	if err := bench.WriteText(stdout, res); err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	var table strings.Builder
	if err := bench.WriteTable(&table, []*bench.Result{res}); err != nil {
		return err
	}
	fmt.Fprint(stdout, table.String())
	if c.Plot != "" {
		f := filepath.Join(c.Plot, fmt.Sprintf("latency-%s-%s.%s", res.Transport, res.Mode, c.PlotFormat))
		if err := bench.PlotLatency(f, fmt.Sprintf("%s %s, %d workers: latency percentiles", res.Transport, res.Mode, res.Workers),
			[]bench.CurveSeries{{Name: "dflockd", Curve: res.Latency.Curve}}); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench: chart: %s\n", f)
	}
	return c.writeReport(table.String())
}

// runBaseline compares cfg's servers with an in-process echo server on
// the transport of the first one.
func (c *RunCmd) runBaseline(ctx context.Context, cfg bench.Config, stdout io.Writer) error {
	name := cfg.Servers[0].Transport
	echo, err := bench.StartLocal(ctx, name, bench.KindEcho)
	if err != nil {
		return err
	}
	defer echo.Close()
	ecfg := cfg
	ecfg.Servers = []transport.Endpoint{echo.Endpoint}
	ecfg.Transport = echo.Client
	cmp, err := bench.Compare(ctx, cfg, ecfg, c.Repeat)
	if err != nil {
		return err
	}
	if c.JSON {
		return bench.WriteJSON(stdout, cmp)
	}
	rows := []bench.MatrixRow{{Transport: name, Mode: cfg.Mode, Workers: cfg.Workers, Result: cmp.Dflockd, Baseline: cmp}}
	var b strings.Builder
	if err := bench.WriteMatrix(&b, rows); err != nil {
		return err
	}
	fmt.Fprintf(&b, "efficiency %.3f (dflockd %.0f ops/s ÷ echo %.0f ops/s, %d alternating runs each); p99 %.2f× echo\n",
		cmp.Efficiency, cmp.Dflockd.Throughput, cmp.Echo.Throughput, cmp.Repeats, cmp.P99Ratio)
	fmt.Fprint(stdout, b.String())
	if c.Plot != "" {
		f := filepath.Join(c.Plot, fmt.Sprintf("latency-%s-%s.%s", name, cfg.Mode, c.PlotFormat))
		title := fmt.Sprintf("%s %s, %d workers: latency percentiles", name, cfg.Mode, cfg.Workers)
		if err := bench.PlotLatency(f, title, []bench.CurveSeries{
			{Name: "dflockd", Curve: cmp.Dflockd.Latency.Curve},
			{Name: "echo baseline", Curve: cmp.Echo.Latency.Curve, Colour: 1, Dashed: true},
		}); err != nil {
			return err
		}
	}
	return c.writeReport(b.String())
}

// runMatrix runs the matrix against in-process servers.
func (c *RunCmd) runMatrix(ctx context.Context, cfg bench.Config, stdout, stderr io.Writer) error {
	mc := bench.MatrixConfig{
		Base:       cfg,
		Transports: c.MatrixTransports,
		Workers:    c.MatrixWorkers,
		Baseline:   c.Baseline == "echo",
		Repeats:    c.Repeat,
		Log:        stderr,
	}
	for _, m := range c.Mode {
		mc.Modes = append(mc.Modes, bench.Mode(m))
	}
	for _, w := range mc.Workers {
		if w <= 0 {
			return usagef("--matrix-workers must be > 0")
		}
	}
	rows, err := bench.RunMatrix(ctx, mc)
	if err != nil {
		return err
	}
	if c.JSON {
		return bench.WriteJSON(stdout, rows)
	}
	var b strings.Builder
	if err := bench.WriteMatrix(&b, rows); err != nil {
		return err
	}
	fmt.Fprint(stdout, b.String())
	if c.Plot != "" {
		files, err := bench.MatrixCharts(c.Plot, c.PlotFormat, rows)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench: charts: %s\n", strings.Join(files, ", "))
	}
	return c.writeReport(b.String())
}

// writeReport writes text to --report, if given.
func (c *RunCmd) writeReport(text string) error {
	if c.Report == "" {
		return nil
	}
	if err := os.WriteFile(c.Report, []byte(text), 0o644); err != nil {
		return fmt.Errorf("--report: %w", err)
	}
	return nil
}

// startCPUProfile starts writing a CPU profile to path; stop ends it.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
