package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/dflockd/dflockd/internal/testutil"
)

// fastTimeouts keep elections in test clusters short.
var fastTimeouts = Timeouts{Heartbeat: 300 * time.Millisecond, Election: 300 * time.Millisecond,
	LeaderLease: 150 * time.Millisecond, Commit: 5 * time.Millisecond}

// freeAddrs reserves n loopback addresses (closed again at once: raft
// addresses must be known before the nodes start).
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var out []string
	for range n {
		out = append(out, testutil.FreeAddr(t))
	}
	return out
}

// testNode is a node of a test cluster with its state machine.
type testNode struct {
	cfg NodeConfig
	fsm *counterFSM
	n   *Node
}

func (tn *testNode) start(t testing.TB) {
	t.Helper()
	tn.fsm = &counterFSM{}
	tn.cfg.FSM = tn.fsm
	n, err := StartNode(tn.cfg)
	if err != nil {
		t.Fatalf("start %s: %v", tn.cfg.ID, err)
	}
	tn.n = n
}

func (tn *testNode) stop(t testing.TB) {
	t.Helper()
	if tn.n == nil {
		return
	}
	if err := tn.n.Close(); err != nil {
		t.Errorf("close %s: %v", tn.cfg.ID, err)
	}
	tn.n = nil
}

// newTestCluster starts size nodes with durable storage in temp dirs.
func newTestCluster(t testing.TB, size int) []*testNode {
	t.Helper()
	addrs := freeAddrs(t, size)
	var peers []Peer
	for i, a := range addrs {
		peers = append(peers, Peer{ID: fmt.Sprintf("n%d", i+1), Addr: a})
	}
	nodes := make([]*testNode, size)
	for i := range nodes {
		nodes[i] = &testNode{cfg: NodeConfig{ID: peers[i].ID, RaftAddr: addrs[i], DataDir: t.TempDir(),
			Peers: peers, Timeouts: fastTimeouts, SegmentSize: 64 << 10}}
		if os.Getenv("DFLOCKD_RAFT_LOG") != "" {
			nodes[i].cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: peers[i].ID, Level: hclog.Warn, Output: os.Stderr})
		}
		nodes[i].start(t)
	}
	t.Cleanup(func() {
		for _, tn := range nodes {
			tn.stop(t)
		}
	})
	return nodes
}

func leaderOf(t testing.TB, nodes []*testNode) *testNode {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, tn := range nodes {
			if tn.n != nil && tn.n.Raft().State() == raft.Leader {
				return tn
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no leader elected")
	return nil
}

// applyRange applies from..to on the current leader. An apply that
// fails because leadership moved is retried on the next leader (the
// state machine counts a value once).
func applyRange(t testing.TB, nodes []*testNode, from, to uint64) {
	t.Helper()
	for v := from; v <= to; v++ {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], v)
		for try := 0; ; try++ {
			err := leaderOf(t, nodes).n.Raft().Apply(b[:], 5*time.Second).Error()
			if err == nil {
				break
			}
			if try == 20 || !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrLeadershipLost) {
				t.Fatalf("apply %d: %v", v, err)
			}
		}
	}
}

