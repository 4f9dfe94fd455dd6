package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/client"
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/testserver"
	"github.com/dflockd/dflockd/internal/testutil"
)

// topWorkload makes, on a server whose engine reads clk: lock a held 8s
// with no queue, semaphore pool (limit 3, one holder) held 7s with no
// queue, lock b held 3s with 2 waiters, lock c held 0s with 1 waiter.
func topWorkload(t *testing.T, ts *testserver.Server, clk *testutil.Clock) {
	t.Helper()
	h := ts.Line(t)
	h.Expect("ping", "_", "", "ok")
	if f := h.Fields("l", "a", "0 100"); f[0] != "ok" {
		t.Fatalf("l a: %q", f)
	}
	clk.Advance(time.Second)
	if f := h.Fields("sl", "pool", "0 3 100"); f[0] != "ok" {
		t.Fatalf("sl pool: %q", f)
	}
	clk.Advance(4 * time.Second)
	if f := h.Fields("l", "b", "0 100"); f[0] != "ok" {
		t.Fatalf("l b: %q", f)
	}
	clk.Advance(3 * time.Second)
	if f := h.Fields("l", "c", "0 100"); f[0] != "ok" {
		t.Fatalf("l c: %q", f)
	}
	for _, key := range []string{"b", "b", "c"} {
		w := ts.Line(t)
		w.Req("l", key, "60")
	}
	eventually(t, "3 waiters queued", func() bool {
		n := 0
		for _, l := range ts.Engine.Stats().Locks {
			n += l.Waiters
		}
		return n == 3
	})
}

// TestTopOnce: top --once against a server with held locks and queued
// waiters lists the longest queues and the oldest holders in order.
func TestTopOnce(t *testing.T) {
	t.Parallel()
	clk := testutil.NewClock()
	ts := testserver.Start(t, "tcp", testserver.Config{Engine: core.Options{Now: clk.Now}, NoRun: true})
	topWorkload(t, ts, clk)

	p := runCLI(t, nil, "-s", ts.Addr, "top", "--once")
	if p.code != 0 {
		t.Fatalf("exit %d, stderr %q", p.code, p.stderr.String())
	}
	out := p.stdout.String()
	if strings.ContainsRune(out, '\x1b') {
		t.Fatalf("escape codes in --once output:\n%q", out)
	}
	lines := strings.Split(out, "\n")
	// 1 holder + 3 waiters + top's own connection.
	for _, want := range []string{"conns 5 (tcp 5)", "ops/s -", "held 4   waiting 3   locks 3   semaphores 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	keysUnder := func(title string) []string {
		var keys []string
		for i, l := range lines {
			if !strings.HasPrefix(l, title) {
				continue
			}
			for _, r := range lines[i+2:] { // skip the column header
				if r == "" {
					break
				}
				f := strings.Fields(r)
				keys = append(keys, f[0]+":"+f[len(f)-1])
			}
		}
		return keys
	}
	if got, want := keysUnder("LONGEST QUEUES (2)"), []string{"2:b", "1:c"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("queues (waiters:key) = %v; want %v\n%s", got, want, out)
	}
	if got, want := keysUnder("OLDEST HOLDERS (4)"), []string{"8.0s:a", "7.0s:pool", "3.0s:b", "0.0s:c"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("holders (held:key) = %v; want %v\n%s", got, want, out)
	}

	// --keys caps each table and says "N of M".
	p = runCLI(t, nil, "-s", ts.Addr, "top", "--once", "--keys", "1")
	out = p.stdout.String()
	if !strings.Contains(out, "LONGEST QUEUES (1 of 2)") || !strings.Contains(out, "OLDEST HOLDERS (1 of 4)") {
		t.Errorf("--keys 1:\n%s", out)
	}

	// --json prints the sample: its time and the raw stats answer.
	p = runCLI(t, nil, "-s", ts.Addr, "top", "--once", "--json")
	var sample struct {
		Time  time.Time    `json:"time"`
		Stats client.Stats `json:"stats"`
	}
	if err := json.Unmarshal([]byte(p.stdout.String()), &sample); err != nil || p.code != 0 {
		t.Fatalf("--json: exit %d, %v: %q", p.code, err, p.stdout.String())
	}
	if sample.Time.IsZero() || len(sample.Stats.Locks) != 3 || sample.Stats.Requests == 0 {
		t.Errorf("--json sample = %+v", sample)
	}
}

