package server

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	ptu "github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/testutil"
)

// metricsRegistry registers s's collector in a pedantic registry, which
// checks every gathered metric against its description.
func metricsRegistry(t testing.TB, s *Server) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(s.MetricsCollector()); err != nil {
		t.Fatalf("register: %v", err)
	}
	return reg
}

// compareMetrics gathers reg and compares the named families with want
// (the text exposition format).
func compareMetrics(t testing.TB, reg *prometheus.Registry, want string, names ...string) {
	t.Helper()
	if err := ptu.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
}

// metricValue returns the value of the series of family name whose labels
// include every pair of lv ("label", "value", ...); it fails when there is
// none.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, lv ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, lv) {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("no series %s%v", name, lv)
	return 0
}

func hasLabels(m *dto.Metric, lv []string) bool {
	for i := 0; i+1 < len(lv); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == lv[i] && lp.GetValue() == lv[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// A scripted workload on a fake clock, then exact counts: 10 grants (7
// immediate, 3 after a wait), 3 expiries, 2 disconnect releases, 2
// releases, the wait histogram, requests by command and status,
// connections, and the gauges read from the engine mid-way and at the end.
func TestMetrics_ScriptedWorkloadExactCounts(t *testing.T) {
	t.Parallel()
	ts, clk := startClock(t, Options{}, core.Options{})
	reg := metricsRegistry(t, ts.Server)
	a, b, c, d, e := ts.dial(t), ts.dial(t), ts.dial(t), ts.dial(t), ts.dial(t)

	// Seven immediate grants. Three leases are 5 s long, the rest 100 s.
	tokA := expectGrant(t, a.Do("l", "a", "0 100"), "ok", "100")
	expectGrant(t, a.Do("l", "b", "0 100"), "ok", "100")
	expectGrant(t, a.Do("l", "c", "0 100"), "ok", "100")
	expectGrant(t, b.Do("sl", "s", "0 2 5"), "ok", "5")
	expectGrant(t, c.Do("sl", "s", "0 2 5"), "ok", "5")
	expectGrant(t, d.Do("l", "d", "0 5"), "ok", "5")
	tokE := expectGrant(t, d.Do("l", "e", "0 100"), "ok", "100")

	// Three waiters, queued at t=0.
	b.Req("l", "a", "30 100")
	waitB := bg(b)
	c.Req("l", "b", "30 100")
	waitC := bg(c)
	d.Req("sl", "s", "30 2 100")
	waitD := bg(d)
	eventually(t, "three waiters", func() bool {
		return waitersOf(ts.Engine, "a") == 1 && waitersOf(ts.Engine, "b") == 1 && semWaitersOf(ts.Engine, "s") == 1
	})
	e.Expect("l", "d", "0", "timeout")
	e.Expect("r", "nokey", "0123", "error")
	ping(t, e)
	compareMetrics(t, reg, `
# HELP dflockd_locks_held Locks held (granted slots in the lock namespace).
# TYPE dflockd_locks_held gauge
dflockd_locks_held 5
# HELP dflockd_semaphore_slots_held Semaphore slots held.
# TYPE dflockd_semaphore_slots_held gauge
dflockd_semaphore_slots_held 2
# HELP dflockd_waiters Waiters queued, by namespace.
# TYPE dflockd_waiters gauge
dflockd_waiters{namespace="lock"} 2
dflockd_waiters{namespace="semaphore"} 1
# HELP dflockd_keys Live keys (idle ones awaiting collection included), by namespace.
# TYPE dflockd_keys gauge
dflockd_keys{namespace="lock"} 5
dflockd_keys{namespace="semaphore"} 1
`, "dflockd_locks_held", "dflockd_semaphore_slots_held", "dflockd_waiters", "dflockd_keys")

	// t=0: a released by token, handed to b after 0 s.
	a.Expect("r", "a", tokA, "ok")
	expectGrant(t, recv(t, waitB), "ok", "100")
	// t=3: a disconnects: b and c are released (2), b goes to c after 3 s.
	clk.Advance(3 * time.Second)
	a.Conn.Close()
	expectGrant(t, recv(t, waitC), "ok", "100")
	// t=6: both 5 s semaphore slots and d's lock run out (3 expiries);
	// one slot goes to d after 6 s.
	clk.Advance(3 * time.Second)
	ts.Engine.ExpireDue()
	expectGrant(t, recv(t, waitD), "ok", "100")
	if n := ts.Engine.Sweep(); n != 1 {
		t.Fatalf("sweep evicted %d leases; want 1 (d's lock)", n)
	}
	d.Expect("r", "e", tokE, "ok")
	eventually(t, "a's session gone", func() bool { return ts.Connections() == 4 })

	compareMetrics(t, reg, `
# HELP dflockd_grants_total Slots granted, by path: immediate (free at once) or after_wait (queued first).
# TYPE dflockd_grants_total counter
dflockd_grants_total{path="after_wait"} 3
dflockd_grants_total{path="immediate"} 7
# HELP dflockd_leases_ended_total Leases ended, by reason: release (by token), expiry (ran out), disconnect (owner's connection or named session ended).
# TYPE dflockd_leases_ended_total counter
dflockd_leases_ended_total{reason="disconnect"} 2
dflockd_leases_ended_total{reason="expiry"} 3
dflockd_leases_ended_total{reason="release"} 2
# HELP dflockd_wait_duration_seconds Time from joining a key's queue to being granted a slot.
# TYPE dflockd_wait_duration_seconds histogram
dflockd_wait_duration_seconds_bucket{le="0.0005"} 1
dflockd_wait_duration_seconds_bucket{le="0.001"} 1
dflockd_wait_duration_seconds_bucket{le="0.0025"} 1
dflockd_wait_duration_seconds_bucket{le="0.005"} 1
dflockd_wait_duration_seconds_bucket{le="0.01"} 1
dflockd_wait_duration_seconds_bucket{le="0.025"} 1
dflockd_wait_duration_seconds_bucket{le="0.05"} 1
dflockd_wait_duration_seconds_bucket{le="0.1"} 1
dflockd_wait_duration_seconds_bucket{le="0.25"} 1
dflockd_wait_duration_seconds_bucket{le="0.5"} 1
dflockd_wait_duration_seconds_bucket{le="1"} 1
dflockd_wait_duration_seconds_bucket{le="2.5"} 1
dflockd_wait_duration_seconds_bucket{le="5"} 2
dflockd_wait_duration_seconds_bucket{le="10"} 3
dflockd_wait_duration_seconds_bucket{le="30"} 3
dflockd_wait_duration_seconds_bucket{le="60"} 3
dflockd_wait_duration_seconds_bucket{le="+Inf"} 3
dflockd_wait_duration_seconds_sum 9
dflockd_wait_duration_seconds_count 3
# HELP dflockd_requests_total Requests dispatched after authentication, by command (wire verb) and answer status.
# TYPE dflockd_requests_total counter
dflockd_requests_total{command="l",status="ok"} 7
dflockd_requests_total{command="l",status="timeout"} 1
dflockd_requests_total{command="ping",status="ok"} 1
dflockd_requests_total{command="r",status="error"} 1
dflockd_requests_total{command="r",status="ok"} 2
dflockd_requests_total{command="sl",status="ok"} 3
# HELP dflockd_connections_open Open connections, those still authenticating included, by transport.
# TYPE dflockd_connections_open gauge
dflockd_connections_open{transport="tcp"} 4
# HELP dflockd_connections_accepted_total Connections admitted (within the connection caps), by transport.
# TYPE dflockd_connections_accepted_total counter
dflockd_connections_accepted_total{transport="tcp"} 5
# HELP dflockd_locks_held Locks held (granted slots in the lock namespace).
# TYPE dflockd_locks_held gauge
dflockd_locks_held 2
# HELP dflockd_semaphore_slots_held Semaphore slots held.
# TYPE dflockd_semaphore_slots_held gauge
dflockd_semaphore_slots_held 1
# HELP dflockd_waiters Waiters queued, by namespace.
# TYPE dflockd_waiters gauge
dflockd_waiters{namespace="lock"} 0
dflockd_waiters{namespace="semaphore"} 0
# HELP dflockd_keys Live keys (idle ones awaiting collection included), by namespace.
# TYPE dflockd_keys gauge
dflockd_keys{namespace="lock"} 5
dflockd_keys{namespace="semaphore"} 1
`, "dflockd_grants_total", "dflockd_leases_ended_total", "dflockd_wait_duration_seconds",
		"dflockd_requests_total", "dflockd_connections_open", "dflockd_connections_accepted_total",
		"dflockd_locks_held", "dflockd_semaphore_slots_held", "dflockd_waiters", "dflockd_keys")

	// Every dispatched request has a latency observation.
	for cmd, n := range map[string]float64{"l": 8, "sl": 3, "r": 3, "ping": 1} {
		if got := metricValue(t, reg, "dflockd_request_duration_seconds", "command", cmd); got != n {
			t.Errorf("request_duration_seconds{command=%q} count = %v; want %v", cmd, got, n)
		}
	}
	if fence := metricValue(t, reg, "dflockd_fencing_token_last"); fence <= 0 {
		t.Errorf("fencing_token_last = %v; want > 0", fence)
	}
}

// The latency of a request that blocks waiting for a lock excludes the
// time it was blocked, and the latency of a request excludes the time the
// connection sat idle before it.
func TestMetrics_LatencyExcludesBlockedTime(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	reg := metricsRegistry(t, ts.Server)
	a, b := ts.dial(t), ts.dial(t)
	tok := expectGrant(t, a.Do("l", "k", "0"), "ok", "33")
	b.Req("l", "k", "10")
	wait := bg(b)
	eventually(t, "b queued", func() bool { return waitersOf(ts.Engine, "k") == 1 })
	time.Sleep(300 * time.Millisecond) // b blocks at least this long
	a.Expect("r", "k", tok, "ok")
	expectGrant(t, recv(t, wait), "ok", "33")
	time.Sleep(300 * time.Millisecond) // a sits idle
	ping(t, a)
	if got := latencySum(t, reg, "ping"); got >= 0.25 {
		t.Fatalf("ping latency %.3f s; want well under the 0.3 s idle", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "dflockd_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, []string{"command", "l"}) {
				h := m.GetHistogram()
				if h.GetSampleCount() != 2 || h.GetSampleSum() >= 0.25 {
					t.Fatalf("l latency: %d requests, %.3f s in all; want 2, well under the 0.3 s blocked",
						h.GetSampleCount(), h.GetSampleSum())
				}
				return
			}
		}
	}
	t.Fatal("no latency series for l")
}

// latencySum returns the sum of the latency histogram of cmd.
func latencySum(t testing.TB, reg *prometheus.Registry, cmd string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "dflockd_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, []string{"command", cmd}) {
				return m.GetHistogram().GetSampleSum()
			}
		}
	}
	t.Fatalf("no latency series for %s", cmd)
	return 0
}

