package server

import (
	"maps"
	"runtime"
	"sort"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dflockd/dflockd/cluster"
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/version"
	"github.com/dflockd/dflockd/protocol"
)

// Metrics (docs/metrics.md). Counting must not put a shared cache line or
// a mutex on the request path, so every per-request count lives in the
// session that made it: its session goroutine adds to its own counters
// (atomic adds on memory no other goroutine writes, so uncontended) and a
// scrape reads them. A closing session adds its counters once, under the
// server's mutex it takes anyway to unregister, into an accumulator of
// closed sessions; a scrape folds that accumulator and every live session
// under the same mutex, so no session is counted twice or missed. The
// engine's per-owner counters (grants, wait times, releases) are folded
// the same way, and its gauges are read from the keys at scrape time.

// Bounds of the per-session tables: command and status values past them
// (none today) are counted as "unknown" command and "error" status.
const (
	metricCommands = 32
	metricStatuses = 16
)

// LatencyBuckets are the upper bounds, in seconds, of the request latency
// histogram (dflockd_request_duration_seconds).
var LatencyBuckets = [...]float64{
	0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1,
}

var latencyBounds = func() (b [len(LatencyBuckets)]int64) {
	for i, s := range LatencyBuckets {
		b[i] = int64(s * float64(time.Second))
	}
	return b
}()

// monoBase anchors monoNow.
var monoBase = time.Now()

// monoNow returns monotonic nanoseconds (one clock read).
func monoNow() int64 { return int64(time.Since(monoBase)) }

// cmdRow is one session's counters for one command, allocated on the
// session's first request of that command.
type cmdRow struct {
	status [metricStatuses]atomic.Uint64
	lat    [len(LatencyBuckets) + 1]atomic.Uint64 // not cumulative; last = longer
	latSum atomic.Int64                           // nanoseconds
}

// sessMetrics are a session's counters. The atomics are written by the
// session goroutine (dropped: by publishers, under the pusher's mutex,
// only when a frame is refused) and read by scrapes; the plain fields
// belong to the session goroutine alone.
type sessMetrics struct {
	rows                 [metricCommands]atomic.Pointer[cmdRow]
	published, delivered atomic.Uint64
	dropped              atomic.Uint64
	subs                 atomic.Int64

	st      protocol.Status // status of the answer to the request being dispatched
	blocked int64           // nanoseconds the request spent in block
	reason  CloseReason     // why the session ended, set before forget
	// last is when the previous request was counted (monoNow); fresh
	// says that the session has since read the socket or written to
	// it, so last is no start for the next request.
	last  int64
	fresh bool
}

// startRequest begins timing a dispatched request; it returns the start.
// A request decoded from input already buffered when the previous one
// ended (pipelined) starts when the previous one ended: what lies between
// is server work (decoding). Only a request that needed a read from the
// socket, or followed a write, reads the clock, so a pipelined request
// costs one clock read, not two.
func (sess *session) startRequest() int64 {
	sess.m.st = protocol.StatusOK
	sess.m.blocked = 0
	if sess.m.fresh || sess.m.last == 0 {
		sess.m.fresh = false
		return monoNow()
	}
	return sess.m.last
}

// endRequest counts a dispatched request of cmd, started at t0, by the
// status of its answer, and its server time (the time blocked waiting for
// a slot excluded).
func (sess *session) endRequest(cmd protocol.Command, t0 int64) {
	now := monoNow()
	sess.m.last = now
	d := now - t0 - sess.m.blocked
	c := int(cmd)
	if c >= metricCommands {
		c = int(protocol.CmdUnknown)
	}
	row := sess.m.rows[c].Load()
	if row == nil {
		row = new(cmdRow)
		sess.m.rows[c].Store(row)
	}
	st := int(sess.m.st)
	if st >= metricStatuses {
		st = int(protocol.StatusError)
	}
	row.status[st].Add(1)
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	row.lat[i].Add(1)
	row.latSum.Add(d)
}

