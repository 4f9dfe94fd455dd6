package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/bench"
	"github.com/dflockd/dflockd/internal/leakcheck"
)

func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m)) }

// runBench runs the command in-process and returns its exit status and
// output.
func runBench(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestLocalRunPrintsSection10AndTable(t *testing.T) {
	code, out, errOut := runBench(t, "--local", "--workers", "2", "--rounds", "5", "--warmup", "1")
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errOut)
	}
	for _, want := range []string{
		`bench: 2 workers x 5 rounds (key="bench_<id>", conns/worker=1, unique per-worker keys)`,
		"  total ops : 10\n", "  throughput: ", "  p99       : ",
		"| Workers | Rounds | Ops | Throughput | Mean | p50 | p99 |", "| 2 | 5 | 10 | ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestJSONAndBaseline(t *testing.T) {
	report := filepath.Join(t.TempDir(), "report.md")
	code, out, errOut := runBench(t, "--local", "--transport", "unix", "--workers", "2", "--rounds", "5",
		"--baseline", "echo", "--repeat", "2", "--json", "--report", report)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errOut)
	}
	var cmp bench.Comparison
	if err := json.Unmarshal([]byte(out), &cmp); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if cmp.Efficiency <= 0 || cmp.Dflockd.Ops != 20 || cmp.Echo.Ops != 20 || cmp.Dflockd.Transport != "unix" {
		t.Fatalf("comparison: %+v", cmp)
	}
	// --json replaces the text, and the report is written only for text.
	if _, err := os.Stat(report); err == nil {
		t.Fatalf("--report written together with --json")
	}
	code, out, errOut = runBench(t, "--local", "--workers", "1", "--rounds", "3", "--baseline", "echo", "--repeat", "1", "--report", report)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errOut)
	}
	b, err := os.ReadFile(report)
	if err != nil || !strings.Contains(string(b), "Efficiency") || !strings.Contains(out, "efficiency ") {
		t.Fatalf("report %q (%v); output:\n%s", b, err, out)
	}
}

// --payload-size and --signal-window reach the signal run: the listeners
// check every payload's size.
func TestSignalFlags(t *testing.T) {
	code, out, errOut := runBench(t, "--local", "--mode", "signal", "--workers", "1", "--listeners", "2",
		"--rounds", "50", "--pipeline", "4", "--payload-size", "128", "--signal-window", "8", "--json")
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errOut)
	}
	var r bench.Result
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if r.Ops != 100 || r.Listeners != 2 {
		t.Fatalf("result: %+v", r)
	}
}

func TestMatrixCommand(t *testing.T) {
	code, out, errOut := runBench(t, "--matrix", "--matrix-transports", "tcp,unix", "--matrix-workers", "1,2",
		"--rounds", "3", "--warmup", "0", "--repeat", "1", "--mode", "lock,twophase")
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errOut)
	}
	for _, want := range []string{"### tcp — lock", "### unix — twophase", "| 2 | 3 | 6 |"} {
		if !strings.Contains(out, want) {
			t.Errorf("matrix output lacks %q:\n%s", want, out)
		}
	}
}

func TestInvalidFlagsExit2(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--workers", "0"}, "bench: --workers must be > 0"},
		{[]string{"--rounds", "0"}, "bench: --rounds must be > 0"},
		{[]string{"--timeout=-1"}, "bench: --timeout: negative duration"},
		{[]string{"--lease=-1"}, "bench: --lease: negative duration"},
		{[]string{"--connections=-1"}, "bench: --connections must be >= 0"},
		{[]string{"--warmup=-1"}, "bench: --warmup must be >= 0"},
		{[]string{"--servers", "a:1,,b:2"}, "bench: empty --servers entry"},
		{[]string{"--mode", "nope"}, "bench: unknown --mode"},
		{[]string{"--mode", "signal", "--signal-window=-1"}, "bench: --signal-window must be >= 0"},
		{[]string{"--mode", "signal", "--payload-size", "10"}, "bench: --payload-size must be 0 or at least 19"},
		{[]string{"--mode", "lock,signal"}, "bench: --mode takes one mode"},
		{[]string{"--pipeline", "4", "--shared-key"}, "per-worker keys"},
		{[]string{"--no-such-flag"}, "bench: unknown flag"},
	} {
		code, _, errOut := runBench(t, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

func TestRunErrorExit1(t *testing.T) {
	// Nothing listens on port 1 of loopback.
	code, _, errOut := runBench(t, "--servers", "127.0.0.1:1", "--workers", "1", "--rounds", "1")
	if code != 1 || !strings.Contains(errOut, "worker 0 error: ") {
		t.Fatalf("exit %d, stderr %q; want 1 and worker 0 error", code, errOut)
	}
}

func TestHelpExit0(t *testing.T) {
	code, out, _ := runBench(t, "run", "--help")
	if code != 0 || !strings.Contains(out, "--pipeline") || !strings.Contains(out, "--baseline") {
		t.Fatalf("--help: exit %d, output:\n%s", code, out)
	}
}

// TestMemoryCommand builds dflockd and measures it with small numbers.
func TestMemoryCommand(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	if testing.Short() {
		t.Skip("builds dflockd")
	}
	bin := filepath.Join(t.TempDir(), "dflockd")
	build := exec.Command("go", "build", "-o", bin, "github.com/dflockd/dflockd/cmd/dflockd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	code, out, errOut := runBench(t, "memory", "--server-bin", bin, "--idle-conns", "50", "--held-locks", "2000", "--lock-conns", "2", "--json")
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errOut)
	}
	var res MemoryResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("output: %v\n%s", err, out)
	}
	if res.BaselineRSS <= 0 || res.IdleRSS <= 0 || res.LocksRSS <= 0 || res.IdleConns != 50 || res.HeldLocks != 2000 {
		t.Fatalf("result: %+v", res)
	}
	code, _, errOut = runBench(t, "memory", "--server-bin", filepath.Join(t.TempDir(), "missing"), "--idle-conns", "1", "--held-locks", "1")
	if code != 1 || !strings.Contains(errOut, "start") {
		t.Fatalf("missing binary: exit %d, stderr %q", code, errOut)
	}
}

// TestStatsFloodCommand builds dflockd and floods it with small numbers.
func TestStatsFloodCommand(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	if testing.Short() {
		t.Skip("builds dflockd")
	}
	bin := filepath.Join(t.TempDir(), "dflockd")
	build := exec.Command("go", "build", "-o", bin, "github.com/dflockd/dflockd/cmd/dflockd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	code, out, errOut := runBench(t, "stats-flood", "--server-bin", bin, "--keys", "20", "--subscriptions", "300",
		"--sub-conns", "2", "--flooders", "2", "--flood-bytes", "900", "--stall", "50ms", "--duration", "300ms",
		"--server-arg=--stats-max-items=10", "--json")
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errOut)
	}
	var res StatsFloodResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("output: %v\n%s", err, out)
	}
	if res.BeforeRSS <= 0 || res.PeakRSS <= 0 || res.Answers < 200 || res.Answers%100 != 0 || res.Pings == 0 ||
		res.PingP99 <= 0 || res.StatsBytes <= 0 || res.StatsBytes > 8000 || res.OverLimit || res.PingErr != "" {
		t.Fatalf("result: %+v", res)
	}
	code, _, errOut = runBench(t, "stats-flood", "--server-bin", bin, "--key-len", "3")
	if code != 2 || !strings.Contains(errOut, "--key-len") {
		t.Fatalf("--key-len 3: exit %d, stderr %q", code, errOut)
	}
}
