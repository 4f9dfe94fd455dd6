package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/server"
	"github.com/dflockd/dflockd/transport"
)

// run is the whole command: it parses args and the environment, serves
// until ctx ends or SIGINT/SIGTERM arrives, shuts down gracefully and
// returns the exit status (0 = clean exit, 1 = configuration error or
// server failure).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	cli, err := parse(args, getenv, stdout, stderr)
	if err != nil {
		if ex, ok := errors.AsType[*exitError](err); ok {
			return ex.code
		}
		return configError(stderr, err)
	}
	log := newLogger(stderr, cli.Debug)
	cli.env.logWarnings(log)
	tlsCfg, err := cli.serverTLS()
	if err != nil {
		return configError(stderr, err)
	}
	if err := serve(ctx, cli, tlsCfg, log); err != nil {
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

// serve runs the engine and the server until ctx ends or a signal arrives,
// then shuts down as in PROTOCOL.md §7.6: stop accepting and stop the
// sweep/GC loops, drain connections for at most --shutdown-timeout, then
// force-close the rest. It returns an error only if the server could not
// start or failed on its own.
func serve(ctx context.Context, c *CLI, tlsCfg *tls.Config, log *slog.Logger) error {
	sigCtx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()

	ep := c.endpoint()
	l, err := transport.Listen(sigCtx, ep, transport.Options{TLS: tlsCfg})
	if err != nil {
		return err
	}

	engine := core.New(c.engineOptions())
	engineCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer func() {
		stopEngine()
		wg.Wait()
	}()
	wg.Go(func() {
		if err := engine.Run(engineCtx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("engine stopped", "err", err)
		}
	})

	srv := server.New(c.serverOptions(engine, log))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	attrs := []any{
		"version", buildVersion(),
		"addr", l.Addr().String(),
		"transport", ep.Transport,
		"auth", c.token != "",
	}
	if c.token != "" {
		attrs = append(attrs, "auth_source", c.tokenSource)
	}
	attrs = append(attrs, "auto_release_on_disconnect", c.AutoReleaseOnDisconnect)
	log.Info("dflockd listening", attrs...)
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
		"shutdown_timeout_s", c.ShutdownTimeout)

	select {
	case err := <-served:
		// Serve gave up on its own (e.g. the listener failed).
		stopEngine()
		_ = srv.Close()
		if errors.Is(err, server.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serve %s: %w", ep, err)
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
	if err := <-served; err != nil && !errors.Is(err, server.ErrServerClosed) {
		log.Error("serve ended with an error during shutdown", "err", err)
	}
	log.Info("stopped")
	return nil
}