// fakeTicker is a topClock whose ticks the test sends and whose clock
// moves 2s per sample.
func fakeTicker() (*topClock, chan time.Time) {
	tick := make(chan time.Time)
	at := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	n := 0
	clk := &topClock{
		now: func() time.Time {
			n++
			return at.Add(time.Duration(n-1) * 2 * time.Second)
		},
		tick: func(time.Duration) (<-chan time.Time, func()) { return tick, func() {} },
	}
	return clk, tick
}

// TestTopLines: when stdout is not a terminal, top prints one summary
// line per interval with the top keys indented under it, plain text with
// no escape byte, and derives ops/s from successive samples.
func TestTopLines(t *testing.T) {
	t.Parallel()
	clk := testutil.NewClock()
	ts := testserver.Start(t, "tcp", testserver.Config{Engine: core.Options{Now: clk.Now}, NoRun: true})
	topWorkload(t, ts, clk)
	fake, tick := fakeTicker()
	c := &TopCmd{Interval: 2, Count: 2, Keys: 1, clock: fake}
	srv := target{addr: ts.Addr, timeout: 5 * time.Second, endpoint: ts.Addr}
	var out testutil.SyncBuffer
	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() { done <- c.run(ctx, srv, strings.NewReader(""), &out) }()

	eventually(t, "the first update", func() bool { return strings.Count(out.String(), "\n") == 3 })
	busy := ts.Line(t)
	for range 10 {
		busy.Expect("ping", "_", "", "ok")
	}
	tick <- time.Time{}
	if err := <-done; err != nil {
		t.Fatalf("top: %v", err)
	}
	got := out.String()
	if strings.ContainsRune(got, '\x1b') {
		t.Fatalf("escape byte in line output:\n%q", got)
	}
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	want := []string{
		"2026-12-02T12:00:00Z conns=5 tcp=5 ops/s=- requests=%s held=4 waiting=3 locks=3 semaphores=1",
		"  queue waiters=2 holders=1/1 held=3.0s key=b",
		"  holder held=8.0s holders=1/1 waiters=0 lease=92.0s owner=1 key=a",
		"2026-12-02T12:00:02Z conns=6 tcp=6 ops/s=5.0 requests=%s held=4 waiting=3 locks=3 semaphores=1",
		"  queue waiters=2 holders=1/1 held=3.0s key=b",
		"  holder held=8.0s holders=1/1 waiters=0 lease=92.0s owner=1 key=a",
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines; want %d:\n%s", len(lines), len(want), got)
	}
	for i, w := range want {
		// The request counter's value depends on the workload's requests
		// the test does not count; the rate is what is checked.
		prefix, suffix, _ := strings.Cut(w, "%s")
		if !strings.HasPrefix(lines[i], prefix) || !strings.HasSuffix(lines[i], suffix) {
			t.Errorf("line %d = %q; want %q", i, lines[i], w)
		}
	}
}

// sample builds a topSample at second at with stats st.
func sampleAt(at int, st client.Stats) *topSample {
	return &topSample{At: time.Unix(int64(at), 0), Stats: st}
}

