package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/server"
	"github.com/dflockd/dflockd/transport"
)

// run is the whole command: it parses args and the environment and runs
// the selected command. The server serves until ctx ends or SIGINT/SIGTERM
// arrives and then shuts down gracefully. It returns the exit status
// (0 = clean exit, 1 = configuration error or failure).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) int {
	cli, err := parse(args, lookupEnv, stdout, stderr)
	if err != nil {
		if ex, ok := errors.AsType[*exitError](err); ok {
			return ex.code
		}
		return configError(stderr, err)
	}
	if cli.command == "gen-cert" {
		if err := cli.GenCert.run(stdout); err != nil {
			fmt.Fprintln(stderr, "gen-cert: "+err.Error())
			return 1
		}
		return 0
	}
	c := &cli.Serve
	log := newLogger(stderr, c.Debug)
	c.env.logWarnings(log)
	ts, err := c.loadTLS()
	if err != nil {
		return configError(stderr, err)
	}
	if err := serve(ctx, c, ts, log); err != nil {
		log.Error("server failed", "err", err)
		return 1
	}
	return 0
}

// configError prints err as the one-line startup error of §8 and returns
// the exit status for it.
func configError(stderr io.Writer, err error) int {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	fmt.Fprintln(stderr, "configuration error: "+msg)
	return 1
}

// newLogger returns a text logger on w at info level, or debug level.
func newLogger(w io.Writer, debug bool) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// served is what one listener's ServeListener returned.
type served struct {
	ep  transport.Endpoint
	err error
}

// serve runs the engine and one server on every endpoint until ctx ends or
// a signal arrives, then shuts down as in PROTOCOL.md §7.6: stop accepting
// on every listener and stop the sweep/GC loops, drain connections for at
// most --shutdown-timeout, then force-close the rest. SIGHUP reloads the
// TLS key pair. It returns an error only if the server could not start or
// failed on its own.
func serve(ctx context.Context, c *ServeCmd, ts *tlsSetup, log *slog.Logger) error {
	sigCtx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	eps := c.endpoints()
	c.logIgnored(eps, log)
	var tlsCfg *tls.Config
	if ts != nil {
		tlsCfg = ts.cfg
	}
	topts := c.transportOptions(tlsCfg)
	ls := make([]net.Listener, 0, len(eps))
	for _, ep := range eps {
		l, err := transport.Listen(sigCtx, ep, topts)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return err
		}
		ls = append(ls, l)
	}

	engine := core.New(c.engineOptions())
	engineCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	stopReload := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		stopEngine()
		close(stopReload)
		wg.Wait()
	}()
	wg.Go(func() {
		if err := engine.Run(engineCtx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("engine stopped", "err", err)
		}
	})
	wg.Go(func() {
		for {
			select {
			case <-hup:
				reloadTLS(ts, log)
			case <-stopReload:
				return
			}
		}
	})

	srv := server.New(c.serverOptions(engine, log))
	results := make(chan served, len(ls))
	for i, l := range ls {
		ep := eps[i]
		lo := server.Listener{Transport: ep.Transport, Peer: c.peerAuth(ep)}
		go func() { results <- served{ep, srv.ServeListener(l, lo)} }()
		log.Info("dflockd listening", "transport", ep.Transport, "addr", l.Addr().String(), "client_auth", c.peerAuthName(ep))
	}
	attrs := []any{"version", buildVersion(), "listeners", len(ls), "auth", c.token != ""}
	if c.token != "" {
		attrs = append(attrs, "auth_source", c.tokenSource)
	}
	attrs = append(attrs, "auto_release_on_disconnect", c.AutoReleaseOnDisconnect)
	log.Info("dflockd started", attrs...)
	log.Debug("configuration",
		"default_lease_ttl_s", c.DefaultLeaseTTL,
		"lease_sweep_interval_s", c.LeaseSweepInterval,
		"gc_interval_s", c.GCInterval,
		"gc_max_idle_s", c.GCMaxIdle,
		"max_locks", c.MaxLocks,
		"max_connections", c.MaxConnections,
		"max_connections_per_ip", c.MaxConnectionsPerIP,
		"max_waiters", c.MaxWaiters,
		"max_subscriptions", c.MaxSubscriptions,
		"read_timeout_s", c.ReadTimeout,
		"write_timeout_s", c.WriteTimeout,
		"shutdown_timeout_s", c.ShutdownTimeout,
		"quic_idle_timeout_s", c.QUICIdleTimeout,
		"quic_keepalive_s", c.QUICKeepAlive,
		"unix_socket_mode", fmt.Sprintf("%#o", c.unixMode))

	select {
	case r := <-results:
		// One listener gave up on its own (e.g. it failed): stop them all.
		stopEngine()
		_ = srv.Close()
		for range len(ls) - 1 {
			<-results
		}
		if errors.Is(r.err, server.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serve %s: %w", r.ep, r.err)
	case <-sigCtx.Done():
	}

	stopSignals() // a second signal now terminates the process at once
	log.Info("shutting down", "cause", context.Cause(sigCtx), "timeout_s", c.ShutdownTimeout)
	stopEngine()
	shutdownCtx := context.Background()
	if d := c.shutdownTimeout(); d > 0 {
		var cancel context.CancelFunc
		shutdownCtx, cancel = context.WithTimeout(shutdownCtx, d)
		defer cancel()
	}
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("shutdown timeout reached; closing remaining connections", "err", err)
		_ = srv.Close()
	}
	for range len(ls) {
		if r := <-results; r.err != nil && !errors.Is(r.err, server.ErrServerClosed) {
			log.Error("serve ended with an error during shutdown", "listen", r.ep.String(), "err", r.err)
		}
	}
	log.Info("stopped")
	return nil
}

// logIgnored notes settings that have no effect with these endpoints.
func (c *ServeCmd) logIgnored(eps []transport.Endpoint, log *slog.Logger) {
	if len(c.Listen) > 0 && c.hostPortSet() {
		log.Info("--host and --port are ignored because --listen is given", "host", c.Host, "port", c.Port)
	}
	if len(c.UnixAllowUID) > 0 || len(c.UnixAllowGID) > 0 {
		if !slices.ContainsFunc(eps, func(ep transport.Endpoint) bool { return ep.Transport == "unix" }) {
			log.Warn("--unix-allow-uid and --unix-allow-gid have no effect without a unix:// listener")
		}
	}
	if c.TLSCert != "" && !slices.ContainsFunc(eps, needsTLS) {
		log.Warn("--tls-cert is not used: no tls:// or quic:// listener")
	}
}

// reloadTLS reloads the key pair (SIGHUP). A failure is logged and the
// pair in use is kept.
func reloadTLS(ts *tlsSetup, log *slog.Logger) {
	if ts == nil {
		log.Info("SIGHUP: no TLS certificate to reload")
		return
	}
	if err := ts.certs.reload(); err != nil {
		log.Error("tls reload failed; keeping the current certificate", "err", err)
		return
	}
	log.Info("tls certificate reloaded", "cert", ts.certs.certFile, "not_after", ts.certs.notAfter())
}
