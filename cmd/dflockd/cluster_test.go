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
	type node struct {
		id, raft, client, dir string
		cmd                   *exec.Cmd
		log                   *bytes.Buffer
	}
	free := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	var nodes []*node
	var peers []string
	for i := range 3 {
		n := &node{id: fmt.Sprintf("n%d", i+1), raft: free(), client: free(), dir: filepath.Join(t.TempDir(), "data")}
		nodes = append(nodes, n)
		peers = append(peers, n.id+"="+n.raft)
	}
	start := func(n *node) {
		args := []string{"--node-id", n.id, "--data-dir", n.dir, "--raft-listen", n.raft, "--listen", "tcp://" + n.client,
			"--peers", strings.Join(peers, ","), "--raft-heartbeat", "300ms", "--shutdown-timeout", "5"}
		n.cmd = exec.Command(os.Args[0], "-test.run=^TestClusterProcesses$")
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "DFLOCKD_") {
				n.cmd.Env = append(n.cmd.Env, kv)
			}
		}
		n.cmd.Env = append(n.cmd.Env, mainChildEnv+"="+strings.Join(args, "\n"))
		n.log = &bytes.Buffer{}
		n.cmd.Stderr = n.log
		if err := n.cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	stop := func(n *node, sig os.Signal) {
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
			t.Errorf("%s did not stop on %v; its log:\n%s", n.id, sig, n.log.String())
		}
		n.cmd = nil
	}
	for _, n := range nodes {
		start(n)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			stop(n, syscall.SIGKILL)
		}
	})

	type client struct {
		c net.Conn
		r *bufio.Reader
	}
	dial := func(addr string) (*client, error) {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return nil, err
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		return &client{c, bufio.NewReader(c)}, nil
	}
	do := func(cl *client, cmd, key, arg string) (string, error) {
		if _, err := fmt.Fprintf(cl.c, "%s\n%s\n%s\n", cmd, key, arg); err != nil {
			return "", err
		}
		line, err := cl.r.ReadString('\n')
		return strings.TrimSuffix(line, "\n"), err
	}
	// leader finds the serving leader among the running nodes.
	leader := func() *node {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			for _, n := range nodes {
				if n.cmd == nil {
					continue
				}
				cl, err := dial(n.client)
				if err != nil {
					continue
				}
				line, err := do(cl, "cluster", "_", "")
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
	must := func(cl *client, cmd, key, arg, prefix string) string {
		t.Helper()
		line, err := do(cl, cmd, key, arg)
		if err != nil || !strings.HasPrefix(line, prefix) {
			t.Fatalf("%s %s %s = %q, %v; want %s...", cmd, key, arg, line, err, prefix)
		}
		return line
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
