package server

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/testutil"
)

// inspectT is the decoded answer of `inspect`.
type inspectT struct {
	Key     string `json:"key"`
	Kind    string `json:"kind"`
	Exists  bool   `json:"exists"`
	Limit   int    `json:"limit"`
	Holders []struct {
		Fence      uint64  `json:"fence"`
		ConnID     uint64  `json:"conn_id"`
		Remote     string  `json:"remote"`
		Identity   string  `json:"identity"`
		Name       string  `json:"name"`
		LeaseLeftS float64 `json:"lease_left_s"`
		HeldForS   float64 `json:"held_for_s"`
		Enqueued   bool    `json:"enqueued"`
	} `json:"holders"`
	Waiters []struct {
		ConnID   uint64  `json:"conn_id"`
		Remote   string  `json:"remote"`
		Identity string  `json:"identity"`
		Name     string  `json:"name"`
		WaitingS float64 `json:"waiting_s"`
		Enqueued bool    `json:"enqueued"`
	} `json:"waiters"`
	Totals struct {
		Holders int `json:"holders"`
		Waiters int `json:"waiters"`
	} `json:"totals"`
	Truncated bool `json:"truncated"`
}

func wireInspect(t *testing.T, c *testutil.LineClient, key, arg string) (inspectT, string) {
	t.Helper()
	line := c.Do("inspect", key, arg)
	body, ok := strings.CutPrefix(line, "ok ")
	if !ok {
		t.Fatalf("inspect answer %q; want ok <json>", line)
	}
	var in inspectT
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		t.Fatalf("inspect JSON %q: %v", body, err)
	}
	return in, line
}

func authed(t *testing.T, ts *testServer) *testutil.LineClient {
	t.Helper()
	c := ts.dial(t)
	c.Expect("auth", "_", "s3cret", "ok")
	return c
}

// inspect shows the holder (fence, remote, identity, name, lease left
// falling with the clock, held for) and the waiters in FIFO order, two-
// phase places marked, never a token; names show in stats and the log.
func TestInspect_HoldersAndWaiters(t *testing.T) {
	t.Parallel()
	var logs testutil.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ts, clk := startClock(t, Options{Auth: auth.Token("s3cret"), Logger: log}, core.Options{})
	a := authed(t, ts)
	a.Expect("name", "_", "backup-job-7", "ok")
	tok := expectGrant(t, a.Do("l", "job", "0 30"), "ok", "30")
	clk.Advance(5 * time.Second)

	b := authed(t, ts)
	ch := bg(b)
	b.Req("l", "job", "60")
	eventually(t, "b queued", func() bool { return waitersOf(ts.Engine, "job") == 1 })
	clk.Advance(time.Second)
	c := authed(t, ts)
	c.Expect("name", "_", " host-12 worker ", "ok")
	c.Expect("e", "job", "", "queued")

	d := authed(t, ts)
	in, line := wireInspect(t, d, "job", "")
	if strings.Contains(line, tok) || strings.Contains(line, tok[16:]) {
		t.Fatalf("inspect shows the token: %s", line)
	}
	fence, _ := core.FenceFromToken(tok)
	if in.Key != "job" || in.Kind != "lock" || !in.Exists || in.Limit != 1 || in.Truncated ||
		in.Totals.Holders != 1 || in.Totals.Waiters != 2 || len(in.Holders) != 1 || len(in.Waiters) != 2 {
		t.Fatalf("inspect = %s", line)
	}
	h := in.Holders[0]
	if h.Fence != fence || h.ConnID != 1 || h.Remote != a.Conn.LocalAddr().String() || h.Identity != "token" ||
		h.Name != "backup-job-7" || h.LeaseLeftS != 24 || h.HeldForS != 6 || h.Enqueued {
		t.Fatalf("holder = %+v (fence want %d)", h, fence)
	}
	w0, w1 := in.Waiters[0], in.Waiters[1]
	if w0.ConnID != 2 || w0.Remote != b.Conn.LocalAddr().String() || w0.Name != "" || w0.WaitingS != 1 || w0.Enqueued {
		t.Fatalf("first waiter = %+v", w0)
	}
	if w1.ConnID != 3 || w1.Name != "host-12 worker" || w1.Identity != "token" || w1.WaitingS != 0 || !w1.Enqueued {
		t.Fatalf("second waiter = %+v", w1)
	}

	clk.Advance(2 * time.Second)
	if in, _ := wireInspect(t, d, "job", "lock"); in.Holders[0].LeaseLeftS != 22 || in.Holders[0].HeldForS != 8 ||
		in.Waiters[0].WaitingS != 3 {
		t.Fatalf("after 2s: %+v", in)
	}

	// A rename replaces the name; stats lists it per client.
	a.Expect("name", "_", "backup-job-8", "ok")
	cs := wireClients(t, d)
	if cs[1] != "backup-job-8" || cs[3] != "host-12 worker" || cs[2] != "" {
		t.Fatalf("stats clients names = %v", cs)
	}

	// The release hands on to b; a's name leaves the key.
	a.Expect("r", "job", tok, "ok")
	expectGrant(t, <-ch, "ok", "33")
	if in, _ := wireInspect(t, d, "job", ""); in.Holders[0].ConnID != 2 || len(in.Waiters) != 1 {
		t.Fatalf("after release: %+v", in)
	}
	a.Conn.Close()
	eventually(t, "close logged with the name", func() bool {
		return strings.Contains(logs.String(), `msg="connection closed" conn=1`) &&
			strings.Contains(logs.String(), `name=backup-job-8`)
	})
	if !strings.Contains(logs.String(), `msg="connection named" conn=3`) {
		t.Fatalf("naming not logged:\n%s", logs.String())
	}
}

