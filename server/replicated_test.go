package server

import (
	"context"
	"fmt"
	"net"
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

func freeLoopback(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (n *replNode) start(t testing.TB) {
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
	srv = New(Options{Engine: e, Replica: rep})
	n.rep, n.srv, n.addr = rep, srv, l.Addr().String()
	n.done = make(chan error, 1)
	go func() { n.done <- srv.Serve(l) }()
	n.stop = func() { cancel(); <-runDone }
}

func (n *replNode) close() {
	if n.srv == nil {
		return
	}
	n.srv.Close()
	<-n.done
	_ = n.rep.Close()
	n.stop()
	n.srv, n.rep = nil, nil
}

// newReplCluster starts a 3-node replicated cluster, each node with a
// server on loopback.
func newReplCluster(t testing.TB) []*replNode {
	t.Helper()
	var peers []cluster.Peer
	for i := range 3 {
		peers = append(peers, cluster.Peer{ID: fmt.Sprintf("n%d", i+1), Addr: freeLoopback(t)})
	}
	nodes := make([]*replNode, 3)
	for i := range nodes {
		nodes[i] = &replNode{cfg: cluster.ReplicaConfig{Grace: 500 * time.Millisecond, Node: cluster.NodeConfig{
			ID: peers[i].ID, RaftAddr: peers[i].Addr, DataDir: t.TempDir(), Peers: peers,
			Timeouts: cluster.Timeouts{Heartbeat: 300 * time.Millisecond, Election: 300 * time.Millisecond,
				LeaderLease: 150 * time.Millisecond}}}}
		nodes[i].start(t)
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
	for _, n := range nodes {
		if n == leader {
			continue
		}
		c := testutil.Dial(t, n.addr)
		c.Expect("l", "k", "0", "error")
		c.ExpectClosed()
	}
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