// Refusals by reason: over the connection cap, over the per-IP cap, a
// failed token handshake, and a source blocked after failing.
func TestMetrics_ConnectionsRefusedByReason(t *testing.T) {
	t.Parallel()
	refused := func(reg *prometheus.Registry, reason string) float64 {
		return metricValue(t, reg, "dflockd_connections_refused_total", "reason", reason)
	}
	t.Run("max_connections", func(t *testing.T) {
		t.Parallel()
		ts := start(t, Options{MaxConns: 1}, core.Options{})
		reg := metricsRegistry(t, ts.Server)
		ping(t, ts.dial(t))
		for range 2 {
			expectRefused(t, ts.dial(t).Conn)
		}
		if n := refused(reg, "max_connections"); n != 2 {
			t.Fatalf("max_connections refusals = %v; want 2", n)
		}
		if n := refused(reg, "per_ip"); n != 0 {
			t.Fatalf("per_ip refusals = %v; want 0", n)
		}
	})
	t.Run("per_ip", func(t *testing.T) {
		t.Parallel()
		ts := start(t, Options{MaxConnsPerIP: 1}, core.Options{})
		reg := metricsRegistry(t, ts.Server)
		ping(t, ts.dial(t))
		expectRefused(t, ts.dial(t).Conn)
		if n := refused(reg, "per_ip"); n != 1 {
			t.Fatalf("per_ip refusals = %v; want 1", n)
		}
	})
	t.Run("auth_then_blocked", func(t *testing.T) {
		t.Parallel()
		ts := start(t, Options{Auth: auth.Token("s3cret"), AuthFailures: 1, AuthBackoff: time.Hour}, core.Options{})
		reg := metricsRegistry(t, ts.Server)
		c := ts.dial(t)
		c.Req("auth", "_", "wrong")
		authFailed(t, c, time.Now().Add(-time.Second))
		eventually(t, "failed session gone", func() bool { return ts.Connections() == 0 })
		expectRefused(t, ts.dial(t).Conn) // the source is now blocked
		if n := refused(reg, "auth"); n != 1 {
			t.Fatalf("auth refusals = %v; want 1", n)
		}
		if n := refused(reg, "auth_blocked"); n != 1 {
			t.Fatalf("auth_blocked refusals = %v; want 1", n)
		}
		if n := metricValue(t, reg, "dflockd_connections_accepted_total", "transport", "tcp"); n != 1 {
			t.Fatalf("accepted = %v; want 1", n)
		}
	})
	t.Run("handshake", func(t *testing.T) {
		t.Parallel()
		srvTLS, _ := testutil.SelfSigned(t, "127.0.0.1")
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ts := startOn(t, tls.NewListener(l, srvTLS), Options{}, core.Options{}, false)
		reg := metricsRegistry(t, ts.Server)
		conn, err := net.Dial("tcp", ts.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = conn.Write([]byte("this is not a TLS client hello\r\n\r\n"))
		eventually(t, "handshake refusal counted", func() bool { return refused(reg, "handshake") == 1 })
	})
}

// Signals published and delivered, and subscriptions, exactly; a frame
// refused by a full push queue counts as dropped.
func TestMetrics_Signals(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	reg := metricsRegistry(t, ts.Server)
	l1, l2, pub := ts.dial(t), ts.dial(t), ts.dial(t)
	l1.Expect("listen", "jobs.*", "", "ok")
	l1.Expect("listen", "other", "", "ok")
	l2.Expect("listen", "jobs.build", "", "ok")
	pub.Expect("signal", "jobs.build", "go", "ok 2")
	pub.Expect("signal", "jobs.test", "go", "ok 1")
	pub.Expect("signal", "nobody", "go", "ok 0")
	expectLine(t, l1, "sig jobs.build go")
	expectLine(t, l1, "sig jobs.test go")
	expectLine(t, l2, "sig jobs.build go")
	l1.Expect("unlisten", "other", "", "ok")
	compareMetrics(t, reg, `
# HELP dflockd_signals_published_total Signals published (signal requests answered ok).
# TYPE dflockd_signals_published_total counter
dflockd_signals_published_total 3
# HELP dflockd_signals_delivered_total Signal frames accepted by listeners (the sum of signal answers).
# TYPE dflockd_signals_delivered_total counter
dflockd_signals_delivered_total 3
# HELP dflockd_signals_dropped_total Signal frames a listener refused because its push queue was full.
# TYPE dflockd_signals_dropped_total counter
dflockd_signals_dropped_total 0
# HELP dflockd_subscriptions Subscriptions of the open connections.
# TYPE dflockd_subscriptions gauge
dflockd_subscriptions 2
# HELP dflockd_slow_consumers_evicted_total Listeners disconnected because they did not read their signals in time.
# TYPE dflockd_slow_consumers_evicted_total counter
dflockd_slow_consumers_evicted_total 0
`, "dflockd_signals_published_total", "dflockd_signals_delivered_total", "dflockd_signals_dropped_total",
		"dflockd_subscriptions", "dflockd_slow_consumers_evicted_total")

	// A push queue that is full refuses the frame: one drop, counted on
	// the listener's session until it closes, and after.
	var sess *session
	ts.mu.Lock()
	for s := range ts.sessions {
		if sess == nil || s.id < sess.id {
			sess = s // l1's, the first dialled
		}
	}
	ts.mu.Unlock()
	if sess == nil {
		t.Fatal("no listening session")
	}
	p := &pusher{sess: sess, maxBytes: 1, pending: 1}
	if p.Deliver([]byte("sig x y\n")) {
		t.Fatal("a full queue accepted a frame")
	}
	if n := metricValue(t, reg, "dflockd_signals_dropped_total"); n != 1 {
		t.Fatalf("dropped = %v; want 1", n)
	}
	l1.Conn.Close()
	l2.Conn.Close()
	eventually(t, "listeners gone", func() bool { return ts.Connections() == 1 })
	if n := metricValue(t, reg, "dflockd_signals_dropped_total"); n != 1 {
		t.Fatalf("dropped after close = %v; want 1", n)
	}
	if n := metricValue(t, reg, "dflockd_subscriptions"); n != 0 {
		t.Fatalf("subscriptions after close = %v; want 0", n)
	}
	if n := metricValue(t, reg, "dflockd_signals_delivered_total"); n != 3 {
		t.Fatalf("delivered after close = %v; want 3", n)
	}
}

// The pedantic registry accepts the collector with no traffic and with
// some, and a second scrape gives the same series.
func TestMetrics_PedanticRegistry(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	reg := metricsRegistry(t, ts.Server)
	if _, err := reg.Gather(); err != nil {
		t.Fatalf("idle gather: %v", err)
	}
	c := ts.dial(t)
	tok := expectGrant(t, c.Do("l", "k", "0"), "ok", "33")
	c.Expect("r", "k", tok, "ok")
	for range 2 {
		if n, err := ptu.GatherAndCount(reg); err != nil || n == 0 {
			t.Fatalf("gather: %d series, %v", n, err)
		}
	}
	if probs, err := ptu.GatherAndLint(reg); err != nil || len(probs) > 0 {
		t.Fatalf("lint: %v %v", probs, err)
	}
}
