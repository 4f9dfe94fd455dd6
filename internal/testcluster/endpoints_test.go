package testcluster

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/cluster"
	"github.com/dflockd/dflockd/internal/testutil"
)

// The `cluster` answer of every node lists every member with its client
// endpoints, the followers' included, and still does after the leader's
// death.
func TestClusterAnswerListsEveryMembersEndpoints(t *testing.T) {
	c := Start(t, Config{})
	want := make(map[string][]string)
	for _, n := range c.Nodes {
		want[n.ID] = []string{"tcp://" + n.Addr}
	}
	check := func(when string) {
		t.Helper()
		for _, n := range c.Nodes {
			if !n.Up() {
				continue
			}
			conn := testutil.Dial(t, n.Addr)
			var st cluster.NodeStatus
			deadline := time.Now().Add(5 * time.Second)
			for {
				line := conn.Do("cluster", "_", "")
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "ok ")), &st); err != nil {
					t.Fatalf("%s: cluster = %q: %v", n.ID, line, err)
				}
				if listsAll(st, want) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: %s answers members %+v, want every member with its endpoints %v", when, n.ID, st.Members, want)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	check("after start")
	old := c.Leader(t)
	c.Kill(old.Index)
	c.NewLeader(t, old)
	check("after the leader's death")
}

func listsAll(st cluster.NodeStatus, want map[string][]string) bool {
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
