package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dflockd/dflockd/transport"
)

// ProcClusterConfig describes a local cluster of dflockd processes.
type ProcClusterConfig struct {
	// Bin is the dflockd binary to run (see BuildServer).
	Bin string
	// Nodes is the number of nodes (default 3).
	Nodes int
	// Heartbeat is each node's --raft-heartbeat (0 = the server's default).
	Heartbeat time.Duration
	// Args are extra arguments given to every node.
	Args []string
	// AuthToken, when set, is every node's shared secret (given in its
	// environment, not on its command line) and is sent by the bench's own
	// `cluster` requests.
	AuthToken string
	// Memory starts in-memory servers instead (no --data-dir, no raft):
	// independent single nodes, for comparison.
	Memory bool
}

// ProcCluster is a cluster of dflockd processes on loopback, each with a
// data dir of its own under one temporary directory (raft's log is
// fsync'd, as in production). Every process it starts it stops by PID;
// Close removes the data dirs.
type ProcCluster struct {
	cfg   ProcClusterConfig
	root  string
	peers string
	mu    sync.Mutex
	nodes []*procNode
}

// procNode is one node: its addresses stay the same across restarts.
type procNode struct {
	id, raft, client, dir string
	cmd                   *exec.Cmd
	exited                chan struct{}
	log                   *tailBuffer
}

// BuildServer builds the dflockd command of this module into dir and
// returns the binary's path (it needs the go tool and the module's
// source, as `go run ./cmd/bench` has).
func BuildServer(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "dflockd")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/dflockd/dflockd/cmd/dflockd")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("bench: go build dflockd (or give --server-bin): %w: %s", err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}

