package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Peer is a voter of the cluster's first configuration.
type Peer struct {
	// ID is the node id (--node-id).
	ID string
	// Addr is its raft address, host:port.
	Addr string
}

// Timeouts are raft's timing settings (zero fields take the defaults
// below). LeaderLease must stay below Heartbeat, so that a deposed leader
// stops acting as leader before a successor can be elected.
type Timeouts struct {
	Heartbeat   time.Duration
	Election    time.Duration
	LeaderLease time.Duration
	Commit      time.Duration
}

// Default raft timings: raft's own defaults halved, which keeps a
// leader's death to about a second of unavailability on a healthy
// network (see docs/cluster.md for what they trade).
const (
	DefaultHeartbeatTimeout   = 500 * time.Millisecond
	DefaultElectionTimeout    = 500 * time.Millisecond
	DefaultLeaderLeaseTimeout = 250 * time.Millisecond
	DefaultCommitTimeout      = 5 * time.Millisecond
)

func (t Timeouts) withDefaults() Timeouts {
	if t.Heartbeat <= 0 {
		t.Heartbeat = DefaultHeartbeatTimeout
	}
	if t.Election <= 0 {
		t.Election = DefaultElectionTimeout
	}
	if t.LeaderLease <= 0 {
		t.LeaderLease = min(DefaultLeaderLeaseTimeout, t.Heartbeat/2)
	}
	if t.Commit <= 0 {
		t.Commit = DefaultCommitTimeout
	}
	return t
}

// NodeConfig configures a Node.
type NodeConfig struct {
	// ID is this node's id. Required.
	ID string
	// DataDir holds the raft log, stable store and snapshots; empty
	// keeps them in memory (tests only: nothing survives a restart).
	DataDir string
	// RaftAddr is the raft listen address (host:port). Required unless
	// Listener is set.
	RaftAddr string
	// Listener, when set, is the raft listener, already bound (RaftAddr
	// is then its address; StartNode owns it, closing it if it fails): a
	// caller that must know every node's
	// address before any node starts binds them all first, with no
	// window in which another socket could take a port.
	Listener net.Listener
	// Advertise is the address other nodes dial (empty = the bound
	// address).
	Advertise string
	// Peers is the first configuration, this node included, used only
	// when DataDir holds no state yet. Empty means a single voter: this
	// node.
	Peers []Peer
	// Join, with no state in DataDir, skips the bootstrap: the node waits
	// to be added to an existing cluster by its leader.
	Join bool
	// TLS is the mutual-TLS configuration of the raft links (see
	// MutualTLS); nil is plain TCP.
	TLS *tls.Config
	// FSM is the replicated state machine.
	FSM raft.FSM
	// Timeouts are raft's timings.
	Timeouts Timeouts
	// SnapshotThreshold and SnapshotInterval tune snapshots (0 = raft's
	// defaults: 8192 entries, checked every 120 s); TrailingLogs is how
	// many entries are kept after a snapshot (0 = 10240).
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// SegmentSize is the WAL segment size (0 = SegmentSize).
	SegmentSize int
	// Logger receives raft's logs (nil = discard).
	Logger hclog.Logger
	// Dial, when set, opens the TCP connections to other nodes (raft
	// links and relays) in place of a plain dial; see StreamConfig.Dial.
	Dial func(ctx context.Context, address string) (net.Conn, error)

	// notify receives raft's leadership changes (a Replica's).
	notify chan bool
}

// Node is one member of a replicated cluster: raft over the stream layer,
// on its storage, driving the state machine.
type Node struct {
	cfg    NodeConfig
	raft   *raft.Raft
	stream *Stream
	trans  *raft.NetworkTransport
	store  *Storage         // nil in memory
	mem    *raft.InmemStore // in memory only
}

