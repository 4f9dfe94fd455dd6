package main

import (
	"bufio"
	"encoding/json"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dflockd/dflockd/client"
	"github.com/dflockd/dflockd/internal/testutil"
	"github.com/dflockd/dflockd/server"
)

// inspect prints the holder (fence, conn, name, lease left, held for) and
// the waiters in queue order; --json prints the server's object; an
// unknown key says so; --name (or $DFLOCKCTL_NAME) names the connection.
func TestInspect(t *testing.T) {
	t.Parallel()
	clk := testutil.NewClock()
	ts := startServer(t, clk, server.Options{})
	ctx := testCtx(t)
	a, err := client.Dial(ctx, ts.addr, client.Options{Name: "backup-job-7"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	tok, _, err := a.Acquire(ctx, "job", 0, client.WithLeaseTTL(30))
	if err != nil {
		t.Fatal(err)
	}
	fence, _ := client.FenceFromToken(tok)
	clk.Advance(5 * time.Second)
	b, err := client.Dial(ctx, ts.addr, client.Options{Name: "host-12 worker"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if st, _, _, err := b.Enqueue(ctx, "job"); err != nil || st != "queued" {
		t.Fatalf("Enqueue = %q, %v", st, err)
	}
	clk.Advance(2 * time.Second)

	p := runCLI(t, nil, "--server", ts.addr, "inspect", "job")
	if p.code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", p.code, p.stderr.String())
	}
	out := p.stdout.String()
	for _, re := range []string{
		`(?m)^lock job   limit 1   holders 1   waiters 1$`,
		`(?m)^Holders \(1\)\n +FENCE +CONN +NAME +REMOTE +IDENTITY +LEASE LEFT +HELD FOR +VIA\n +` + strconv.FormatUint(fence, 10) +
			` +1 +backup-job-7 +127\.0\.0\.1:\d+ +- +23\.0s +7\.0s +acquire$`,
		`(?m)^Waiters \(1\)\n +# +CONN +NAME +REMOTE +IDENTITY +WAITING +VIA\n +1 +2 +host-12 worker +127\.0\.0\.1:\d+ +- +2\.0s +enqueue$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("table does not match %s:\n%s", re, out)
		}
	}
	if strings.Contains(out, tok) {
		t.Fatalf("inspect printed the token:\n%s", out)
	}

	p = runCLI(t, nil, "--server", ts.addr, "inspect", "job", "--json")
	var ki client.KeyInfo
	if err := json.Unmarshal([]byte(p.stdout.String()), &ki); err != nil || p.code != 0 {
		t.Fatalf("--json printed %q (exit %d): %v", p.stdout.String(), p.code, err)
	}
	if !ki.Exists || len(ki.Holders) != 1 || ki.Holders[0].Fence != fence || len(ki.Waiters) != 1 || !ki.Waiters[0].Enqueued {
		t.Fatalf("--json: %+v", ki)
	}

	p = runCLI(t, nil, "--server", ts.addr, "inspect", "--semaphore", "job")
	if p.code != 0 || p.stdout.String() != "semaphore job: no such key (never used, or collected while idle)\n" {
		t.Fatalf("unknown semaphore: exit %d, %q", p.code, p.stdout.String())
	}

	// The name, from the flag or the environment, shows in stats.
	p = runCLI(t, map[string]string{"DFLOCKCTL_NAME": "ops view"}, "--server", ts.addr, "stats")
	if !regexp.MustCompile(`(?m)^ +\d+ +tcp +127\.0\.0\.1:\d+ +- +ops view$`).MatchString(p.stdout.String()) {
		t.Fatalf("stats with $DFLOCKCTL_NAME:\n%s", p.stdout.String())
	}
	p = runCLI(t, map[string]string{"DFLOCKCTL_NAME": "env"}, "--server", ts.addr, "--name", "flag", "stats")
	if !strings.Contains(p.stdout.String(), " flag\n") || strings.Contains(p.stdout.String(), " env\n") {
		t.Fatalf("--name does not beat $DFLOCKCTL_NAME:\n%s", p.stdout.String())
	}
}

// A bad --name or key is a usage error, found before connecting.
func TestInspectUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--server", "127.0.0.1:1", "--name", strings.Repeat("n", 65), "stats"},
		{"--server", "127.0.0.1:1", "--name", "caf\u00e9", "inspect", "job"},
		{"--server", "127.0.0.1:1", "inspect", "a b"},
		{"--server", "127.0.0.1:1,127.0.0.1:2", "inspect", "job"},
	} {
		if p := runCLI(t, nil, args...); p.code != exitUsage {
			t.Errorf("%q: exit %d, want %d; stderr:\n%s", args, p.code, exitUsage, p.stderr.String())
		}
	}
}

// A 1.x server answers `error` to name (ignored) and to inspect, which
// dflockctl explains.
func TestInspectOldServer(t *testing.T) {
	t.Parallel()
	addr := errorServer(t)
	p := runCLI(t, nil, "--server", addr, "--name", "ops", "inspect", "job")
	if p.code != exitFailure || !strings.Contains(p.stderr.String(), "does not support inspect (dflockd 1.x?)") {
		t.Fatalf("exit %d; stderr:\n%s", p.code, p.stderr.String())
	}
}

// errorServer answers every request with `error`, as a 1.x server answers
// an unknown command, until the test ends.
func errorServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Go(func() {
				defer nc.Close()
				r := bufio.NewReader(nc)
				for {
					for range 3 {
						if _, err := r.ReadString('\n'); err != nil {
							return
						}
					}
					if _, err := nc.Write([]byte("error\n")); err != nil {
						return
					}
				}
			})
		}
	})
	return ln.Addr().String()
}
