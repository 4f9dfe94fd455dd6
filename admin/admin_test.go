package admin

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dflockd/dflockd/internal/testutil"
)

// testRegistry returns a registry holding one counter, incremented 3 times.
func testRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_scrapes_total", Help: "A test counter."})
	reg.MustRegister(c)
	c.Add(3)
	return reg
}

// do sends one request to h and returns the status, the body and the
// response headers. header, when not empty, is the Authorization value.
func do(t *testing.T, h http.Handler, method, path, header string) (int, string, http.Header) {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	if header != "" {
		r.Header.Set("Authorization", header)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, w.Body.String(), w.Result().Header
}

func TestEndpoints(t *testing.T) {
	var notReady error
	h := New(Options{Gatherer: testRegistry(t), Ready: func() error { return notReady }}).Handler()
	for _, tc := range []struct {
		method, path string
		code         int
		body         string // the whole body, or a part of it when it ends in "..."
	}{
		{"GET", "/healthz", 200, "ok\n"},
		{"HEAD", "/healthz", 200, "..."},
		{"GET", "/readyz", 200, "ok\n"},
		{"GET", "/metrics", 200, "test_scrapes_total 3\n..."},
		{"POST", "/healthz", 405, "..."},
		{"GET", "/debug/pprof/", 404, "..."},
		{"GET", "/debug/pprof/heap", 404, "..."},
		{"GET", "/", 404, "..."},
		{"GET", "/metricsx", 404, "..."},
	} {
		code, body, hdr := do(t, h, tc.method, tc.path, "")
		if code != tc.code {
			t.Errorf("%s %s: status %d, want %d (body %q)", tc.method, tc.path, code, tc.code, body)
		}
		if part, ok := strings.CutSuffix(tc.body, "..."); ok {
			if !strings.Contains(body, part) {
				t.Errorf("%s %s: body %q, want it to contain %q", tc.method, tc.path, body, part)
			}
		} else if body != tc.body {
			t.Errorf("%s %s: body %q, want %q", tc.method, tc.path, body, tc.body)
		}
		if tc.path == "/metrics" && !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain; version=0.0.4") {
			t.Errorf("/metrics Content-Type %q; want the Prometheus text format", hdr.Get("Content-Type"))
		}
	}

	// /readyz gives Ready's reason, on one line.
	for _, tc := range []struct{ err, want string }{
		{"server: draining", "server: draining\n"},
		{"server: listener tcp://127.0.0.1:6388 is not accepting:\naccept: too many open files",
			"server: listener tcp://127.0.0.1:6388 is not accepting: accept: too many open files\n"},
	} {
		notReady = errors.New(tc.err)
		code, body, hdr := do(t, h, "GET", "/readyz", "")
		if code != http.StatusServiceUnavailable || body != tc.want {
			t.Errorf("not ready (%q): /readyz = %d %q; want 503 %q", tc.err, code, body, tc.want)
		}
		if hdr.Get("Cache-Control") != "no-store" {
			t.Errorf("/readyz Cache-Control %q", hdr.Get("Cache-Control"))
		}
	}
	notReady = nil
	if code, _, _ := do(t, h, "GET", "/healthz", ""); code != 200 {
		t.Errorf("/healthz = %d while not ready; want 200", code)
	}
}

// The zero Options: health and readiness, nothing else.
func TestZeroOptions(t *testing.T) {
	h := New(Options{}).Handler()
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 404, "/debug/pprof/": 404} {
		if code, body, _ := do(t, h, "GET", path, ""); code != want {
			t.Errorf("%s = %d %q; want %d", path, code, body, want)
		}
	}
}