// StartNode opens the node's storage, binds its raft address, bootstraps
// the cluster from cfg.Peers if the storage is empty, and starts raft.
func StartNode(cfg NodeConfig) (n *Node, err error) {
	if cfg.Listener != nil {
		cfg.RaftAddr = cfg.Listener.Addr().String()
		defer func() {
			if err != nil && (n == nil || n.stream == nil) {
				cfg.Listener.Close() // it is the node's: closed on failure too
			}
		}()
	}
	if cfg.ID == "" || cfg.RaftAddr == "" || cfg.FSM == nil {
		return nil, errors.New("cluster: a node needs an id, a raft address and a state machine")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	t := cfg.Timeouts.withDefaults()
	if t.LeaderLease >= t.Heartbeat {
		return nil, fmt.Errorf("cluster: the leader lease timeout (%v) must be below the heartbeat timeout (%v)", t.LeaderLease, t.Heartbeat)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout, rc.CommitTimeout = t.Heartbeat, t.Election, t.LeaderLease, t.Commit
	rc.BatchApplyCh = true // one disk write and one replication round carry every waiting command
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	rc.Logger = cfg.Logger.Named("raft")
	if cfg.notify != nil {
		rc.NotifyCh = cfg.notify
	}
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("cluster: raft settings: %w", err)
	}

	n = &Node{cfg: cfg}
	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
	)
	if cfg.DataDir != "" {
		st, err := OpenStorage(cfg.DataDir, cfg.SegmentSize, cfg.Logger)
		if err != nil {
			return nil, err
		}
		n.store = st
		logs, stable, snaps = st.Log, st.Stable, st.Snapshots
	} else {
		n.mem = raft.NewInmemStore()
		logs, stable, snaps = n.mem, n.mem, raft.NewInmemSnapshotStore()
	}
	sc := StreamConfig{TLS: cfg.TLS, Dial: cfg.Dial}
	if cfg.Advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", cfg.Advertise)
		if err != nil {
			n.closeStores()
			return nil, fmt.Errorf("cluster: advertise address: %w", err)
		}
		sc.Advertise = a
	}
	var stream *Stream
	if cfg.Listener != nil {
		stream = NewStream(cfg.Listener, sc)
	} else {
		stream, err = Listen(cfg.RaftAddr, sc)
	}
	if err != nil {
		n.closeStores()
		return nil, err
	}
	n.stream = stream
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 3, Timeout: 10 * time.Second, Logger: cfg.Logger.Named("transport"),
	})

	has, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		n.closeAll()
		return nil, fmt.Errorf("cluster: read raft state: %w", err)
	}
	if cfg.DataDir != "" {
		if err := recoverFromPeersJSON(cfg, rc, logs, stable, snaps, n.trans); err != nil {
			n.closeAll()
			return nil, err
		}
	}
	if !has && !cfg.Join {
		conf, err := bootstrapConfig(cfg.ID, string(n.trans.LocalAddr()), cfg.Peers)
		if err != nil {
			n.closeAll()
			return nil, err
		}
		if err := raft.BootstrapCluster(rc, logs, stable, snaps, n.trans, conf); err != nil {
			n.closeAll()
			return nil, fmt.Errorf("cluster: bootstrap: %w", err)
		}
	}
	r, err := raft.NewRaft(rc, cfg.FSM, logs, stable, snaps, n.trans)
	if err != nil {
		n.closeAll()
		return nil, fmt.Errorf("cluster: start raft: %w", err)
	}
	n.raft = r
	return n, nil
}

// bootstrapConfig is the first configuration: peers (which must name
// self), or self alone.
func bootstrapConfig(self, selfAddr string, peers []Peer) (raft.Configuration, error) {
	if len(peers) == 0 {
		return raft.Configuration{Servers: []raft.Server{{ID: raft.ServerID(self), Address: raft.ServerAddress(selfAddr)}}}, nil
	}
	var conf raft.Configuration
	seen := make(map[string]bool)
	found := false
	for _, p := range peers {
		if p.ID == "" || p.Addr == "" {
			return conf, fmt.Errorf("cluster: peer %q: an id and an address are both needed", p.ID+"="+p.Addr)
		}
		if seen[p.ID] {
			return conf, fmt.Errorf("cluster: peer %s is listed twice", p.ID)
		}
		seen[p.ID] = true
		found = found || p.ID == self
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
	}
	if !found {
		return conf, fmt.Errorf("cluster: --peers does not list this node (%s)", self)
	}
	return conf, nil
}

// Raft returns the node's raft instance.
func (n *Node) Raft() *raft.Raft { return n.raft }

// Stream returns the node's stream layer (for relays).
func (n *Node) Stream() *Stream { return n.stream }

// ID returns the node's id.
func (n *Node) ID() string { return n.cfg.ID }

// Close stops raft, then closes the links and the storage. A node that
// is leader does not hand over leadership first (see TransferLeadership).
func (n *Node) Close() error {
	var errs []error
	if n.raft != nil {
		errs = append(errs, n.raft.Shutdown().Error())
	}
	n.closeAll()
	return errors.Join(errs...)
}

func (n *Node) closeAll() {
	if n.trans != nil {
		n.trans.CloseStreams()
		_ = n.trans.Close() // closes the stream too
	} else if n.stream != nil {
		_ = n.stream.Close()
	}
	n.closeStores()
}

func (n *Node) closeStores() {
	if n.store != nil {
		_ = n.store.Close()
		n.store = nil
	}
}

// PeersJSON is the file, under the data dir, that triggers the manual
// recovery of a cluster that lost its majority (docs/cluster.md).
const PeersJSON = "peers.json"

// recoverFromPeersJSON applies DataDir/peers.json if it exists: raft's
// manual recovery replaces the node's configuration with the file's
// (hashicorp/raft's ReadConfigJSON format), then the file is renamed so
// that the next start does not apply it again.
func recoverFromPeersJSON(cfg NodeConfig, rc *raft.Config, logs raft.LogStore, stable raft.StableStore,
	snaps raft.SnapshotStore, trans raft.Transport) error {
	path := filepath.Join(cfg.DataDir, PeersJSON)
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	conf, err := raft.ReadConfigJSON(path)
	if err != nil {
		return fmt.Errorf("cluster: %s: %w", path, err)
	}
	if err := raft.RecoverCluster(rc, cfg.FSM, logs, stable, snaps, trans, conf); err != nil {
		return fmt.Errorf("cluster: recover with %s: %w", path, err)
	}
	if err := os.Rename(path, path+".applied"); err != nil {
		return fmt.Errorf("cluster: %s applied, but: %w", path, err)
	}
	cfg.Logger.Warn("cluster configuration recovered from "+path, "servers", len(conf.Servers))
	return nil
}
