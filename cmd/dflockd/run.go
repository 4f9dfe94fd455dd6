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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dflockd/dflockd/cluster"
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/server"
	"github.com/dflockd/dflockd/transport"
)

// run is the whole command: it parses args and the environment and runs
// the selected command. The server serves until ctx ends or SIGINT/SIGTERM
// arrives and then shuts down gracefully; a second signal during the
// drain closes everything at once. It returns the exit status (0 = clean
// exit, 1 = configuration error or failure, 128+N = forced out by a second
// signal N: 130 for SIGINT, 143 for SIGTERM).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) int {
	return runWith(ctx, args, stdout, stderr, lookupEnv, stopSignals)
}

// signalSource subscribes to the signals that stop the server and returns
// their channel and the function that ends the subscription. Tests pass
// one that returns a channel they feed.
type signalSource func() (sigs <-chan os.Signal, stop func())

// stopSignals is the signalSource of the real process: SIGINT and SIGTERM.
// The server subscribes only while it serves, so Ctrl-C still ends
// gen-cert the default way.
func stopSignals() (<-chan os.Signal, func()) {
	c := make(chan os.Signal, 2)
	signal.Notify(c, os.Interrupt, syscall.SIGTERM)
	return c, func() { signal.Stop(c) }
}

// forcedExit is serve's error when a second signal cut the drain short.
type forcedExit struct{ code int }

func (e *forcedExit) Error() string { return fmt.Sprintf("forced exit (status %d)", e.code) }

// forcedExitCode is the exit status for being forced out by sig: 128 plus
// the signal number, as a shell reports a process killed by it.
func forcedExitCode(sig os.Signal) int {
	if n, ok := sig.(syscall.Signal); ok {
		return 128 + int(n)
	}
	return 1
}

