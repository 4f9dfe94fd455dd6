package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dflockd/dflockd/cluster"
)

// ClusterFlags are the replicated mode's settings. Without --data-dir
// the server keeps everything in memory, as before.
type ClusterFlags struct {
	DataDir       string        `name:"data-dir" envvar:"DFLOCKD_DATA_DIR" placeholder:"DIR" group:"Cluster" help:"Keep the lock state in a raft log and snapshots under DIR: locks, queues and fences survive a restart. Alone it runs a durable single node; with --peers, a replicated cluster."`
	NodeID        string        `name:"node-id" envvar:"DFLOCKD_NODE_ID" placeholder:"ID" group:"Cluster" help:"This node's id in the cluster (default: node1 for a single node; required with --peers)."`
	RaftListen    string        `name:"raft-listen" default:"127.0.0.1:7001" envvar:"DFLOCKD_RAFT_LISTEN" placeholder:"HOST:PORT" group:"Cluster" help:"Address for raft traffic between nodes and for client connections relayed by other nodes."`
	RaftAdvertise string        `name:"raft-advertise" envvar:"DFLOCKD_RAFT_ADVERTISE" placeholder:"HOST:PORT" group:"Cluster" help:"Raft address other nodes dial, when not --raft-listen."`
	Peers         []string      `name:"peers" envvar:"DFLOCKD_PEERS" placeholder:"ID=HOST:PORT" group:"Cluster" help:"Every voter of a new cluster, this node included: n1=10.0.0.1:7001,n2=...; used only to bootstrap an empty --data-dir."`
	Join          bool          `name:"join" envvar:"DFLOCKD_JOIN" group:"Cluster" help:"With an empty --data-dir, do not bootstrap: wait to be added to a running cluster (cluster add ID RAFTADDR on its leader)."`
	RaftTLSCert   string        `name:"raft-tls-cert" envvar:"DFLOCKD_RAFT_TLS_CERT" placeholder:"FILE" group:"Cluster" help:"PEM certificate this node presents on raft links (with --raft-tls-key and --raft-tls-ca: mutual TLS)."`
	RaftTLSKey    string        `name:"raft-tls-key" envvar:"DFLOCKD_RAFT_TLS_KEY" placeholder:"FILE" group:"Cluster" help:"PEM private key for --raft-tls-cert."`
	RaftTLSCA     string        `name:"raft-tls-ca" envvar:"DFLOCKD_RAFT_TLS_CA" placeholder:"FILE" group:"Cluster" help:"PEM CA of the cluster: only nodes with a certificate it signed can open a raft link to this one."`
	RaftInsecure  bool          `name:"raft-insecure" envvar:"DFLOCKD_RAFT_INSECURE" group:"Cluster" help:"Allow plain TCP raft links on a non-loopback --raft-listen (anyone who reaches the port can then join the conversation)."`
	RaftHeartbeat time.Duration `name:"raft-heartbeat" default:"500ms" envvar:"DFLOCKD_RAFT_HEARTBEAT" group:"Cluster" help:"Raft heartbeat and election timeout: how long followers wait for a silent leader before electing another."`
}

// clustered reports whether the replicated mode is on.
func (f *ClusterFlags) clustered() bool { return f.DataDir != "" }

// validateCluster checks the cluster settings.
func (f *ClusterFlags) validateCluster() error {
	if !f.clustered() {
		if len(f.Peers) > 0 || f.NodeID != "" {
			return errors.New("--peers and --node-id need --data-dir")
		}
		return nil
	}
	if len(f.Peers) > 0 && f.NodeID == "" {
		return errors.New("--peers needs --node-id")
	}
	if f.Join && (len(f.Peers) > 0 || f.NodeID == "") {
		return errors.New("--join needs --node-id and no --peers")
	}
	if _, err := f.peers(); err != nil {
		return err
	}
	set := 0
	for _, v := range []string{f.RaftTLSCert, f.RaftTLSKey, f.RaftTLSCA} {
		if v != "" {
			set++
		}
	}
	if set != 0 && set != 3 {
		return errors.New("--raft-tls-cert, --raft-tls-key and --raft-tls-ca go together")
	}
	if set == 0 && !f.RaftInsecure && !cluster.IsLoopback(f.RaftListen) {
		return fmt.Errorf("--raft-listen %s is not a loopback address: give --raft-tls-cert, --raft-tls-key and --raft-tls-ca, or --raft-insecure", f.RaftListen)
	}
	if f.RaftHeartbeat < 50*time.Millisecond || f.RaftHeartbeat > time.Minute {
		return fmt.Errorf("--raft-heartbeat: %v: must be between 50ms and 1m", f.RaftHeartbeat)
	}
	return nil
}

// nodeID returns the node's id.
func (f *ClusterFlags) nodeID() string {
	if f.NodeID == "" {
		return "node1"
	}
	return f.NodeID
}

// peers parses --peers.
func (f *ClusterFlags) peers() ([]cluster.Peer, error) {
	var out []cluster.Peer
	for _, p := range f.Peers {
		id, addr, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("--peers: %q: want ID=HOST:PORT", p)
		}
		out = append(out, cluster.Peer{ID: id, Addr: addr})
	}
	if len(out) > 0 {
		found := false
		for _, p := range out {
			found = found || p.ID == f.NodeID
		}
		if !found {
			return nil, fmt.Errorf("--peers does not list --node-id %s", f.NodeID)
		}
	}
	return out, nil
}

// replicaConfig builds the replica's settings; onLeadership is told when
// the node starts and stops leading.
func (f *ClusterFlags) replicaConfig(log *slog.Logger, policy cluster.Policy, onLeadership func(bool), onStop func()) (cluster.ReplicaConfig, error) {
	peers, err := f.peers()
	if err != nil {
		return cluster.ReplicaConfig{}, err
	}
	var tc *tls.Config
	if f.RaftTLSCert != "" {
		cert, err := tls.LoadX509KeyPair(f.RaftTLSCert, f.RaftTLSKey)
		if err != nil {
			return cluster.ReplicaConfig{}, fmt.Errorf("--raft-tls-cert/--raft-tls-key: %w", err)
		}
		ca, err := os.ReadFile(f.RaftTLSCA)
		if err != nil {
			return cluster.ReplicaConfig{}, fmt.Errorf("--raft-tls-ca: %w", err)
		}
		if tc, err = cluster.MutualTLS(cert, ca); err != nil {
			return cluster.ReplicaConfig{}, fmt.Errorf("--raft-tls-ca: %w", err)
		}
	}
	if err := os.MkdirAll(f.DataDir, 0o700); err != nil {
		return cluster.ReplicaConfig{}, fmt.Errorf("--data-dir: %w", err)
	}
	level := hclog.Warn
	if log.Enabled(context.Background(), slog.LevelDebug) {
		level = hclog.Info
	}
	hb := f.RaftHeartbeat
	return cluster.ReplicaConfig{
		OnLeadership: onLeadership,
		OnStop:       onStop,
		Policy:       policy,
		Node: cluster.NodeConfig{
			ID: f.nodeID(), DataDir: f.DataDir, RaftAddr: f.RaftListen, Advertise: f.RaftAdvertise,
			Peers: peers, Join: f.Join, TLS: tc,
			Timeouts: cluster.Timeouts{Heartbeat: hb, Election: hb, LeaderLease: hb / 2},
			Logger:   hclog.New(&hclog.LoggerOptions{Name: "cluster", Level: level, Output: os.Stderr}),
		},
	}, nil
}
