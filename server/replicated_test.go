package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/cluster"
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/testutil"
)

// replNode is one node of an in-process replicated cluster: a Replica and
// the server in front of it.
type replNode struct {
	cfg  cluster.ReplicaConfig
	rep  *cluster.Replica
	srv  *Server
	addr string
	done chan error
	stop context.CancelFunc
}

func (n *replNode) start(t testing.TB) {
	n.startWith(t, Options{})
}

func (n *replNode) startWith(t testing.TB, opts Options) {
	t.Helper()
	var srv *Server
	n.cfg.OnLeadership = func(leading bool) {
		if !leading && srv != nil {
			srv.DropConnections()
		}
	}
	rep, err := cluster.StartReplica(n.cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := core.New(core.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = e.Run(ctx) }()
	opts.Engine, opts.Replica = e, rep
	srv = New(opts)
	n.rep, n.srv, n.addr = rep, srv, l.Addr().String()
	n.done = make(chan error, 2)
	go func() { n.done <- srv.Serve(l) }()
	go func() { n.done <- srv.ServeRelays(rep.Node().Stream()) }()
	n.stop = func() { cancel(); <-runDone }
}

func (n *replNode) close() {
	if n.srv == nil {
		return
	}
	n.srv.Close()
	<-n.done
	_ = n.rep.Close()
	<-n.done
	n.stop()
	n.srv, n.rep = nil, nil
}

// newReplCluster starts a 3-node replicated cluster, each node with a
// server on loopback.
func newReplCluster(t testing.TB) []*replNode {
	t.Helper()
	return newReplClusterWith(t, Options{})
}

func newReplClusterWith(t testing.TB, opts Options) []*replNode {
	t.Helper()
	var peers []cluster.Peer
	for i := range 3 {
		peers = append(peers, cluster.Peer{ID: fmt.Sprintf("n%d", i+1), Addr: testutil.FreeAddr(t)})
	}
	nodes := make([]*replNode, 3)
	for i := range nodes {
		nodes[i] = &replNode{cfg: cluster.ReplicaConfig{Grace: 500 * time.Millisecond, Node: cluster.NodeConfig{
			ID: peers[i].ID, RaftAddr: peers[i].Addr, DataDir: t.TempDir(), Peers: peers,
			Timeouts: cluster.Timeouts{Heartbeat: 300 * time.Millisecond, Election: 300 * time.Millisecond,
				LeaderLease: 150 * time.Millisecond}}}}
		nodes[i].startWith(t, opts)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.close()
		}
	})
	return nodes
}

func replLeader(t testing.TB, nodes []*replNode) *replNode {
	t.Helper()
	var got *replNode
	eventually(t, "a serving leader", func() bool {
		for _, n := range nodes {
			if n.rep != nil && n.rep.Leading() {
				got = n
				return true
			}
		}
		return false
	})
	return got
}

// replFollower returns a node other than leader.
func replFollower(nodes []*replNode, leader *replNode) *replNode {
	for _, n := range nodes {
		if n != leader {
			return n
		}
	}
	return nil
}

// The 1.x protocol against the leader of a replicated cluster: locks,
// hand-off, renew, two-phase, and a follower that refuses and closes.
func TestReplicatedProtocol(t *testing.T) {
	nodes := newReplCluster(t)
	leader := replLeader(t, nodes)
	a, b := testutil.Dial(t, leader.addr), testutil.Dial(t, leader.addr)
	tok := expectGrant(t, a.Do("l", "k", "0 30"), "ok", "30")
	b.Expect("l", "k", "0", "timeout")
	chB := bg(b)
	b.Req("l", "k", "10")
	eventually(t, "b queued", func() bool {
		ki, _ := leader.rep.State().Inspect(core.KindLock, "k")
		return len(ki.Queue) == 1
	})
	a.Expect("n", "k", tok+" 30", "ok 30")
	a.Expect("r", "k", tok, "ok")
	tb := expectGrant(t, recv(t, chB), "ok", "33")
	if tb <= tok {
		t.Fatalf("fence went back: %s then %s", tok, tb)
	}
	a.Expect("r", "k", tok, "error")
	b.Expect("r", "k", tb, "ok")
	expectGrant(t, a.Do("e", "q", ""), "acquired", "33")
	b.Expect("e", "q", "", "queued")
	b.Expect("w", "q", "0", "timeout")
	b.Expect("w", "q", "0", "error_not_enqueued")
	// A follower relays its clients to the leader.
	for _, n := range nodes {
		if n == leader {
			continue
		}
		c := testutil.Dial(t, n.addr)
		tf := expectGrant(t, c.Do("l", "f-"+n.cfg.Node.ID, "0"), "ok", "33")
		ki, _ := leader.rep.State().Inspect(core.KindLock, "f-"+n.cfg.Node.ID)
		if len(ki.Holders) != 1 || ki.Holders[0].Token.String() != tf {
			t.Fatalf("the leader does not see the relayed lock: %+v", ki)
		}
		c.Expect("r", "f-"+n.cfg.Node.ID, tf, "ok")
	}
}

