package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dflockd/dflockd/client"
	"github.com/dflockd/dflockd/internal/testserver"
	"github.com/dflockd/dflockd/internal/version"
	"github.com/dflockd/dflockd/server"
)

// TestVersion: --version prints "dflockctl VERSION (GOVERSION)".
func TestVersion(t *testing.T) {
	t.Parallel()
	p := runCLI(t, nil, "--version")
	if want := version.String("dflockctl") + "\n"; p.code != 0 || p.stdout.String() != want {
		t.Fatalf("exit %d, stdout %q; want 0, %q", p.code, p.stdout.String(), want)
	}
}

// TestCompletion: `completion SHELL` prints a script for each shell, and
// with COMP_LINE set (as the shell sets it) dflockctl prints the
// candidates instead of running. Not parallel: it sets the environment.
func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		p := runCLI(t, nil, "completion", shell)
		if p.code != 0 || !strings.Contains(p.stdout.String(), "complete") || !strings.Contains(p.stdout.String(), "dflockctl") {
			t.Errorf("completion %s: exit %d, stdout %q, stderr %q", shell, p.code, p.stdout.String(), p.stderr.String())
		}
	}
	for line, want := range map[string]string{
		"dflockctl lock --conflict": "--conflict-exit-code\n",
		"dflockctl --dial-t":        "--dial-timeout\n",
		"dflockctl sem":             "semaphore\n",
	} {
		t.Setenv("COMP_LINE", line)
		p := runCLI(t, nil)
		if p.code != 0 || p.stdout.String() != want {
			t.Errorf("COMP_LINE %q: exit %d, stdout %q, stderr %q; want %q", line, p.code, p.stdout.String(), p.stderr.String(), want)
		}
	}
}

// silentServer is a loopback listener that accepts connections and never
// answers; it closes them when the test ends.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 16)
	go func() {
		defer close(conns)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		for c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// TestTimeouts: a server that accepts and never answers does not hang
// dflockctl; the error says which timeout ran out.
func TestTimeouts(t *testing.T) {
	t.Parallel()
	addr := silentServer(t)
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--command-timeout", "100ms", "stats"}, "timed out after 100ms waiting for the server's answer to `stats`"},
		{[]string{"--command-timeout", "100ms", "signal", "c", "p"}, "timed out after 100ms waiting for the server's answer to `signal`"},
		{[]string{"--command-timeout", "100ms", "listen", "c"}, "timed out after 100ms waiting for the server's answer to `listen`"},
		{[]string{"--command-timeout", "100ms", "--dial-timeout", "100ms", "lock", "--timeout", "1", "k", "--", "true"},
			"timed out after 1.2s waiting for the server's answer to `lock` (--timeout 1s + --command-timeout 100ms + --dial-timeout 100ms)"},
		{[]string{"--dial-timeout", "100ms", "--auth-token", "t", "stats"},
			"dflockd at tcp://" + addr + " accepted the connection but did not finish the handshake within 100ms"},
		{[]string{"--dial-timeout", "100ms", "--auth-token", "t", "lock", "k", "--", "true"},
			"did not finish the handshake within 100ms"},
	} {
		p := runCLI(t, nil, append([]string{"--server", addr}, tc.args...)...)
		if p.code != exitFailure || !strings.Contains(p.stderr.String(), tc.msg) {
			t.Errorf("dflockctl %q: exit %d, stderr %q; want %d and %q", tc.args, p.code, p.stderr.String(), exitFailure, tc.msg)
		}
	}
}

// TestLockWaitNotCutByCommandTimeout: a wait longer than
// --command-timeout but within --timeout is not cut off.
func TestLockWaitNotCutByCommandTimeout(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, server.Options{})
	holder := ts.dial(t)
	token, _, err := holder.Acquire(testCtx(t), "slow", 0)
	if err != nil {
		t.Fatal(err)
	}
	p := start(t, nil, "--server", ts.addr, "--command-timeout", "50ms", "lock", "--timeout", "10", "slow", "--", "true")
	obs := ts.dial(t)
	eventually(t, "dflockctl to queue", func() bool { return lockWaiters(ts.stats(t, obs), "slow") == 1 })
	time.Sleep(150 * time.Millisecond) // well past --command-timeout
	if err := holder.Release(testCtx(t), "slow", token); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, p.stderr.String())
	}
}