// blockedSince adds the time since t0 to the request's blocked time.
func (sess *session) blockedSince(t0 int64) { sess.m.blocked += monoNow() - t0 }

// noteSubs publishes the session's subscription count.
func (sess *session) noteSubs() { sess.m.subs.Store(int64(len(sess.subs))) }

// Connection refusal reasons (dflockd_connections_refused_total).
const (
	refusedMaxConns = iota
	refusedPerIP
	refusedAuth
	refusedHandshake
	refusedAuthBlocked
	numRefused
)

var refusedNames = [numRefused]string{
	refusedMaxConns:    "max_connections",
	refusedPerIP:       "per_ip",
	refusedAuth:        "auth",
	refusedHandshake:   "handshake",
	refusedAuthBlocked: "auth_blocked",
}

// cmdTotals is cmdRow summed.
type cmdTotals struct {
	used   bool
	status [metricStatuses]uint64
	lat    [len(LatencyBuckets) + 1]uint64
	latSum int64
}

// totals are session counters summed.
type totals struct {
	cmds                          [metricCommands]cmdTotals
	published, delivered, dropped uint64
	owner                         core.OwnerMetrics
}

// add adds sess's counters into t, and its owner's with owner.
func (t *totals) add(sess *session, owner bool) {
	for c := range sess.m.rows {
		row := sess.m.rows[c].Load()
		if row == nil {
			continue
		}
		ct := &t.cmds[c]
		ct.used = true
		for i := range row.status {
			ct.status[i] += row.status[i].Load()
		}
		for i := range row.lat {
			ct.lat[i] += row.lat[i].Load()
		}
		ct.latSum += row.latSum.Load()
	}
	t.published += sess.m.published.Load()
	t.delivered += sess.m.delivered.Load()
	t.dropped += sess.m.dropped.Load()
	if owner {
		sess.owner.AddMetricsTo(&t.owner)
	}
}

// srvMetrics is the server's share of the metrics. Except for
// authBlocked, every field is guarded by Server.mu.
type srvMetrics struct {
	accepted    map[string]uint64 // by transport
	refused     [numRefused]uint64
	retired     totals // closed sessions
	authBlocked atomic.Uint64
}

// accept counts a connection admitted on transport; Server.mu is held.
func (m *srvMetrics) accept(transport string) {
	if m.accepted == nil {
		m.accepted = make(map[string]uint64)
	}
	m.accepted[transport]++
}

// retire adds a closed session's counters, and its owner's with owner
// (not for an owner kept by a detached named session); Server.mu is held.
func (m *srvMetrics) retire(sess *session, owner bool) {
	m.retired.add(sess, owner)
	switch sess.m.reason {
	case CloseAuthFailed:
		m.refused[refusedAuth]++
	case CloseHandshakeFailed:
		m.refused[refusedHandshake]++
	}
}

// MetricsCollector returns a Prometheus collector of the server's and its
// engine's metrics (docs/metrics.md). Everything is computed when it is
// collected: a scrape folds the counters of the open connections and of
// the closed ones under the server's mutex (one short visit per
// connection) and walks the engine's keys, each under its own mutex.
// Register it once per registry; Go runtime and process collectors are
// the registry owner's business.
func (s *Server) MetricsCollector() prometheus.Collector { return &collector{s: s} }

type collector struct{ s *Server }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("dflockd_"+name, help, labels, nil)
}

