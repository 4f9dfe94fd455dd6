// Package testcluster runs an in-process replicated dflockd cluster on
// loopback for tests above the server (linearizability, chaos, the
// client): every node is a cluster.Replica with a server in front of it,
// and every raft link and relay between two nodes runs through a
// faultproxy of its own, so a test can partition the cluster, kill a node
// (it is cut off first, so nothing it does while stopping reaches the
// others, as with kill -9) and restart it on the same data directory and
// the same client address.
package testcluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dflockd/dflockd/cluster"
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/faultproxy"
	"github.com/dflockd/dflockd/internal/testutil"
	"github.com/dflockd/dflockd/server"
)

// Config tunes Start. The zero value is a 3-node cluster with short
// timeouts.
type Config struct {
	// Nodes is the cluster size (0 = 3).
	Nodes int
	// Server is each node's server configuration (Engine and Replica are
	// set by Start).
	Server server.Options
	// Timeouts are raft's (zero = 300 ms heartbeat and election, 150 ms
	// leader lease: elections within about a second on loopback).
	Timeouts cluster.Timeouts
	// Grace is added to leases and sessions a new leader re-arms (0 =
	// 500 ms).
	Grace time.Duration
	// Policy is every node's replicated policy.
	Policy cluster.Policy
	// InMemory keeps raft's log in memory (nothing survives Restart);
	// the default is a data directory per node, fsync on.
	InMemory bool
}

// Cluster is a running test cluster.
type Cluster struct {
	t     testing.TB
	cfg   Config
	peers []cluster.Peer
	// links[i][j] carries node i's connections to node j.
	links [][]*faultproxy.Proxy
	Nodes []*Node
}

// Node is one member: a replica and the server in front of it.
type Node struct {
	// ID is the node's id ("n1", "n2", ...).
	ID string
	// Addr is the node's client address (host:port, plain TCP); it stays
	// the same across Kill and Restart.
	Addr string
	// Index is the node's position in Cluster.Nodes.
	Index int

	c       *Cluster
	dataDir string
	raftLn  string       // the real raft listen address
	ln      net.Listener // the client listener bound by Start, until the first start
	raftL   net.Listener // the raft listener bound by Start, until the first start

	mu   sync.Mutex
	rep  *cluster.Replica
	srv  *server.Server
	done chan error
	stop func()
}

