package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/client"
	"github.com/dflockd/dflockd/internal/testcluster"
	"github.com/dflockd/dflockd/server"
)

// startCluster runs an in-process 3-node cluster whose servers take the
// auth token "s3cret", and waits for its leader.
func startCluster(t *testing.T) *testcluster.Cluster {
	t.Helper()
	tc := testcluster.Start(t, testcluster.Config{Server: server.Options{Auth: auth.Token("s3cret")}})
	tc.Leader(t)
	return tc
}

var clusterEnv = map[string]string{"DFLOCKD_AUTH_TOKEN": "s3cret"}

func TestClusterStatusTable(t *testing.T) {
	tc := startCluster(t)
	leader := tc.Leader(t)
	// Every node publishes its endpoints through the leader, shortly
	// after it is elected.
	deadline := time.Now().Add(10 * time.Second)
	for len(leader.Replica().State().Members()) != len(tc.Nodes) {
		if time.Now().After(deadline) {
			t.Fatalf("endpoints published: %+v", leader.Replica().State().Members())
		}
		time.Sleep(10 * time.Millisecond)
	}
	p := runCLI(t, clusterEnv, "--cluster", strings.Join(tc.Addrs(), ","), "cluster", "status")
	if p.code != 0 {
		t.Fatalf("exit %d: %s", p.code, p.stderr.String())
	}
	out := p.stdout.String()
	if !strings.HasPrefix(out, "leader: "+leader.ID+" (term ") {
		t.Errorf("output does not start with the leader:\n%s", out)
	}
	for _, want := range []string{"ID", "ROLE", "RAFT", "ENDPOINTS", "VOTER", "LAST CONTACT", "TERM", "COMMIT", "APPLIED"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %s column:\n%s", want, out)
		}
	}
	for _, n := range tc.Nodes {
		line := lineOf(out, n.ID+" ")
		role := "follower"
		if n == leader {
			role = "leader"
		}
		if !strings.Contains(line, " "+role+" ") || !strings.Contains(line, " yes ") {
			t.Errorf("row of %s: %q, want role %s, a voter", n.ID, line, role)
		}
		if !strings.Contains(line, "tcp://"+n.Addr) {
			t.Errorf("row of %s: %q, want its endpoint", n.ID, line)
		}
	}
	// Through the leader alone: the followers are asked at the
	// endpoints they published.
	p = runCLI(t, clusterEnv, "--cluster", leader.Addr, "cluster", "status")
	if p.code != 0 || strings.Count(p.stdout.String(), " follower ") != 2 {
		t.Fatalf("through the leader alone: exit %d, stdout:\n%s", p.code, p.stdout.String())
	}

	p = runCLI(t, clusterEnv, "--cluster", strings.Join(tc.Addrs(), ","), "cluster", "status", "--json")
	if p.code != 0 {
		t.Fatalf("--json: exit %d: %s", p.code, p.stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(p.stdout.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("--json: %d lines, want one per member:\n%s", len(lines), p.stdout.String())
	}
	for _, l := range lines {
		var st client.ClusterStatus
		if err := json.Unmarshal([]byte(l), &st); err != nil || st.Node == "" || len(st.Members) != 3 {
			t.Errorf("--json line %q: %v", l, err)
		}
	}

	// A member down shows as unreachable.
	f := tc.Followers()[0]
	tc.Kill(f.Index)
	p = runCLI(t, clusterEnv, "--cluster", strings.Join(tc.Addrs(), ","), "cluster", "status")
	if p.code != 0 {
		t.Fatalf("with %s down: exit %d: %s", f.ID, p.code, p.stderr.String())
	}
	if line := lineOf(p.stdout.String(), f.ID+" "); !strings.Contains(line, "unreachable") {
		t.Errorf("row of the killed %s: %q", f.ID, line)
	}
}

// lineOf returns the first line of out that starts with prefix.
func lineOf(out, prefix string) string {
	for l := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func TestClusterLockNoLeader(t *testing.T) {
	p := runCLI(t, nil, "--cluster", "127.0.0.1:1,127.0.0.1:2", "lock", "k")
	if p.code != exitFailure || !strings.Contains(p.stderr.String(), "no leader: 0 of 2 reachable (127.0.0.1:1: connection refused; 127.0.0.1:2: connection refused)") {
		t.Fatalf("exit %d, stderr %q", p.code, p.stderr.String())
	}
}

func TestClusterStatusNoMember(t *testing.T) {
	p := runCLI(t, nil, "--cluster", "127.0.0.1:1,127.0.0.1:2", "cluster", "status")
	if p.code != exitFailure || !strings.Contains(p.stderr.String(), "no member reachable") ||
		!strings.Contains(p.stderr.String(), "127.0.0.1:2") {
		t.Fatalf("exit %d, stderr %q", p.code, p.stderr.String())
	}
}

func TestClusterRemoveAddTransfer(t *testing.T) {
	tc := startCluster(t)
	leader := tc.Leader(t)
	addrs := strings.Join(tc.Addrs(), ",")

	p := runCLI(t, clusterEnv, "--cluster", addrs, "cluster", "remove", "n9")
	if p.code != exitFailure || !strings.Contains(p.stderr.String(), "n9 is not a member") {
		t.Fatalf("remove n9: exit %d, stderr %q", p.code, p.stderr.String())
	}
	p = runCLI(t, clusterEnv, "--cluster", addrs, "cluster", "transfer", "n9")
	if p.code != exitFailure || !strings.Contains(p.stderr.String(), "n9 is not a member") {
		t.Fatalf("transfer n9: exit %d, stderr %q", p.code, p.stderr.String())
	}
	// Without the token the leader refuses, and dflockctl says why.
	f := tc.Followers()[0]
	p = runCLI(t, nil, "--cluster", addrs, "cluster", "remove", f.ID)
	if p.code != exitFailure || !strings.Contains(p.stderr.String(), "auth") {
		t.Fatalf("remove without a token: exit %d, stderr %q", p.code, p.stderr.String())
	}

	// Remove a follower through the other follower; add it back.
	var via string
	for _, n := range tc.Followers() {
		if n != f {
			via = n.Addr
		}
	}
	raft := memberRaft(t, tc, f.ID)
	p = runCLI(t, clusterEnv, "--cluster", via, "cluster", "remove", f.ID)
	if p.code != 0 || !strings.Contains(p.stdout.String(), "removed "+f.ID) {
		t.Fatalf("remove %s: exit %d, stdout %q, stderr %q", f.ID, p.code, p.stdout.String(), p.stderr.String())
	}
	if memberRaft(t, tc, f.ID) != "" {
		t.Fatalf("%s still a member", f.ID)
	}
	p = runCLI(t, clusterEnv, "--cluster", via, "cluster", "add", f.ID, raft, "--non-voter")
	if p.code != 0 || !strings.Contains(p.stdout.String(), "added "+f.ID) {
		t.Fatalf("add %s: exit %d, stdout %q, stderr %q", f.ID, p.code, p.stdout.String(), p.stderr.String())
	}
	if memberRaft(t, tc, f.ID) != raft {
		t.Fatalf("%s not a member again", f.ID)
	}
	p = runCLI(t, clusterEnv, "--cluster", via, "cluster", "add", f.ID, raft)
	if p.code != exitFailure || !strings.Contains(p.stderr.String(), f.ID+" is already a member") {
		t.Fatalf("add %s twice: exit %d, stderr %q", f.ID, p.code, p.stderr.String())
	}

	p = runCLI(t, clusterEnv, "--cluster", addrs, "cluster", "transfer")
	if p.code != 0 || !strings.Contains(p.stdout.String(), "leadership moved from "+leader.ID+" to ") {
		t.Fatalf("transfer: exit %d, stdout %q, stderr %q", p.code, p.stdout.String(), p.stderr.String())
	}
	if nl := tc.NewLeader(t, leader); !strings.Contains(p.stdout.String(), " to "+nl.ID) {
		t.Errorf("transfer said %q; the leader is %s", p.stdout.String(), nl.ID)
	}
}

// memberRaft returns id's raft address in the leader's configuration, ""
// when it is not a member.
func memberRaft(t *testing.T, tc *testcluster.Cluster, id string) string {
	t.Helper()
	c, err := client.Dial(testCtx(t), "", client.Options{Cluster: tc.Addrs(), AuthToken: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.ClusterStatus(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := st.Member(id)
	return m.Raft
}

func TestClusterNoLeader(t *testing.T) {
	tc := startCluster(t)
	tc.Kill(0)
	tc.Kill(1)
	eventually(t, "the survivor to know no leader", func() bool {
		c, err := client.Dial(testCtx(t), tc.Nodes[2].Addr, client.Options{AuthToken: "s3cret"})
		if err != nil {
			return false
		}
		defer c.Close()
		st, err := c.ClusterStatus(testCtx(t))
		return err == nil && st.Leader == nil
	})
	p := runCLI(t, clusterEnv, "--cluster", strings.Join(tc.Addrs(), ","), "--dial-timeout", "1s", "cluster", "remove", "n1")
	if p.code != exitFailure || !strings.Contains(p.stderr.String(), "no leader: 1 of 3 reachable") {
		t.Fatalf("exit %d, stderr %q", p.code, p.stderr.String())
	}
}

// TestClusterLockRidesThroughFailover: dflockctl lock --cluster keeps the
// lock through the leader's kill: the command runs on undisturbed,
// nobody else gets the lock, past several leases, and it is released at
// the end.
func TestClusterLockRidesThroughFailover(t *testing.T) {
	tc := startCluster(t)
	dir := t.TempDir()
	p := start(t, clusterEnv, "--cluster", strings.Join(tc.Addrs(), ","), "lock", "--ttl", "2", "fo", "--",
		"sh", "-c", `touch "$1/started"; `+waitForGo+`; exit 5`, "sh", dir)
	eventually(t, "the command to start", func() bool { return exists(filepath.Join(dir, "started")) })
	inspect := func() *client.KeyInfo {
		c, err := client.Dial(testCtx(t), "", client.Options{Cluster: tc.Addrs(), AuthToken: "s3cret"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ki, err := c.Inspect(testCtx(t), "fo", false)
		if err != nil {
			t.Fatal(err)
		}
		return ki
	}
	ki := inspect()
	if len(ki.Holders) != 1 {
		t.Fatalf("holders %+v", ki.Holders)
	}
	fence := ki.Holders[0].Fence
	leader := tc.Leader(t)
	tc.Kill(leader.Index)
	tc.NewLeader(t, leader)
	// Past the lease and the new leader's grace: still held, same fence.
	time.Sleep(3 * time.Second)
	if ki := inspect(); len(ki.Holders) != 1 || ki.Holders[0].Fence != fence {
		t.Fatalf("after the failover: holders %+v, want fence %d", ki.Holders, fence)
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 5 {
		t.Fatalf("exit %d, want the command's 5; stderr:\n%s", code, p.stderr.String())
	}
	if ki := inspect(); len(ki.Holders) != 0 {
		t.Fatalf("still held after the command: %+v", ki.Holders)
	}
}

func TestClusterFlagValidation(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster", "a:1,b:1", "--server", "c:1", "lock", "k"}, "not both"},
		{[]string{"--cluster", "a:1,,b:1", "lock", "k"}, "empty address"},
		{[]string{"--cluster", "a:1,b:1", "--cluster", "c:1,d:1", "stats"}, "one cluster"},
		{[]string{"--cluster", "a:1,b:1", "--cluster", "c:1,d:1", "cluster", "status"}, "one cluster"},
	} {
		p := runCLI(t, nil, tt.args...)
		if p.code != exitUsage || !strings.Contains(p.stderr.String(), tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want usage error %q", tt.args, p.code, p.stderr.String(), tt.want)
		}
	}
}
