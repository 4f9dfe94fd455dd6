package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dflockd/dflockd/cluster"
	"github.com/dflockd/dflockd/internal/testutil"
)

// A real three-process cluster on loopback (this test binary, re-run as
// dflockd): the leader is killed with SIGKILL while a named session holds
// a lock; a survivor becomes leader, the session resumes there with the
// same token and nobody else got the lock; then every node is restarted
// from its data dir and fences keep rising.
func TestClusterProcesses(t *testing.T) {
	childMain()
	if testing.Short() {
		t.Skip("starts three processes")
	}
	var nodes []*procNode
	var peers []string
	for i := range 3 {
		n := newProcNode(t, fmt.Sprintf("n%d", i+1))
		nodes = append(nodes, n)
		peers = append(peers, n.id+"="+n.raft)
	}
	for _, n := range nodes {
		n.args = append(n.args, "--peers", strings.Join(peers, ","))
		n.start()
	}
	leader := func() *procNode { return procLeader(t, nodes) }
	stop := func(n *procNode, sig os.Signal) { n.stop(sig) }
	start := func(n *procNode) { n.start() }
	dial := func(addr string) (*procClient, error) { return dialProc(addr) }
	must := func(cl *procClient, cmd, key, arg, prefix string) string {
		t.Helper()
		return cl.must(t, cmd, key, arg, prefix)
	}

	l1 := leader()
	a, err := dial(l1.client)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(must(a, "session", "_", "60", "ok "))
	sid, secret := f[1], f[2]
	tok := strings.Fields(must(a, "l", "k", "0 60", "ok "))[1]

	stop(l1, syscall.SIGKILL)
	l2 := leader()
	a2, err := dial(l2.client)
	if err != nil {
		t.Fatal(err)
	}
	must(a2, "resume", sid, secret, "ok 1 0")
	must(a2, "n", "k", tok+" 60", "ok 60")
	b, err := dial(l2.client)
	if err != nil {
		t.Fatal(err)
	}
	must(b, "l", "k", "0", "timeout")
	must(a2, "r", "k", tok, "ok")
	tok2 := strings.Fields(must(b, "l", "k", "0", "ok "))[1]
	if tok2 <= tok {
		t.Fatalf("fence went back: %s then %s", tok, tok2)
	}
	// A client of a follower is relayed to the leader.
	for _, n := range nodes {
		if n.cmd == nil || n == l2 {
			continue
		}
		f, err := dial(n.client)
		if err != nil {
			t.Fatal(err)
		}
		must(f, "l", "k", "0", "timeout") // b holds it, on the leader
		f.c.Close()
	}
	a2.c.Close()
	b.c.Close()

	// Every node restarts from its data dir (the killed one too).
	for _, n := range nodes {
		stop(n, syscall.SIGTERM)
	}
	for _, n := range nodes {
		start(n)
	}
	l3 := leader()
	c, err := dial(l3.client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.c.Close()
	tok3 := strings.Fields(must(c, "l", "k2", "0", "ok "))[1]
	if tok3 <= tok2 {
		t.Fatalf("fence went back across the restart: %s then %s", tok2, tok3)
	}
}

// procNode is a dflockd process of a test: this test binary re-run as
// dflockd by the test named by the running test's name.
type procNode struct {
	t                     *testing.T
	id, raft, client, dir string
	args                  []string
	cmd                   *exec.Cmd
	log                   *bytes.Buffer
}

// newProcNode prepares a node with its own addresses and data dir; the
// test stops it (SIGKILL) when it ends.
func newProcNode(t *testing.T, id string) *procNode {
	n := &procNode{t: t, id: id, raft: testutil.FreeAddr(t), client: testutil.FreeAddr(t), dir: filepath.Join(t.TempDir(), "data")}
	n.args = []string{"--node-id", n.id, "--data-dir", n.dir, "--raft-listen", n.raft, "--listen", "tcp://" + n.client,
		"--raft-heartbeat", "300ms", "--shutdown-timeout", "5"}
	t.Cleanup(func() { n.stop(syscall.SIGKILL) })
	return n
}

func (n *procNode) start() {
	n.cmd = exec.Command(os.Args[0], "-test.run=^"+n.t.Name()+"$")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DFLOCKD_") {
			n.cmd.Env = append(n.cmd.Env, kv)
		}
	}
	n.cmd.Env = append(n.cmd.Env, mainChildEnv+"="+strings.Join(n.args, "\n"))
	n.log = &bytes.Buffer{}
	n.cmd.Stderr = n.log
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
}

