package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dflockd/dflockd/admin"
)

// adminShutdownGrace bounds how long the admin listener waits for requests
// in flight (a scrape, a profile) when the server exits.
const adminShutdownGrace = 2 * time.Second

// validateAdmin checks the admin listener's settings: --admin-listen is
// HOST:PORT, and --admin-tls and --admin-pprof need it (--admin-tls also
// needs a certificate).
func (c *ServeCmd) validateAdmin() error {
	if c.AdminListen == "" {
		for _, f := range []struct {
			name string
			on   bool
		}{{"admin-tls", c.AdminTLS}, {"admin-pprof", c.AdminPprof}} {
			if f.on {
				return fmt.Errorf("%s needs --admin-listen", c.flagRef(f.name))
			}
		}
		return nil
	}
	_, port, err := net.SplitHostPort(c.AdminListen)
	if n, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil || n > 65535 {
		return fmt.Errorf("%s: want HOST:PORT such as 127.0.0.1:9388, got %q", c.flagRef("admin-listen"), c.AdminListen)
	}
	if c.AdminTLS && c.TLSCert == "" {
		return fmt.Errorf("%s needs --tls-cert and --tls-key", c.flagRef("admin-tls"))
	}
	return nil
}

// listenAdmin binds the admin listener; nil when --admin-listen is off.
func (c *ServeCmd) listenAdmin(ctx context.Context) (net.Listener, error) {
	if c.AdminListen == "" {
		return nil, nil
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", c.AdminListen)
	if err != nil {
		return nil, fmt.Errorf("--admin-listen: %w", err)
	}
	return l, nil
}

// newAdminRegistry returns the registry /metrics exposes: the Go runtime
// and process collectors, and extra (the server's own metrics, which
// include dflockd_build_info).
func newAdminRegistry(extra ...prometheus.Collector) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	all := append([]prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}, extra...)
	for _, col := range all {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return reg, nil
}

// adminOptions converts the configuration into admin.Options; ts is nil
// when no certificate is configured. The TLS configuration shares the
// certificate of the other listeners (reloaded with it on SIGHUP) but asks
// for no client certificate: the bearer token is the admin's
// authentication.
func (c *ServeCmd) adminOptions(reg prometheus.Gatherer, ready func() error, ts *tlsSetup, log *slog.Logger) admin.Options {
	opts := admin.Options{
		Gatherer: reg,
		Ready:    ready,
		Token:    c.token,
		Pprof:    c.AdminPprof,
		Logger:   log,
	}
	if c.AdminTLS && ts != nil {
		opts.TLSConfig = &tls.Config{GetCertificate: ts.certs.getCertificate, MinVersion: tls.VersionTLS12}
	}
	return opts
}

// serveAdmin serves the admin endpoints on l in the background and returns
// the function that stops them (gracefully, for at most
// adminShutdownGrace) and waits for that. A failure of the admin listener
// is logged; the lock service carries on without it.
func serveAdmin(l net.Listener, opts admin.Options, log *slog.Logger) (stop func()) {
	srv := admin.New(opts)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin listener failed; metrics and probes are unavailable", "addr", l.Addr().String(), "err", err)
		}
	}()
	log.Info("admin listening", "addr", l.Addr().String(), "tls", opts.TLSConfig != nil,
		"pprof", opts.Pprof, "bearer_token", opts.Token != "")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), adminShutdownGrace)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
		<-done
	}
}
