package main

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dflockd/dflockd/internal/testutil"
	"github.com/dflockd/dflockd/internal/version"
)

var adminAddr = regexp.MustCompile(`msg="admin listening" addr=(\S+)`)

// waitAdmin waits for a launched command to report its admin listener and
// returns the address.
func waitAdmin(t *testing.T, done <-chan int, stderr *testutil.SyncBuffer) string {
	t.Helper()
	var m []string
	waitFor(t, done, stderr, "admin listening address", func(log string) bool {
		m = adminAddr.FindStringSubmatch(log)
		return m != nil
	})
	return m[1]
}

// httpGet fetches url, with token as a bearer token when not empty, over a
// client that keeps no connection open, and returns the status and body.
func httpGet(t *testing.T, url, token string, tlsCfg *tls.Config) (int, string) {
	t.Helper()
	c := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: tlsCfg},
	}
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
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

// httpEventually polls url until it answers code with body (or a body
// containing it, when body ends in "..."), failing after 10 s.
func httpEventually(t *testing.T, url string, code int, body string) {
	t.Helper()
	part, partial := strings.CutSuffix(body, "...")
	var gotCode int
	var got string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		gotCode, got = httpGet(t, url, "", nil)
		if gotCode == code && (got == body || partial && strings.Contains(got, part)) {
			return
		}
	}
	t.Fatalf("GET %s = %d %q; want %d %q", url, gotCode, got, code, body)
}

// The whole command with --admin-listen: /healthz, /readyz and /metrics
// (build info, Go and process collectors) answer while it serves; from the
// first signal /readyz says "server: draining" with 503 while /healthz
// stays 200 (a lease holder keeps the drain going); once the drain is over
// the command exits 0 and the admin listener is closed.
func TestRunAdmin(t *testing.T) {
	signals, sigs := fakeSignals()
	done, _, stderr := launchWith(t, signals, "--port", "0", "--admin-listen", "127.0.0.1:0", "--shutdown-timeout", "0")
	addr := waitAdmin(t, done, stderr)
	m := listenAddr.FindStringSubmatch(stderr.String())
	if m == nil || m[1] == addr {
		t.Fatalf("lock listener address not found apart from the admin one: %s", stderr.String())
	}
	base := "http://" + addr

	httpEventually(t, base+"/readyz", 200, "ok\n") // ready once the lock listener is served
	if code, body := httpGet(t, base+"/healthz", "", nil); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	code, body := httpGet(t, base+"/metrics", "", nil)
	buildInfo := `dflockd_build_info{goversion="` + runtime.Version() + `",version="` + version.Version() + `"} 1`
	for _, want := range []string{buildInfo, "\ngo_goroutines ", "\nprocess_open_fds "} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("/metrics = %d, want %q in:\n%s", code, want, body)
		}
	}
	if code, _ := httpGet(t, base+"/debug/pprof/", "", nil); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without --admin-pprof = %d; want 404", code)
	}

	holder := testutil.Dial(t, m[1]) // keeps the drain waiting
	holder.Token("l", "job", "5", "ok")
	sigs <- syscall.SIGTERM
	httpEventually(t, base+"/readyz", http.StatusServiceUnavailable, "server: draining\n")
	if code, body := httpGet(t, base+"/healthz", "", nil); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz while draining = %d %q; want 200 ok", code, body)
	}
	select {
	case code := <-done:
		t.Fatalf("run exited with %d while a lease holder was connected", code)
	default:
	}
	holder.Conn.Close()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d; log: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("run did not exit after the drain; log: %s", stderr.String())
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("the admin listener still accepts after exit")
	}
}

