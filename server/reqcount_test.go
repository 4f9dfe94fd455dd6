package server

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
)

// stats' requests counts every dispatched request, of live and of closed
// connections, the stats request itself included; connections_by_transport
// counts the open connections of each transport.
func TestStats_RequestsAndTransports(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a := ts.dial(t)
	b := ts.dial(t)
	for range 3 {
		ping(t, a)
	}
	for range 2 {
		ping(t, b)
	}
	if err := b.Conn.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b forgotten", func() bool { return ts.Connections() == 1 })

	_, raw := wireStats(t, a)
	var got struct {
		Requests    uint64         `json:"requests"`
		ByTransport map[string]int `json:"connections_by_transport"`
	}
	if err := json.Unmarshal(raw["requests"], &got.Requests); err != nil {
		t.Fatalf("requests %s: %v", raw["requests"], err)
	}
	if err := json.Unmarshal(raw["connections_by_transport"], &got.ByTransport); err != nil {
		t.Fatalf("connections_by_transport %s: %v", raw["connections_by_transport"], err)
	}
	if got.Requests != 6 { // 3 + 2 pings, and this stats
		t.Fatalf("requests = %d; want 6", got.Requests)
	}
	if len(got.ByTransport) != 1 || got.ByTransport["tcp"] != 1 {
		t.Fatalf("connections_by_transport = %v; want map[tcp:1]", got.ByTransport)
	}
	_, raw = wireStats(t, a)
	if string(raw["requests"]) != "7" {
		t.Fatalf("requests = %s on the next stats; want 7", raw["requests"])
	}
}

// A key's held_s counts from its grant, a queued waiter's grant included,
// and a semaphore's from its longest-standing holder.
func TestStats_HeldSince(t *testing.T) {
	t.Parallel()
	ts, clk := startClock(t, Options{}, core.Options{})
	a := ts.dial(t)
	b := ts.dial(t)
	ta := expectGrant(t, a.Do("l", "job", "0 100"), "ok", "100")
	ch := bg(b)
	b.Req("l", "job", "30 100")
	eventually(t, "b queued", func() bool { return waitersOf(ts.Engine, "job") == 1 })
	expectGrant(t, a.Do("sl", "pool", "0 3 100"), "ok", "100")
	clk.Advance(4 * time.Second)
	expectGrant(t, a.Do("sl", "pool", "0 3 100"), "ok", "100")
	clk.Advance(3 * time.Second)
	a.Expect("r", "job", ta, "ok") // b is granted job at 7s
	expectGrant(t, recv(t, ch), "ok", "100")
	clk.Advance(2 * time.Second)

	st, _ := wireStats(t, a)
	if len(st.Locks) != 1 || st.Locks[0].HeldS != 2 || st.Locks[0].OwnerConnID != 2 {
		t.Fatalf("locks = %+v; want job held 2s by conn 2", st.Locks)
	}
	if len(st.Semaphores) != 1 || st.Semaphores[0].HeldS != 9 {
		t.Fatalf("semaphores = %+v; want pool held_s 9 (its first holder)", st.Semaphores)
	}
}
