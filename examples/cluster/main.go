// Command cluster runs a 3-node replicated dflockd cluster inside this
// process, holds a lock through it, kills the leader, and shows that the
// lock is still held by the same session with the same token and that
// fencing numbers keep rising under the new leader.
//
// Each node is what `dflockd --data-dir ... --peers ...` runs: a raft
// replica (package cluster) with a server (package server) in front of
// it. Run it from the repository root:
//
//	go run ./examples/cluster
//
// Flags: -key (lock key), -dir (where the nodes keep their raft logs; a
// temporary directory, removed at the end, by default).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/dflockd/dflockd/client"
	"github.com/dflockd/dflockd/cluster"
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/server"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

// run is the example; main only wires it to the process.
func run(ctx context.Context, args []string, stdout io.Writer) (err error) {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	key := fs.String("key", "examples.cluster", "lock key")
	dir := fs.String("dir", "", "directory for the nodes' raft logs (default: a temporary one, removed at the end)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "dflockd-cluster-example-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		*dir = d
	}

	nodes, err := startCluster(*dir, 3)
	if err != nil {
		return err
	}
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.addr)
	}
	leader, err := waitLeader(ctx, nodes, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "3 nodes up on %v; %s leads\n", addrs, leader.id)

	// The client is given every member: it asks any of them who leads,
	// talks to the leader, and follows it when it changes.
	l := &client.Lock{Key: *key, Cluster: addrs, LeaseTTL: 30}
	if ok, err := l.Acquire(ctx); err != nil || !ok {
		return fmt.Errorf("acquire: %v, %w", ok, err)
	}
	defer l.Close()
	tok := l.Token()
	fence, err := client.FenceFromToken(tok)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "acquired %q (fencing token %d)\n", *key, fence)

	// Kill the leader: its raft node and its server stop at once, as if
	// the process had died.
	leader.stop()
	fmt.Fprintf(stdout, "killed the leader, %s\n", leader.id)
	t0 := time.Now()
	next, err := waitLeader(ctx, nodes, leader)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s leads after %v\n", next.id, time.Since(t0).Round(10*time.Millisecond))

	// The lock is still ours: a second client trying once is turned
	// away, our token is unchanged and the lease was never lost.
	other := &client.Lock{Key: *key, Cluster: addrs, AcquireTimeout: -1}
	if got, err := other.Acquire(ctx); err != nil {
		return fmt.Errorf("second acquire: %w", err)
	} else if got {
		other.Release(ctx)
		return errors.New("a second client got the lock after the failover")
	}
	select {
	case <-l.Lost():
		return errors.New("the lease was lost in the failover")
	default:
	}
	if l.Token() != tok {
		return fmt.Errorf("the token changed in the failover: %s then %s", tok, l.Token())
	}
	fmt.Fprintln(stdout, "still held by the same session, same token; a second client is turned away")

	// Release it: the next holder's fencing number is higher, under the
	// new leader too.
	if err := l.Release(ctx); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	next2 := &client.Lock{Key: *key, Cluster: addrs, AcquireTimeout: 10 * time.Second}
	if ok, err := next2.Acquire(ctx); err != nil || !ok {
		return fmt.Errorf("acquire after the failover: %v, %w", ok, err)
	}
	defer next2.Release(ctx)
	fence2, err := client.FenceFromToken(next2.Token())
	if err != nil {
		return err
	}
	if fence2 <= fence {
		return fmt.Errorf("fencing token went back: %d then %d", fence, fence2)
	}
	fmt.Fprintf(stdout, "released; the next holder's fencing token is %d (was %d)\n", fence2, fence)
	return nil
}

// node is one member: a replica and the server in front of it.
type node struct {
	id, addr string
	rep      *cluster.Replica
	srv      atomic.Pointer[server.Server]
	done     chan error // Serve and ServeRelays return
	stopEng  func()     // stops the engine and waits for it
	stopped  bool
}

// startCluster starts n nodes on loopback, each with its raft log under
// dir, bootstrapped as one cluster.
func startCluster(dir string, n int) ([]*node, error) {
	// Bind every raft listener first: each node must be told all the
	// others' addresses before it starts.
	var peers []cluster.Peer
	var lns []net.Listener
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, err
		}
		lns = append(lns, ln)
		peers = append(peers, cluster.Peer{ID: fmt.Sprintf("n%d", i+1), Addr: ln.Addr().String()})
	}
	var nodes []*node
	for i, p := range peers {
		nd, err := startNode(dir, p, lns[i], peers)
		if err != nil {
			for _, o := range nodes {
				o.stop()
			}
			for _, l := range lns[i+1:] {
				l.Close()
			}
			return nil, err
		}
		nodes = append(nodes, nd)
	}
	return nodes, nil
}

func startNode(dir string, self cluster.Peer, raftLn net.Listener, peers []cluster.Peer) (*node, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		raftLn.Close()
		return nil, err
	}
	nd := &node{id: self.ID, addr: ln.Addr().String(), done: make(chan error, 2)}
	rep, err := cluster.StartReplica(cluster.ReplicaConfig{
		Endpoints: []string{"tcp://" + nd.addr},
		// A new leader closes the old leader's client connections; the
		// clients then reconnect and resume their sessions.
		OnLeadership: func(leading bool) {
			if srv := nd.srv.Load(); !leading && srv != nil {
				srv.DropConnections()
			}
		},
		Node: cluster.NodeConfig{ID: self.ID, Listener: raftLn, DataDir: filepath.Join(dir, self.ID), Peers: peers,
			// Shorter than dflockd's default (500 ms), for a quick demo.
			Timeouts: cluster.Timeouts{Heartbeat: 200 * time.Millisecond, Election: 200 * time.Millisecond,
				LeaderLease: 100 * time.Millisecond}},
	})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("start %s: %w", self.ID, err)
	}
	// The engine serves what is not replicated (signals); the replica
	// holds the locks.
	engine := core.New(core.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); _ = engine.Run(ctx) }()
	nd.rep, nd.stopEng = rep, func() { cancel(); <-ran }
	srv := server.New(server.Options{Engine: engine, Replica: rep})
	nd.srv.Store(srv)
	go func() { nd.done <- srv.Serve(ln) }()
	go func() { nd.done <- srv.ServeRelays(rep.Node().Stream()) }()
	return nd, nil
}

// stop stops the node: raft first, so that nothing the closing server
// does reaches the others, as when a process dies.
func (nd *node) stop() {
	if nd.stopped {
		return
	}
	nd.stopped = true
	_ = nd.rep.Close()
	nd.srv.Load().Close()
	<-nd.done
	<-nd.done
	nd.stopEng()
}

// waitLeader waits up to 10 s for a node other than old to serve as leader.
func waitLeader(ctx context.Context, nodes []*node, old *node) (*node, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		for _, n := range nodes {
			if n != old && !n.stopped && n.rep.Leading() {
				return n, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, errors.New("no leader within 10s")
		case <-time.After(20 * time.Millisecond):
		}
	}
}