// TestAddressErrors: errors name the address once, with its scheme, and
// add a hint.
func TestAddressErrors(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p := runCLI(t, nil, "--server", addr, "stats")
	want := "dflockctl: cannot reach dflockd at tcp://" + addr + ": connection refused (is the server running?)\n"
	if p.code != exitFailure || p.stderr.String() != want {
		t.Errorf("refused: exit %d, stderr %q; want %q", p.code, p.stderr.String(), want)
	}
	sock := filepath.Join(t.TempDir(), "none.sock")
	p = runCLI(t, nil, "--server", sock, "stats")
	want = "dflockctl: cannot reach dflockd at unix://" + sock + ": no such socket file (is the server running? is the path right?)\n"
	if p.code != exitFailure || p.stderr.String() != want {
		t.Errorf("missing socket: exit %d, stderr %q; want %q", p.code, p.stderr.String(), want)
	}

	// A TLS-only server, reached over plain TCP.
	ts := testserver.Start(t, "tls", testserver.Config{})
	hp := ts.Endpoint.Addr
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"stats"}, "the server at tcp://" + hp + " closed the connection before answering `stats` (is it TLS-only? try tls://" + hp + ")"},
		{[]string{"--auth-token", "t", "stats"}, "the server at tcp://" + hp + " closed the connection during the handshake (is it TLS-only? try tls://" + hp + ")"},
	} {
		p := runCLI(t, nil, append([]string{"--server", hp}, tc.args...)...)
		if p.code != exitFailure || !strings.Contains(p.stderr.String(), tc.msg) {
			t.Errorf("%q: exit %d, stderr %q; want %q", tc.args, p.code, p.stderr.String(), tc.msg)
		}
	}
}

// TestUnixSocketPath: -s with a path talks to the Unix socket; a bare
// host means port 6388.
func TestUnixSocketPath(t *testing.T) {
	t.Parallel()
	ts := testserver.Start(t, "unix", testserver.Config{})
	p := runCLI(t, nil, "-s", ts.Endpoint.Addr, "stats", "--json")
	if p.code != 0 || !strings.HasPrefix(p.stdout.String(), "{") {
		t.Fatalf("exit %d, stdout %q, stderr %q", p.code, p.stdout.String(), p.stderr.String())
	}
	cli := &CLI{}
	for addr, want := range map[string]string{
		"db1":         "tcp://db1:6388",
		"db1:7000":    "tcp://db1:7000",
		"/run/d.sock": "unix:///run/d.sock",
		"tls://db1:1": "tls://db1:1",
	} {
		if got := cli.endpointOf(addr); got != want {
			t.Errorf("endpointOf(%q) = %q, want %q", addr, got, want)
		}
	}
}

// TestLockHoldUntilInterrupted: without a command, lock prints what it
// holds and keeps it until SIGINT, then releases it and exits 0. Not
// parallel: the signal reaches every dflockctl in this process.
func TestLockHoldUntilInterrupted(t *testing.T) {
	ts := startServer(t, nil, server.Options{})
	obs := ts.dial(t)
	for _, kind := range []string{"lock", "semaphore"} {
		args := []string{"--server", ts.addr, kind, "held"}
		if kind == "semaphore" {
			args = append(args, "2")
		}
		p := start(t, nil, args...)
		eventually(t, "the announcement", func() bool { return strings.Contains(p.stdout.String(), "holding ") })
		if kind == "lock" && !lockHeld(ts.stats(t, obs), "held") {
			t.Fatal("lock not held")
		}
		if kind == "semaphore" && !strings.Contains(p.stdout.String(), `a slot of semaphore "held" (limit 2)`) {
			t.Errorf("stdout %q does not say slot", p.stdout.String())
		}
		if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(t); code != 0 {
			t.Fatalf("%s: exit %d; stderr:\n%s", kind, code, p.stderr.String())
		}
	}
	if st := ts.stats(t, obs); lockHeld(st, "held") || len(st.Semaphores) > 0 && st.Semaphores[0].Holders > 0 {
		t.Fatalf("still held after the interrupt: %+v", st)
	}
}

