package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// endpointsOf gives node i of a test cluster the endpoints of its
// generation gen.
func endpointsOf(i, gen int) []string {
	return []string{fmt.Sprintf("tcp://127.0.0.1:%d", 7000+10*i+gen), fmt.Sprintf("unix:///run/n%d-%d.sock", i+1, gen)}
}

// listsAll reports whether r's status lists every member of want with
// exactly its endpoints.
func listsAll(r *Replica, want map[string][]string) bool {
	st := r.Status()
	if len(st.Members) != len(want) {
		return false
	}
	for _, m := range st.Members {
		if !slices.Equal(m.Endpoints, want[m.ID]) {
			return false
		}
	}
	return true
}

// waitListsAll waits up to 5 s for every running node to list want.
func waitListsAll(t *testing.T, tr *testReplicas, want map[string][]string, when string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		missing := ""
		for _, r := range tr.nodes {
			if r != nil && !listsAll(r, want) {
				missing = fmt.Sprintf("%s: %+v", r.node.ID(), r.Status().Members)
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not every member's endpoints are listed, want %v; %s", when, want, missing)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Every member's client endpoints reach the replicated member list, the
// followers' through the leader; they stay listed after the leader dies,
// and a node restarted with other endpoints replaces its own.
func TestEveryMemberPublishesItsEndpoints(t *testing.T) {
	tr := newTestReplicas(t, 3, 0, func(i int, cfg *ReplicaConfig) { cfg.Endpoints = endpointsOf(i, 0) })
	want := make(map[string][]string)
	for i, c := range tr.cfgs {
		want[c.Node.ID] = endpointsOf(i, 0)
	}
	waitListsAll(t, tr, want, "after start")

	_, li := tr.leader()
	tr.stop(li)
	tr.leader()
	waitListsAll(t, tr, want, "after the leader's death")

	tr.cfgs[li].Endpoints = endpointsOf(li, 1)
	want[tr.cfgs[li].Node.ID] = endpointsOf(li, 1)
	tr.start(li)
	waitListsAll(t, tr, want, "after a restart with new endpoints")
}

// Only the leader takes announcements, and only for another member of
// the configuration: a node id not in it, or removed from it, is refused
// and sets nothing; a removed member's endpoints are forgotten.
func TestAnnouncementsOnlyFromMembers(t *testing.T) {
	tr := newTestReplicas(t, 3, 0)
	leader, li := tr.leader()
	laddr := leader.node.Stream().Addr().String()
	fi := (li + 1) % 3
	f := tr.nodes[fi]
	ctx := context.Background()
	send := func(to string, node string) error {
		return f.node.Stream().sendAnnouncement(ctx, raft.ServerAddress(to), node, []string{"tcp://evil:1"})
	}
	expectRefused := func(err error, why string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), why) {
			t.Fatalf("announcement: %v, want refused (%s)", err, why)
		}
	}

	expectRefused(send(laddr, "intruder"), "not a member")
	expectRefused(send(laddr, leader.node.ID()), "own id")
	other := tr.nodes[(li+2)%3]
	expectRefused(send(other.node.Stream().Addr().String(), f.node.ID()), "not the leader")
	if ms := leader.State().Members(); len(ms) != 0 {
		t.Fatalf("a refused announcement set %+v", ms)
	}

	// A member may (the way its own loop does).
	if err := send(laddr, f.node.ID()); err != nil {
		t.Fatalf("a member's announcement: %v", err)
	}
	if !leader.published(f.node.ID(), []string{"tcp://evil:1"}) {
		t.Fatal("a member's accepted announcement is not in the member list")
	}

	// Removed, it may not, and its endpoints are forgotten.
	if err := leader.RemoveMember(f.node.ID()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the removed member's endpoints forgotten", func() bool { return len(leader.State().Members()) == 0 })
	expectRefused(send(laddr, f.node.ID()), "not a member")
	if len(leader.State().Members()) != 0 {
		t.Fatalf("a removed member's announcement set %+v", leader.State().Members())
	}
}

// Over mutual TLS the followers' announcements reach the leader too, and
// a node without a certificate of the cluster's CA cannot even deliver
// one.
func TestEndpointsOverMutualTLS(t *testing.T) {
	ca := newTestCA(t)
	tr := newTestReplicas(t, 3, 0, func(i int, cfg *ReplicaConfig) {
		cfg.Endpoints = endpointsOf(i, 0)
		cfg.Node.TLS = ca.config(t, cfg.Node.ID)
	})
	want := make(map[string][]string)
	for i, c := range tr.cfgs {
		want[c.Node.ID] = endpointsOf(i, 0)
	}
	waitListsAll(t, tr, want, "after start")

	leader, li := tr.leader()
	stranger := listenStream(t, newTestCA(t).config(t, "n2"))
	victim := tr.cfgs[(li+1)%3].Node.ID
	err := stranger.sendAnnouncement(context.Background(), raft.ServerAddress(leader.node.Stream().Addr().String()), victim, []string{"tcp://evil:1"})
	if err == nil {
		t.Fatal("an announcement over a link with a foreign certificate was taken")
	}
	if !leader.published(victim, want[victim]) {
		t.Fatalf("the member list changed: %+v", leader.State().Members())
	}
}