var (
	descConnsOpen     = desc("connections_open", "Open connections, those still authenticating included, by transport.", "transport")
	descConnsAccepted = desc("connections_accepted_total", "Connections admitted (within the connection caps), by transport.", "transport")
	descConnsRefused  = desc("connections_refused_total", "Connections refused or closed before their first request, by reason.", "reason")
	descRequests      = desc("requests_total", "Requests dispatched after authentication, by command (wire verb) and answer status.", "command", "status")
	descReqDuration   = desc("request_duration_seconds", "Server time of dispatched requests, time blocked waiting for a slot excluded, by command.", "command")
	descLocksHeld     = desc("locks_held", "Locks held (granted slots in the lock namespace).")
	descSemHeld       = desc("semaphore_slots_held", "Semaphore slots held.")
	descWaiters       = desc("waiters", "Waiters queued, by namespace.", "namespace")
	descKeys          = desc("keys", "Live keys (idle ones awaiting collection included), by namespace.", "namespace")
	descGrants        = desc("grants_total", "Slots granted, by path: immediate (free at once) or after_wait (queued first).", "path")
	descWait          = desc("wait_duration_seconds", "Time from joining a key's queue to being granted a slot.")
	descLeasesEnded   = desc("leases_ended_total", "Leases ended, by reason: release (by token), expiry (ran out), disconnect (owner's connection or named session ended).", "reason")
	descFence         = desc("fencing_token_last", "Fence value of the last token issued (rounded to a float64).")
	descSigPublished  = desc("signals_published_total", "Signals published (signal requests answered ok).")
	descSigDelivered  = desc("signals_delivered_total", "Signal frames accepted by listeners (the sum of signal answers).")
	descSigDropped    = desc("signals_dropped_total", "Signal frames a listener refused because its push queue was full.")
	descSlowConsumers = desc("slow_consumers_evicted_total", "Listeners disconnected because they did not read their signals in time.")
	descSubs          = desc("subscriptions", "Subscriptions of the open connections.")
	descSessions      = desc("sessions", "Named sessions (the session extension), by state: attached (a connection holds the session) or detached (waiting to be resumed).", "state")
	descSessResumed   = desc("sessions_resumed_total", "Named sessions resumed by a new connection.")
	descSessExpired   = desc("sessions_expired_total", "Detached named sessions ended at the end of their TTL (what they held released).")
	descBuildInfo     = desc("build_info", "Build information; always 1.", "version", "goversion")
	descRaftState     = desc("raft_state", "Replicated mode: 1 for this node's raft state (leader, follower, candidate, shutdown), 0 for the others.", "state")
	descRaftTerm      = desc("raft_term", "Replicated mode: the current raft term.")
	descRaftIndex     = desc("raft_index", "Replicated mode: raft log indexes: commit, applied, last.", "kind")
	descRaftLeaderChg = desc("raft_leader_changes_total", "Replicated mode: times this node gained or lost the leadership.")
	descRaftApply     = desc("raft_apply_duration_seconds", "Replicated mode: time from proposing a command on the leader to its result (replicated on a majority and applied).")
)

