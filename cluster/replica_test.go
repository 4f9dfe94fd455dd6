package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/dflockd/dflockd/core"
)

// testReplicas is an in-process cluster of Replicas on loopback.
type testReplicas struct {
	t     testing.TB
	cfgs  []ReplicaConfig
	nodes []*Replica
}

// newTestReplicas starts size replicas; each opt may change node i's
// configuration before it starts.
func newTestReplicas(t testing.TB, size int, grace time.Duration, opts ...func(i int, cfg *ReplicaConfig)) *testReplicas {
	t.Helper()
	addrs := freeAddrs(t, size)
	var peers []Peer
	for i, a := range addrs {
		peers = append(peers, Peer{ID: fmt.Sprintf("n%d", i+1), Addr: a})
	}
	tr := &testReplicas{t: t}
	for i := range size {
		tr.cfgs = append(tr.cfgs, ReplicaConfig{Grace: grace, Node: NodeConfig{ID: peers[i].ID, RaftAddr: addrs[i],
			DataDir: t.TempDir(), Peers: peers, Timeouts: fastTimeouts, SegmentSize: 64 << 10}})
		for _, o := range opts {
			o(i, &tr.cfgs[i])
		}
		tr.nodes = append(tr.nodes, nil)
		tr.start(i)
	}
	t.Cleanup(func() {
		for i := range tr.nodes {
			tr.stop(i)
		}
	})
	return tr
}

func (tr *testReplicas) start(i int) {
	tr.t.Helper()
	r, err := StartReplica(tr.cfgs[i])
	if err != nil {
		tr.t.Fatal(err)
	}
	tr.nodes[i] = r
}

func (tr *testReplicas) stop(i int) {
	if tr.nodes[i] != nil {
		_ = tr.nodes[i].Close()
		tr.nodes[i] = nil
	}
}