// TestOpsPerSec: the rate between two samples leaves out top's own stats
// request, and is unknown without a counter, when it goes back, or
// without time between the samples.
func TestOpsPerSec(t *testing.T) {
	for _, tc := range []struct {
		name      string
		a, b      *topSample
		want      float64
		wantKnown bool
	}{
		{"busy", sampleAt(10, client.Stats{Requests: 100}), sampleAt(12, client.Stats{Requests: 301}), 100, true},
		{"idle", sampleAt(10, client.Stats{Requests: 100}), sampleAt(12, client.Stats{Requests: 101}), 0, true},
		{"no counter", sampleAt(10, client.Stats{}), sampleAt(12, client.Stats{}), 0, false},
		{"restarted", sampleAt(10, client.Stats{Requests: 100}), sampleAt(12, client.Stats{Requests: 5}), 0, false},
		{"no time", sampleAt(10, client.Stats{Requests: 100}), sampleAt(10, client.Stats{Requests: 200}), 0, false},
	} {
		got, ok := opsPerSec(tc.a, tc.b)
		if got != tc.want || ok != tc.wantKnown {
			t.Errorf("%s: opsPerSec = %v, %v; want %v, %v", tc.name, got, ok, tc.want, tc.wantKnown)
		}
	}
}

// TestSummarize: held and waiting add up locks and semaphore slots; the
// queues are ordered by waiters (then held time, then key) and the
// holders by held time (then key); truncated lists show "N of M".
func TestSummarize(t *testing.T) {
	st := client.Stats{
		Connections:            7,
		ConnectionsByTransport: map[string]int{"unix": 2, "tcp": 5},
		Requests:               1000,
		Locks: []client.LockStat{
			{Key: "q1", OwnerConnID: 3, HeldS: 1, LeaseExpiresInS: 29, Waiters: 4},
			{Key: "free-but-queued", Waiters: 4},
			{Key: "old", OwnerConnID: 4, HeldS: 90, LeaseExpiresInS: 5},
			{Key: "q2", OwnerConnID: 5, HeldS: 2, Waiters: 4},
		},
		Semaphores: []client.SemaphoreStat{{Key: "pool", Limit: 5, Holders: 3, Waiters: 9, HeldS: 90}},
		Totals:     &client.StatsTotals{Locks: 40, Semaphores: 1},
		Truncated:  true,
	}
	v := summarize(sampleAt(0, client.Stats{Requests: 801}), sampleAt(2, st))
	if v.Held != 6 || v.Waiting != 21 || !v.HasRate || v.OpsPerSec != 99 {
		t.Fatalf("held %d waiting %d rate %v %v; want 6, 21, 99", v.Held, v.Waiting, v.OpsPerSec, v.HasRate)
	}
	keys := func(rows []keyRow) string {
		var k []string
		for _, r := range rows {
			k = append(k, r.Key)
		}
		return strings.Join(k, " ")
	}
	if got, want := keys(v.Queues), "pool q2 q1 free-but-queued"; got != want {
		t.Errorf("queues = %s; want %s", got, want)
	}
	if got, want := keys(v.Holders), "old pool q2 q1"; got != want {
		t.Errorf("holders = %s; want %s", got, want)
	}
	lines := renderScreen(v, "tcp://h:1", "", 10, 0, 0)
	for i, want := range map[int]string{
		1: "conns 7 (tcp 5, unix 2)   ops/s 99.0   requests 1000   slow consumers 0",
		2: "held 6   waiting 21   locks 4 of 40   semaphores 1   (stats truncated: counts cover the listed keys)",
	} {
		if lines[i] != want {
			t.Errorf("line %d = %q; want %q", i, lines[i], want)
		}
	}
	head := renderLines(v, 1)[0]
	if want := " conns=7 tcp=5 unix=2 ops/s=99.0 requests=1000 held=6 waiting=21 locks=4/40 semaphores=1 truncated"; !strings.HasSuffix(head, want) {
		t.Errorf("summary line %q; want suffix %q", head, want)
	}
}