// TestLockHoldLeaseLost: a held lock with no command whose lease is lost
// exits with status 4.
func TestLockHoldLeaseLost(t *testing.T) {
	t.Parallel()
	ts := testserver.Start(t, "tcp", testserver.Config{})
	p := start(t, nil, "--server", ts.Endpoint.Addr, "lock", "--ttl", "2", "drain")
	eventually(t, "the announcement", func() bool { return strings.Contains(p.stdout.String(), "holding ") })
	// Shutting down, the server answers the next renewal with
	// error_draining; dflockctl reports it and exits 4.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = ts.Server.Shutdown(ctx)
	}()
	if code := p.wait(t); code != exitLeaseLost {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitLeaseLost, p.stderr.String())
	}
	if !strings.Contains(p.stderr.String(), "server shutting down") {
		t.Errorf("stderr %q does not say the server is shutting down", p.stderr.String())
	}
}

// TestDraining: error_draining reads "server shutting down", exit 3.
func TestDraining(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("client: stats _: %w", client.ErrDraining)
	if !strings.HasPrefix(describe(err), "server shutting down") || exitCode(err) != exitFailure {
		t.Fatalf("describe = %q, exit %d", describe(err), exitCode(err))
	}
}

// TestLockShellCommandAndConflictCode: -c runs a shell string; "not
// acquired" exits with --conflict-exit-code (default 1), distinct from
// the command's own status.
func TestLockShellCommandAndConflictCode(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, server.Options{})
	p := runCLI(t, nil, "--server", ts.addr, "lock", "-c", `echo "$DFLOCKCTL_KEY"; exit 7`, "shkey")
	if p.code != 7 || p.stdout.String() != "shkey\n" {
		t.Fatalf("-c: exit %d, stdout %q, stderr %q", p.code, p.stdout.String(), p.stderr.String())
	}
	holder := ts.dial(t)
	if _, _, err := holder.Acquire(testCtx(t), "busy", 0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"lock", "--timeout", "0", "busy", "--", "true"}, 1},
		{[]string{"lock", "--timeout", "0", "-E", "75", "busy", "--", "true"}, 75},
		{[]string{"lock", "--timeout", "0", "--conflict-exit-code", "0", "-c", "exit 3", "busy"}, 0},
	} {
		p := runCLI(t, nil, append([]string{"--server", ts.addr}, tc.args...)...)
		if p.code != tc.want || !strings.Contains(p.stderr.String(), "not available") {
			t.Errorf("%q: exit %d, stderr %q; want %d", tc.args, p.code, p.stderr.String(), tc.want)
		}
	}
}

// TestSignalStdinAndMinReceivers: "-" reads the payload from stdin;
// --min-receivers fails (status 1) when fewer listeners received it.
func TestSignalStdinAndMinReceivers(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, server.Options{})
	obs := ts.dial(t)
	l := start(t, nil, "--server", ts.addr, "listen", "--json", "--count", "1", "jobs.*")
	eventually(t, "the listener", func() bool { return listeners(ts.stats(t, obs), "jobs.*", "") == 1 })
	s := startIn(t, strings.NewReader("built 1a2b with  spaces\n"), nil, "--server", ts.addr, "signal", "--min-receivers", "1", "jobs.done", "-")
	if code := s.wait(t); code != 0 || s.stdout.String() != "1\n" {
		t.Fatalf("signal: exit %d, stdout %q, stderr %q", code, s.stdout.String(), s.stderr.String())
	}
	if code := l.wait(t); code != 0 {
		t.Fatalf("listen: exit %d; stderr:\n%s", code, l.stderr.String())
	}
	var got signalJSON
	if err := json.Unmarshal([]byte(l.stdout.String()), &got); err != nil {
		t.Fatalf("listen --json printed %q: %v", l.stdout.String(), err)
	}
	if _, err := time.Parse(time.RFC3339Nano, got.Time); err != nil || got.Channel != "jobs.done" || got.Payload != "built 1a2b with  spaces" {
		t.Fatalf("listen --json printed %+v (%v)", got, err)
	}

	eventually(t, "the listener gone", func() bool { return listeners(ts.stats(t, obs), "jobs.*", "") == 0 })
	s = runCLI(t, nil, "--server", ts.addr, "signal", "--min-receivers", "1", "jobs.done", "x")
	if s.code != exitNotAcquired || s.stdout.String() != "0\n" || !strings.Contains(s.stderr.String(), "fewer than --min-receivers 1") {
		t.Fatalf("too few: exit %d, stdout %q, stderr %q", s.code, s.stdout.String(), s.stderr.String())
	}
	s = startIn(t, strings.NewReader("two\nlines\n"), nil, "--server", ts.addr, "signal", "jobs.done", "-")
	if code := s.wait(t); code != exitUsage || !strings.Contains(s.stderr.String(), "more than one line") {
		t.Fatalf("two lines: exit %d, stderr %q", code, s.stderr.String())
	}
}

