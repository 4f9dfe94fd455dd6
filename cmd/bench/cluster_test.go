package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dflockd/dflockd/bench"
)

var (
	serverOnce sync.Once
	serverBin  string
	serverErr  error
	serverDir  string
)

// dflockdBin builds the server once per test run.
func dflockdBin(t *testing.T) string {
	t.Helper()
	serverOnce.Do(func() {
		serverDir, serverErr = os.MkdirTemp("", "bench-test-dflockd-")
		if serverErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		serverBin, serverErr = bench.BuildServer(ctx, serverDir)
	})
	if serverErr != nil {
		t.Fatal(serverErr)
	}
	return serverBin
}

// pidsIn returns the node PIDs the bench logged.
func pidsIn(t *testing.T, stderr string) []int {
	t.Helper()
	var pids []int
	for _, m := range regexp.MustCompile(`pid (\d+) on`).FindAllStringSubmatch(stderr, -1) {
		pid, _ := strconv.Atoi(m[1])
		pids = append(pids, pid)
	}
	return pids
}

// A 3-process cluster, briefly: the cells through the leader and a
// follower, then a run that kills the leader once; every process the
// bench started is gone afterwards and the charts are drawn.
func TestClusterBench(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dflockd processes")
	}
	bin := dflockdBin(t)
	t.Cleanup(func() { os.RemoveAll(serverDir) })
	plots := t.TempDir()

	t.Run("cells", func(t *testing.T) {
		code, out, errOut := runBench(t, "--cluster", "3", "--server-bin", bin, "--mode", "lock,handoff",
			"--cluster-workers", "1,2", "--rounds", "10", "--warmup", "1", "--repeat", "1", "--cluster-memory",
			"--auth-token", "bench-secret", "--plot", plots)
		if code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", code, errOut)
		}
		for _, want := range []string{"### 3-node cluster — lock", "### 3-node cluster — handoff",
			"| Workers | Ops | Leader ops/s | p50 | p99 | Follower ops/s |", "In-memory ops/s", "| 2 | "} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		checkGone(t, errOut, 4) // three nodes and the in-memory one
	})
	t.Run("failover", func(t *testing.T) {
		code, out, errOut := runBench(t, "--cluster", "3", "--server-bin", bin, "--mode", "lock",
			"--workers", "4", "--failover", "1", "--failover-spacing", "500ms", "--cluster-heartbeat", "300ms",
			"--plot", plots)
		if code != 0 {
			t.Fatalf("exit %d; stdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		if !regexp.MustCompile(`\| 1 \| n\d \| n\d \| \d+ \| \d+ \|`).MatchString(out) {
			t.Errorf("no kill row with a gap:\n%s", out)
		}
		if !strings.Contains(out, "Checks passed: fences unique and rising") {
			t.Errorf("no checks:\n%s", out)
		}
		checkGone(t, errOut, 4) // three nodes and the restarted one
	})
	for _, f := range []string{"cluster-throughput-lock.svg", "cluster-latency-handoff.svg", "failover-lock.svg"} {
		if st, err := os.Stat(filepath.Join(plots, f)); err != nil || st.Size() < 1000 {
			t.Errorf("chart %s: %v", f, err)
		}
	}
}

// checkGone checks that the processes the bench logged have exited.
func checkGone(t *testing.T, stderr string, want int) {
	t.Helper()
	pids := pidsIn(t, stderr)
	if len(pids) != want {
		t.Fatalf("logged pids %v; stderr:\n%s", pids, stderr)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("node pid %d still there after the run (kill 0: %v)", pid, err)
		}
	}
}

// The cluster flags are refused where they make no sense (exit 2).
func TestClusterFlagsRefused(t *testing.T) {
	for _, args := range [][]string{
		{"--failover", "2"},
		{"--cluster-memory"},
		{"--cluster", "3", "--matrix"},
		{"--cluster", "3", "--local"},
		{"--cluster", "3", "--transport", "unix"},
		{"--cluster", "3", "--failover", "1", "--failover-spacing", "0s"},
		{"--cluster", "3", "--cluster-workers", "0"},
	} {
		code, _, errOut := runBench(t, args...)
		if code != 2 || !strings.Contains(errOut, "bench: ") {
			t.Errorf("%q: exit %d, stderr %q", args, code, errOut)
		}
	}
}