func waitSum(t testing.TB, tn *testNode, want uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for tn.fsm.sum.Load() != want {
		if time.Now().After(deadline) {
			st := map[string]string{}
			if tn.n != nil {
				st = tn.n.Raft().Stats()
			}
			t.Fatalf("%s: sum %d after %d entries; want %d (raft: state %s term %s last_log %s commit %s applied %s snapshot %s)",
				tn.cfg.ID, tn.fsm.sum.Load(), tn.fsm.n.Load(), want, st["state"], st["term"], st["last_log_index"],
				st["commit_index"], st["applied_index"], st["last_snapshot_index"])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func sumTo(n uint64) uint64 { return n * (n + 1) / 2 }

// The leader dies: another is elected, writes go on, and the dead node
// catches up when it comes back with its data dir.
func TestNodeLeaderDeathAndReturn(t *testing.T) {
	nodes := newTestCluster(t, 3)
	applyRange(t, nodes, 1, 20)
	old := leaderOf(t, nodes)
	old.stop(t)
	applyRange(t, nodes, 21, 30)
	if l := leaderOf(t, nodes); l == old {
		t.Fatal("the stopped node is still leader")
	}
	for _, tn := range nodes {
		if tn != old {
			waitSum(t, tn, sumTo(30))
		}
	}
	old.start(t)
	waitSum(t, old, sumTo(30))
}

// All nodes restart from their data dirs (no bootstrap the second time):
// the state comes back from snapshots and the log, and writes go on.
func TestNodeFullRestart(t *testing.T) {
	nodes := newTestCluster(t, 3)
	for _, tn := range nodes {
		tn.cfg.SnapshotThreshold = 16 // snapshot while the test runs
		tn.cfg.SnapshotInterval = 50 * time.Millisecond
		tn.cfg.TrailingLogs = 8
	}
	applyRange(t, nodes, 1, 50)
	for _, tn := range nodes {
		waitSum(t, tn, sumTo(50)) // every node has it all before any stops
	}
	for _, tn := range nodes {
		tn.stop(t)
	}
	for _, tn := range nodes {
		tn.cfg.Peers = nil // ignored anyway: the data dirs hold a configuration
		tn.start(t)
	}
	for _, tn := range nodes {
		waitSum(t, tn, sumTo(50))
	}
	applyRange(t, nodes, 51, 60)
	for _, tn := range nodes {
		waitSum(t, tn, sumTo(60))
	}
}

// --data-dir without --peers: a durable single node.
func TestNodeDurableSingle(t *testing.T) {
	tn := &testNode{cfg: NodeConfig{ID: "solo", RaftAddr: "127.0.0.1:0", DataDir: t.TempDir(), Timeouts: fastTimeouts}}
	tn.start(t)
	defer tn.stop(t)
	nodes := []*testNode{tn}
	applyRange(t, nodes, 1, 10)
	tn.stop(t)
	tn.start(t)
	waitSum(t, tn, sumTo(10))
	applyRange(t, nodes, 11, 12)
	waitSum(t, tn, sumTo(12))
}

func TestBootstrapConfig(t *testing.T) {
	for _, tc := range []struct {
		peers []Peer
		err   string
	}{
		{nil, ""},
		{[]Peer{{"n1", "a:1"}, {"n2", "b:1"}}, ""},
		{[]Peer{{"n2", "b:1"}}, "does not list this node"},
		{[]Peer{{"n1", "a:1"}, {"n1", "b:1"}}, "listed twice"},
		{[]Peer{{"n1", ""}}, "both needed"},
	} {
		_, err := bootstrapConfig("n1", "a:1", tc.peers)
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("peers %v: %v; want %q", tc.peers, err, tc.err)
		}
	}
}

// A cluster that lost its majority: the survivor is given peers.json
// naming only itself, and leads again with its state.
func TestRecoverWithPeersJSON(t *testing.T) {
	nodes := newTestCluster(t, 3)
	applyRange(t, nodes, 1, 10)
	for _, tn := range nodes {
		waitSum(t, tn, sumTo(10))
	}
	for _, tn := range nodes {
		tn.stop(t)
	}
	survivor := nodes[0]
	peers := fmt.Sprintf(`[{"id": %q, "address": %q, "non_voter": false}]`, survivor.cfg.ID, survivor.cfg.RaftAddr)
	if err := os.WriteFile(filepath.Join(survivor.cfg.DataDir, PeersJSON), []byte(peers), 0o600); err != nil {
		t.Fatal(err)
	}
	survivor.start(t)
	waitSum(t, survivor, sumTo(10))
	applyRange(t, []*testNode{survivor}, 11, 12)
	waitSum(t, survivor, sumTo(12))
	if _, err := os.Stat(filepath.Join(survivor.cfg.DataDir, PeersJSON+".applied")); err != nil {
		t.Fatalf("peers.json not set aside: %v", err)
	}
}

// BenchmarkReplicatedApply measures one proposer's round trip on a
// three-node cluster in this process, with durable storage (fsync on):
// the floor of a lock request's latency in the replicated mode.
func BenchmarkReplicatedApply(b *testing.B) {
	nodes := newTestCluster(b, 3)
	leader := leaderOf(b, nodes)
	var v [8]byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint64(v[:], uint64(i+1))
		if err := leader.n.Raft().Apply(v[:], 5*time.Second).Error(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReplicatedApplyParallel is BenchmarkReplicatedApply with
// concurrent proposers: raft batches what waits.
func BenchmarkReplicatedApplyParallel(b *testing.B) {
	nodes := newTestCluster(b, 3)
	leader := leaderOf(b, nodes)
	var seq atomic.Uint64
	b.ReportAllocs()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		var v [8]byte
		for pb.Next() {
			binary.BigEndian.PutUint64(v[:], seq.Add(1))
			if err := leader.n.Raft().Apply(v[:], 5*time.Second).Error(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
