package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/testutil"
)

// `stats` (§5; edge 44).

var statsArrays = []string{"locks", "semaphores", "idle_locks", "idle_semaphores", "signal_channels"}

// Edge 44: the 1.x members (connections and five arrays) are present and
// every array is `[]`, never null, on an empty server. slow_consumers is
// our addition (§4.5 eviction count).
func TestEdge44_StatsArraysNeverNull(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	c := ts.dial(t)
	line := c.Do("stats", "_", "")
	if !strings.Contains(line, `"signal_channels":[]`) {
		t.Fatalf("stats %q lacks \"signal_channels\":[]", line)
	}
	st, raw := wireStats(t, c)
	if len(raw) != 14 || string(raw["slow_consumers"]) != "0" || string(raw["clients"]) == "null" ||
		string(raw["truncated"]) != "false" || string(raw["requests"]) != "2" ||
		string(raw["connections_by_transport"]) != `{"tcp":1}` ||
		string(raw["sessions"]) != "0" || string(raw["detached_sessions"]) != "0" {
		t.Fatalf("stats has %d members; want connections, five arrays, slow_consumers 0, clients, requests 2, "+
			"connections_by_transport, sessions 0, detached_sessions 0, totals and truncated false: %s", len(raw), line)
	}
	const zeroTotals = `{"locks":0,"semaphores":0,"idle_locks":0,"idle_semaphores":0,"signal_channels":0,"clients":1}`
	if string(raw["totals"]) != zeroTotals {
		t.Fatalf("totals = %s; want %s", raw["totals"], zeroTotals)
	}
	if string(raw["connections"]) != "1" || st.Connections != 1 {
		t.Fatalf("connections = %s; want 1", raw["connections"])
	}
	for _, k := range statsArrays {
		if string(raw[k]) != "[]" {
			t.Fatalf("stats member %q = %s; want []", k, raw[k])
		}
	}
	// Key and arg lines are ignored; the key may be empty.
	if line := c.Do("stats", "", "whatever"); !strings.HasPrefix(line, "ok {") {
		t.Fatalf("stats with empty key = %q", line)
	}

	// Arrays that become empty again are still [] (not null).
	tok := expectGrant(t, c.Do("l", "k", "0"), "ok", "33")
	c.Expect("r", "k", tok, "ok")
	_, raw = wireStats(t, c)
	for _, k := range []string{"locks", "semaphores", "idle_semaphores", "signal_channels"} {
		if string(raw[k]) != "[]" {
			t.Fatalf("stats member %q = %s; want []", k, raw[k])
		}
	}
}

// §5: the fields of every array, owner connection ids (sequential from
// 1), the lease clamped at 0, keys without namespace prefixes, and the
// connections count.
func TestStats_FieldsAndOwners(t *testing.T) {
	t.Parallel()
	ts, clk := startClock(t, Options{}, core.Options{})
	a := ts.dial(t)
	ping(t, a) // conn id 1
	b := ts.dial(t)
	ping(t, b) // 2
	c := ts.dial(t)
	ping(t, c) // 3
	ta := expectGrant(t, a.Do("l", "job", "0 25"), "ok", "25")
	ch := bg(b)
	b.Req("l", "job", "30")
	eventually(t, "b queued", func() bool { return waitersOf(ts.Engine, "job") == 1 })
	expectGrant(t, c.Do("sl", "pool", "0 3"), "ok", "33")
	expectGrant(t, c.Do("sl", "pool", "0 3"), "ok", "33")
	tok := expectGrant(t, c.Do("l", "old", "0"), "ok", "33")
	c.Expect("r", "old", tok, "ok")
	tok = expectGrant(t, c.Do("sl", "spare", "0 4"), "ok", "33")
	c.Expect("sr", "spare", tok, "ok")
	expectGrant(t, c.Do("l", "mine", "0 10"), "ok", "10")
	clk.Advance(12500 * time.Millisecond)

	st, raw := wireStats(t, c)
	if st.Connections != 3 {
		t.Fatalf("connections = %d; want 3", st.Connections)
	}
	want := map[string]core.LockStat{
		"job":  {Key: "job", OwnerConnID: 1, LeaseExpiresInS: 12.5, Waiters: 1, HeldS: 12.5},
		"mine": {Key: "mine", OwnerConnID: 3, LeaseExpiresInS: 0, Waiters: 0, HeldS: 12.5}, // expired, clamped
	}
	if len(st.Locks) != len(want) {
		t.Fatalf("locks = %+v; want %+v", st.Locks, want)
	}
	for _, l := range st.Locks {
		if l != want[l.Key] {
			t.Fatalf("lock %+v; want %+v", l, want[l.Key])
		}
	}
	if len(st.Semaphores) != 1 || st.Semaphores[0] != (core.SemaphoreStat{Key: "pool", Limit: 3, Holders: 2, Waiters: 0, HeldS: 12.5}) {
		t.Fatalf("semaphores = %+v", st.Semaphores)
	}
	if len(st.IdleLocks) != 1 || st.IdleLocks[0] != (core.IdleStat{Key: "old", IdleS: 12.5}) {
		t.Fatalf("idle_locks = %+v", st.IdleLocks)
	}
	if len(st.IdleSemaphores) != 1 || st.IdleSemaphores[0] != (core.IdleStat{Key: "spare", IdleS: 12.5}) {
		t.Fatalf("idle_semaphores = %+v", st.IdleSemaphores)
	}
	if string(raw["signal_channels"]) != "[]" {
		t.Fatalf("signal_channels = %s; want []", raw["signal_channels"])
	}
	// Exact member names of each entry; tokens are never exposed.
	members := map[string]string{
		"locks":           "held_s,key,lease_expires_in_s,owner_conn_id,waiters",
		"semaphores":      "held_s,holders,key,limit,waiters",
		"idle_locks":      "idle_s,key",
		"idle_semaphores": "idle_s,key",
	}
	for arr, names := range members {
		var entries []map[string]json.RawMessage
		if err := json.Unmarshal(raw[arr], &entries); err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			keys := make([]string, 0, len(e))
			for k := range e {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			if got := strings.Join(keys, ","); got != names {
				t.Fatalf("%s entry members %s; want %s", arr, got, names)
			}
		}
	}
	if strings.Contains(c.Do("stats", "_", ""), ta) {
		t.Fatal("stats exposes a token")
	}
	a.Expect("r", "job", ta, "ok")
	expectGrant(t, recv(t, ch), "ok", "33")
}