// TestRenderScreenFits: a screen never has more lines than the terminal
// has rows, nor a line longer than its width; the tables share the rows
// left, and keys cannot carry escape sequences.
func TestRenderScreenFits(t *testing.T) {
	st := client.Stats{Connections: 1, Requests: 1}
	for i := range 30 {
		st.Locks = append(st.Locks, client.LockStat{
			Key: fmt.Sprintf("key-%02d-with-a-rather-long-name\x1b[2J", i), OwnerConnID: uint64(i + 1), HeldS: float64(i), Waiters: i % 3,
		})
	}
	v := summarize(nil, sampleAt(0, st))
	for _, size := range [][2]int{{80, 24}, {40, 12}, {20, 5}, {200, 100}, {10, 1}} {
		w, h := size[0], size[1]
		lines := renderScreen(v, "tcp://127.0.0.1:6388", "   every 2s   q quits", 0, w, h)
		if len(lines) > h {
			t.Errorf("%dx%d: %d lines", w, h, len(lines))
		}
		for _, l := range lines {
			if n := len([]rune(l)); n > w {
				t.Errorf("%dx%d: line of %d columns: %q", w, h, n, l)
			}
			if strings.ContainsRune(l, '\x1b') {
				t.Errorf("%dx%d: escape byte in %q", w, h, l)
			}
		}
		if h == 100 && len(lines) != topFixed+len(v.Queues)+len(v.Holders) {
			t.Errorf("%dx%d: %d lines; want every key (%d)", w, h, len(lines), topFixed+len(v.Queues)+len(v.Holders))
		}
	}
	for _, tc := range []struct{ q, h, room, wantQ, wantH int }{
		{3, 4, 20, 3, 4},   // both fit
		{30, 30, 10, 5, 5}, // half each
		{30, 2, 10, 8, 2},  // the queues take what the holders leave
		{2, 30, 10, 2, 8},
		{5, 5, -3, 0, 0},
	} {
		if q, h := fitRows(tc.q, tc.h, tc.room); q != tc.wantQ || h != tc.wantH {
			t.Errorf("fitRows(%d, %d, %d) = %d, %d; want %d, %d", tc.q, tc.h, tc.room, q, h, tc.wantQ, tc.wantH)
		}
	}
	if got := cut("abcdef", 4); got != "abc>" {
		t.Errorf("cut = %q", got)
	}
	if got := clean("a\x1b[0m\x07b\xffé"); got != "a?[0m?b?é" {
		t.Errorf("clean = %q", got)
	}
}

// TestTopUsage: bad top flags are usage errors.
func TestTopUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"top", "--interval", "0"},
		{"top", "--interval", "500ms"},
		{"top", "--json"},
		{"top", "--keys", "0"},
		{"top", "--count", "-1"},
		{"-s", "a,b", "top"},
	} {
		if p := runCLI(t, nil, args...); p.code != exitUsage {
			t.Errorf("%q: exit %d; want %d (stderr %q)", args, p.code, exitUsage, p.stderr.String())
		}
	}
}

// TestTopLineLoopEnds: the line loop ends quietly when its context ends
// (SIGINT, SIGTERM) and with the error of a failed sample.
func TestTopLineLoopEnds(t *testing.T) {
	t.Parallel()
	fake, tick := fakeTicker()
	c := &TopCmd{Interval: 1, Keys: 1}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out testutil.SyncBuffer
	n := 0
	boom := errors.New("boom")
	sample := func() (*topSample, error) {
		n++
		if n == 3 {
			return nil, boom
		}
		return sampleAt(n, client.Stats{Requests: uint64(n)}), nil
	}
	done := make(chan error, 1)
	go func() { done <- c.lineLoop(ctx, fake, sample, &out) }()
	tick <- time.Time{}
	tick <- time.Time{}
	if err := <-done; !errors.Is(err, boom) {
		t.Fatalf("lineLoop = %v; want the sample's error", err)
	}
	if got := strings.Count(out.String(), "\n"); got != 2 {
		t.Fatalf("%d lines before the error; want 2:\n%s", got, out.String())
	}

	n = 0
	go func() { done <- c.lineLoop(ctx, fake, sample, &out) }()
	tick <- time.Time{}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("lineLoop after cancel = %v; want nil", err)
	}
}