var allDescs = []*prometheus.Desc{
	descConnsOpen, descConnsAccepted, descConnsRefused, descRequests, descReqDuration,
	descLocksHeld, descSemHeld, descWaiters, descKeys, descGrants, descWait, descLeasesEnded,
	descFence, descSigPublished, descSigDelivered, descSigDropped, descSlowConsumers, descSubs,
	descSessions, descSessResumed, descSessExpired, descBuildInfo,
	descRaftState, descRaftTerm, descRaftIndex, descRaftLeaderChg, descRaftApply,
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	t := new(totals)
	open := make(map[string]int)
	var subs int64
	s.mu.Lock()
	*t = s.met.retired
	for sess := range s.sessions {
		t.add(sess, true)
		open[sess.transport]++
		subs += sess.m.subs.Load()
	}
	s.opts.Engine.AddDetachedMetricsTo(&t.owner)
	accepted := maps.Clone(s.met.accepted)
	refused := s.met.refused
	s.mu.Unlock()
	refused[refusedAuthBlocked] = s.met.authBlocked.Load()
	em := s.opts.Engine.Metrics()

	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	counter := func(d *prometheus.Desc, v uint64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
	}

	transports := make([]string, 0, len(accepted))
	for name := range accepted {
		transports = append(transports, name)
	}
	for name := range open {
		if _, ok := accepted[name]; !ok {
			transports = append(transports, name)
		}
	}
	sort.Strings(transports)
	for _, name := range transports {
		gauge(descConnsOpen, float64(open[name]), name)
		counter(descConnsAccepted, accepted[name], name)
	}
	for i, n := range refused {
		counter(descConnsRefused, n, refusedNames[i])
	}

	for ci := range t.cmds {
		ct := &t.cmds[ci]
		if !ct.used {
			continue
		}
		cmd := protocol.Command(ci).String()
		var n uint64
		for si, v := range ct.status {
			if v == 0 {
				continue
			}
			n += v
			counter(descRequests, v, cmd, protocol.Status(si).String())
		}
		ch <- prometheus.MustNewConstHistogram(descReqDuration, n, float64(ct.latSum)/1e9,
			cumulative(LatencyBuckets[:], ct.lat[:]), cmd)
	}

	for k, ns := range em.Namespaces {
		kind := core.Kind(k).String()
		gauge(descWaiters, float64(ns.Waiters), kind)
		gauge(descKeys, float64(ns.Keys), kind)
	}
	gauge(descLocksHeld, float64(em.Namespaces[core.KindLock].Held))
	gauge(descSemHeld, float64(em.Namespaces[core.KindSemaphore].Held))

	counter(descGrants, t.owner.GrantsImmediate, "immediate")
	counter(descGrants, t.owner.GrantsAfterWait, "after_wait")
	w := &t.owner.Wait
	ch <- prometheus.MustNewConstHistogram(descWait, w.Count(), w.Sum.Seconds(),
		cumulative(core.WaitBuckets[:], w.Counts[:]))
	counter(descLeasesEnded, t.owner.Released+em.ReleasedUnowned, "release")
	counter(descLeasesEnded, em.Expired, "expiry")
	counter(descLeasesEnded, em.Disconnected, "disconnect")
	gauge(descFence, float64(em.Fence))

	counter(descSigPublished, t.published)
	counter(descSigDelivered, t.delivered)
	counter(descSigDropped, t.dropped)
	counter(descSlowConsumers, s.slowConsumers.Load())
	gauge(descSubs, float64(subs))
	ss := s.sessionStats()
	gauge(descSessions, float64(ss.Attached), "attached")
	gauge(descSessions, float64(ss.Detached), "detached")
	counter(descSessResumed, ss.Resumed)
	counter(descSessExpired, ss.Expired)
	gauge(descBuildInfo, 1, version.Version(), runtime.Version())
	if rep := s.opts.Replica; rep != nil {
		rm := rep.Metrics()
		for _, st := range []string{"leader", "follower", "candidate", "shutdown"} {
			v := 0.0
			if st == rm.State {
				v = 1
			}
			gauge(descRaftState, v, st)
		}
		gauge(descRaftTerm, float64(rm.Term))
		gauge(descRaftIndex, float64(rm.CommitIndex), "commit")
		gauge(descRaftIndex, float64(rm.AppliedIndex), "applied")
		gauge(descRaftIndex, float64(rm.LastIndex), "last")
		counter(descRaftLeaderChg, rm.LeaderChanges)
		var n uint64
		for _, c := range rm.ApplyCounts {
			n += c
		}
		ch <- prometheus.MustNewConstHistogram(descRaftApply, n, rm.ApplySum.Seconds(),
			cumulative(cluster.ApplyBuckets[:], rm.ApplyCounts[:]))
	}
}

// cumulative turns per-bucket counts (the last one past every bound) into
// the cumulative map a constant histogram takes.
func cumulative(bounds []float64, counts []uint64) map[float64]uint64 {
	m := make(map[float64]uint64, len(bounds))
	var n uint64
	for i, b := range bounds {
		n += counts[i]
		m[b] = n
	}
	return m
}