// runWith is run with the signal source injected.
func runWith(ctx context.Context, args []string, stdout, stderr io.Writer, lookupEnv func(string) (string, bool), signals signalSource) int {
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
	sigs, stop := signals()
	defer stop()
	if err := serve(ctx, c, ts, log, sigs); err != nil {
		if fe, ok := errors.AsType[*forcedExit](err); ok {
			return fe.code
		}
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

// forceGrace bounds how long a forced exit waits for connections and
// listeners to finish closing, so that a second signal ends the process
// even if something is stuck.
const forceGrace = 2 * time.Second

// serve runs the engine and one server on every endpoint until ctx ends or
// a signal arrives on sigs, then shuts down as in PROTOCOL.md §7.6: stop
// accepting on every listener and stop the sweep/GC loops, drain
// connections for at most --shutdown-timeout, then force-close the rest.
// A second signal during the drain closes every connection at once and
// makes serve return a *forcedExit. SIGHUP reloads the TLS key pair. It
// returns an error only if the server could not start, failed on its own
// or was forced out.
func serve(ctx context.Context, c *ServeCmd, ts *tlsSetup, log *slog.Logger, sigs <-chan os.Signal) error {
	sigCtx, stopServing := context.WithCancelCause(ctx)
	defer stopServing(nil)
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
	adminL, err := c.listenAdmin(sigCtx)
	if err != nil {
		for _, l := range ls {
			l.Close()
		}
		return err
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

	sopts := c.serverOptions(engine, log)
	var rep *cluster.Replica
	var srvRef atomic.Pointer[server.Server]
	var raftStopped atomic.Bool
	if c.clustered() {
		policy := cluster.Policy{DefaultTTL: c.DefaultLeaseTTL.Duration(), MaxKeys: c.MaxLocks, MaxWaiters: c.MaxWaiters,
			MaxSessions: c.MaxSessions, KeepOnDisconnect: !c.AutoReleaseOnDisconnect}
		rc, err := c.replicaConfig(log, policy, func(leading bool) {
			if leading {
				log.Info("cluster: this node is the leader")
				return
			}
			log.Info("cluster: this node is no longer the leader; closing client connections")
			if s := srvRef.Load(); s != nil {
				s.DropConnections()
			}
		}, func() {
			log.Error("cluster: raft stopped unexpectedly; this node stops serving")
			raftStopped.Store(true)
			stopServing(errors.New("raft stopped"))
		})
		for i, l := range ls {
			rc.Endpoints = append(rc.Endpoints, eps[i].Transport+"://"+l.Addr().String())
		}
		if err == nil {
			rep, err = cluster.StartReplica(rc)
		}
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			if adminL != nil {
				adminL.Close()
			}
			return fmt.Errorf("cluster: %w", err)
		}
		defer rep.Close()
		sopts.Replica = rep
		log.Info("cluster: raft started", "node_id", c.nodeID(), "raft_listen", c.RaftListen, "data_dir", c.DataDir,
			"peers", len(c.Peers), "raft_tls", c.RaftTLSCert != "")
	}
	srv := server.New(sopts)
	srvRef.Store(srv)
	if rep != nil {
		// Client connections other nodes relay to this one, when it
		// leads; ends when the replica closes.
		go func() { _ = srv.ServeRelays(rep.Node().Stream()) }()
	}
	var reg *prometheus.Registry
	if adminL != nil {
		// The server's own metrics (build info included), beside the Go
		// runtime and process collectors.
		var err error
		if reg, err = newAdminRegistry(srv.MetricsCollector()); err != nil {
			for _, l := range append(ls, adminL) {
				l.Close()
			}
			return err
		}
	}
	results := make(chan served, len(ls))
	for i, l := range ls {
		ep := eps[i]
		lo := server.Listener{Transport: ep.Transport, Peer: c.peerAuth(ep)}
		go func() { results <- served{ep, srv.ServeListener(l, lo)} }()
		log.Info("dflockd listening", "transport", ep.Transport, "addr", l.Addr().String(), "client_auth", c.peerAuthName(ep))
	}
	if adminL != nil {
		// Stopped last, once the drain is over: /healthz answers until
		// exit, while /readyz says "draining" from the first signal.
		stopAdmin := serveAdmin(adminL, c.adminOptions(reg, srv.Ready, ts, log), log)
		defer stopAdmin()
	}
	attrs := []any{"version", buildVersion(), "listeners", len(ls), "auth", c.token != ""}
	if c.token != "" {
		attrs = append(attrs, "auth_source", c.tokenSource)
	}
	attrs = append(attrs, "auto_release_on_disconnect", c.AutoReleaseOnDisconnect)
	log.Info("dflockd started", attrs...)
	log.Debug("configuration",
		"default_lease_ttl_s", int64(c.DefaultLeaseTTL),
		"lease_sweep_interval_s", int64(c.LeaseSweepInterval),
		"gc_interval_s", int64(c.GCInterval),
		"gc_max_idle_s", int64(c.GCMaxIdle),
		"max_locks", c.MaxLocks,
		"max_connections", c.MaxConnections,
		"max_connections_per_ip", c.MaxConnectionsPerIP,
		"max_waiters", c.MaxWaiters,
		"max_subscriptions", c.MaxSubscriptions,
		"read_timeout_s", int64(c.ReadTimeout),
		"write_timeout_s", int64(c.WriteTimeout),
		"shutdown_timeout_s", int64(c.ShutdownTimeout),
		"quic_idle_timeout_s", int64(c.QUICIdleTimeout),
		"quic_keepalive_s", int64(c.QUICKeepAlive),
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
	case sig := <-sigs:
		stopServing(fmt.Errorf("%v signal received", sig))
	case <-ctx.Done():
	}

	log.Info("shutting down: draining connections; send SIGINT or SIGTERM again to close them all and exit at once",
		"cause", context.Cause(sigCtx), "timeout_s", int64(c.ShutdownTimeout))
	if rep != nil && rep.Leading() {
		// Hand leadership over first, so that the cluster goes on
		// serving while this node drains.
		if err := rep.TransferLeadership(""); err != nil {
			log.Warn("cluster: leadership transfer failed", "err", err)
		} else {
			log.Info("cluster: leadership transferred")
		}
	}
	stopEngine()
	shutdownCtx := context.Background()
	if d := c.shutdownTimeout(); d > 0 {
		var cancel context.CancelFunc
		shutdownCtx, cancel = context.WithTimeout(shutdownCtx, d)
		defer cancel()
	}
	drained := make(chan error, 1)
	go func() { drained <- srv.Shutdown(shutdownCtx) }()
	select {
	case err := <-drained:
		if err != nil {
			log.Warn("shutdown timeout reached; closing remaining connections", "err", err)
			_ = srv.Close()
		}
	case sig := <-sigs:
		forced := &forcedExit{code: forcedExitCode(sig)}
		log.Warn("second signal: closing every connection and exiting now", "signal", sig.String(), "exit_status", forced.code)
		closed := make(chan struct{})
		go func() {
			_ = srv.Close()
			<-drained
			for range len(ls) {
				<-results
			}
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(forceGrace):
			log.Warn("connections still closing; exiting anyway", "waited_s", forceGrace.Seconds())
		}
		return forced
	}
	for range len(ls) {
		if r := <-results; r.err != nil && !errors.Is(r.err, server.ErrServerClosed) {
			log.Error("serve ended with an error during shutdown", "listen", r.ep.String(), "err", r.err)
		}
	}
	log.Info("stopped")
	if raftStopped.Load() {
		return errors.New("cluster: raft stopped unexpectedly")
	}
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
	if c.TLSCert != "" && !slices.ContainsFunc(eps, needsTLS) && !c.AdminTLS {
		log.Warn("--tls-cert is not used: no tls:// or quic:// listener and no --admin-tls")
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
