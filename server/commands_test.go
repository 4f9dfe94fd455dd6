package server

import (
	"strings"
	"testing"

	"github.com/dflockd/dflockd/core"
)

// Success answers and their exact formats (§2.1, §2.3, §2.4).

// §2.1: `l` answers `ok <32 hex> <ttl>`, the default lease 33 when none is
// given; `r` answers bare `ok`; `ping` answers `ok` whatever its lines.
func TestCommands_LockReleaseFormats(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	c := ts.dial(t)

	tok := expectGrant(t, c.Do("l", "k", "0"), "ok", "33")
	c.Expect("r", "k", tok, "ok")

	tok = expectGrant(t, c.Do("l", "k", "10 60"), "ok", "60")
	c.Expect("r", "k", tok, "ok")

	// Leading sign and zeros are fine; runs of whitespace split fields.
	tok = expectGrant(t, c.Do("l", "k", "+0   007"), "ok", "7")
	c.Expect("r", "k", "  "+tok+" \t", "ok") // the token line is trimmed
	tok = expectGrant(t, c.Do("l", "k", " 5\t9 "), "ok", "9")
	c.Expect("r", "k", tok, "ok")

	c.Expect("ping", "_", "", "ok")
	c.Expect("ping", "", "", "ok")
	c.Expect("ping", "anything at all", "ignored too", "ok")
}

// §3: every grant gets a fresh 32-hex token; keys are byte strings with no
// restriction beyond whitespace (dots, colons, unicode are fine).
func TestCommands_TokensUniqueAndKeysOpaque(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	c := ts.dial(t)
	seen := map[string]bool{}
	for _, key := range []string{"a.b.c", "x:y:z", "ключ", "日本", "*", ">", "a/b\\c", strings.Repeat("k", 256)} {
		tok := expectGrant(t, c.Do("l", key, "0"), "ok", "33")
		if seen[tok] {
			t.Fatalf("token %s issued twice", tok)
		}
		seen[tok] = true
	}
	st, _ := wireStats(t, c)
	if len(st.Locks) != 8 {
		t.Fatalf("stats locks = %+v; want 8 held keys", st.Locks)
	}
	if _, ok := findLock(st.Locks, "ключ"); !ok {
		t.Fatalf("unicode key missing from stats: %+v", st.Locks)
	}
}

// §2.3 Renew: `n` answers `ok <ttl>` with the requested TTL, or the server
// default when omitted (edge 10 in lease_test.go checks the lease itself).
func TestCommands_RenewFormats(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	c := ts.dial(t)
	tok := expectGrant(t, c.Do("l", "k", "0 5"), "ok", "5")
	c.Expect("n", "k", tok, "ok 33")
	c.Expect("n", "k", tok+" 60", "ok 60")
	c.Expect("n", "k", " "+tok+"  +0012 ", "ok 12")

	stok := expectGrant(t, c.Do("sl", "s", "0 2 8"), "ok", "8")
	c.Expect("sn", "s", stok, "ok 33")
	c.Expect("sn", "s", stok+" 4", "ok 4")
	c.Expect("sr", "s", stok, "ok")
	c.Expect("r", "k", tok, "ok")
	// Released: renew and release now fail.
	c.Expect("n", "k", tok, "error")
	c.Expect("r", "k", tok, "error")
	c.Expect("sn", "s", stok, "error")
	c.Expect("sr", "s", stok, "error")
	// Unknown key.
	c.Expect("r", "nokey", tok, "error")
	c.Expect("n", "nokey", tok, "error")
}

// §2.3 semaphores: `sl` grants up to limit holders with distinct tokens,
// one connection may hold several slots, a try past the limit times out.
func TestCommands_SemaphoreSlots(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a, b := ts.dial(t), ts.dial(t)
	t1 := expectGrant(t, a.Do("sl", "pool", "0 3"), "ok", "33")
	t2 := expectGrant(t, a.Do("sl", "pool", "0 3 20"), "ok", "20")
	t3 := expectGrant(t, b.Do("sl", "pool", "5 3"), "ok", "33")
	if t1 == t2 || t2 == t3 || t1 == t3 {
		t.Fatal("semaphore slots share a token")
	}
	b.Expect("sl", "pool", "0 3", "timeout")
	st, _ := wireStats(t, b)
	if s, ok := findSem(st.Semaphores, "pool"); !ok || s.Limit != 3 || s.Holders != 3 || s.Waiters != 0 {
		t.Fatalf("stats semaphores = %+v; want pool limit 3 holders 3 waiters 0", st.Semaphores)
	}
	b.Expect("sr", "pool", t2, "ok") // any connection may release (edge 12)
	t4 := expectGrant(t, b.Do("sl", "pool", "0 3"), "ok", "33")
	for _, tok := range []string{t1, t3, t4} {
		a.Expect("sr", "pool", tok, "ok")
	}
	// Lock commands do not see the semaphore namespace.
	a.Expect("r", "pool", t1, "error")
}

// §2.3 two-phase: `e` answers `acquired <token> <ttl>` or `queued`, `w`
// answers `ok <token> <ttl>` with the TTL given at enqueue.
func TestCommands_TwoPhaseFormats(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a, b := ts.dial(t), ts.dial(t)

	tok := expectGrant(t, a.Do("e", "k", ""), "acquired", "33")
	if got := expectGrant(t, a.Do("w", "k", "0"), "ok", "33"); got != tok {
		t.Fatalf("w token %s; want the enqueue token %s", got, tok)
	}
	b.Expect("e", "k", "  21 ", "queued")
	a.Expect("r", "k", tok, "ok")
	// b's record was granted when a released; w returns it at once.
	tb := expectGrant(t, b.Do("w", "k", "5"), "ok", "21")
	b.Expect("r", "k", tb, "ok")

	// Semaphore flavour.
	s1 := expectGrant(t, a.Do("se", "s", "2 9"), "acquired", "9")
	s2 := expectGrant(t, b.Do("se", "s", "2"), "acquired", "33")
	c := ts.dial(t)
	c.Expect("se", "s", "2 7", "queued")
	if got := expectGrant(t, a.Do("sw", "s", "3"), "ok", "9"); got != s1 {
		t.Fatalf("sw token %s; want %s", got, s1)
	}
	ch := bg(c)
	c.Req("sw", "s", "10")
	a.Expect("sr", "s", s1, "ok")
	expectGrant(t, recv(t, ch), "ok", "7")
	b.Expect("sr", "s", s2, "ok")
}

// §2.4 `auth` without a configured token answers `error` and the
// connection stays open (edge 32 first half; auth_test.go has the rest).
func TestEdge32_AuthWithoutConfiguredTokenIsError(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	c := ts.dial(t)
	c.Expect("auth", "_", "whatever", "error")
	c.Expect("auth", "_", "", "error")
	ping(t, c)
	expectGrant(t, c.Do("l", "k", "0"), "ok", "33")
}
