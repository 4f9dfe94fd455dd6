package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dflockd/dflockd/client"
	"github.com/dflockd/dflockd/internal/testutil"
	"github.com/dflockd/dflockd/server"
)

// waitForGo is a shell snippet that waits (at most about 10s) for the
// file "$1/go" to appear.
const waitForGo = `i=0; while [ ! -e "$1/go" ]; do i=$((i+1)); [ $i -gt 1000 ] && exit 99; sleep 0.01; done`

// TestLockExitStatus: lock runs the command and exits with its status,
// or with 127/126/128+N when it cannot run or is killed; the command sees
// the key and the lease token.
func TestLockExitStatus(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, server.Options{})
	for _, tc := range []struct {
		name string
		cmd  []string
		want int
	}{
		{"exit 7", []string{"sh", "-c", "exit 7"}, 7},
		{"exit 0", []string{"true"}, 0},
		{"not found", []string{"dflockctl-no-such-command"}, exitNotFound},
		{"not executable", []string{os.DevNull}, exitCannotRun},
		{"killed", []string{"sh", "-c", "kill -KILL $$"}, 128 + 9},
		{"environment", []string{"sh", "-c", `test "$DFLOCKCTL_KEY" = status && test ${#DFLOCKCTL_TOKEN} -eq 32`}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--server", ts.addr, "lock", "status", "--"}, tc.cmd...)
			p := runCLI(t, nil, args...)
			if p.code != tc.want {
				t.Fatalf("exit %d, want %d; stderr:\n%s", p.code, tc.want, p.stderr.String())
			}
		})
	}
	// Without "--" the command's own flags are still passed through.
	p := runCLI(t, nil, "--server", ts.addr, "lock", "status", "sh", "-c", "exit 3")
	if p.code != 3 {
		t.Fatalf("exit %d, want 3; stderr:\n%s", p.code, p.stderr.String())
	}
}

// TestLockHeldWhileCommandRuns: the lock is held from before the command
// starts until it exits, and released afterwards.
func TestLockHeldWhileCommandRuns(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, server.Options{})
	dir := t.TempDir()
	p := start(t, nil, "--server", ts.addr, "lock", "held", "--",
		"sh", "-c", `touch "$1/started"; `+waitForGo+`; exit 5`, "sh", dir)
	eventually(t, "the command to start", func() bool { return exists(filepath.Join(dir, "started")) })

	other := ts.dial(t)
	ctx := testCtx(t)
	if _, _, err := other.Acquire(ctx, "held", 0); !errors.Is(err, client.ErrTimeout) {
		t.Fatalf("try-lock while the command runs: %v; want ErrTimeout", err)
	}
	if !lockHeld(ts.stats(t, other), "held") {
		t.Fatal("stats do not show the lock held")
	}

	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 5 {
		t.Fatalf("exit %d, want 5; stderr:\n%s", code, p.stderr.String())
	}
	token, _, err := other.Acquire(ctx, "held", 0)
	if err != nil {
		t.Fatalf("lock not released after the command: %v", err)
	}
	if err := other.Release(ctx, "held", token); err != nil {
		t.Fatal(err)
	}
}

// TestLockSerialises: two dflockctl lock runs on one key never overlap.
func TestLockSerialises(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, server.Options{})
	file := filepath.Join(t.TempDir(), "log")
	script := `echo start >> "$1"; sleep 0.2; echo end >> "$1"`
	var ps []*proc
	for range 2 {
		ps = append(ps, start(t, nil, "--server", ts.addr, "lock", "serial", "--", "sh", "-c", script, "sh", file))
	}
	for i, p := range ps {
		if code := p.wait(t); code != 0 {
			t.Fatalf("run %d: exit %d; stderr:\n%s", i, code, p.stderr.String())
		}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Fields(string(b)), "start end start end"; strings.Join(got, " ") != want {
		t.Fatalf("log %q; want %q", got, want)
	}
}

