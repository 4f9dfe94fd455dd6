package main

import (
	"context"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dflockd/dflockd/internal/testutil"
)

var listenAddr = regexp.MustCompile(`addr=(\S+:\d+)`)

// launch runs the command with args in the background and returns a
// channel with its exit status, the cancel function that plays the part of
// SIGTERM, and its log. The command is stopped when the test ends.
func launch(t *testing.T, args ...string) (done <-chan int, stop func(), stderr *testutil.SyncBuffer) {
	t.Helper()
	return launchWith(t, stopSignals, args...)
}

// launchWith is launch with the signal source injected.
func launchWith(t *testing.T, signals signalSource, args ...string) (done <-chan int, stop func(), stderr *testutil.SyncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout testutil.SyncBuffer
	stderr = &testutil.SyncBuffer{}
	exit := make(chan int, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		exit <- runWith(ctx, args, &stdout, stderr, env(nil), signals)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(10 * time.Second):
			t.Error("run did not stop")
		}
	})
	return exit, cancel, stderr
}

// waitFor polls the log of a launched command until match finds what it
// wants, failing if the command exits first or 10 s pass.
func waitFor(t *testing.T, done <-chan int, stderr *testutil.SyncBuffer, what string, match func(log string) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !match(stderr.String()) {
		select {
		case code := <-done:
			t.Fatalf("run exited early with %d: %s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not reported: %s", what, stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startRun launches the command and returns the first host:port address
// it reports listening on.
func startRun(t *testing.T, args ...string) (addr string, done <-chan int, stop func(), stderr *testutil.SyncBuffer) {
	t.Helper()
	done, stop, stderr = launch(t, args...)
	var m []string
	waitFor(t, done, stderr, "listening address", func(log string) bool {
		m = listenAddr.FindStringSubmatch(log)
		return m != nil
	})
	return m[1], done, stop, stderr
}

// TestRunServesAndShutsDown starts the whole command on a free port, uses
// it over TCP with an auth token, and stops it the way a signal would.
func TestRunServesAndShutsDown(t *testing.T) {
	addr, done, cancel, stderr := startRun(t, "--port", "0", "--auth-token", "s3cret", "--default-lease-ttl", "7")

	c := testutil.Dial(t, addr)
	c.Expect("auth", "_", "s3cret", "ok")
	f := c.Fields("l", "job", "5")
	if len(f) != 3 || f[0] != "ok" || f[2] != "7" {
		t.Fatalf("l = %q; want ok <token> 7 (the configured default lease)", f)
	}

	cancel() // what SIGINT/SIGTERM do
	// Shutdown starts asynchronously; from then on the idle connection's
	// next request is answered error_draining and the connection closed.
	for deadline := time.Now().Add(10 * time.Second); ; {
		got := c.Do("ping", "_", "")
		if got == "error_draining" {
			break
		}
		if got != "ok" || time.Now().After(deadline) {
			t.Fatalf("ping during shutdown = %q; want ok, then error_draining", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.ExpectClosed()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("run = %d; want 0; log: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after shutdown")
	}
}

// Edge 50: --host ::1 binds the IPv6 loopback.
func TestEdge50_HostIPv6Loopback(t *testing.T) {
	if l, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	} else {
		l.Close()
	}
	addr, _, _, _ := startRun(t, "--host", "::1", "--port", "0")
	if !strings.HasPrefix(addr, "[::1]:") {
		t.Fatalf("listening on %q; want [::1]:port", addr)
	}
	c := testutil.Dial(t, addr)
	c.Expect("ping", "_", "", "ok")
}

// fakeSignals returns a signal source whose channel the test feeds.
func fakeSignals() (signalSource, chan<- os.Signal) {
	c := make(chan os.Signal, 2)
	return func() (<-chan os.Signal, func()) { return c, func() {} }, c
}

// A first signal starts the drain and says so at INFO, naming the way out;
// a second one closes every connection and exits at once with 128 plus
// the signal number, even though the drain would wait forever.
func TestRunSecondSignalForcesExit(t *testing.T) {
	for _, tt := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		t.Run(tt.sig.String(), func(t *testing.T) {
			signals, sigs := fakeSignals()
			done, _, stderr := launchWith(t, signals, "--port", "0", "--shutdown-timeout", "0")
			var m []string
			waitFor(t, done, stderr, "listening address", func(log string) bool {
				m = listenAddr.FindStringSubmatch(log)
				return m != nil
			})
			// A connection holding a lease keeps the drain waiting.
			c := testutil.Dial(t, m[1])
			c.Token("l", "job", "5", "ok")

			sigs <- tt.sig
			waitFor(t, done, stderr, "the shutdown notice", func(log string) bool {
				return strings.Contains(log, `level=INFO msg="shutting down: draining connections; send SIGINT or SIGTERM again to close them all and exit at once"`)
			})
			sigs <- tt.sig
			select {
			case code := <-done:
				if code != tt.code {
					t.Errorf("exit %d, want %d; log: %s", code, tt.code, stderr.String())
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("run did not exit after the second signal; log: %s", stderr.String())
			}
			c.ExpectClosed()
			if log := stderr.String(); !strings.Contains(log, `level=WARN msg="second signal: closing every connection and exiting now" signal=`) ||
				!strings.Contains(log, "exit_status="+strconv.Itoa(tt.code)) || strings.Contains(log, `msg=stopped`) {
				t.Errorf("log: %s", log)
			}
		})
	}
}

// One signal alone drains and exits 0.
func TestRunOneSignalDrains(t *testing.T) {
	signals, sigs := fakeSignals()
	done, _, stderr := launchWith(t, signals, "--port", "0")
	waitFor(t, done, stderr, "start", func(log string) bool { return strings.Contains(log, "dflockd started") })
	sigs <- syscall.SIGTERM
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d; log: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("run did not exit; log: %s", stderr.String())
	}
	if log := stderr.String(); !strings.Contains(log, `level=INFO msg="shutting down: draining connections; send SIGINT or SIGTERM again`) ||
		!strings.Contains(log, "cause=\"terminated signal received\"") || !strings.Contains(log, "msg=stopped") {
		t.Errorf("log: %s", log)
	}
}
