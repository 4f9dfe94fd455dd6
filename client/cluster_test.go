package client

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/internal/chaos"
	"github.com/dflockd/dflockd/internal/testcluster"
	"github.com/dflockd/dflockd/server"
)

// Tests of the client against a replicated cluster (internal/testcluster:
// three in-process nodes on loopback, elections within about a second).

// leaderConn dials the cluster's leader through discovery and closes the
// connection when the test ends.
func leaderConn(t *testing.T, tc *testcluster.Cluster) *Conn {
	t.Helper()
	c, err := Dial(ctxT(t), "", Options{Cluster: tc.Addrs()})
	if err != nil {
		t.Fatalf("Dial cluster: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// inspectLeader inspects key on the cluster's current leader.
func inspectLeader(t *testing.T, tc *testcluster.Cluster, key string) *KeyInfo {
	t.Helper()
	c := leaderConn(t, tc)
	defer c.Close()
	ki, err := c.Inspect(ctxT(t), key, false)
	if err != nil {
		t.Fatalf("inspect %s: %v", key, err)
	}
	return ki
}

// fence returns the fencing number of token.
func fence(t testing.TB, token string) uint64 {
	t.Helper()
	f, err := FenceFromToken(token)
	if err != nil {
		t.Fatalf("fence of %q: %v", token, err)
	}
	return f
}

// killLeader kills the current leader and returns when it was killed
// and its index.
func killLeader(t *testing.T, tc *testcluster.Cluster) (time.Time, int) {
	t.Helper()
	old := tc.Leader(t)
	at := time.Now()
	tc.Kill(old.Index)
	t.Logf("killed the leader %s", old.ID)
	return at, old.Index
}

// probeAcquire acquires and releases key on the cluster, retrying until
// it works, and returns when it first did.
func probeAcquire(t *testing.T, tc *testcluster.Cluster, key string) time.Time {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		l := &Lock{Key: key, Cluster: tc.Addrs(), AcquireTimeout: -1, DialTimeout: 2 * time.Second}
		ok, err := l.Acquire(ctxT(t))
		if ok {
			at := time.Now()
			_ = l.Release(ctxT(t))
			return at
		}
		l.Close()
		if time.Now().After(deadline) {
			t.Fatalf("no acquire of %s within 15s: %v", key, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClusterLockHeldThroughFailover(t *testing.T) {
	tc := testcluster.Start(t, testcluster.Config{})
	tc.Leader(t)
	var lostErr atomic.Value
	l := &Lock{Key: "held", Cluster: tc.Addrs(), LeaseTTL: 3, RenewRatio: 0.25,
		OnRenewError: func(err error) { lostErr.Store(err) }}
	defer l.Close()
	if ok, err := l.Acquire(ctxT(t)); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	tok := l.Token()

	killed, _ := killLeader(t, tc)
	back := probeAcquire(t, tc, "probe")
	t.Logf("failover: %v from the leader's kill to the next successful acquire", back.Sub(killed).Round(time.Millisecond))

	// Past the lease and the grace the new leader armed it with: only
	// renewals on the new leader keep it.
	time.Sleep(4 * time.Second)
	select {
	case <-l.Lost():
		t.Fatalf("Lost fired: %v", lostErr.Load())
	default:
	}
	if got := l.Token(); got != tok {
		t.Fatalf("token %q, want %q", got, tok)
	}
	ki := inspectLeader(t, tc, "held")
	if len(ki.Holders) != 1 || ki.Holders[0].Fence != fence(t, tok) {
		t.Fatalf("holders on the new leader: %+v, want fence %d", ki.Holders, fence(t, tok))
	}
	other := &Lock{Key: "held", Cluster: tc.Addrs(), AcquireTimeout: -1}
	defer other.Close()
	if ok, err := other.Acquire(ctxT(t)); ok || err != nil {
		t.Fatalf("second holder: Acquire = %v, %v", ok, err)
	}
	if err := l.Release(ctxT(t)); err != nil {
		t.Fatalf("Release after the failover: %v", err)
	}
	if ki := inspectLeader(t, tc, "held"); len(ki.Holders) != 0 {
		t.Fatalf("still held after Release: %+v", ki.Holders)
	}
}

// TestClusterBlockedAcquiresKeepFIFO kills the leader while three
// Acquires wait in the queue of a held lock: they are granted in the
// order they joined, one at a time, with rising fences.
func TestClusterBlockedAcquiresKeepFIFO(t *testing.T) {
	tc := testcluster.Start(t, testcluster.Config{})
	tc.Leader(t)
	res := chaos.NewResource("fifo", 1)
	first := &Lock{Key: "fifo", Cluster: tc.Addrs(), LeaseTTL: 10}
	defer first.Close()
	if ok, err := first.Acquire(ctxT(t)); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	if err := res.Enter(0, fence(t, first.Token())); err != nil {
		t.Fatal(err)
	}
	const waiters = 3
	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
		errs  = make(chan error, waiters)
	)
	for i := 1; i <= waiters; i++ {
		l := &Lock{Key: "fifo", Cluster: tc.Addrs(), LeaseTTL: 10, AcquireTimeout: 30 * time.Second}
		defer l.Close()
		wg.Go(func() {
			ok, err := l.Acquire(ctxT(t))
			if !ok || err != nil {
				errs <- fmt.Errorf("waiter %d: Acquire = %v, %v", i, ok, err)
				return
			}
			f := fence(t, l.Token())
			if err := res.Enter(i, f); err != nil {
				errs <- err
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			time.Sleep(50 * time.Millisecond)
			_ = res.Exit(i, f)
			if err := l.Release(ctxT(t)); err != nil {
				errs <- fmt.Errorf("waiter %d: Release: %v", i, err)
			}
		})
		// Next one only once this one is in the queue.
		eventually(t, fmt.Sprintf("waiter %d queued", i), func() bool {
			return len(inspectLeader(t, tc, "fifo").Waiters) == i
		})
	}
	killed, _ := killLeader(t, tc)
	tc.Leader(t)
	f0 := fence(t, first.Token())
	_ = res.Exit(0, f0)
	if err := first.Release(ctxT(t)); err != nil {
		t.Fatalf("Release after the failover: %v", err)
	}
	wg.Wait()
	t.Logf("failover: the queue drained %v after the leader's kill", time.Since(killed).Round(time.Millisecond))
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if !slices.Equal(order, []int{1, 2, 3}) {
		t.Errorf("grant order %v, want [1 2 3]", order)
	}
	if v := res.Violations(); len(v) > 0 {
		t.Errorf("resource violations: %v", v)
	}
}

// TestClusterBurstThroughFailover runs several clients taking turns on
// one lock while the leader is killed: nobody ever sees two holders or a
// fence going back, and everyone carries on. DFLOCKD_FAILOVERS=N kills
// the leader N times (restarting the killed node after each), and logs
// each gap (default 1).
func TestClusterBurstThroughFailover(t *testing.T) {
	rounds := 1
	if v := os.Getenv("DFLOCKD_FAILOVERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("DFLOCKD_FAILOVERS=%q: want a positive number", v)
		}
		rounds = n
	}
	tc := testcluster.Start(t, testcluster.Config{})
	tc.Leader(t)
	res := chaos.NewResource("burst", 1)
	const clients = 4
	var (
		stop    atomic.Bool
		ops     atomic.Int64
		wg      sync.WaitGroup
		errs    = make(chan error, clients)
		killedN atomic.Int64 // unix nanos of the last kill
		gap     atomic.Int64 // first acquire after it - it
		phase   [clients]atomic.Value
	)
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()
	for i := range clients {
		wg.Go(func() {
			for !stop.Load() {
				l := &Lock{Key: "burst", Cluster: tc.Addrs(), LeaseTTL: 5, AcquireTimeout: 20 * time.Second}
				phase[i].Store("acquire")
				ok, err := l.Acquire(ctxT(t))
				if err != nil || !ok {
					l.Close()
					errs <- fmt.Errorf("client %d: Acquire = %v, %v", i, ok, err)
					return
				}
				now := time.Now().UnixNano()
				if k := killedN.Load(); k != 0 && now > k {
					gap.CompareAndSwap(0, now-k)
				}
				f := fence(t, l.Token())
				phase[i].Store(fmt.Sprintf("holds fence %d", f))
				if err := res.Enter(i, f); err != nil {
					t.Error(err)
				}
				_ = res.Write(i, f)
				time.Sleep(2 * time.Millisecond)
				_ = res.Exit(i, f)
				phase[i].Store("release")
				if err := l.Release(ctxT(t)); err != nil {
					errs <- fmt.Errorf("client %d: Release: %v", i, err)
					return
				}
				ops.Add(1)
			}
		})
	}
	eventually(t, "some operations", func() bool { return ops.Load() >= 20 })
	var gaps []time.Duration
	for r := range rounds {
		before := ops.Load()
		gap.Store(0)
		killed, idx := killLeader(t, tc)
		killedN.Store(killed.UnixNano())
		dl := time.Now().Add(10 * time.Second)
		for ops.Load() < before+20 || gap.Load() == 0 {
			if time.Now().After(dl) || stop.Load() {
				ki := inspectLeader(t, tc, "burst")
				for i := range phase {
					t.Logf("client %d: %v", i, phase[i].Load())
				}
				t.Fatalf("round %d: no progress after the failover: holders %+v, waiters %+v", r, ki.Holders, ki.Waiters)
			}
			time.Sleep(10 * time.Millisecond)
		}
		gaps = append(gaps, time.Duration(gap.Load()).Round(time.Millisecond))
		tc.Restart(idx)
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if v := res.Violations(); len(v) > 0 {
		t.Errorf("resource violations: %v", v)
	}
	t.Logf("%d lock/unlock cycles by %d clients; failover gaps (leader's kill to the next successful acquire): %v",
		ops.Load(), clients, gaps)
}

// TestClusterNoLeaderReachable: a cluster none of whose members answer
// fails at once with a *NoLeaderError naming every address tried.
func TestClusterNoLeaderReachable(t *testing.T) {
	var addrs []string
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		l.Close()
	}
	start := time.Now()
	l := &Lock{Key: "k", Cluster: addrs}
	defer l.Close()
	ok, err := l.Acquire(ctxT(t))
	took := time.Since(start)
	if ok || !errors.Is(err, ErrNoLeader) {
		t.Fatalf("Acquire = %v, %v; want ErrNoLeader", ok, err)
	}
	if errors.Is(err, ErrTimeout) || errors.Is(err, ErrAuth) {
		t.Fatalf("no-leader error %v also matches ErrTimeout or ErrAuth", err)
	}
	nl, isNL := errors.AsType[*NoLeaderError](err)
	if !isNL || len(nl.Tried) != 3 || nl.Reachable() != 0 {
		t.Fatalf("error %#v, want a NoLeaderError with 3 attempts, none reachable", err)
	}
	for _, a := range addrs {
		if !strings.Contains(err.Error(), a) {
			t.Errorf("error %q does not name %s", err, a)
		}
	}
	if !strings.Contains(err.Error(), "0 of 3 members reachable") {
		t.Errorf("error %q does not count the reachable members", err)
	}
	if took > 2*time.Second {
		t.Errorf("took %v to fail", took)
	}
	t.Logf("%v (after %v)", err, took.Round(time.Millisecond))
}

// TestClusterMajorityLost: with two of three nodes down the survivor
// answers but knows no leader; Dial retries within its timeout, then says
// so.
func TestClusterMajorityLost(t *testing.T) {
	tc := testcluster.Start(t, testcluster.Config{})
	tc.Leader(t)
	tc.Kill(0)
	tc.Kill(1)
	eventually(t, "the survivor knows no leader", func() bool {
		c, err := Dial(ctxT(t), tc.Nodes[2].Addr, Options{})
		if err != nil {
			return false
		}
		defer c.Close()
		st, err := c.ClusterStatus(ctxT(t))
		return err == nil && st.Leader == nil
	})
	start := time.Now()
	_, err := Dial(ctxT(t), "", Options{Cluster: tc.Addrs(), DialTimeout: time.Second})
	nl, ok := errors.AsType[*NoLeaderError](err)
	if !ok || nl.Reachable() != 1 {
		t.Fatalf("Dial = %v, want a NoLeaderError with 1 member reachable", err)
	}
	if !strings.Contains(err.Error(), "1 of 3 members reachable") || !strings.Contains(err.Error(), "no leader known") {
		t.Errorf("error %q", err)
	}
	if took := time.Since(start); took < 900*time.Millisecond || took > 3*time.Second {
		t.Errorf("gave up after %v, want about the 1s dial timeout", took)
	}
}

// TestClusterAuthFailure: a refused token is reported as such, at once,
// not as a missing leader and not retried.
func TestClusterAuthFailure(t *testing.T) {
	tc := testcluster.Start(t, testcluster.Config{Server: server.Options{Auth: auth.Token("right")}})
	tc.Leader(t)
	start := time.Now()
	l := &Lock{Key: "k", Cluster: tc.Addrs(), AuthToken: "wrong"}
	defer l.Close()
	ok, err := l.Acquire(ctxT(t))
	if ok || !errors.Is(err, ErrAuth) || errors.Is(err, ErrNoLeader) {
		t.Fatalf("Acquire = %v, %v; want ErrAuth", ok, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %v", took)
	}
	good := &Lock{Key: "k", Cluster: tc.Addrs(), AuthToken: "right"}
	defer good.Close()
	if ok, err := good.Acquire(ctxT(t)); !ok || err != nil {
		t.Fatalf("with the right token: Acquire = %v, %v", ok, err)
	}
	if err := good.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// TestClusterSignalsResubscribe: a SignalConn with WithReconnect on a
// cluster listens again on the new leader after a failover.
func TestClusterSignalsResubscribe(t *testing.T) {
	tc := testcluster.Start(t, testcluster.Config{})
	tc.Leader(t)
	s, err := NewSignalConn(ctxT(t), "", Options{Cluster: tc.Addrs()}, WithReconnect(0), WithHeartbeatInterval(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Listen(ctxT(t), "jobs.>"); err != nil {
		t.Fatal(err)
	}
	killLeader(t, tc)
	tc.Leader(t)
	eventually(t, "reconnected and listening", func() bool { return s.Reconnects() >= 1 })
	c := leaderConn(t, tc)
	n, err := c.Emit(ctxT(t), "jobs.1", "done")
	if err != nil || n != 1 {
		t.Fatalf("Emit = %d, %v; want 1 receiver", n, err)
	}
	select {
	case sig := <-s.Signals():
		if sig.Channel != "jobs.1" || sig.Payload != "done" {
			t.Fatalf("got %+v", sig)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no signal after the failover")
	}
}

func TestClusterOptionsValidation(t *testing.T) {
	if _, err := Dial(ctxT(t), "127.0.0.1:1", Options{Cluster: []string{"127.0.0.1:2"}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("addr with Cluster: %v", err)
	}
	if _, err := Dial(ctxT(t), "127.0.0.1:1,", Options{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty member: %v", err)
	}
	l := &Lock{Key: "k", Servers: []string{"a:1"}, Cluster: []string{"b:1"}}
	if _, err := l.Acquire(ctxT(t)); !errors.Is(err, ErrInvalid) {
		t.Errorf("Servers and Cluster: %v", err)
	}
}

func TestLeaderEndpoints(t *testing.T) {
	eps := []string{"quic://10.0.0.1:6388", "tls://10.0.0.1:6389", "tcp://10.0.0.1:6390", "nope://x:1"}
	for _, tt := range []struct {
		members []string
		opts    Options
		want    []string
	}{
		{[]string{"h:1"}, Options{}, []string{"tcp://10.0.0.1:6390", "quic://10.0.0.1:6388", "tls://10.0.0.1:6389"}},
		{[]string{"tls://h:1"}, Options{}, []string{"tls://10.0.0.1:6389", "quic://10.0.0.1:6388", "tcp://10.0.0.1:6390"}},
		{[]string{"h:1"}, Options{Transport: "quic"}, []string{"quic://10.0.0.1:6388", "tls://10.0.0.1:6389", "tcp://10.0.0.1:6390"}},
	} {
		got := leaderEndpoints(eps, tt.members, tt.opts)
		if len(got) == 0 || got[0] != tt.want[0] || len(got) != 3 {
			t.Errorf("leaderEndpoints(%v, %+v) = %v, want %v first", tt.members, tt.opts, got, tt.want[0])
		}
	}
}

// TestClusterSemaphoreThroughFailover: semaphore slots ride through a
// leader kill too, and the limit holds on the new leader.
func TestClusterSemaphoreThroughFailover(t *testing.T) {
	tc := testcluster.Start(t, testcluster.Config{})
	tc.Leader(t)
	var held []*Semaphore
	for range 2 {
		s := &Semaphore{Key: "pool", Limit: 2, Cluster: tc.Addrs(), LeaseTTL: 10}
		defer s.Close()
		if ok, err := s.Acquire(ctxT(t)); !ok || err != nil {
			t.Fatalf("Acquire = %v, %v", ok, err)
		}
		held = append(held, s)
	}
	killLeader(t, tc)
	tc.Leader(t)
	third := &Semaphore{Key: "pool", Limit: 2, Cluster: tc.Addrs(), AcquireTimeout: -1}
	defer third.Close()
	if ok, err := third.Acquire(ctxT(t)); ok || err != nil {
		t.Fatalf("a third slot after the failover: Acquire = %v, %v", ok, err)
	}
	for i, s := range held {
		if err := s.Release(ctxT(t)); err != nil {
			t.Fatalf("slot %d: Release after the failover: %v", i, err)
		}
	}
	if ok, err := third.Acquire(ctxT(t)); !ok || err != nil {
		t.Fatalf("after the releases: Acquire = %v, %v", ok, err)
	}
	_ = third.Release(ctxT(t))
}

// TestClusterOneMemberGiven: one follower's address is enough: the
// client connects to the leader it names, not through the follower.
func TestClusterOneMemberGiven(t *testing.T) {
	tc := testcluster.Start(t, testcluster.Config{})
	leader := tc.Leader(t)
	f := tc.Followers()[0]
	// The leader publishes its endpoints just after it starts serving.
	eventually(t, "the follower to know the leader's endpoints", func() bool {
		c, err := Dial(ctxT(t), f.Addr, Options{})
		if err != nil {
			return false
		}
		defer c.Close()
		st, err := c.ClusterStatus(ctxT(t))
		return err == nil && st.Leader != nil && st.Leader.ID == leader.ID && len(st.Leader.Endpoints) > 0
	})
	l := &Lock{Key: "one", Cluster: []string{f.Addr}}
	defer l.Close()
	if ok, err := l.Acquire(ctxT(t)); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	l.h.mu.Lock()
	got := l.h.conn.name
	l.h.mu.Unlock()
	if got != "tcp://"+leader.Addr {
		t.Errorf("connected to %s, want the leader tcp://%s", got, leader.Addr)
	}
	if err := l.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	s := &Lock{Key: "one", Servers: []string{f.Addr + ","}} // the same, as a Servers entry
	defer s.Close()
	if ok, err := s.Acquire(ctxT(t)); !ok || err != nil {
		t.Fatalf("Servers entry: Acquire = %v, %v", ok, err)
	}
	s.h.mu.Lock()
	got = s.h.conn.name
	s.h.mu.Unlock()
	if got != "tcp://"+leader.Addr {
		t.Errorf("Servers entry: connected to %s, want the leader tcp://%s", got, leader.Addr)
	}
	_ = s.Release(ctxT(t))
}