// TestLockTimeout: on a held key, --timeout 0 fails at once with exit
// status 1 and a timeout fails once it has passed; the command never
// runs.
func TestLockTimeout(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, server.Options{})
	holder := ts.dial(t)
	if _, _, err := holder.Acquire(testCtx(t), "busy", 0); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "ran")
	for _, tc := range []struct {
		timeout, msg string
		min          time.Duration
	}{
		{"0", "is not available", 0},
		{"1s", "timed out after 1s", 900 * time.Millisecond},
	} {
		t.Run(tc.timeout, func(t *testing.T) {
			began := time.Now()
			p := runCLI(t, nil, "--server", ts.addr, "lock", "--timeout", tc.timeout, "busy", "--", "touch", marker)
			if p.code != exitNotAcquired {
				t.Fatalf("exit %d, want %d; stderr:\n%s", p.code, exitNotAcquired, p.stderr.String())
			}
			if !strings.Contains(p.stderr.String(), tc.msg) {
				t.Fatalf("stderr %q; want it to mention %q", p.stderr.String(), tc.msg)
			}
			if d := time.Since(began); d < tc.min {
				t.Fatalf("gave up after %v; want at least %v", d, tc.min)
			}
			if exists(marker) {
				t.Fatal("the command ran without the lock")
			}
		})
	}
}

// TestLockLeaseLost: when the lease runs out (driven by a fake clock) the
// renewal fails and the command is stopped with SIGTERM, or SIGKILL if it
// ignores SIGTERM; dflockctl exits with status 4.
func TestLockLeaseLost(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, trap, msg string
	}{
		{"SIGTERM", "", "sending SIGTERM"},
		{"SIGKILL", `trap "" TERM; `, "sending SIGKILL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clk := testutil.NewClock()
			ts := startServer(t, clk, server.Options{})
			pidFile := filepath.Join(t.TempDir(), "pid")
			p := start(t, nil, "--server", ts.addr, "lock", "--ttl", "1", "--kill-after", "200ms", "lease", "--",
				"sh", "-c", tc.trap+`echo $$ > "$1"; exec sleep 30`, "sh", pidFile)
			pid := readPID(t, p, pidFile)
			obs := ts.dial(t)
			eventually(t, "the lock to be held", func() bool { return lockHeld(ts.stats(t, obs), "lease") })

			// The lease runs out; Sweep evicts it, unless a renewal in
			// between found it expired first.
			clk.Advance(10 * time.Second)
			ts.engine.Sweep()
			began := time.Now()
			if code := p.wait(t); code != exitLeaseLost {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitLeaseLost, p.stderr.String())
			}
			if d := time.Since(began); d > 5*time.Second {
				t.Fatalf("took %v to stop the command", d)
			}
			stderr := p.stderr.String()
			for _, want := range []string{"lost the lease", tc.msg, "was stopped"} {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr %q; want it to mention %q", stderr, want)
				}
			}
			if alive(pid) {
				t.Fatalf("command (pid %d) still running", pid)
			}
		})
	}
}

// TestSemaphore: limit 2 lets two commands run at once; a third cannot
// get a slot while they do.
func TestSemaphore(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, server.Options{})
	dir := t.TempDir()
	// Each command marks that it started, then waits until both have
	// and the test says go: with one slot only, this would never happen.
	script := `touch "$1/started.$$"; i=0
while [ "$(ls "$1" | grep -c '^started')" -lt 2 ] || [ ! -e "$1/go" ]; do
  i=$((i+1)); [ $i -gt 1000 ] && exit 99; sleep 0.01
done`
	var ps []*proc
	for range 2 {
		ps = append(ps, start(t, nil, "--server", ts.addr, "semaphore", "pool", "2", "--", "sh", "-c", script, "sh", dir))
	}
	eventually(t, "both commands to start", func() bool {
		m, _ := filepath.Glob(filepath.Join(dir, "started.*"))
		return len(m) == 2
	})
	third := runCLI(t, nil, "--server", ts.addr, "semaphore", "--timeout", "0", "pool", "2", "--", "true")
	if third.code != exitNotAcquired || !strings.Contains(third.stderr.String(), `semaphore "pool" (limit 2)`) {
		t.Fatalf("third run: exit %d, stderr %q; want %d", third.code, third.stderr.String(), exitNotAcquired)
	}
	st := ts.stats(t, ts.dial(t))
	if len(st.Semaphores) != 1 || st.Semaphores[0].Holders != 2 {
		t.Fatalf("semaphores %+v; want pool with 2 holders", st.Semaphores)
	}
	// A different limit for the same key is refused by the server.
	p := runCLI(t, nil, "--server", ts.addr, "semaphore", "--timeout", "0", "pool", "3", "--", "true")
	if p.code != exitFailure || !strings.Contains(p.stderr.String(), "limit mismatch") {
		t.Fatalf("limit mismatch: exit %d, stderr %q", p.code, p.stderr.String())
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for i, p := range ps {
		if code := p.wait(t); code != 0 {
			t.Fatalf("run %d: exit %d; stderr:\n%s", i, code, p.stderr.String())
		}
	}
}

