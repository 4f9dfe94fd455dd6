package server

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/dflockd/dflockd/core"
)

// requirePromtool names the environment variable that makes the promtool
// checks fail, instead of skip, when promtool is not on PATH (.ci/run
// sets it under CI=true, after installing promtool).
const requirePromtool = "DFLOCKD_REQUIRE_PROMTOOL"

// promtool returns the path of promtool, skipping the test when it is
// absent (failing it when requirePromtool is set).
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv(requirePromtool) != "" {
			t.Fatalf("promtool not on PATH and %s is set: %v", requirePromtool, err)
		}
		t.Skip("promtool not on PATH (Debian package prometheus)")
	}
	return path
}

// exposition encodes every family reg gathers in the Prometheus text
// format, as /metrics serves it.
func exposition(t *testing.T, reg prometheus.Gatherer) []byte {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatalf("encode %s: %v", mf.GetName(), err)
		}
	}
	return buf.Bytes()
}

// The exposition after a workload that fills every family passes
// `promtool check metrics` (its lint included: names, units, _total).
func TestMetrics_PromtoolCheckMetrics(t *testing.T) {
	t.Parallel()
	bin := promtool(t)
	ts := start(t, Options{}, core.Options{})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(ts.MetricsCollector())
	a, b := ts.dial(t), ts.dial(t)
	tok := expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	b.Req("l", "k", "10")
	wait := bg(b)
	eventually(t, "b queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })
	a.Expect("r", "k", tok, "ok")
	expectGrant(t, recv(t, wait), "ok", "33")
	expectGrant(t, a.Do("sl", "s", "0 2"), "ok", "33")
	a.Expect("listen", "ch", "", "ok")
	b.Expect("signal", "ch", "x", "ok 1")
	expectLine(t, a, "sig ch x")

	text := exposition(t, reg)
	for _, name := range []string{"dflockd_requests_total", "dflockd_wait_duration_seconds_bucket", "dflockd_build_info"} {
		if !bytes.Contains(text, []byte(name)) {
			t.Fatalf("exposition lacks %s:\n%s", name, text)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("promtool check metrics: %v\n%s\nexposition:\n%s", err, out, text)
	}
}

// The example alerting rules of docs/metrics.md pass `promtool check
// rules`.
func TestMetrics_PromtoolCheckRules(t *testing.T) {
	t.Parallel()
	bin := promtool(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "check", "rules", "../docs/metrics-alerts.yml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}