// With an auth token the admin listener wants it as a bearer token on
// /metrics and /debug/pprof/ (here over HTTPS with the server's
// certificate), while the probes stay open.
func TestRunAdminTokenTLSPprof(t *testing.T) {
	certFile, keyFile := testutil.SelfSignedFiles(t)
	done, _, stderr := launch(t, "--port", "0", "--auth-token", "s3cret", "--tls-cert", certFile, "--tls-key", keyFile,
		"--admin-listen", "127.0.0.1:0", "--admin-tls", "--admin-pprof")
	addr := waitAdmin(t, done, stderr)
	if log := stderr.String(); !strings.Contains(log, "tls=true pprof=true bearer_token=true") || strings.Contains(log, "--tls-cert is not used") {
		t.Errorf("log: %s", log)
	}
	cli := &tls.Config{InsecureSkipVerify: true} // the test's self-signed certificate
	base := "https://" + addr
	for _, tc := range []struct {
		path, token string
		code        int
		body        string
	}{
		{"/healthz", "", 200, "ok\n"},
		{"/readyz", "", 200, "ok\n"},
		{"/metrics", "", 401, "unauthorized\n"},
		{"/metrics", "wrong", 401, "unauthorized\n"},
		{"/metrics", "s3cret", 200, "dflockd_build_info{"},
		{"/debug/pprof/", "", 401, "unauthorized\n"},
		{"/debug/pprof/", "s3cret", 200, "goroutine"},
	} {
		var code int
		var body string
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			code, body = httpGet(t, base+tc.path, tc.token, cli)
			if tc.path != "/readyz" || code == 200 || time.Now().After(deadline) {
				break // /readyz: the lock listener may not be served yet
			}
		}
		if code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("GET %s (token %q) = %d %.100q; want %d with %q", tc.path, tc.token, code, body, tc.code, tc.body)
		}
	}
	if code, _ := httpGet(t, "http://"+addr+"/healthz", "", nil); code != http.StatusBadRequest {
		t.Errorf("plain HTTP to the --admin-tls listener = %d; want 400", code)
	}
}

func TestAdminOffByDefault(t *testing.T) {
	c := mustParse(t, nil, nil)
	if c.AdminListen != "" || c.AdminTLS || c.AdminPprof {
		t.Errorf("admin settings %q %v %v; want off", c.AdminListen, c.AdminTLS, c.AdminPprof)
	}
}

func TestAdminFlagErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		vars map[string]string
		want string
	}{
		{"listen without a port", nil, map[string]string{"DFLOCKD_ADMIN_LISTEN": "127.0.0.1"},
			`--admin-listen (from $DFLOCKD_ADMIN_LISTEN): want HOST:PORT such as 127.0.0.1:9388, got "127.0.0.1"`},
		{"port out of range", []string{"--admin-listen", "127.0.0.1:65536"}, nil,
			`--admin-listen: want HOST:PORT such as 127.0.0.1:9388, got "127.0.0.1:65536"`},
		{"named port", []string{"--admin-listen", "localhost:http"}, nil,
			`--admin-listen: want HOST:PORT such as 127.0.0.1:9388, got "localhost:http"`},
		{"a URL", []string{"--admin-listen", "http://127.0.0.1:9388"}, nil,
			`--admin-listen: want HOST:PORT such as 127.0.0.1:9388, got "http://127.0.0.1:9388"`},
		{"tls without a certificate", []string{"--admin-listen", "127.0.0.1:0", "--admin-tls"}, nil,
			"--admin-tls needs --tls-cert and --tls-key"},
		{"tls without the listener", nil, map[string]string{"DFLOCKD_ADMIN_TLS": "true"},
			"--admin-tls (from $DFLOCKD_ADMIN_TLS) needs --admin-listen"},
		{"pprof without the listener", []string{"--admin-pprof"}, nil, "--admin-pprof needs --admin-listen"},
		{"empty listen", nil, map[string]string{"DFLOCKD_ADMIN_LISTEN": ""}, "DFLOCKD_ADMIN_LISTEN is set but empty"},
		{"bad tls bool", nil, map[string]string{"DFLOCKD_ADMIN_TLS": "on", "DFLOCKD_ADMIN_LISTEN": "127.0.0.1:0"},
			`DFLOCKD_ADMIN_TLS="on" is not a boolean (want 1/yes/true or 0/no/false)`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := parseErr(t, tt.args, tt.vars); err.Error() != tt.want {
				t.Errorf("error %q, want %q", err, tt.want)
			}
		})
	}
}

// A busy admin address is a startup failure: exit 1 naming --admin-listen,
// with the lock listener already bound closed again.
func TestRunAdminListenFailure(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(free.Addr().(*net.TCPAddr).Port)
	free.Close()
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"--port", port, "--admin-listen", busy.Addr().String()}, &stdout, &stderr, env(nil)); code != 1 {
		t.Fatalf("exit %d, want 1; stderr %s", code, stderr.String())
	}
	if out := stderr.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "--admin-listen") {
		t.Errorf("stderr %q", out)
	}
	if l, err := net.Listen("tcp", "127.0.0.1:"+port); err != nil {
		t.Errorf("the lock port is still bound after the failure: %v", err)
	} else {
		l.Close()
	}
}