// wireClients maps conn id to name from the stats clients list.
func wireClients(t *testing.T, c *testutil.LineClient) map[uint64]string {
	t.Helper()
	_, raw := wireStats(t, c)
	var cs []clientStat
	if err := json.Unmarshal(raw["clients"], &cs); err != nil {
		t.Fatal(err)
	}
	out := make(map[uint64]string)
	for _, c := range cs {
		out[c.ID] = c.Name
	}
	if !strings.Contains(string(raw["clients"]), `"name":""`) {
		t.Fatalf("clients without a name lack \"name\":\"\": %s", raw["clients"])
	}
	return out
}

// Semaphores are inspected with arg `sem`; an unknown key answers ok
// with exists false; lists are capped by StatsMaxItems with totals.
func TestInspect_SemaphoreUnknownAndCap(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{StatsMaxItems: 2}, core.Options{})
	c := ts.dial(t)
	for range 3 {
		expectGrant(t, c.Do("sl", "pool", "0 3"), "ok", "33")
	}
	ws := make([]*testutil.LineClient, 4)
	for i := range ws {
		ws[i] = ts.dial(t)
		ws[i].Expect("se", "pool", "3", "queued")
	}
	in, line := wireInspect(t, c, "pool", "sem")
	if in.Kind != "semaphore" || in.Limit != 3 || len(in.Holders) != 2 || len(in.Waiters) != 2 ||
		in.Totals.Holders != 3 || in.Totals.Waiters != 4 || !in.Truncated {
		t.Fatalf("capped inspect = %s", line)
	}
	if in.Waiters[0].ConnID != 2 || in.Waiters[1].ConnID != 3 || !in.Waiters[0].Enqueued {
		t.Fatalf("capped waiters are not the head of the queue: %s", line)
	}
	// The lock namespace has no key "pool".
	in, line = wireInspect(t, c, "pool", "")
	if in.Exists || in.Kind != "lock" || in.Limit != 0 || in.Holders == nil || in.Waiters == nil || in.Truncated {
		t.Fatalf("unknown key = %s", line)
	}
	if !strings.Contains(line, `"holders":[]`) || !strings.Contains(line, `"waiters":[]`) {
		t.Fatalf("empty lists are not []: %s", line)
	}
}

// Malformed extension requests answer `error` and leave the connection
// usable: a bad name (too long, not ASCII, empty), an unknown namespace
// word (what a client written for another extension might send), a bad
// key.
func TestInspect_BadRequests(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	c := ts.dial(t)
	for _, r := range [][3]string{
		{"name", "_", strings.Repeat("n", 65)},
		{"name", "_", "caf\u00e9"},
		{"name", "_", "  "},
		{"name", "_", "a\x01b"},
		{"inspect", "job", "semaphore"},
		{"inspect", "job", "lock sem"},
		{"inspect", "a b", ""},
	} {
		c.Expect(r[0], r[1], r[2], "error")
	}
	ping(t, c)
	if cs := wireClients(t, c); cs[1] != "" {
		t.Fatalf("a refused name was kept: %q", cs[1])
	}
}

// A lease kept after its connection closed (KeepOnDisconnect) still shows
// who took it.
func TestInspect_KeptLeaseOfClosedConnection(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{KeepOnDisconnect: true})
	a := ts.dial(t)
	a.Expect("name", "_", "cron-nightly", "ok")
	expectGrant(t, a.Do("l", "job", "0 300"), "ok", "300")
	remote := a.Conn.LocalAddr().String()
	a.Conn.Close()
	eventually(t, "a gone", func() bool { return ts.Connections() == 0 })
	in, line := wireInspect(t, ts.dial(t), "job", "")
	if len(in.Holders) != 1 || in.Holders[0].Name != "cron-nightly" || in.Holders[0].Remote != remote || in.Holders[0].ConnID != 1 {
		t.Fatalf("kept lease = %s", line)
	}
}