// stop signals the process and waits for it to exit (20 s, then SIGKILL).
func (n *procNode) stop(sig os.Signal) {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = n.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = n.cmd.Process.Kill()
		<-done
		n.t.Errorf("%s did not stop on %v; its log:\n%s", n.id, sig, n.log.String())
	}
	n.cmd = nil
}

// procLeader finds the serving leader among the running nodes (30 s).
func procLeader(t *testing.T, nodes []*procNode) *procNode {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range nodes {
			if n.cmd == nil {
				continue
			}
			cl, err := dialProc(n.client)
			if err != nil {
				continue
			}
			line, err := cl.do("cluster", "_", "")
			cl.c.Close()
			var st cluster.NodeStatus
			if err == nil && json.Unmarshal([]byte(strings.TrimPrefix(line, "ok ")), &st) == nil && st.Serving {
				return n
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, n := range nodes {
		t.Logf("%s log:\n%s", n.id, n.log.String())
	}
	t.Fatal("no serving leader")
	return nil
}

// procClient is a raw protocol connection to a node.
type procClient struct {
	c net.Conn
	r *bufio.Reader
}

func dialProc(addr string) (*procClient, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &procClient{c, bufio.NewReader(c)}, nil
}

func (cl *procClient) do(cmd, key, arg string) (string, error) {
	if _, err := fmt.Fprintf(cl.c, "%s\n%s\n%s\n", cmd, key, arg); err != nil {
		return "", err
	}
	line, err := cl.r.ReadString('\n')
	return strings.TrimSuffix(line, "\n"), err
}

func (cl *procClient) must(t *testing.T, cmd, key, arg, prefix string) string {
	t.Helper()
	line, err := cl.do(cmd, key, arg)
	if err != nil || !strings.HasPrefix(line, prefix) {
		t.Fatalf("%s %s %s = %q, %v; want %s...", cmd, key, arg, line, err, prefix)
	}
	return line
}

// A durable single node killed with SIGKILL whose last WAL write is then
// torn (the end of its data zeroed, as a power cut leaves a write the
// disk never finished) starts again: the torn entry, a release, is dropped
// as never written, so its lock is held again; everything before it is
// kept (sessions, locks, hundreds of acquires and releases) and fences
// keep rising.
func TestDurableNodeTornTail(t *testing.T) {
	childMain()
	if testing.Short() {
		t.Skip("starts a process")
	}
	n := newProcNode(t, "solo")
	n.start()
	procLeader(t, []*procNode{n})
	a, err := dialProc(n.client)
	if err != nil {
		t.Fatal(err)
	}
	fa := strings.Fields(a.must(t, "session", "_", "300", "ok "))
	tok := strings.Fields(a.must(t, "l", "held", "0 300", "ok "))[1]
	b, err := dialProc(n.client)
	if err != nil {
		t.Fatal(err)
	}
	fb := strings.Fields(b.must(t, "session", "_", "300", "ok "))
	var last string
	for range 200 { // every acquire and release is a WAL write
		last = strings.Fields(b.must(t, "l", "busy", "0 300", "ok "))[1]
		b.must(t, "r", "busy", last, "ok")
	}
	n.stop(syscall.SIGKILL)
	a.c.Close()
	b.c.Close()

	segs, err := filepath.Glob(filepath.Join(n.dir, "wal", "*.wal"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no WAL segment in %s (%v)", n.dir, err)
	}
	tail := segs[len(segs)-1]
	data, err := os.ReadFile(tail)
	if err != nil {
		t.Fatal(err)
	}
	end := len(data)
	for end > 0 && data[end-1] == 0 { // segments are preallocated
		end--
	}
	if end < 64 {
		t.Fatalf("the tail segment holds %d bytes of data", end)
	}
	clear(data[end-16 : end])
	if err := os.WriteFile(tail, data, 0o600); err != nil {
		t.Fatal(err)
	}

	n.start()
	procLeader(t, []*procNode{n})
	c, err := dialProc(n.client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.c.Close()
	c.must(t, "resume", fa[1], fa[2], "ok 1 0")
	c.must(t, "n", "held", tok+" 300", "ok 300")
	d, err := dialProc(n.client)
	if err != nil {
		t.Fatal(err)
	}
	defer d.c.Close()
	d.must(t, "resume", fb[1], fb[2], "ok 1 0") // the torn release never happened
	d.must(t, "r", "busy", last, "ok")
	e, err := dialProc(n.client)
	if err != nil {
		t.Fatal(err)
	}
	defer e.c.Close()
	e.must(t, "l", "held", "0", "timeout")
	tok2 := strings.Fields(e.must(t, "l", "busy", "0", "ok "))[1]
	if tok2 <= last {
		t.Fatalf("fence went back across the torn tail: %s then %s", last, tok2)
	}
}