// TestLockForwardsSignals sends SIGTERM to the test process while
// dflockctl runs a command: dflockctl forwards it, and exits with the
// command's status. Not parallel: the signal reaches every dflockctl
// running in this process.
func TestLockForwardsSignals(t *testing.T) {
	ts := startServer(t, nil, server.Options{})
	pidFile := filepath.Join(t.TempDir(), "pid")
	p := start(t, nil, "--server", ts.addr, "lock", "fwd", "--",
		"sh", "-c", `trap 'exit 42' TERM; echo $$ > "$1"; i=0; while [ $i -lt 1000 ]; do i=$((i+1)); sleep 0.01; done`, "sh", pidFile)
	readPID(t, p, pidFile) // dflockctl has installed its handler before starting the command
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 42 {
		t.Fatalf("exit %d, want 42; stderr:\n%s", code, p.stderr.String())
	}
}

// TestLockInterruptedWait sends SIGINT while dflockctl waits for a held
// lock: it gives up with status 130 and never runs the command. Not
// parallel, as TestLockForwardsSignals.
func TestLockInterruptedWait(t *testing.T) {
	ts := startServer(t, nil, server.Options{})
	holder := ts.dial(t)
	if _, _, err := holder.Acquire(testCtx(t), "wait", 0); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "ran")
	p := start(t, nil, "--server", ts.addr, "lock", "wait", "--", "touch", marker)
	obs := ts.dial(t)
	eventually(t, "dflockctl to queue", func() bool { return lockWaiters(ts.stats(t, obs), "wait") == 1 })
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 128+int(syscall.SIGINT) {
		t.Fatalf("exit %d, want 130; stderr:\n%s", code, p.stderr.String())
	}
	if exists(marker) {
		t.Fatal("the command ran")
	}
	eventually(t, "the waiter to leave the queue", func() bool { return lockWaiters(ts.stats(t, obs), "wait") == 0 })
}

// TestLockShards: with several servers, the lock is taken on the one the
// key hashes to (CRC-32, as every client does), whether the list comes
// from flags or from $DFLOCKD_SERVER.
func TestLockShards(t *testing.T) {
	t.Parallel()
	servers := []*testServer{startServer(t, nil, server.Options{}), startServer(t, nil, server.Options{})}
	list := servers[0].addr + "," + servers[1].addr
	for _, key := range []string{"a", "b", "lock:1"} {
		want := client.CRC32Shard(key, 2)
		dir := t.TempDir()
		p := start(t, map[string]string{"DFLOCKD_SERVER": list}, "lock", key, "--",
			"sh", "-c", `touch "$1/started"; `+waitForGo, "sh", dir)
		eventually(t, "the command to start", func() bool { return exists(filepath.Join(dir, "started")) })
		for i, ts := range servers {
			if held := lockHeld(ts.stats(t, ts.dial(t)), key); held != (i == want) {
				t.Errorf("key %q: held on server %d = %v; want it on server %d only", key, i, held, want)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(t); code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", code, p.stderr.String())
		}
	}
}
