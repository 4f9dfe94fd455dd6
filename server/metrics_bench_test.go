package server

import (
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/protocol"
)

// BenchmarkRequestMetrics is what counting adds to one pipelined request
// (one clock read; a request read from the socket pays a second one), the
// status counter and the latency bucket, on a session per goroutine (as
// each connection counts on its own memory). Run with -cpu 1,2: the time
// per request must not grow with the goroutines.
func BenchmarkRequestMetrics(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		sess := &session{owner: core.NewOwner(1)}
		for pb.Next() {
			t0 := sess.startRequest()
			sess.reply0(protocol.StatusOK)
			sess.endRequest(protocol.CmdLock, t0)
		}
	})
}

// BenchmarkRequestMetricsShared counts on one session shared by every
// goroutine: the cost of the shared cache line the design avoids, for
// contrast with BenchmarkRequestMetrics (it would be a data race in the
// server; the counters themselves are atomic).
func BenchmarkRequestMetricsShared(b *testing.B) {
	sess := &session{owner: core.NewOwner(1)}
	sess.endRequest(protocol.CmdLock, 0) // the row exists before the race
	row := sess.m.rows[protocol.CmdLock].Load()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		t0 := monoNow()
		for pb.Next() {
			row.status[protocol.StatusOK].Add(1)
			now := monoNow()
			d := now - t0
			t0 = now
			i := 0
			for i < len(latencyBounds) && d > latencyBounds[i] {
				i++
			}
			row.lat[i].Add(1)
			row.latSum.Add(d)
		}
	})
}

// reply0 is the status bookkeeping of reply without the output.
func (sess *session) reply0(st protocol.Status) { sess.m.st = st }

// BenchmarkMetricsCollect is one scrape of a server with 1000 open
// connections (each having used 4 commands) and 10000 keys.
func BenchmarkMetricsCollect(b *testing.B) {
	e := core.New(core.Options{MaxKeys: 1 << 20})
	s := New(Options{Engine: e})
	defer s.Close()
	for i := range 1000 {
		sess := &session{srv: s, owner: core.NewOwner(uint64(i)), transport: "tcp"}
		for _, c := range []protocol.Command{protocol.CmdLock, protocol.CmdRelease, protocol.CmdPing, protocol.CmdRenew} {
			sess.endRequest(c, sess.startRequest())
		}
		s.sessions[sess] = struct{}{}
	}
	o := core.NewOwner(1 << 30)
	for i := range 10000 {
		if _, _, err := e.Acquire(o, core.KindLock, "k"+strconv.Itoa(i), core.AcquireOptions{TTL: time.Hour}); err != nil {
			b.Fatal(err)
		}
	}
	c := s.MetricsCollector()
	ch := make(chan prometheus.Metric, 256)
	done := make(chan int)
	go func() {
		n := 0
		for range ch {
			n++
		}
		done <- n
	}()
	b.ReportAllocs()
	for b.Loop() {
		c.Collect(ch)
	}
	close(ch)
	<-done
	s.mu.Lock()
	clear(s.sessions) // never served: nothing for Close to wait for
	s.mu.Unlock()
}