// §5: `connections` counts open connections and drops once clients close.
func TestStats_ConnectionsDropAfterClose(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	mon := ts.dial(t)
	var cs []*testutil.LineClient
	for range 4 {
		c := ts.dial(t)
		ping(t, c)
		cs = append(cs, c)
	}
	if st, _ := wireStats(t, mon); st.Connections != 5 {
		t.Fatalf("connections = %d; want 5", st.Connections)
	}
	cs[0].Conn.Close()
	cs[1].Conn.Close()
	eventually(t, "connections back to 3", func() bool {
		st, _ := wireStats(t, mon)
		return st.Connections == 3
	})
	for _, c := range cs[2:] {
		c.Conn.Close()
	}
	eventually(t, "connections back to 1", func() bool { return ts.Connections() == 1 })
	if st, _ := wireStats(t, mon); st.Connections != 1 {
		t.Fatalf("connections = %d; want 1", st.Connections)
	}
}

// statsCapped is the part of a stats answer the listing cap touches.
type statsCapped struct {
	Locks          []core.LockStat      `json:"locks"`
	Semaphores     []core.SemaphoreStat `json:"semaphores"`
	IdleLocks      []core.IdleStat      `json:"idle_locks"`
	IdleSemaphores []core.IdleStat      `json:"idle_semaphores"`
	SignalChannels []core.ChannelStat   `json:"signal_channels"`
	Clients        []clientStat         `json:"clients"`
	Totals         map[string]int       `json:"totals"`
	Truncated      bool                 `json:"truncated"`
}

func cappedStats(t *testing.T, c *testutil.LineClient) statsCapped {
	t.Helper()
	line := c.Do("stats", "_", "")
	body, ok := strings.CutPrefix(line, "ok ")
	if !ok {
		t.Fatalf("stats answer %q", line)
	}
	var st statsCapped
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("stats JSON %q: %v", body, err)
	}
	return st
}

// Options.StatsMaxItems caps every list of a stats answer; totals count
// everything and truncated says a list was cut. Zero is the default
// (1000), negative lists nothing.
func TestStats_MaxItems(t *testing.T) {
	t.Parallel()
	wantTotals := map[string]int{"locks": 5, "semaphores": 4, "idle_locks": 3, "idle_semaphores": 3,
		"signal_channels": 6, "clients": 4}
	setup := func(t *testing.T, maxItems int) *testutil.LineClient {
		ts := start(t, Options{StatsMaxItems: maxItems}, core.Options{})
		c := ts.dial(t)
		for i := range 5 {
			expectGrant(t, c.Do("l", fmt.Sprintf("l%d", i), "0"), "ok", "33")
		}
		for i := range 4 {
			expectGrant(t, c.Do("sl", fmt.Sprintf("s%d", i), "0 2"), "ok", "33")
		}
		for i := range 3 {
			tok := expectGrant(t, c.Do("l", fmt.Sprintf("il%d", i), "0"), "ok", "33")
			c.Expect("r", fmt.Sprintf("il%d", i), tok, "ok")
			tok = expectGrant(t, c.Do("sl", fmt.Sprintf("is%d", i), "0 3"), "ok", "33")
			c.Expect("sr", fmt.Sprintf("is%d", i), tok, "ok")
		}
		for i := range 4 {
			c.Expect("listen", fmt.Sprintf("ch%d", i), "", "ok")
		}
		c.Expect("listen", "ch.>", "", "ok")
		c.Expect("listen", "ch.>", "g", "ok")
		for range 3 {
			ping(t, ts.dial(t))
		}
		return c
	}
	for _, tc := range []struct {
		maxItems, listed int
		truncated        bool
	}{
		{0, 1000, false}, // the default lists everything here
		{2, 2, true},
		{6, 6, false}, // the longest list fits exactly
		{-1, 0, true},
	} {
		t.Run(fmt.Sprint(tc.maxItems), func(t *testing.T) {
			st := cappedStats(t, setup(t, tc.maxItems))
			if fmt.Sprint(st.Totals) != fmt.Sprint(wantTotals) {
				t.Fatalf("totals = %v; want %v", st.Totals, wantTotals)
			}
			if st.Truncated != tc.truncated {
				t.Fatalf("truncated = %v; want %v", st.Truncated, tc.truncated)
			}
			lens := map[string]int{"locks": len(st.Locks), "semaphores": len(st.Semaphores),
				"idle_locks": len(st.IdleLocks), "idle_semaphores": len(st.IdleSemaphores),
				"signal_channels": len(st.SignalChannels), "clients": len(st.Clients)}
			for k, n := range lens {
				if want := min(tc.listed, wantTotals[k]); n != want {
					t.Fatalf("%s lists %d entries; want %d (lists %v)", k, n, want, lens)
				}
			}
			if st.Locks == nil || st.SignalChannels == nil || st.Clients == nil {
				t.Fatal("a capped list is null; want []")
			}
		})
	}
}

