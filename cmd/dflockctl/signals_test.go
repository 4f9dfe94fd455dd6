package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/dflockd/dflockd/client"
	"github.com/dflockd/dflockd/server"
)

// listeners returns the number of listeners of pattern (and group).
func listeners(st *client.Stats, pattern, group string) int {
	for _, c := range st.SignalChannels {
		if c.Pattern == pattern && c.Group == group {
			return c.Listeners
		}
	}
	return 0
}

// TestSignalListen: listen --count 1 prints the signal sent by signal,
// which prints the number of receivers.
func TestSignalListen(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, server.Options{})
	obs := ts.dial(t)
	l := start(t, nil, "--server", ts.addr, "listen", "jobs.>", "--count", "1")
	eventually(t, "the listener", func() bool { return listeners(ts.stats(t, obs), "jobs.>", "") == 1 })

	s := runCLI(t, nil, "--server", ts.addr, "signal", "jobs.build", "commit", "1a2b")
	if s.code != 0 || s.stdout.String() != "1\n" {
		t.Fatalf("signal: exit %d, stdout %q, stderr %q; want 0, \"1\\n\"", s.code, s.stdout.String(), s.stderr.String())
	}
	if code := l.wait(t); code != 0 {
		t.Fatalf("listen: exit %d; stderr:\n%s", code, l.stderr.String())
	}
	if got, want := l.stdout.String(), "jobs.build commit 1a2b\n"; got != want {
		t.Fatalf("listen printed %q; want %q", got, want)
	}

	// Nobody listens any more, once the server has seen the listener's
	// connection end (its exit closes it; the server notices right after).
	eventually(t, "the listener gone", func() bool { return listeners(ts.stats(t, obs), "jobs.>", "") == 0 })
	s = runCLI(t, nil, "--server", ts.addr, "signal", "jobs.build", "again")
	if s.code != 0 || s.stdout.String() != "0\n" {
		t.Fatalf("signal: exit %d, stdout %q; want 0, \"0\\n\"", s.code, s.stdout.String())
	}
	// Wildcards are for listening only.
	s = runCLI(t, nil, "--server", ts.addr, "signal", "jobs.*", "x")
	if s.code != exitUsage {
		t.Fatalf("signal to a pattern: exit %d, want %d", s.code, exitUsage)
	}
}

// TestListenGroup: members of a queue group share the signals.
func TestListenGroup(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, server.Options{})
	obs := ts.dial(t)
	var ls []*proc
	for range 2 {
		ls = append(ls, start(t, nil, "--server", ts.addr, "listen", "work", "--group", "g", "--count", "1"))
	}
	eventually(t, "both group members", func() bool { return listeners(ts.stats(t, obs), "work", "g") == 2 })
	for _, payload := range []string{"one", "two"} {
		if s := runCLI(t, nil, "--server", ts.addr, "signal", "work", payload); s.stdout.String() != "1\n" {
			t.Fatalf("signal %s: stdout %q, stderr %q; want one receiver", payload, s.stdout.String(), s.stderr.String())
		}
	}
	var got []string
	for i, l := range ls {
		if code := l.wait(t); code != 0 {
			t.Fatalf("listener %d: exit %d; stderr:\n%s", i, code, l.stderr.String())
		}
		got = append(got, strings.TrimSpace(l.stdout.String()))
	}
	if !(got[0] == "work one" && got[1] == "work two" || got[0] == "work two" && got[1] == "work one") {
		t.Fatalf("listeners printed %q; want one signal each", got)
	}
}

// TestListenInterrupted: listen without --count runs until interrupted
// (here: its context ends) and then exits 0.
func TestListenInterrupted(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, server.Options{})
	obs := ts.dial(t)
	l := start(t, nil, "--server", ts.addr, "listen", "x.*")
	eventually(t, "the listener", func() bool { return listeners(ts.stats(t, obs), "x.*", "") == 1 })
	l.cancel()
	if code := l.wait(t); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, l.stderr.String())
	}
}

// TestStats: the table lists every section with its entries; --json
// prints the server's object.
func TestStats(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, server.Options{})
	ctx := testCtx(t)
	c := ts.dial(t)
	if _, _, err := c.Acquire(ctx, "stats-lock", 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.SemAcquire(ctx, "stats-sem", 0, 3); err != nil {
		t.Fatal(err)
	}
	sc, err := client.NewSignalConn(ctx, ts.addr, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	if err := sc.Listen(ctx, "stats.*", client.WithGroup("grp")); err != nil {
		t.Fatal(err)
	}

	p := runCLI(t, nil, "--server", ts.addr, "stats")
	if p.code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", p.code, p.stderr.String())
	}
	out := p.stdout.String()
	for _, re := range []string{
		`(?m)^connections: 3 +sessions: 0 \(0 detached\) +slow consumers: 0$`,
		`(?m)^Locks \(1\)\n +KEY +OWNER +LEASE LEFT +WAITERS\n +stats-lock +\d+ +\d+\.\ds +0$`,
		`(?m)^Semaphores \(1\)\n +KEY +LIMIT +HOLDERS +WAITERS\n +stats-sem +3 +1 +0$`,
		`(?m)^Idle keys \(0\)\n +\(none\)$`,
		`(?m)^Signal channels \(1\)\n +PATTERN +GROUP +LISTENERS\n +stats\.\* +grp +1$`,
		`(?m)^Clients \(3\)\n +ID +TRANSPORT +REMOTE +IDENTITY +NAME\n +\d+ +tcp +127\.0\.0\.1:\d+ +- +-$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("table does not match %s:\n%s", re, out)
		}
	}

	p = runCLI(t, nil, "--server", ts.addr, "stats", "--json")
	if p.code != 0 {
		t.Fatalf("--json: exit %d; stderr:\n%s", p.code, p.stderr.String())
	}
	var st client.Stats
	if err := json.Unmarshal([]byte(p.stdout.String()), &st); err != nil {
		t.Fatalf("--json printed %q: %v", p.stdout.String(), err)
	}
	if !lockHeld(&st, "stats-lock") || len(st.Semaphores) != 1 || len(st.SignalChannels) != 1 {
		t.Fatalf("--json: %+v", st)
	}
}