// With a token, /metrics and /debug/pprof/ need it as a bearer token;
// /healthz and /readyz stay open to probes.
func TestBearerToken(t *testing.T) {
	h := New(Options{Gatherer: testRegistry(t), Token: "s3cret", Pprof: true}).Handler()
	headers := []struct {
		name, value string
		ok          bool
	}{
		{"missing", "", false},
		{"wrong", "Bearer nope", false},
		{"prefix of the token", "Bearer s3cre", false},
		{"token plus more", "Bearer s3cret2", false},
		{"empty bearer", "Bearer ", false},
		{"basic scheme", "Basic czNjcmV0", false},
		{"token without scheme", "s3cret", false},
		{"right", "Bearer s3cret", true},
		{"scheme in lower case", "bearer s3cret", true},
	}
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/cmdline"} {
		for _, hd := range headers {
			code, body, hdr := do(t, h, "GET", path, hd.value)
			switch {
			case hd.ok && code != 200:
				t.Errorf("%s, %s token: %d %q; want 200", path, hd.name, code, body)
			case !hd.ok && (code != http.StatusUnauthorized || body != "unauthorized\n"):
				t.Errorf("%s, %s token: %d %q; want 401 unauthorized", path, hd.name, code, body)
			case !hd.ok && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer"):
				t.Errorf("%s, %s token: WWW-Authenticate %q; want Bearer", path, hd.name, hdr.Get("WWW-Authenticate"))
			}
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		for _, hd := range headers {
			if code, body, _ := do(t, h, "GET", path, hd.value); code != 200 {
				t.Errorf("%s, %s token: %d %q; want 200 (probes need no token)", path, hd.name, code, body)
			}
		}
	}
	if code, body, _ := do(t, h, "GET", "/metrics", "Bearer s3cret"); !strings.Contains(body, "test_scrapes_total 3") {
		t.Errorf("/metrics with the token: %d %q", code, body)
	}
}

func TestPprof(t *testing.T) {
	h := New(Options{Pprof: true}).Handler()
	for path, want := range map[string]string{
		"/debug/pprof/":                  "goroutine",
		"/debug/pprof/cmdline":           "",
		"/debug/pprof/heap?debug=1":      "heap profile",
		"/debug/pprof/goroutine?debug=1": "goroutine profile",
	} {
		code, body, _ := do(t, h, "GET", path, "")
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("%s = %d %.80q; want 200 containing %q", path, code, body, want)
		}
	}
	if s := New(Options{Pprof: true}); s.hs.WriteTimeout != WriteTimeoutPprof {
		t.Errorf("WriteTimeout with pprof = %v; want %v (room for a 30 s profile)", s.hs.WriteTimeout, WriteTimeoutPprof)
	}
	if s := New(Options{}); s.hs.WriteTimeout != WriteTimeout || s.hs.ReadHeaderTimeout != ReadHeaderTimeout {
		t.Errorf("timeouts %v %v", s.hs.WriteTimeout, s.hs.ReadHeaderTimeout)
	}
}

// serveOn runs s on a loopback listener and returns its address and the
// channel Serve's result arrives on.
func serveOn(t *testing.T, s *Server) (addr string, served <-chan error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan error, 1)
	go func() { ch <- s.Serve(l) }()
	t.Cleanup(func() { s.Close() })
	return l.Addr().String(), ch
}

// get fetches url with a client that keeps no connection open.
func get(t *testing.T, url string, tlsCfg *tls.Config) (int, string) {
	t.Helper()
	c := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: tlsCfg},
	}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// Serve and Shutdown over a real loopback listener, plain and with TLS.
func TestServeAndShutdown(t *testing.T) {
	srvTLS, cliTLS := testutil.SelfSigned(t)
	for _, tc := range []struct {
		name   string
		scheme string
		srv    *tls.Config
		cli    *tls.Config
	}{{"http", "http", nil, nil}, {"https", "https", srvTLS, cliTLS}} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Options{Gatherer: testRegistry(t), TLSConfig: tc.srv, Token: "s3cret"})
			addr, served := serveOn(t, s)
			base := tc.scheme + "://" + addr
			if code, body := get(t, base+"/healthz", tc.cli); code != 200 || body != "ok\n" {
				t.Fatalf("/healthz = %d %q", code, body)
			}
			if code, _ := get(t, base+"/metrics", tc.cli); code != http.StatusUnauthorized {
				t.Fatalf("/metrics without the token = %d; want 401", code)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown = %v", err)
			}
			if err := <-served; !errors.Is(err, http.ErrServerClosed) {
				t.Fatalf("Serve = %v; want http.ErrServerClosed", err)
			}
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				t.Fatal("dial succeeded after Shutdown")
			}
		})
	}
}

// A plain HTTP client gets nothing useful from the TLS listener.
func TestTLSRefusesPlainHTTP(t *testing.T) {
	srvTLS, _ := testutil.SelfSigned(t)
	addr, _ := serveOn(t, New(Options{TLSConfig: srvTLS}))
	if code, _ := get(t, "http://"+addr+"/healthz", nil); code != http.StatusBadRequest {
		t.Fatalf("plain HTTP to the TLS listener = %d; want 400", code)
	}
}