// A client of a follower whose leader dies reconnects (to any node) and
// resumes its session.
func TestReplicatedRelayedSessionSurvivesLeaderDeath(t *testing.T) {
	nodes := newReplCluster(t)
	leader := replLeader(t, nodes)
	follower := replFollower(nodes, leader)
	a := testutil.Dial(t, follower.addr)
	sid, secret := nameSession(t, a, "", "15")
	tok := expectGrant(t, a.Do("l", "k", "0 30"), "ok", "30")
	leader.close()
	a.ExpectClosed() // the relay broke with the leader
	next := replLeader(t, nodes)
	var again *replNode
	for _, n := range nodes {
		if n.rep != nil && n != next {
			again = n // the other survivor: a follower again
		}
	}
	a2 := testutil.Dial(t, again.addr)
	a2.Expect("resume", sid, secret, "ok 1 0")
	a2.Expect("r", "k", tok, "ok")
}

// A named session survives the leader's death: its client resumes on the
// new leader and finds its lock, same token, still renewable; nobody else
// got it meanwhile.
func TestReplicatedSessionSurvivesLeaderDeath(t *testing.T) {
	nodes := newReplCluster(t)
	leader := replLeader(t, nodes)
	a := testutil.Dial(t, leader.addr)
	sid, secret := nameSession(t, a, "", "15")
	tok := expectGrant(t, a.Do("l", "k", "0 30"), "ok", "30")
	leader.close()
	a.ExpectClosed()
	next := replLeader(t, nodes)
	a2 := testutil.Dial(t, next.addr)
	a2.Expect("resume", sid, secret, "ok 1 0")
	a2.Expect("n", "k", tok+" 30", "ok 30")
	c := testutil.Dial(t, next.addr)
	c.Expect("l", "k", "0", "timeout")
	a2.Expect("r", "k", tok, "ok")
	expectGrant(t, c.Do("l", "k", "0"), "ok", "33")
}

// The cluster request: every node tells the leader; membership changes
// need an authenticated connection and the leader.
func TestReplicatedClusterRequest(t *testing.T) {
	nodes := newReplCluster(t)
	leader := replLeader(t, nodes)
	var lid string
	for _, n := range nodes {
		c := testutil.Dial(t, n.addr)
		var st cluster.NodeStatus
		eventually(t, "the leader known", func() bool {
			line := c.Do("cluster", "_", "")
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "ok ")), &st); err != nil {
				t.Fatalf("cluster = %q: %v", line, err)
			}
			return st.Leader != nil
		})
		if len(st.Members) != 3 || (n == leader) != (st.Role == "leader") {
			t.Fatalf("node %s: %+v", st.Node, st)
		}
		if lid == "" {
			lid = st.Leader.ID
		} else if st.Leader.ID != lid {
			t.Fatalf("nodes disagree on the leader: %s, %s", lid, st.Leader.ID)
		}
	}
	c := testutil.Dial(t, leader.addr)
	c.Expect("cluster", "_", "transfer", "error") // not authenticated
	c.Expect("cluster", "_", "frobnicate", "error")
}

// Membership changes through the leader by an authenticated client.
func TestReplicatedClusterChanges(t *testing.T) {
	nodes := newReplClusterWith(t, Options{Auth: namedTokens{}})
	leader := replLeader(t, nodes)
	// Through a follower: authenticated there, the relay carries the
	// token to the leader, which checks it again.
	f := testutil.Dial(t, replFollower(nodes, leader).addr)
	f.Expect("auth", "_", "alice", "ok")
	tok := expectGrant(t, f.Do("l", "k", "0"), "ok", "33")
	ki, _ := leader.rep.State().Inspect(core.KindLock, "k")
	if len(ki.Holders) != 1 || ki.Holders[0].Token.String() != tok {
		t.Fatalf("the leader does not hold the relayed lock: %+v", ki)
	}
	c := testutil.Dial(t, leader.addr)
	c.Expect("auth", "_", "ops", "ok")
	c.Expect("cluster", "_", "remove n9", "error") // not a member
	c.Expect("cluster", "_", "transfer", "ok")
	eventually(t, "another leader", func() bool {
		for _, n := range nodes {
			if n != leader && n.rep.Leading() {
				return true
			}
		}
		return false
	})
}