// BenchmarkStatsAnswer builds one stats answer on a server holding 1,024
// locks with 240-byte keys and 100,000 subscriptions (issue 11's case):
//
//	go test -run '^$' -bench StatsAnswer -benchmem ./server/
func BenchmarkStatsAnswer(b *testing.B) {
	e := core.New(core.Options{MaxKeys: 2048})
	o := core.NewOwner(1)
	for i := range 1024 {
		key := fmt.Sprintf("%s%08d", strings.Repeat("k", 232), i)
		if _, _, err := e.Acquire(o, core.KindLock, key, core.AcquireOptions{TTL: time.Hour}); err != nil {
			b.Fatal(err)
		}
	}
	s := New(Options{Engine: e})
	p := &idleSub{}
	for i := range 100000 {
		if _, err := e.Subscribe(p, fmt.Sprintf("ch.%d", i), ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		ans, err := s.statsAnswer()
		if err != nil {
			b.Fatal(err)
		}
		recycleOut(ans) // as flushLocked does once it is written
	}
}

// idleSub is a subscriber that is never signalled.
type idleSub struct{ _ int }

func (*idleSub) Deliver([]byte) bool { return true }
func (*idleSub) Evict()              {}

// Connections pipelining stats at once while keys and subscriptions
// change all get complete, well-formed answers (answers are built one at
// a time in shared scratch and recycled buffers; -race checks the
// sharing).
func TestStats_ConcurrentPipelined(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{StatsMaxItems: 5}, core.Options{})
	churn := ts.dial(t)
	const conns, perConn = 4, 40
	done := make(chan error, conns)
	for range conns {
		c := ts.dial(t)
		c.Send(strings.Repeat("stats\n_\n\n", perConn))
		_ = c.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReaderSize(c.Conn, 1<<20)
		go func() {
			for i := range perConn {
				line, err := r.ReadString('\n')
				if err != nil {
					done <- fmt.Errorf("answer %d: %w", i, err)
					return
				}
				var st statsCapped
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "ok ")), &st); err != nil || st.Totals == nil {
					done <- fmt.Errorf("answer %d %.60q: %v", i, line, err)
					return
				}
				if len(st.Locks) > 5 || len(st.SignalChannels) > 5 {
					done <- fmt.Errorf("answer %d lists %d locks, %d channels; want at most 5", i, len(st.Locks), len(st.SignalChannels))
					return
				}
			}
			done <- nil
		}()
	}
	for i := range 20 {
		key := fmt.Sprintf("k%d", i)
		tok := expectGrant(t, churn.Do("l", key, "0"), "ok", "33")
		churn.Expect("listen", "ch"+key, "", "ok")
		if i%2 == 0 {
			churn.Expect("r", key, tok, "ok")
		}
	}
	for range conns {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// The stats pacer lets a run start at once after a quiet spell, and a run
// right after another only once as long as that one took has passed:
// stats builds take at most half of one core.
func TestPacer(t *testing.T) {
	var p pacer
	t0 := time.Unix(1000, 0)
	if w := p.wait(t0); w > 0 {
		t.Fatalf("first run waits %v", w)
	}
	p.done(t0, t0.Add(3*time.Millisecond))
	if w := p.wait(t0.Add(3 * time.Millisecond)); w != 3*time.Millisecond {
		t.Fatalf("back-to-back run waits %v; want 3ms", w)
	}
	if w := p.wait(t0.Add(5 * time.Millisecond)); w != time.Millisecond {
		t.Fatalf("run 2ms later waits %v; want 1ms", w)
	}
	if w := p.wait(t0.Add(time.Second)); w > 0 {
		t.Fatalf("run after a quiet spell waits %v", w)
	}
}