// TestListenBadPatternOffline: a bad pattern is refused before
// connecting (no server runs at the address).
func TestListenBadPatternOffline(t *testing.T) {
	t.Parallel()
	p := runCLI(t, nil, "--server", "127.0.0.1:1", "listen", "jobs.*x")
	if p.code != exitUsage || !strings.Contains(p.stderr.String(), "bad pattern") {
		t.Fatalf("exit %d, stderr %q", p.code, p.stderr.String())
	}
}

// TestTLSToPlainServer: a TLS client reaching a plain TCP server is told
// to try tcp://.
func TestTLSToPlainServer(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, server.Options{})
	p := runCLI(t, nil, "--server", "tls://"+ts.addr, "--dial-timeout", "30s", "stats") // generous: CI once took over 5 s under load
	want := "the server at tls://" + ts.addr + " does not speak TLS (is it plain TCP? try tcp://" + ts.addr + ")"
	if p.code != exitFailure || !strings.Contains(p.stderr.String(), want) {
		t.Fatalf("exit %d, stderr %q; want %q", p.code, p.stderr.String(), want)
	}
}

// TestDescribe: each kind of failure reads as one line naming the
// endpoint once, with its hint.
func TestDescribe(t *testing.T) {
	t.Parallel()
	const ep = "tcp://10.0.0.1:6388"
	dial := func(handshake bool, err error) error {
		return fmt.Errorf("lock k: %w", &client.DialError{Endpoint: ep, Handshake: handshake, Timeout: 3 * time.Second, Err: err})
	}
	opErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{dial(false, context.DeadlineExceeded), "could not connect to dflockd at " + ep + " within 3s (see --dial-timeout; is the address right? is a firewall dropping the packets?)"},
		{dial(true, context.DeadlineExceeded), "dflockd at " + ep + " accepted the connection but did not finish the handshake within 3s (see --dial-timeout; is it TLS-only? try tls://10.0.0.1:6388)"},
		{dial(false, opErr(syscall.ECONNREFUSED)), "cannot reach dflockd at " + ep + ": connection refused (is the server running?)"},
		{dial(false, opErr(syscall.EACCES)), "cannot reach dflockd at " + ep + ": permission denied (is this user allowed to use the socket? see the server's --unix-socket-mode)"},
		{dial(false, &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "db9"}}), "cannot reach dflockd at " + ep + ": lookup db9: no such host (is the host name right?)"},
		{fmt.Errorf("client: auth _: %w", client.ErrAuth), "the server refused the auth token"},
		{fmt.Errorf("client: l k: %w", client.ErrDraining), "server shutting down"},
	} {
		if got := describe(tc.err); !strings.HasPrefix(got, tc.want) {
			t.Errorf("describe(%v) = %q, want %q", tc.err, got, tc.want)
		}
		if strings.Count(describe(tc.err), ep) > 1 {
			t.Errorf("describe(%v) names the endpoint more than once", tc.err)
		}
	}
}