// Start starts the cluster and stops it when the test ends.
func Start(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Timeouts == (cluster.Timeouts{}) {
		cfg.Timeouts = cluster.Timeouts{Heartbeat: 300 * time.Millisecond,
			Election: 300 * time.Millisecond, LeaderLease: 150 * time.Millisecond}
	}
	if cfg.Grace == 0 {
		cfg.Grace = 500 * time.Millisecond
	}
	c := &Cluster{t: t, cfg: cfg}
	t.Cleanup(c.close)
	for i := range cfg.Nodes {
		id := fmt.Sprintf("n%d", i+1)
		// Both listeners are bound now and kept until the node first
		// starts, so no other socket can take a port in between; their
		// ports lie below the ephemeral range (testutil.FreeAddr), so
		// that a restart can bind them again.
		raftLn, err := net.Listen("tcp", testutil.FreeAddr(t))
		if err != nil {
			t.Fatalf("testcluster: raft listener: %v", err)
		}
		ln, err := net.Listen("tcp", testutil.FreeAddr(t))
		if err != nil {
			raftLn.Close()
			t.Fatalf("testcluster: client listener: %v", err)
		}
		c.peers = append(c.peers, cluster.Peer{ID: id, Addr: raftLn.Addr().String()})
		n := &Node{ID: id, Index: i, c: c, raftLn: c.peers[i].Addr, Addr: ln.Addr().String(), ln: ln, raftL: raftLn}
		if !cfg.InMemory {
			n.dataDir = t.TempDir()
		}
		c.Nodes = append(c.Nodes, n)
	}
	c.links = make([][]*faultproxy.Proxy, cfg.Nodes)
	for i := range c.links {
		c.links[i] = make([]*faultproxy.Proxy, cfg.Nodes)
		for j := range c.links[i] {
			if i == j {
				continue
			}
			p, err := faultproxy.Listen(context.Background(), c.peers[j].Addr)
			if err != nil {
				t.Fatalf("testcluster: link proxy: %v", err)
			}
			c.links[i][j] = p
		}
	}
	for _, n := range c.Nodes {
		if err := n.start(); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// dialer returns node i's dial hook: a connection to node j's raft
// address goes through links[i][j].
func (c *Cluster) dialer(i int) func(ctx context.Context, address string) (net.Conn, error) {
	return func(ctx context.Context, address string) (net.Conn, error) {
		target := address
		for j, p := range c.peers {
			if p.Addr == address && j != i {
				target = c.links[i][j].Addr()
			}
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", target)
	}
}

func (n *Node) start() error {
	c := n.c
	var srvp struct {
		sync.Mutex
		s *server.Server
	}
	cfg := cluster.ReplicaConfig{
		Grace:     c.cfg.Grace,
		Policy:    c.cfg.Policy,
		Endpoints: []string{"tcp://" + n.Addr},
		OnLeadership: func(leading bool) {
			srvp.Lock()
			s := srvp.s
			srvp.Unlock()
			if !leading && s != nil {
				s.DropConnections()
			}
		},
		Node: cluster.NodeConfig{
			ID: n.ID, RaftAddr: n.raftLn, DataDir: n.dataDir, Peers: c.peers,
			Timeouts: c.cfg.Timeouts, Dial: c.dialer(n.Index), Listener: n.raftL,
		},
	}
	rep, err := startReplica(cfg)
	n.raftL = nil // the node's now, or closed
	if err != nil {
		return fmt.Errorf("testcluster: start %s: %w", n.ID, err)
	}
	l, err := n.ln, error(nil)
	n.ln = nil
	if l == nil {
		l, err = listenRetry(n.Addr)
	}
	if err != nil {
		_ = rep.Close()
		return fmt.Errorf("testcluster: %s client listener: %w", n.ID, err)
	}
	e := core.New(core.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = e.Run(ctx) }()
	opts := c.cfg.Server
	opts.Engine, opts.Replica = e, rep
	srv := server.New(opts)
	srvp.Lock()
	srvp.s = srv
	srvp.Unlock()
	done := make(chan error, 2)
	go func() { done <- srv.Serve(l) }()
	go func() { done <- srv.ServeRelays(rep.Node().Stream()) }()
	n.mu.Lock()
	n.rep, n.srv, n.done = rep, srv, done
	n.stop = func() { cancel(); <-runDone }
	n.mu.Unlock()
	return nil
}

// startReplica starts a replica, retrying a little while its raft port is
// still held by a node that was just stopped.
func startReplica(cfg cluster.ReplicaConfig) (*cluster.Replica, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		rep, err := cluster.StartReplica(cfg)
		if err == nil || time.Now().After(deadline) || cfg.Node.Listener != nil {
			return rep, err
		}
		var oe *net.OpError
		if !errors.As(err, &oe) {
			return nil, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// listenRetry listens on addr, retrying while the port is still busy.
func listenRetry(addr string) (net.Listener, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			return l, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Replica returns the node's replica (nil while it is down).
func (n *Node) Replica() *cluster.Replica {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rep
}

// Server returns the node's server (nil while it is down).
func (n *Node) Server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// Up reports whether the node is running.
func (n *Node) Up() bool { return n.Replica() != nil }

// Leading reports whether the node is up and serving as leader.
func (n *Node) Leading() bool {
	rep := n.Replica()
	return rep != nil && rep.Leading()
}

// shutdown stops the node: raft first (so nothing the closing server
// does is replicated), then the server, then the engine.
func (n *Node) shutdown() {
	n.mu.Lock()
	rep, srv, done, stop := n.rep, n.srv, n.done, n.stop
	n.rep, n.srv = nil, nil
	n.mu.Unlock()
	if rep == nil {
		return
	}
	_ = rep.Close()
	srv.Close()
	<-done
	<-done
	stop()
}

// isolate cuts every link to and from node i and refuses new ones (on
// true), or lets them through again.
func (c *Cluster) isolate(i int, on bool) {
	for j := range c.Nodes {
		if j == i {
			continue
		}
		for _, p := range []*faultproxy.Proxy{c.links[i][j], c.links[j][i]} {
			p.Refuse(on)
			if on {
				p.CutAll()
			}
		}
	}
}

// Kill stops node i abruptly: its links are cut first, so nothing it
// does while stopping reaches the others; its client connections close.
// Its data directory is kept for Restart.
func (c *Cluster) Kill(i int) {
	c.isolate(i, true)
	c.Nodes[i].shutdown()
}

// Restart starts node i again on its data directory, its client address
// and its raft address, and reconnects its links.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	n := c.Nodes[i]
	if n.Up() {
		c.t.Fatalf("testcluster: restart of %s, which is up", n.ID)
	}
	c.isolate(i, false)
	if err := n.start(); err != nil {
		c.t.Fatal(err)
	}
}

// Partition splits the cluster: links between nodes of different groups
// are cut and refused; nodes in no group are cut off from everyone.
// Heal undoes it.
func (c *Cluster) Partition(groups ...[]int) {
	group := make([]int, len(c.Nodes))
	for i := range group {
		group[i] = -1 - i // alone
	}
	for g, members := range groups {
		for _, i := range members {
			group[i] = g
		}
	}
	for i := range c.Nodes {
		for j := range c.Nodes {
			if i == j {
				continue
			}
			p := c.links[i][j]
			split := group[i] != group[j]
			p.Refuse(split)
			if split {
				p.CutAll()
			}
		}
	}
}

// Isolate cuts node i off from every other node, which stay connected
// among themselves. Heal undoes it.
func (c *Cluster) Isolate(i int) {
	var rest []int
	for j := range c.Nodes {
		if j != i {
			rest = append(rest, j)
		}
	}
	c.Partition([]int{i}, rest)
}

// Heal lets every link between running nodes through again.
func (c *Cluster) Heal() { c.Partition(c.indexes()) }

func (c *Cluster) indexes() []int {
	all := make([]int, len(c.Nodes))
	for i := range all {
		all[i] = i
	}
	return all
}

// Leader waits (up to 15 s) for a node that is up and serving as leader
// and returns it; it fails the test if none appears.
func (c *Cluster) Leader(t testing.TB) *Node {
	t.Helper()
	n, err := c.WaitLeader(context.Background(), 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// NewLeader waits (up to 15 s) for a serving leader other than old and
// returns it; it fails the test if none appears.
func (c *Cluster) NewLeader(t testing.TB, old *Node) *Node {
	t.Helper()
	n, err := c.WaitLeader(context.Background(), 15*time.Second, old)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// WaitLeader waits up to d for a node that is up and serving as leader,
// other than the nodes in except.
func (c *Cluster) WaitLeader(ctx context.Context, d time.Duration, except ...*Node) (*Node, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		for _, n := range c.Nodes {
			if n.Leading() && !slices.Contains(except, n) {
				return n, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("testcluster: no serving leader within %v", d)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Ready reports whether node i is up and knows a leader that is up and
// serving: a client of node i would be served now.
func (c *Cluster) Ready(i int) bool {
	rep := c.Nodes[i].Replica()
	if rep == nil {
		return false
	}
	st := rep.Status()
	if st.Leader == nil {
		return false
	}
	for _, n := range c.Nodes {
		if n.ID == st.Leader.ID {
			return n.Leading()
		}
	}
	return false
}

// Followers returns the nodes that are up and not leading.
func (c *Cluster) Followers() []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if n.Up() && !n.Leading() {
			out = append(out, n)
		}
	}
	return out
}

// Addrs returns every node's client address.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr
	}
	return out
}

// close stops every node and every proxy.
func (c *Cluster) close() {
	for _, n := range c.Nodes {
		n.shutdown()
		if n.ln != nil { // never started
			_ = n.ln.Close()
		}
		if n.raftL != nil {
			_ = n.raftL.Close()
		}
	}
	for _, row := range c.links {
		for _, p := range row {
			if p != nil {
				_ = p.Close()
			}
		}
	}
}

// Faults names the faults Inject knows.
var Faults = []string{"kill-leader", "kill-follower", "isolate-leader", "isolate-follower", "restart-all"}

// Inject injects one fault and waits for the cluster to serve again:
// kill-leader and isolate-leader (undone, by a restart or a heal, once
// another node leads), kill-follower and isolate-follower (a follower
// picked with rng; undone after 400 ms), restart-all (every node killed,
// then every node restarted). Problems are reported with t.Errorf.
func (c *Cluster) Inject(t testing.TB, name string, rng *rand.Rand) {
	t.Helper()
	leader := func(except ...*Node) *Node {
		n, err := c.WaitLeader(context.Background(), 20*time.Second, except...)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		return n
	}
	switch name {
	case "kill-leader", "isolate-leader":
		l := leader()
		if l == nil {
			return
		}
		if name == "kill-leader" {
			c.Kill(l.Index)
		} else {
			c.Isolate(l.Index)
		}
		leader(l)
		time.Sleep(200 * time.Millisecond)
		if name == "kill-leader" {
			c.Restart(l.Index)
		} else {
			c.Heal()
		}
	case "kill-follower", "isolate-follower":
		fs := c.Followers()
		if len(fs) == 0 {
			t.Errorf("%s: no follower", name)
			return
		}
		f := fs[rng.Intn(len(fs))]
		if name == "kill-follower" {
			c.Kill(f.Index)
			time.Sleep(400 * time.Millisecond)
			c.Restart(f.Index)
		} else {
			c.Isolate(f.Index)
			time.Sleep(400 * time.Millisecond)
			c.Heal()
		}
	case "restart-all":
		for i := range c.Nodes {
			c.Kill(i)
		}
		for i := range c.Nodes {
			c.Restart(i)
		}
	default:
		t.Fatalf("testcluster: unknown fault %q", name)
	}
	leader()
}