// StartProcCluster starts the nodes (bootstrapping a new cluster from
// --peers) and returns once every process runs; call Leader to wait for
// a leader. On error everything started is stopped and removed.
func StartProcCluster(ctx context.Context, cfg ProcClusterConfig) (_ *ProcCluster, err error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Bin == "" {
		return nil, errors.New("bench: cluster: no server binary")
	}
	root, err := os.MkdirTemp("", "dflockd-bench-cluster-")
	if err != nil {
		return nil, fmt.Errorf("bench: cluster: %w", err)
	}
	c := &ProcCluster{cfg: cfg, root: root}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	var peers []string
	for i := range cfg.Nodes {
		raftAddr, err := freeLoopback()
		if err != nil {
			return nil, err
		}
		clientAddr, err := freeLoopback()
		if err != nil {
			return nil, err
		}
		n := &procNode{id: fmt.Sprintf("n%d", i+1), raft: raftAddr, client: clientAddr,
			dir: filepath.Join(root, fmt.Sprintf("n%d", i+1))}
		c.nodes = append(c.nodes, n)
		peers = append(peers, n.id+"="+n.raft)
	}
	c.peers = strings.Join(peers, ",")
	for i := range c.nodes {
		if err := c.start(ctx, i); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// freeLoopback returns a loopback address with a port free right now.
func freeLoopback() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("bench: cluster: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// start runs node i and waits until its client port accepts connections.
func (c *ProcCluster) start(ctx context.Context, i int) error {
	n := c.nodes[i]
	args := []string{"--node-id", n.id, "--data-dir", n.dir, "--raft-listen", n.raft,
		"--listen", "tcp://" + n.client, "--peers", c.peers}
	if c.cfg.Memory {
		args = []string{"--listen", "tcp://" + n.client}
	}
	if c.cfg.Heartbeat > 0 && !c.cfg.Memory {
		args = append(args, "--raft-heartbeat", c.cfg.Heartbeat.String())
	}
	args = append(args, c.cfg.Args...)
	cmd := exec.Command(c.cfg.Bin, args...)
	cmd.SysProcAttr = procAttr()
	// The bench's own DFLOCKD_* settings (an auth token, say) are not the
	// nodes' business: they get the flags above only.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DFLOCKD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if c.cfg.AuthToken != "" {
		cmd.Env = append(cmd.Env, "DFLOCKD_AUTH_TOKEN="+c.cfg.AuthToken)
	}
	log := &tailBuffer{max: 16 << 10}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("bench: cluster: start %s: %w", n.id, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	c.mu.Lock()
	n.cmd, n.exited, n.log = cmd, exited, log
	c.mu.Unlock()
	if err := WaitAccepting(ctx, n.client, exited, 30*time.Second); err != nil {
		return fmt.Errorf("bench: cluster: %s: %w (its output: %s)", n.id, err, log.String())
	}
	return nil
}

// WaitAccepting polls addr until it accepts a connection: at most
// timeout, and not once exited is closed (the process serving it ended).
func WaitAccepting(ctx context.Context, addr string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on %s after %v: %w", addr, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return errors.New("exited before listening")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Size is the number of nodes.
func (c *ProcCluster) Size() int { return len(c.nodes) }

// Endpoint is node i's client endpoint.
func (c *ProcCluster) Endpoint(i int) transport.Endpoint {
	return transport.Endpoint{Transport: "tcp", Addr: c.nodes[i].client}
}

// ID is node i's id (n1, n2, ...).
func (c *ProcCluster) ID(i int) string { return c.nodes[i].id }

// PID is node i's process id, 0 while it is stopped.
func (c *ProcCluster) PID(i int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.nodes[i]; n.cmd != nil {
		return n.cmd.Process.Pid
	}
	return 0
}

// Alive reports whether node i's process runs.
func (c *ProcCluster) Alive(i int) bool {
	c.mu.Lock()
	n := c.nodes[i]
	running := n.cmd != nil
	exited := n.exited
	c.mu.Unlock()
	if !running {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// Endpoints are the client endpoints of the nodes whose process runs.
func (c *ProcCluster) Endpoints() []transport.Endpoint {
	var eps []transport.Endpoint
	for i := range c.nodes {
		if c.Alive(i) {
			eps = append(eps, c.Endpoint(i))
		}
	}
	return eps
}

// nodeStatus is the part of the `cluster` answer the bench reads.
type nodeStatus struct {
	Node    string `json:"node"`
	Role    string `json:"role"`
	Serving bool   `json:"serving"`
	Term    uint64 `json:"term"`
}

// Status asks node i for its `cluster` status.
func (c *ProcCluster) status(ctx context.Context, i int) (nodeStatus, error) {
	var st nodeStatus
	d := net.Dialer{Timeout: time.Second}
	nc, err := d.DialContext(ctx, "tcp", c.nodes[i].client)
	if err != nil {
		return st, err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(nc)
	if tok := c.cfg.AuthToken; tok != "" {
		if _, err := fmt.Fprintf(nc, "auth\n_\n%s\n", tok); err != nil {
			return st, err
		}
		if line, err := r.ReadString('\n'); err != nil || strings.TrimSpace(line) != "ok" {
			return st, fmt.Errorf("auth answered %q: %v", strings.TrimSpace(line), err)
		}
	}
	if _, err := nc.Write([]byte("cluster\n_\n\n")); err != nil {
		return st, err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return st, err
	}
	body, ok := strings.CutPrefix(strings.TrimSpace(line), "ok ")
	if !ok {
		return st, fmt.Errorf("cluster answered %q", strings.TrimSpace(line))
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		return st, fmt.Errorf("cluster answer: %w", err)
	}
	return st, nil
}

// Leader waits (up to 30 s) for a node that serves as leader and returns
// its index. except, when >= 0, is a node that must not count (a leader
// just killed whose process may linger for a moment).
func (c *ProcCluster) Leader(ctx context.Context, except int) (int, error) {
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for {
		if err := c.crashed(); err != nil {
			return -1, err
		}
		for i := range c.nodes {
			if i == except || !c.Alive(i) {
				continue
			}
			st, err := c.status(ctx, i)
			if err != nil {
				last = fmt.Errorf("%s: %w", c.nodes[i].id, err)
				continue
			}
			if st.Serving && st.Role == "leader" {
				return i, nil
			}
		}
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("bench: cluster: no serving leader after 30s (last: %v)%s", last, c.logs())
		}
		select {
		case <-ctx.Done():
			return -1, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// crashed returns an error naming a node whose process exited without
// being stopped (it failed at start, say), with its output.
func (c *ProcCluster) crashed() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.cmd == nil {
			continue
		}
		select {
		case <-n.exited:
			return fmt.Errorf("bench: cluster: %s (pid %d) exited by itself; its output (tail):\n%s", n.id, n.cmd.Process.Pid, n.log.String())
		default:
		}
	}
	return nil
}

// logs renders the tail of every node's output, for an error message.
func (c *ProcCluster) logs() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, n := range c.nodes {
		if n.log != nil {
			fmt.Fprintf(&b, "\n--- %s output (tail) ---\n%s", n.id, n.log.String())
		}
	}
	return b.String()
}

// Kill stops node i at once (SIGKILL, by PID) and waits for it to exit.
func (c *ProcCluster) Kill(i int) {
	c.stop(i, syscall.SIGKILL)
}

// stop signals node i's process and waits for it (SIGKILL after 10 s).
func (c *ProcCluster) stop(i int, sig syscall.Signal) {
	c.mu.Lock()
	n := c.nodes[i]
	cmd, exited := n.cmd, n.exited
	n.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Restart starts node i again on its data dir and addresses.
func (c *ProcCluster) Restart(ctx context.Context, i int) error {
	c.stop(i, syscall.SIGKILL)
	return c.start(ctx, i)
}

// Close stops every node (SIGTERM, then SIGKILL after 10 s) and removes
// the data dirs.
func (c *ProcCluster) Close() error {
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); c.stop(i, syscall.SIGTERM) }()
	}
	wg.Wait()
	if err := os.RemoveAll(c.root); err != nil {
		return fmt.Errorf("bench: cluster: remove data dirs: %w", err)
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