// Readiness, metrics and stats of a replicated node.
func TestReplicatedObservability(t *testing.T) {
	nodes := newReplCluster(t)
	leader := replLeader(t, nodes)
	for _, n := range nodes {
		eventually(t, "ready", func() bool { return n.srv.Ready() == nil })
	}
	c := testutil.Dial(t, leader.addr)
	expectGrant(t, c.Do("l", "k", "0"), "ok", "33")
	reg := metricsRegistry(t, leader.srv)
	if v := metricValue(t, reg, "dflockd_raft_state", "state", "leader"); v != 1 {
		t.Fatalf("raft_state{leader} = %v", v)
	}
	if v := metricValue(t, reg, "dflockd_raft_apply_duration_seconds"); v < 1 {
		t.Fatalf("raft_apply_duration_seconds count = %v", v)
	}
	if v := metricValue(t, reg, "dflockd_raft_index", "kind", "applied"); v < 1 {
		t.Fatalf("raft_index{applied} = %v", v)
	}
	sb, raw := wireStats(t, c) // stats is served by the leader here
	if len(sb.Locks) != 1 || sb.Locks[0].Key != "k" || sb.Locks[0].LeaseExpiresInS <= 0 || sb.Locks[0].LeaseExpiresInS > 33 {
		t.Fatalf("stats locks from the replicated state = %+v", sb.Locks)
	}
	var st cluster.NodeStatus
	if err := json.Unmarshal(raw["cluster"], &st); err != nil || st.Role != "leader" {
		t.Fatalf("stats cluster = %s (%v)", raw["cluster"], err)
	}
	line := c.Do("inspect", "k", "")
	var ib inspectBody
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "ok ")), &ib); err != nil || !ib.Exists ||
		len(ib.Holders) != 1 || ib.Holders[0].Session == "" || ib.Holders[0].LeaseLeftS <= 0 {
		t.Fatalf("inspect from the replicated state = %q (%v)", line, err)
	}
	c.Conn.Close()
	// No session may be proposing when raft goes down under it (a
	// proposal caught in raft's shutdown is never answered).
	eventually(t, "the connection gone", func() bool { return leader.srv.Connections() == 0 })
	leader.rep.Node().Raft().Shutdown()
	eventually(t, "not ready once raft is down", func() bool { return leader.srv.Ready() != nil })
}

// stats and the metrics count the named sessions of the replicated state
// as the leader sees them, whichever node the client asks.
func TestReplicatedSessionCounts(t *testing.T) {
	nodes := newReplCluster(t)
	leader := replLeader(t, nodes)
	follower := replFollower(nodes, leader)
	a := testutil.Dial(t, leader.addr)
	f := a.Fields("session", "_", "30")
	b := testutil.Dial(t, leader.addr)
	b.Fields("session", "_", "30")
	testutil.Dial(t, leader.addr).Token("l", "k", "0", "ok") // unnamed: not counted
	counts := func(c *testutil.LineClient) (int, int) {
		_, raw := wireStats(t, c)
		var at, de int
		if json.Unmarshal(raw["sessions"], &at) != nil || json.Unmarshal(raw["detached_sessions"], &de) != nil {
			t.Fatalf("stats sessions: %s, %s", raw["sessions"], raw["detached_sessions"])
		}
		return at, de
	}
	probe := testutil.Dial(t, follower.addr) // relayed to the leader
	if at, de := counts(probe); at != 2 || de != 0 {
		t.Fatalf("stats sessions %d detached %d, want 2 and 0", at, de)
	}
	a.Conn.Close()
	eventually(t, "one detached", func() bool { at, de := counts(probe); return at == 1 && de == 1 })
	c := testutil.Dial(t, leader.addr)
	if got := c.Do("resume", f[1], f[2]); got != "ok 0 0" {
		t.Fatalf("resume = %q", got)
	}
	if at, de := counts(probe); at != 2 || de != 0 {
		t.Fatalf("after resume: sessions %d detached %d, want 2 and 0", at, de)
	}
	reg := metricsRegistry(t, leader.srv)
	if v := metricValue(t, reg, "dflockd_sessions", "state", "attached"); v != 2 {
		t.Fatalf("dflockd_sessions{attached} = %v", v)
	}
	if v := metricValue(t, reg, "dflockd_sessions_resumed_total"); v != 1 {
		t.Fatalf("dflockd_sessions_resumed_total = %v", v)
	}
}
