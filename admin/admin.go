// Package admin serves dflockd's operator endpoints over HTTP, on a
// listener of its own, apart from the lock protocol:
//
//   - GET /metrics: the Prometheus text exposition of Options.Gatherer,
//     written by github.com/prometheus/client_golang's promhttp;
//   - GET /healthz: 200 "ok" while the process serves (a liveness probe);
//   - GET /readyz: 200 "ok" while Options.Ready returns nil, else 503 with
//     the reason on one line (a readiness probe, or a load balancer's
//     health check);
//   - /debug/pprof/...: the net/http/pprof handlers, only when
//     Options.Pprof is set (404 otherwise).
//
// With Options.Token set, /metrics and /debug/pprof/ require the header
// "Authorization: Bearer <token>" (compared in constant time) and answer
// 401 with "WWW-Authenticate: Bearer" without it. /healthz and /readyz stay
// open: Kubernetes probes and most load balancers cannot send a token, and
// they reveal only whether the server is up and ready. Every other path is
// 404.
//
// The handlers are registered on the Server's own mux, never on
// http.DefaultServeMux. (Importing net/http/pprof registers its handlers on
// http.DefaultServeMux as a side effect; nothing in dflockd serves that
// mux.)
package admin

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dflockd/dflockd/auth"
)

// Timeouts and limits of the admin HTTP server.
const (
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout = 5 * time.Second
	// ReadTimeout bounds reading a whole request.
	ReadTimeout = 10 * time.Second
	// WriteTimeout bounds writing a response, from the end of the
	// request's headers (WriteTimeoutPprof when Options.Pprof is set).
	WriteTimeout = 30 * time.Second
	// WriteTimeoutPprof replaces WriteTimeout when Options.Pprof is set:
	// a CPU profile or execution trace (?seconds=N, 30 by default) must
	// finish within it.
	WriteTimeoutPprof = 2 * time.Minute
	// IdleTimeout closes a kept-alive connection idle for this long.
	IdleTimeout = 60 * time.Second
	// MaxHeaderBytes caps the size of a request's headers.
	MaxHeaderBytes = 16 << 10
	// ScrapeTimeout answers a /metrics request 503 if gathering takes
	// longer than this.
	ScrapeTimeout = 10 * time.Second
	// MaxScrapesInFlight caps concurrent /metrics requests; more are
	// answered 503 at once, so that scrapes cannot pile up.
	MaxScrapesInFlight = 4
)

// Options configure a Server. The zero value serves /healthz and a
// /readyz that is always ready, without authentication, over plain HTTP.
type Options struct {
	// Gatherer is what /metrics exposes, typically a
	// *prometheus.Registry. nil = no /metrics endpoint (404).
	Gatherer prometheus.Gatherer
	// Ready reports whether the service is ready; /readyz answers 503
	// with its error's text when it returns one. nil = always ready. It
	// is called on every /readyz request and must be cheap and safe for
	// concurrent use.
	Ready func() error
	// Token, when not empty, is the bearer token /metrics and
	// /debug/pprof/ require. "" = no authentication.
	Token string
	// TLSConfig, when non-nil, makes Serve speak HTTPS with it (it must
	// hold a certificate or a GetCertificate function). nil = plain HTTP.
	TLSConfig *tls.Config
	// Pprof serves the net/http/pprof handlers under /debug/pprof/.
	// false = 404 there.
	Pprof bool
	// Logger receives the HTTP server's errors, at DEBUG level (failed TLS
	// handshakes and the like), and those of /metrics at ERROR level.
	// nil = discard.
	Logger *slog.Logger
}

// Server is the admin HTTP server. Create it with New; it may serve any
// number of listeners at once.
type Server struct {
	opts    Options
	handler http.Handler
	hs      *http.Server
}

// New returns a Server configured by opts (copied).
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{opts: opts}
	s.handler = s.routes()
	write := WriteTimeout
	if opts.Pprof {
		write = WriteTimeoutPprof
	}
	s.hs = &http.Server{
		Handler:           s.handler,
		TLSConfig:         opts.TLSConfig,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      write,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
	}
	return s
}

// Handler returns the Server's handler: every endpoint, with the token
// check. Serve uses it; tests may call it directly.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve accepts HTTP connections on l (HTTPS with Options.TLSConfig) until
// Shutdown or Close, as http.Server.Serve does. It closes l before
// returning, and returns http.ErrServerClosed after Shutdown or Close.
func (s *Server) Serve(l net.Listener) error {
	if s.opts.TLSConfig != nil {
		return s.hs.ServeTLS(l, "", "")
	}
	return s.hs.Serve(l)
}

// Shutdown stops the Server gracefully, as http.Server.Shutdown does: it
// closes the listeners and idle connections, waits for the requests in
// flight to finish, and returns ctx's error if ctx ends first.
func (s *Server) Shutdown(ctx context.Context) error { return s.hs.Shutdown(ctx) }

// Close closes the listeners and every connection at once.
func (s *Server) Close() error { return s.hs.Close() }

// routes builds the mux of every endpoint.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.opts.Gatherer != nil {
		metrics := promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{
			ErrorLog:            slog.NewLogLogger(s.opts.Logger.Handler(), slog.LevelError),
			ErrorHandling:       promhttp.ContinueOnError,
			Timeout:             ScrapeTimeout,
			MaxRequestsInFlight: MaxScrapesInFlight,
		})
		mux.Handle("GET /metrics", s.protect(metrics))
	}
	if s.opts.Pprof {
		mux.Handle("/debug/pprof/", s.protect(http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/cmdline", s.protect(http.HandlerFunc(pprof.Cmdline)))
		mux.Handle("/debug/pprof/profile", s.protect(http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/symbol", s.protect(http.HandlerFunc(pprof.Symbol)))
		mux.Handle("/debug/pprof/trace", s.protect(http.HandlerFunc(pprof.Trace)))
	}
	return mux
}

// readyz answers 200 "ok" or 503 with Ready's reason.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.opts.Ready != nil {
		if err := s.opts.Ready(); err != nil {
			plain(w, http.StatusServiceUnavailable, strings.Join(strings.Fields(err.Error()), " "))
			return
		}
	}
	plain(w, http.StatusOK, "ok")
}

// protect wraps h with the bearer token check (a no-op without a token).
func (s *Server) protect(h http.Handler) http.Handler {
	if s.opts.Token == "" {
		return h
	}
	check := auth.Token(s.opts.Token) // constant-time comparison
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearer(r.Header.Get("Authorization"))
		if ok {
			_, err := check.Authenticate(r.Context(), auth.Peer{Transport: "admin"}, token)
			ok = err == nil
		}
		if !ok {
			s.opts.Logger.Debug("admin: request refused: missing or wrong bearer token",
				"path", r.URL.Path, "remote", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="dflockd"`)
			plain(w, http.StatusUnauthorized, "unauthorized")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// bearer returns the token of an "Authorization: Bearer <token>" header
// value; the scheme is case-insensitive (RFC 7235).
func bearer(header string) (token string, ok bool) {
	scheme, token, found := strings.Cut(strings.TrimSpace(header), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// plain writes a one-line text/plain answer that no cache keeps.
func plain(w http.ResponseWriter, code int, line string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, line+"\n")
}