// leader waits for a node that serves as leader.
func (tr *testReplicas) leader() (*Replica, int) {
	tr.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for i, r := range tr.nodes {
			if r != nil && r.Leading() {
				return r, i
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	tr.t.Fatal("no serving leader")
	return nil, -1
}

// do proposes c on the current leader, retrying while leadership moves
// (only commands whose repetition is harmless are retried by tests).
func (tr *testReplicas) do(c Command) Result {
	tr.t.Helper()
	for try := 0; ; try++ {
		r, _ := tr.leader()
		res, err := r.Propose(context.Background(), c)
		if err == nil {
			return res
		}
		if try == 20 || !errors.Is(err, ErrNotLeader) {
			tr.t.Fatalf("propose %T: %v", c, err)
		}
	}
}

// eventually polls cond for up to 20 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func holds(r *Replica, key string, tok core.Token) bool {
	_, ok := r.State().Holder(core.KindLock, key, tok)
	return ok
}

// Renewals with the lease's own length write nothing to the log; one that
// changes it writes one entry.
func TestRenewWritesNothingToTheLog(t *testing.T) {
	tr := newTestReplicas(t, 3, 0)
	tr.do(&OpenSession{ID: SessionID{1}, Secret: Secret{1}})
	g := tr.do(&Acquire{Session: SessionID{1}, Kind: core.KindLock, Key: "k", TTL: 30 * time.Second, Mode: Try, Place: 1})
	if g.Status != Granted {
		t.Fatalf("acquire = %v", g.Status)
	}
	leader, _ := tr.leader()
	before := leader.Node().Raft().LastIndex()
	for range 1000 {
		if _, err := leader.Renew(context.Background(), core.KindLock, "k", g.Token, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if after := leader.Node().Raft().LastIndex(); after != before {
		t.Fatalf("1000 renews moved the last log index from %d to %d", before, after)
	}
	if _, err := leader.Renew(context.Background(), core.KindLock, "k", g.Token, time.Hour); err != nil {
		t.Fatal(err)
	}
	if after := leader.Node().Raft().LastIndex(); after != before+1 {
		t.Fatalf("a renew to a new length moved the last index by %d; want 1", after-before)
	}
	if _, err := leader.Renew(context.Background(), core.KindLock, "k", core.Token{}, 0); !errors.Is(err, core.ErrNotHolder) {
		t.Fatalf("renew of a stranger = %v", err)
	}
}

// A lease that is not renewed is evicted by the leader through the log on
// every replica, and the next waiter is granted and woken.
func TestLeaseExpiryEvictsAndHandsOn(t *testing.T) {
	tr := newTestReplicas(t, 3, 0)
	tr.do(&OpenSession{ID: SessionID{1}, Secret: Secret{1}})
	tr.do(&OpenSession{ID: SessionID{2}, Secret: Secret{2}})
	a := tr.do(&Acquire{Session: SessionID{1}, Kind: core.KindLock, Key: "k", TTL: time.Second, Mode: Try, Place: 1})
	leader, _ := tr.leader()
	place, ch := leader.NewPlace()
	q, err := leader.Propose(context.Background(), &Acquire{Session: SessionID{2}, Kind: core.KindLock, Key: "k",
		TTL: 30 * time.Second, Mode: Queue, Place: place})
	if err != nil || q.Status != Queued {
		t.Fatalf("queue = %v, %v", q.Status, err)
	}
	if _, err := leader.Renew(context.Background(), core.KindLock, "k", a.Token, time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var g Grant
	select {
	case got, ok := <-ch:
		if !ok {
			t.Fatal("leadership lost")
		}
		g = got
	case <-time.After(20 * time.Second):
		t.Fatal("the waiter was never granted")
	}
	if waited := time.Since(start); waited < 500*time.Millisecond {
		t.Fatalf("granted after %v: the 1 s lease was cut short", waited)
	}
	if g.Fence <= a.Fence {
		t.Fatalf("fence went from %d to %d", a.Fence, g.Fence)
	}
	for _, r := range tr.nodes {
		eventually(t, "the eviction everywhere", func() bool { return !holds(r, "k", a.Token) && holds(r, "k", g.Token) })
	}
	if _, err := leader.Renew(context.Background(), core.KindLock, "k", a.Token, 0); err == nil {
		t.Fatal("an evicted lease was renewed")
	}
}

// The leader dies: the new one keeps every lease for at least its length
// (it re-arms them at full length plus grace), the holder keeps its token,
// and fences keep rising.
func TestFailoverKeepsLeasesAsLowerBounds(t *testing.T) {
	tr := newTestReplicas(t, 3, 500*time.Millisecond)
	tr.do(&OpenSession{ID: SessionID{1}, Secret: Secret{1}, Named: true, TTL: time.Hour})
	a := tr.do(&Acquire{Session: SessionID{1}, Kind: core.KindLock, Key: "k", TTL: 3 * time.Second, Mode: Try, Place: 1})
	granted := time.Now()
	old, i := tr.leader()
	_ = old
	tr.stop(i)
	next, _ := tr.leader()
	if !holds(next, "k", a.Token) {
		t.Fatal("the new leader lost the lock")
	}
	// Still held until at least the lease's length after the grant.
	for time.Since(granted) < 3*time.Second {
		if !holds(next, "k", a.Token) {
			t.Fatalf("the lease was cut short by the failover: gone %v after the grant", time.Since(granted))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Renewable on the new leader while it lives.
	eventually(t, "the lease evicted after its length plus grace", func() bool { return !holds(next, "k", a.Token) })
	tr.do(&OpenSession{ID: SessionID{2}, Secret: Secret{2}})
	b := tr.do(&Acquire{Session: SessionID{2}, Kind: core.KindLock, Key: "k", Mode: Try, Place: 2})
	if b.Status != Granted || b.Fence <= a.Fence {
		t.Fatalf("after failover: %v fence %d; want granted with a fence above %d", b.Status, b.Fence, a.Fence)
	}
	tr.start(i)
	eventually(t, "the restarted node catches up", func() bool { return holds(tr.nodes[i], "k", b.Token) })
}

// A renewed lease survives a failover as renewed: the new leader re-arms
// it at its (retimed) length.
func TestFailoverKeepsARetimedLease(t *testing.T) {
	tr := newTestReplicas(t, 3, 500*time.Millisecond)
	tr.do(&OpenSession{ID: SessionID{1}, Secret: Secret{1}, Named: true, TTL: time.Hour})
	a := tr.do(&Acquire{Session: SessionID{1}, Kind: core.KindLock, Key: "k", TTL: time.Second, Mode: Try, Place: 1})
	leader, i := tr.leader()
	if _, err := leader.Renew(context.Background(), core.KindLock, "k", a.Token, time.Hour); err != nil {
		t.Fatal(err)
	}
	tr.stop(i)
	next, _ := tr.leader()
	time.Sleep(2*time.Second + 500*time.Millisecond) // past the first length plus grace
	if !holds(next, "k", a.Token) {
		t.Fatal("the new leader re-armed the lease at its first length, not the renewed one")
	}
	if _, err := next.Renew(context.Background(), core.KindLock, "k", a.Token, time.Hour); err != nil {
		t.Fatalf("renew on the new leader: %v", err)
	}
}

// A detached session whose TTL runs out is closed by the leader; its
// holds go to the next in line.
func TestDetachedSessionExpires(t *testing.T) {
	tr := newTestReplicas(t, 3, 0)
	tr.do(&OpenSession{ID: SessionID{1}, Secret: Secret{1}, Named: true, TTL: time.Second})
	a := tr.do(&Acquire{Session: SessionID{1}, Kind: core.KindLock, Key: "k", TTL: time.Hour, Mode: Try, Place: 1})
	leader, _ := tr.leader()
	leader.Detach(SessionID{1}, time.Second)
	eventually(t, "the session closed", func() bool {
		_, ok := leader.State().Session(SessionID{1})
		return !ok && !holds(leader, "k", a.Token)
	})
}

func TestFollowerRefusesToPropose(t *testing.T) {
	tr := newTestReplicas(t, 3, 0)
	_, li := tr.leader()
	for i, r := range tr.nodes {
		if i == li {
			continue
		}
		if _, err := r.Propose(context.Background(), &OpenSession{ID: SessionID{9}, Secret: Secret{9}}); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("follower %d proposed: %v", i, err)
		}
		if r.Node().Raft().State() == raft.Leader {
			t.Fatal("two leaders")
		}
	}
}

// A leader whose configured policy differs from the replicated one
// proposes its own.
func TestLeaderProposesItsPolicy(t *testing.T) {
	tr := newTestReplicas(t, 1, 0)
	tr.stop(0)
	tr.cfgs[0].Policy = Policy{MaxKeys: 2, DefaultTTL: 7 * time.Second}
	tr.start(0)
	leader, _ := tr.leader()
	eventually(t, "the policy replicated", func() bool { return leader.State().Policy() == tr.cfgs[0].Policy })
	tr.do(&OpenSession{ID: SessionID{1}, Secret: Secret{1}})
	for i, want := range []Status{Granted, Granted, MaxKeys} {
		if r := tr.do(&Acquire{Session: SessionID{1}, Kind: core.KindLock, Key: fmt.Sprint("k", i), Mode: Try, Place: uint64(i + 1)}); r.Status != want {
			t.Fatalf("acquire %d = %v; want %v", i, r.Status, want)
		}
	}
}

// A node started to join (no bootstrap) is added by the leader, receives
// the state, and can lead after the others are gone... at least it
// follows and applies.
func TestJoinAndRemove(t *testing.T) {
	tr := newTestReplicas(t, 3, 0)
	tr.do(&OpenSession{ID: SessionID{1}, Secret: Secret{1}, Named: true, TTL: time.Hour})
	g := tr.do(&Acquire{Session: SessionID{1}, Kind: core.KindLock, Key: "k", TTL: time.Hour, Mode: Try, Place: 1})
	addr := freeAddrs(t, 1)[0]
	tr.cfgs = append(tr.cfgs, ReplicaConfig{Node: NodeConfig{ID: "n4", RaftAddr: addr, DataDir: t.TempDir(),
		Join: true, Timeouts: fastTimeouts, SegmentSize: 64 << 10}})
	tr.nodes = append(tr.nodes, nil)
	tr.start(3)
	if tr.nodes[3].Leading() {
		t.Fatal("a joining node made itself leader")
	}
	leader, _ := tr.leader()
	if err := leader.AddMember("n4", addr, true); err != nil {
		t.Fatal(err)
	}
	eventually(t, "n4 has the lock", func() bool { return holds(tr.nodes[3], "k", g.Token) })
	if err := leader.RemoveMember("n9"); err == nil {
		t.Fatal("removed a non-member")
	}
	if err := leader.RemoveMember("n4"); err != nil {
		t.Fatal(err)
	}
	if n := len(leader.Status().Members); n != 3 {
		t.Fatalf("%d members after the removal", n)
	}
}

// A removed node that comes back with its old data (it still believes it
// is a voter) cannot disturb the cluster: no election is forced on the
// members and writes go on.
func TestRemovedNodeCannotDisturb(t *testing.T) {
	tr := newTestReplicas(t, 3, 0)
	leader, li := tr.leader()
	victim := (li + 1) % 3
	if err := leader.RemoveMember(tr.cfgs[victim].Node.ID); err != nil {
		t.Fatal(err)
	}
	tr.stop(victim)
	term := leader.Node().Raft().CurrentTerm()
	tr.start(victim) // same data dir: its configuration still lists it
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		tr.do(&OpenSession{ID: SessionID{byte(i + 1), 1}, Secret: Secret{1}})
		time.Sleep(50 * time.Millisecond)
	}
	if got := leader.Node().Raft().CurrentTerm(); got != term || !leader.Leading() {
		t.Fatalf("the removed node disturbed the cluster: term %d -> %d, leader still serving: %v", term, got, leader.Leading())
	}
}
