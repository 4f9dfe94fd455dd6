package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/testutil"
)

// Pub/sub signals over the wire: §4 (names, subscriptions, delivery and
// receiver count, push frames, slow consumers), §5 signal_channels, §7.2
// disconnect cleanup; edges 34–45 and 54. Matching itself is unit-tested
// exhaustively in core/pubsub_test.go; these tests check what a client
// sees on a real loopback TCP connection.

// --- helpers ---------------------------------------------------------------

// dialPS is dialWire with a reader large enough for 64 KiB frames.
func dialPS(addr string) (*wire, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &wire{conn: c, r: bufio.NewReaderSize(c, 1<<17), buf: make([]byte, 0, 128)}, nil
}

// mustDialPS dials for the test goroutine and closes the connection when
// the test ends.
func mustDialPS(t testing.TB, addr string) *wire {
	t.Helper()
	w, err := dialPS(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.close)
	return w
}

// mustExpect sends one request on w and fails unless the answer is want.
func mustExpect(t testing.TB, w *wire, cmd, key, arg, want string) {
	t.Helper()
	line, err := w.do(cmd, key, arg)
	if err != nil || line != want {
		t.Fatalf("%s %q %.40q = %q, %v; want %q", cmd, key, arg, line, err, want)
	}
}

// startSmallSendPS starts a server whose accepted connections have a small
// SO_SNDBUF (smallSendBuffers, timeouts_test.go), so that a listener that
// does not read blocks its pusher's write after a few large frames and its
// push queue really fills.
func startSmallSendPS(t testing.TB, opts Options) *testServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startOn(t, smallSendBuffers{l}, opts, core.Options{}, true)
}

// bigSize is the payload size used to fill socket buffers quickly.
const bigSize = 60 << 10

var bigFill = strings.Repeat("x", bigSize-9)

// bigPayload is a 60 KiB payload carrying sequence number i.
func bigPayload(i int) string { return fmt.Sprintf("%08d:", i) + bigFill }

// bigSeq parses a frame "sig <ch> <bigPayload(i)>" and returns i; ok is
// false unless the line is such a frame with its payload intact.
func bigSeq(line, ch string) (int, bool) {
	p, ok := strings.CutPrefix(line, "sig "+ch+" ")
	if !ok || len(p) != bigSize || p[8] != ':' || p[9:] != bigFill {
		return -1, false
	}
	n, err := strconv.Atoi(p[:8])
	return n, err == nil
}

// expectUnordered reads len(want) lines from c and fails unless they are
// the lines of want in some order (a push may come before or after an
// answer, §4.4).
func expectUnordered(t testing.TB, c *testutil.LineClient, want ...string) []string {
	t.Helper()
	got := make([]string, len(want))
	for i := range got {
		got[i] = c.ReadLine()
	}
	a, b := slices.Clone(got), slices.Clone(want)
	slices.Sort(a)
	slices.Sort(b)
	if !slices.Equal(a, b) {
		t.Fatalf("lines %q; want %q in any order", got, want)
	}
	return got
}

// fence proves that nothing else is queued for the listeners ls: every
// listener has `listen fence` (and no other subscription matching
// "fence"); a signal on it reaches each of them (count len(ls)) and, since
// a connection's frames arrive in publish order (§4.4), must be the very
// next line each of them reads. A duplicate or stray frame published
// earlier would be read instead.
func fence(t testing.TB, p *testutil.LineClient, ls ...*testutil.LineClient) {
	t.Helper()
	p.Expect("signal", "fence", "end", fmt.Sprintf("ok %d", len(ls)))
	for _, l := range ls {
		expectLine(t, l, "sig fence end")
	}
}

// slowConsumers reads stats.slow_consumers.
func slowConsumers(t testing.TB, c *testutil.LineClient) uint64 {
	t.Helper()
	_, raw := wireStats(t, c)
	n, err := strconv.ParseUint(string(raw["slow_consumers"]), 10, 64)
	if err != nil {
		t.Fatalf("stats slow_consumers = %s: %v", raw["slow_consumers"], err)
	}
	return n
}

// signalChannels reads stats.signal_channels as "pattern|group" →
// listeners, checking the members of each entry: pattern, listeners, and
// group only when non-empty (§5, edge 44).
func signalChannels(t testing.TB, c *testutil.LineClient) (map[string]int, string) {
	t.Helper()
	_, raw := wireStats(t, c)
	sc, ok := raw["signal_channels"]
	if !ok {
		t.Fatal("stats lacks signal_channels")
	}
	var ents []map[string]json.RawMessage
	if err := json.Unmarshal(sc, &ents); err != nil || ents == nil {
		t.Fatalf("signal_channels = %s (%v); want an array", sc, err)
	}
	out := make(map[string]int)
	for _, e := range ents {
		var pattern, group string
		var n int
		if err := json.Unmarshal(e["pattern"], &pattern); err != nil || pattern == "" {
			t.Fatalf("entry %s: bad pattern", sc)
		}
		if err := json.Unmarshal(e["listeners"], &n); err != nil || n < 1 {
			t.Fatalf("entry %s: bad listeners", sc)
		}
		if g, ok := e["group"]; ok {
			if err := json.Unmarshal(g, &group); err != nil || group == "" {
				t.Fatalf("entry %s: group present but empty (must be omitted)", sc)
			}
		}
		if len(e) != 2+btoi(group != "") {
			t.Fatalf("entry %s: unexpected members", sc)
		}
		k := pattern + "|" + group
		if _, dup := out[k]; dup {
			t.Fatalf("signal_channels %s lists %q twice", sc, k)
		}
		out[k] = n
	}
	return out, string(sc)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// receivers publishes a probe on ch and returns the receiver count.
func receivers(t testing.TB, p *testutil.LineClient, ch string) int {
	t.Helper()
	line := p.Do("signal", ch, "probe")
	s, ok := strings.CutPrefix(line, "ok ")
	n, err := strconv.Atoi(s)
	if !ok || err != nil {
		t.Fatalf("signal %s = %q; want ok <n>", ch, line)
	}
	return n
}

// lineFeed reads a connection's lines in the background.
type lineFeed struct {
	lines chan string
	done  chan struct{}
	err   error  // why reading stopped; valid once lines is closed
	tail  string // bytes after the last LF when reading stopped
}

// newFeed starts reading w. The connection is closed when the test ends.
func newFeed(t testing.TB, w *wire) *lineFeed {
	f := &lineFeed{lines: make(chan string, 1<<14), done: make(chan struct{})}
	go func() {
		defer close(f.lines)
		for {
			_ = w.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			line, err := w.r.ReadString('\n')
			if err != nil {
				f.err, f.tail = err, line
				return
			}
			select {
			case f.lines <- strings.TrimSuffix(line, "\n"):
			case <-f.done:
				return
			}
		}
	}()
	t.Cleanup(func() { close(f.done); w.close() })
	return f
}

// next returns the next line, failing if none arrives within 5 s or the
// connection ended.
func (f *lineFeed) next(t testing.TB) string {
	t.Helper()
	select {
	case l, ok := <-f.lines:
		if !ok {
			t.Fatalf("connection ended: %v (tail %.40q)", f.err, f.tail)
		}
		return l
	case <-time.After(5 * time.Second):
		t.Fatal("no line within 5s")
		return ""
	}
}

// --- basic answers and frames (§4.2–4.4) -------------------------------------

// §4.2–4.4: listen/unlisten answer ok; signal answers ok <receivers> (ok 0
// without listeners); the frame is "sig <channel> <payload>" with the
// payload verbatim (leading, inner and trailing spaces, TABs; trailing CRs
// of the request line stripped, §1).
func TestPubSub_ListenSignalFrames(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	l, p := ts.dial(t), ts.dial(t)
	p.Expect("signal", "a.b", "hello", "ok 0")
	l.Expect("listen", "a.b", "", "ok")
	l.Expect("listen", "fence", "", "ok")
	p.Expect("signal", "a.b", "hello", "ok 1")
	expectLine(t, l, "sig a.b hello")
	for _, payload := range []string{"  x  y", "x  ", " ", "\tt ab", "a\tb", "sig a.b fake", "ok"} {
		if strings.TrimSpace(payload) == "" {
			continue // covered by edge 34
		}
		p.Expect("signal", "a.b", payload, "ok 1")
		expectLine(t, l, "sig a.b "+payload)
	}
	p.Send("signal\na.b\nhi there\r\r\n")
	expectLine(t, p, "ok 1")
	expectLine(t, l, "sig a.b hi there")
	p.Expect("signal", "a.c", "x", "ok 0")   // other channel
	p.Expect("signal", "a.b.c", "x", "ok 0") // a literal pattern matches only itself
	p.Expect("signal", "a", "x", "ok 0")
	fence(t, p, l)

	l.Expect("unlisten", "a.b", "", "ok")
	p.Expect("signal", "a.b", "hello", "ok 0")
	fence(t, p, l)
	ping(t, l)
}

// Edge 45: a publisher that listens on the channel receives its own
// signal, is counted, and may see the push before or after its `ok 1`.
func TestPubSub_Edge45_PublisherReceivesOwnSignal(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	c := ts.dial(t)
	c.Expect("listen", "a.b", "", "ok")
	pushFirst := 0
	for i := range 50 {
		payload := "mine " + strconv.Itoa(i)
		c.Req("signal", "a.b", payload)
		if got := expectUnordered(t, c, "ok 1", "sig a.b "+payload); got[0] != "ok 1" {
			pushFirst++
		}
	}
	t.Logf("push before the answer in %d of 50 signals", pushFirst)
	ping(t, c)
}

// §4.1 on the wire: the wildcard forms deliver as specified (a small
// sample; core/pubsub_test.go has the full table).
func TestPubSub_WildcardMatchingOnWire(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	l, p := ts.dial(t), ts.dial(t)
	cases := []struct {
		pattern string
		yes, no []string
	}{
		{"*", []string{"a", "ab"}, []string{"a.b"}},
		{">", []string{"a", "a.b.c"}, nil},
		{"a.*.c", []string{"a.x.c", "a..c"}, []string{"a.c", "a.x.y.c", "a.x.c.d"}},
		{"a.>", []string{"a.b", "a.b.c", "a."}, []string{"a", "ab.c"}},
		{"a..b", []string{"a..b"}, []string{"a.b", "a.x.b"}},
	}
	for _, tc := range cases {
		l.Expect("listen", tc.pattern, "", "ok")
		for _, ch := range tc.yes {
			p.Expect("signal", ch, "m", "ok 1")
			expectLine(t, l, "sig "+ch+" m")
		}
		for _, ch := range tc.no {
			p.Expect("signal", ch, "m", "ok 0")
		}
		l.Expect("unlisten", tc.pattern, "", "ok")
	}
	if got, sc := signalChannels(t, p); len(got) != 0 {
		t.Fatalf("signal_channels after unlistening everything = %s", sc)
	}
}

// --- validation (edges 34, 35) ----------------------------------------------

// Edge 34: signal to a channel with '*' or '>' anywhere, with an empty or
// whitespace-only payload, or with an empty channel answers `error`;
// nothing is delivered (a `>` listener sees only the fence) and the
// connection stays open.
func TestPubSub_Edge34_SignalRejects(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	l, p := ts.dial(t), ts.dial(t)
	l.Expect("listen", ">", "", "ok")
	for _, ch := range []string{"a.*", "a.>", "*", ">", "a*", "x>", "a.b*c", "*.b", ">.b"} {
		p.Expect("signal", ch, "x", "error")
	}
	for _, payload := range []string{"", " ", "   ", "\t", " \t  "} {
		p.Expect("signal", "a.b", payload, "error")
	}
	p.Send("signal\na.b\n \r\n") // whitespace once the CR is stripped
	expectLine(t, p, "error")
	p.Expect("signal", "", "x", "error")
	p.Expect("signal", "a b", "x", "error")
	ping(t, p)
	// The `>` listener is the fence's only other match: it reads the
	// fence and nothing before it. (fence needs count 1 here.)
	p.Expect("signal", "fence", "end", "ok 1")
	expectLine(t, l, "sig fence end")
	p.Expect("signal", "a.b", "fine", "ok 1")
	expectLine(t, l, "sig a.b fine")
}

// Edge 35: listen and unlisten with a misplaced or embedded wildcard answer
// `error` (with or without a group) and keep the connection open; the
// valid forms answer ok.
func TestPubSub_Edge35_PatternValidation(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	c := ts.dial(t)
	for _, bad := range []string{"a.>.b", "a.b*", "x>", "*a", "a.**", ">.a", "a.>>", ">>", "a*.b", "a.b>"} {
		for _, cmd := range []string{"listen", "unlisten"} {
			c.Expect(cmd, bad, "", "error")
			c.Expect(cmd, bad, "g", "error")
		}
	}
	c.Expect("listen", "", "", "error")
	c.Expect("listen", "a b", "", "error")
	ping(t, c)
	if got, sc := signalChannels(t, c); len(got) != 0 {
		t.Fatalf("rejected listens left subscriptions: %s", sc)
	}
	valid := []string{"*", ">", "a.*.c", "a.>", "*.*", "*.>", "a..b", "a.", ".a"}
	for _, v := range valid {
		c.Expect("listen", v, "", "ok")
	}
	if got, sc := signalChannels(t, c); len(got) != len(valid) {
		t.Fatalf("signal_channels = %s; want %d entries", sc, len(valid))
	}
	for _, v := range valid {
		c.Expect("unlisten", v, "", "ok")
	}
	if got, sc := signalChannels(t, c); len(got) != 0 {
		t.Fatalf("signal_channels after unlisten = %s; want []", sc)
	}
}

// --- subscriptions (edges 36–38, §4.2) --------------------------------------

// Edge 36: a duplicate listen (same pattern and group; the group is
// trimmed) is idempotent: ok, one copy, one count.
func TestPubSub_Edge36_DuplicateListenIdempotent(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	l, p := ts.dial(t), ts.dial(t)
	l.Expect("listen", "fence", "", "ok")
	l.Expect("listen", "a.b", "", "ok")
	l.Expect("listen", "a.b", "", "ok")
	l.Expect("listen", "a.b", "  ", "ok") // empty group after trimming
	p.Expect("signal", "a.b", "once", "ok 1")
	expectLine(t, l, "sig a.b once")
	fence(t, p, l)

	l.Expect("listen", "a.*", "g", "ok")
	l.Expect("listen", "a.*", " g ", "ok")
	p.Expect("signal", "a.b", "twice", "ok 2") // plain + group (edge 38)
	expectLine(t, l, "sig a.b twice")
	expectLine(t, l, "sig a.b twice")
	fence(t, p, l)
	if got, sc := signalChannels(t, p); got["a.b|"] != 1 || got["a.*|g"] != 1 {
		t.Fatalf("signal_channels = %s; want one listener each", sc)
	}
	// One unlisten removes the (single) subscription.
	l.Expect("unlisten", "a.b", "", "ok")
	l.Expect("unlisten", "a.*", "g", "ok")
	p.Expect("signal", "a.b", "none", "ok 0")
}

// Edge 36 (v1.16): at --max-subscriptions a duplicate listen is still ok
// while a new (pattern, group) pair is refused; unlisten frees a slot;
// an unlisten that removes nothing does not.
func TestPubSub_Edge36_DuplicateListenAtMaxSubscriptions(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{MaxSubscriptions: 2}, core.Options{})
	c, p := ts.dial(t), ts.dial(t)
	c.Expect("listen", "a", "", "ok")
	c.Expect("listen", "b", "", "ok")
	c.Expect("listen", "c", "", "error")
	c.Expect("listen", "a", "", "ok")   // duplicate at the cap
	c.Expect("listen", "a", "  ", "ok") // still the ungrouped duplicate
	c.Expect("listen", "a", "g", "error")
	c.Expect("listen", "*", "", "error")
	ping(t, c)
	c.Expect("unlisten", "zzz", "", "ok") // removes nothing
	c.Expect("listen", "c", "", "error")
	c.Expect("unlisten", "b", "", "ok")
	c.Expect("listen", "c", "", "ok")
	c.Expect("listen", "b", "", "error")
	c.Expect("unlisten", "b", "", "ok") // not subscribed: no slot freed
	c.Expect("listen", "b", "", "error")
	p.Expect("signal", "a", "x", "ok 1")
	p.Expect("signal", "b", "x", "ok 0")
	p.Expect("signal", "c", "x", "ok 1")
	// The cap is per connection.
	p.Expect("listen", "b", "", "ok")
	p.Expect("listen", "d", "", "ok")
	p.Expect("listen", "e", "", "error")
}

// Edge 37: a connection subscribed to several non-grouped patterns that
// match a channel (a.b + a.*, a.* + a.>, or all of them) receives one
// copy and is counted once; two such connections count 2.
func TestPubSub_Edge37_OneCopyPerConnection(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	p := ts.dial(t)
	l1, l2, l3 := ts.dial(t), ts.dial(t), ts.dial(t)
	for _, l := range []*testutil.LineClient{l1, l2, l3} {
		l.Expect("listen", "fence", "", "ok")
	}
	l1.Expect("listen", "a.b", "", "ok")
	l1.Expect("listen", "a.*", "", "ok")
	l2.Expect("listen", "x.*", "", "ok")
	l2.Expect("listen", "x.>", "", "ok")
	for _, pat := range []string{"q.r", "q.*", "q.>", "*.r"} {
		l3.Expect("listen", pat, "", "ok")
	}
	p.Expect("signal", "a.b", "1", "ok 1")
	p.Expect("signal", "x.y", "2", "ok 1")
	p.Expect("signal", "q.r", "3", "ok 1")
	expectLine(t, l1, "sig a.b 1")
	expectLine(t, l2, "sig x.y 2")
	expectLine(t, l3, "sig q.r 3")
	fence(t, p, l1, l2, l3)
	// Two connections with overlapping patterns: one each; l3's `>`
	// also matches the fence and m.n, still one copy each.
	l3.Expect("listen", ">", "", "ok")
	l1.Expect("listen", "m.*", "", "ok")
	l2.Expect("listen", "m.n", "", "ok")
	l2.Expect("listen", "m.>", "", "ok")
	p.Expect("signal", "m.n", "4", "ok 3") // l1, l2 and l3 (via >)
	expectLine(t, l1, "sig m.n 4")
	expectLine(t, l2, "sig m.n 4")
	expectLine(t, l3, "sig m.n 4")
	fence(t, p, l1, l2, l3)
}

// Edge 38: a connection that is an individual subscriber and a group
// member (or a member of two groups) receives a copy for each and is
// counted for each.
func TestPubSub_Edge38_PlainAndGroupCopies(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	l, p := ts.dial(t), ts.dial(t)
	l.Expect("listen", "fence", "", "ok")
	l.Expect("listen", "a.b", "", "ok")
	l.Expect("listen", "a.b", "g", "ok")
	p.Expect("signal", "a.b", "two", "ok 2")
	expectLine(t, l, "sig a.b two")
	expectLine(t, l, "sig a.b two")
	fence(t, p, l)
	l.Expect("listen", "a.*", "g2", "ok")
	l.Expect("listen", "a.*", "", "ok") // deduplicated against a.b
	p.Expect("signal", "a.b", "three", "ok 3")
	for range 3 {
		expectLine(t, l, "sig a.b three")
	}
	fence(t, p, l)
}

// §4.2: unlisten removes exactly the (pattern, group) pair: a grouped
// subscription survives an ungrouped unlisten and vice versa (exact and
// wildcard patterns); unlisten of something never subscribed is ok.
func TestPubSub_UnlistenGroupedVersusPlain(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	l, p := ts.dial(t), ts.dial(t)
	ts.dial(t).Expect("unlisten", "never", "", "ok") // connection that never listened
	l.Expect("listen", "fence", "", "ok")
	for _, pc := range [][2]string{{"a.b", "a.b"}, {"w.*", "w.x"}} {
		pat, ch := pc[0], pc[1]
		l.Expect("listen", pat, "", "ok")
		l.Expect("listen", pat, "g", "ok")
		p.Expect("signal", ch, "1", "ok 2")
		expectLine(t, l, "sig "+ch+" 1")
		expectLine(t, l, "sig "+ch+" 1")
		l.Expect("unlisten", pat, "g", "ok")
		p.Expect("signal", ch, "2", "ok 1") // plain left
		expectLine(t, l, "sig "+ch+" 2")
		l.Expect("listen", pat, "g", "ok")
		l.Expect("unlisten", pat, "", "ok")
		p.Expect("signal", ch, "3", "ok 1") // group left
		expectLine(t, l, "sig "+ch+" 3")
		l.Expect("unlisten", pat, "", "ok") // already gone: still ok
		l.Expect("unlisten", pat, "other", "ok")
		l.Expect("unlisten", pat, "g", "ok")
		p.Expect("signal", ch, "4", "ok 0")
		fence(t, p, l)
	}
	l.Expect("unlisten", "nope", "", "ok")
	l.Expect("unlisten", "nope.>", "g", "ok")
	if got, sc := signalChannels(t, p); len(got) != 1 || got["fence|"] != 1 {
		t.Fatalf("signal_channels = %s; want only fence", sc)
	}
}

// §4.3: queue groups are keyed by (pattern, group): group w on jobs.> and
// group w on jobs.* each deliver a copy, also when one connection is in
// both.
func TestPubSub_GroupsKeyedByPatternAndGroup(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a, b, p := ts.dial(t), ts.dial(t), ts.dial(t)
	a.Expect("listen", "fence", "", "ok")
	b.Expect("listen", "fence", "", "ok")
	a.Expect("listen", "jobs.>", "w", "ok")
	b.Expect("listen", "jobs.*", "w", "ok")
	p.Expect("signal", "jobs.x", "1", "ok 2")
	expectLine(t, a, "sig jobs.x 1")
	expectLine(t, b, "sig jobs.x 1")
	p.Expect("signal", "jobs.x.y", "2", "ok 1") // only jobs.> matches
	expectLine(t, a, "sig jobs.x.y 2")
	fence(t, p, a, b)
	if got, sc := signalChannels(t, p); got["jobs.>|w"] != 1 || got["jobs.*|w"] != 1 {
		t.Fatalf("signal_channels = %s; want two groups w", sc)
	}

	c := ts.dial(t)
	c.Expect("listen", "fence", "", "ok")
	c.Expect("listen", "q.>", "w", "ok")
	c.Expect("listen", "q.*", "w", "ok")
	c.Expect("listen", "q.x", "w", "ok")
	p.Expect("signal", "q.x", "3", "ok 3")
	for range 3 {
		expectLine(t, c, "sig q.x 3")
	}
	fence(t, p, a, b, c)
}

// --- queue groups (edges 40, 41) --------------------------------------------

// Edge 41: with two idle members, consecutive signals alternate between
// them, starting with the first to join; after one leaves, the other gets
// every signal.
func TestPubSub_Edge41_GroupRoundRobin(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a, b, p := ts.dial(t), ts.dial(t), ts.dial(t)
	a.Expect("listen", "fence", "", "ok")
	b.Expect("listen", "fence", "", "ok")
	a.Expect("listen", "jobs", "w", "ok")
	b.Expect("listen", "jobs", "w", "ok")
	for i := 1; i <= 4; i++ {
		p.Expect("signal", "jobs", strconv.Itoa(i), "ok 1")
	}
	expectLine(t, a, "sig jobs 1")
	expectLine(t, a, "sig jobs 3")
	expectLine(t, b, "sig jobs 2")
	expectLine(t, b, "sig jobs 4")
	fence(t, p, a, b)
	if got, sc := signalChannels(t, p); got["jobs|w"] != 2 {
		t.Fatalf("signal_channels = %s; want group w with 2 listeners", sc)
	}

	b.Expect("unlisten", "jobs", "w", "ok")
	for i := 5; i <= 7; i++ {
		p.Expect("signal", "jobs", strconv.Itoa(i), "ok 1")
		expectLine(t, a, "sig jobs "+strconv.Itoa(i))
	}
	fence(t, p, a, b)
}

// Edge 40 on the wire: a member whose push queue is full is skipped in
// favour of the next member, nobody is evicted and every signal counts 1.
// Member s never reads (its server-side send buffer is small, so its
// pusher blocks and its 4-frame queue fills); member f reads everything
// and also listens on "tick". After each job the test publishes a tick
// and waits for f to read it, so f's queue never holds more than two
// frames and any job that went to f has been read by then. Once s is
// full, f must get every job; at the end s drains and the two together
// must have received each job exactly once.
func TestPubSub_Edge40_GroupSkipsFullMember(t *testing.T) {
	t.Parallel()
	ts := startSmallSendPS(t, Options{PushQueue: 4})
	s := mustDialPS(t, ts.Addr)
	mustExpect(t, s, "listen", "jobs", "w", "ok") // first member: start of even signals
	f := mustDialPS(t, ts.Addr)
	mustExpect(t, f, "listen", "jobs", "w", "ok")
	mustExpect(t, f, "listen", "tick", "", "ok")
	feed := newFeed(t, f)
	p := ts.dial(t)

	const needRun = 20 // consecutive jobs that went to f
	toF := map[int]bool{}
	run, n := 0, 0
	for ; n < 2000 && run < needRun; n++ {
		p.Expect("signal", "jobs", bigPayload(n), "ok 1")
		tick := strconv.Itoa(n)
		p.Expect("signal", "tick", tick, "ok 1")
		for {
			line := feed.next(t)
			if line == "sig tick "+tick {
				break
			}
			// Only job n can precede tick n: earlier ones preceded
			// earlier ticks.
			if seq, ok := bigSeq(line, "jobs"); !ok || seq != n {
				t.Fatalf("f read %.40q before tick %d", line, n)
			}
			toF[n] = true
		}
		if toF[n] {
			run++
		} else {
			run = 0
		}
	}
	if run < needRun {
		t.Fatalf("after %d jobs f never got %d in a row: the full member was not skipped", n, needRun)
	}
	if len(toF) == n {
		t.Fatal("s never received a job: round robin did not start with it")
	}
	if sc := slowConsumers(t, p); sc != 0 {
		t.Fatalf("slow_consumers = %d; want 0 (a full member is skipped, not evicted)", sc)
	}
	if c := ts.Connections(); c != 3 {
		t.Fatalf("connections = %d; want 3", c)
	}

	// s drains: it holds exactly the jobs f did not get, in order, then
	// the answer to its ping (possibly before some of its frames).
	if err := s.send("ping", "_", ""); err != nil {
		t.Fatal(err)
	}
	want := n - len(toF)
	got, prev, pong := 0, -1, false
	for got < want || !pong {
		line, err := s.readLine()
		if err != nil {
			t.Fatalf("s after %d of %d jobs: %v", got, want, err)
		}
		if line == "ok" && !pong {
			pong = true
			continue
		}
		seq, ok := bigSeq(line, "jobs")
		if !ok || seq <= prev || toF[seq] {
			t.Fatalf("s read %.40q after job %d", line, prev)
		}
		prev = seq
		got++
	}
	t.Logf("%d jobs: %d to s, %d to f", n, want, len(toF))
}

// Edge 40: when every member of a group is full, nobody gets the frame,
// the group contributes 0 to the count and the round-robin (starting)
// member is evicted, exactly one per such signal.
func TestPubSub_Edge40_AllMembersFullEvictsOne(t *testing.T) {
	t.Parallel()
	ts := startSmallSendPS(t, Options{PushQueue: 4})
	for range 2 {
		s := mustDialPS(t, ts.Addr)
		mustExpect(t, s, "listen", "jobs", "w", "ok")
	}
	p := ts.dial(t)
	zeroAt := signalUntilZero(t, p, "jobs")
	if zeroAt < 0 {
		t.Fatal("2000 signals to two members that never read: no eviction")
	}
	if sc := slowConsumers(t, p); sc != 1 {
		t.Fatalf("slow_consumers = %d right after the first ok 0; want 1", sc)
	}
	eventually(t, "one member disconnected", func() bool { return ts.Connections() == 2 })
	t.Logf("first ok 0 at signal %d", zeroAt)
}

// --- slow consumers (edges 39, 42) ------------------------------------------

// signalUntilZero publishes large signals on channel, each expected to
// reach one receiver, until one reaches none (a listener was evicted); it
// returns that signal's index, or -1 after 2000 signals.
func signalUntilZero(t *testing.T, p *testutil.LineClient, channel string) int {
	t.Helper()
	for i := 0; i < 2000; i++ {
		switch line := p.Do("signal", channel, bigPayload(i)); line {
		case "ok 1":
		case "ok 0":
			return i
		default:
			t.Fatalf("signal %d = %q", i, line)
		}
	}
	return -1
}

// Edge 39: a listener that never reads, with a 4-frame push queue, is
// disconnected once its queue overflows: the overflowing signal does not
// count it (ok 0), stats.slow_consumers is 1, the server forgets the
// connection and its subscriptions, and the client reads the frames that
// were already on their way, then EOF or a reset. (The close can cut the
// frame being written, so a final fragment without LF is tolerated; it
// must be a prefix of the next frame.)
func TestPubSub_Edge39_SlowConsumerEvicted(t *testing.T) {
	t.Parallel()
	ts := startSmallSendPS(t, Options{PushQueue: 4})
	s := mustDialPS(t, ts.Addr)
	mustExpect(t, s, "listen", "big", "", "ok")
	p := ts.dial(t)
	if sc := slowConsumers(t, p); sc != 0 {
		t.Fatalf("slow_consumers = %d before; want 0", sc)
	}
	evictedAt := signalUntilZero(t, p, "big")
	if evictedAt < 0 {
		t.Fatal("2000 large signals to a listener that never reads: no eviction")
	}
	if sc := slowConsumers(t, p); sc != 1 {
		t.Fatalf("slow_consumers = %d; want 1", sc)
	}
	eventually(t, "evicted connection forgotten", func() bool { return ts.Connections() == 1 })
	if got, sc := signalChannels(t, p); len(got) != 0 {
		t.Fatalf("signal_channels = %s after the eviction; want []", sc)
	}
	p.Expect("signal", "big", "after", "ok 0")

	// The client sees complete frames in order, then the close.
	_ = s.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	read, tail := 0, 0
	var end error
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			end, tail = err, len(line)
			if isTimeout(err) {
				t.Fatalf("evicted connection not closed after %d frames", read)
			}
			if line != "" && !strings.HasPrefix(strings.TrimSuffix(bigPayloadFrame("big", read), "\n"), line) {
				t.Fatalf("final fragment %.40q is not a prefix of frame %d", line, read)
			}
			break
		}
		if seq, ok := bigSeq(strings.TrimSuffix(line, "\n"), "big"); !ok || seq != read {
			t.Fatalf("frame %d = %.40q", read, line)
		}
		read++
	}
	if read >= evictedAt {
		t.Fatalf("read %d frames; want fewer than the %d accepted", read, evictedAt)
	}
	if sc := slowConsumers(t, p); sc != 1 {
		t.Fatalf("slow_consumers = %d at the end; want 1", sc)
	}
	t.Logf("evicted at signal %d; client read %d frames and a %d-byte fragment, then %v", evictedAt, read, tail, end)
}

func bigPayloadFrame(ch string, i int) string { return "sig " + ch + " " + bigPayload(i) + "\n" }

// Edge 42: evicting a slow consumer stalls nobody else. s never reads;
// f reads in lock-step and must receive every frame, in order, before
// and after s is evicted (counts 2, then 1 from the evicting signal on);
// meanwhile a third connection keeps doing listen/unlisten (wildcard and
// exact) and every answer comes promptly.
func TestPubSub_Edge42_EvictionDoesNotStallOthers(t *testing.T) {
	t.Parallel()
	ts := startSmallSendPS(t, Options{PushQueue: 8})
	s := mustDialPS(t, ts.Addr)
	mustExpect(t, s, "listen", "ch", "", "ok")
	f := mustDialPS(t, ts.Addr)
	mustExpect(t, f, "listen", "ch", "", "ok")
	feed := newFeed(t, f)
	p := ts.dial(t)

	tw := mustDialPS(t, ts.Addr)
	var (
		stop    = make(chan struct{})
		tDone   = make(chan struct{})
		tErr    error
		worst   time.Duration
		tRounds int
	)
	go func() {
		defer close(tDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, req := range [][3]string{
				{"listen", "t.>", ""}, {"listen", "t.x", "g"},
				{"unlisten", "t.>", ""}, {"unlisten", "t.x", "g"},
			} {
				t0 := time.Now()
				line, err := tw.do(req[0], req[1], req[2])
				if err != nil || line != "ok" {
					tErr = fmt.Errorf("%v = %q, %v", req, line, err)
					return
				}
				worst = max(worst, time.Since(t0))
			}
			tRounds++
		}
	}()

	evictedAt, i := -1, 0
	for ; i < 2000 && (evictedAt < 0 || i < evictedAt+20); i++ {
		want := "ok 2"
		if evictedAt >= 0 {
			want = "ok 1"
		}
		line := p.Do("signal", "ch", bigPayload(i))
		if line == "ok 1" && evictedAt < 0 {
			evictedAt = i
		} else if line != want {
			t.Fatalf("signal %d = %q; want %q", i, line, want)
		}
		if seq, ok := bigSeq(feed.next(t), "ch"); !ok || seq != i {
			t.Fatalf("f: frame %d missing or out of order (got %d)", i, seq)
		}
	}
	close(stop)
	<-tDone
	if tErr != nil {
		t.Fatal(tErr)
	}
	if evictedAt < 0 {
		t.Fatalf("%d signals: s was never evicted", i)
	}
	if worst > 2*time.Second || tRounds == 0 {
		t.Fatalf("listen/unlisten: %d rounds, slowest answer %v", tRounds, worst)
	}
	if sc := slowConsumers(t, p); sc != 1 {
		t.Fatalf("slow_consumers = %d; want 1", sc)
	}
	eventually(t, "s forgotten", func() bool { return ts.Connections() == 3 })
	t.Logf("s evicted at signal %d; %d listen/unlisten rounds, slowest answer %v", evictedAt, tRounds, worst)
}

// --- cleanup and stats (edges 43, 44, §7.2) ---------------------------------

// Edge 43: after a listener disconnects its subscriptions (plain exact,
// plain wildcard, grouped) are gone from delivery and from
// stats.signal_channels.
func TestPubSub_Edge43_DisconnectRemovesSubscriptions(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	p := ts.dial(t)
	l := ts.dial(t)
	l.Expect("listen", "a.b", "", "ok")
	l.Expect("listen", "a.*", "", "ok")
	l.Expect("listen", "a.b", "g", "ok")
	l.Expect("listen", "a.>", "h", "ok")
	p.Expect("signal", "a.b", "x", "ok 3") // one plain copy + two groups
	if got, _ := signalChannels(t, p); len(got) != 4 {
		t.Fatalf("signal_channels = %v; want 4 entries", got)
	}
	l.Conn.Close()
	eventually(t, "no receivers", func() bool { return receivers(t, p, "a.b") == 0 })
	got, sc := signalChannels(t, p)
	if len(got) != 0 || sc != "[]" {
		t.Fatalf("signal_channels = %s after the disconnect; want []", sc)
	}
}

// Edge 44 for signal_channels (§5): one entry per exact channel and per
// wildcard pattern with plain listeners, per (channel, group) and per
// (pattern, group); listeners counts connections or members; group is
// omitted when empty; `[]` once everyone left. The receiver count agrees.
func TestPubSub_Edge44_SignalChannelsStats(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	a, b, c, p := ts.dial(t), ts.dial(t), ts.dial(t), ts.dial(t)
	a.Expect("listen", "ev.x", "", "ok")
	a.Expect("listen", "ev.>", "", "ok")
	b.Expect("listen", "ev.x", "", "ok")
	b.Expect("listen", "ev.>", "g1", "ok")
	b.Expect("listen", "ev.x", "g1", "ok")
	c.Expect("listen", "ev.>", "g1", "ok")
	c.Expect("listen", "ev.*", "", "ok")
	c.Expect("listen", "ev.*", " my group ", "ok") // trimmed; inner space kept
	want := map[string]int{
		"ev.x|": 2, "ev.x|g1": 1,
		"ev.>|": 1, "ev.>|g1": 2,
		"ev.*|": 1, "ev.*|my group": 1,
	}
	got, sc := signalChannels(t, p)
	if !mapsEqual(got, want) {
		t.Fatalf("signal_channels = %s; want %v", sc, want)
	}
	// a, b, c once each (plain, deduplicated per connection) + three
	// groups: ev.x/g1 → b, ev.>/g1 → b (first to join), ev.*/my group → c.
	p.Expect("signal", "ev.x", "n", "ok 6")
	expectLine(t, a, "sig ev.x n")
	for range 3 {
		expectLine(t, b, "sig ev.x n")
	}
	for range 2 {
		expectLine(t, c, "sig ev.x n")
	}

	b.Expect("unlisten", "ev.>", "g1", "ok")
	a.Expect("unlisten", "ev.x", "", "ok")
	want["ev.>|g1"], want["ev.x|"] = 1, 1
	if got, sc := signalChannels(t, p); !mapsEqual(got, want) {
		t.Fatalf("signal_channels = %s; want %v", sc, want)
	}
	c.Conn.Close()
	delete(want, "ev.*|")
	delete(want, "ev.*|my group")
	delete(want, "ev.>|g1")
	eventually(t, "c's entries gone", func() bool {
		got, _ := signalChannels(t, p)
		return mapsEqual(got, want)
	})
	a.Conn.Close()
	b.Conn.Close()
	eventually(t, "signal_channels == []", func() bool {
		_, sc := signalChannels(t, p)
		return sc == "[]"
	})
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// pusherGoroutines counts the goroutines running a pusher's writer loop.
func pusherGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "server.(*pusher).run(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// §7.2: a connection with subscriptions that closes loses them (count
// drops to 0) and its pusher goroutine ends; the process goroutine count
// returns to its baseline. Not parallel: it counts goroutines of the
// whole test binary (parallel tests only run after the sequential ones).
func TestPubSub_DisconnectCleanupNoGoroutineLeak(t *testing.T) {
	ts := start(t, Options{}, core.Options{})
	p := ts.dial(t)
	ping(t, p)
	pushers0, base := pusherGoroutines(), runtime.NumGoroutine()
	const n = 20
	ls := make([]*testutil.LineClient, n)
	for i := range ls {
		ls[i] = ts.dial(t)
		ls[i].Expect("listen", "a.b", "", "ok")
		ls[i].Expect("listen", "a.>", "g", "ok")
		ls[i].Expect("listen", "x.*", "", "ok")
	}
	if got := pusherGoroutines() - pushers0; got != n {
		t.Fatalf("%d pusher goroutines for %d listeners", got, n)
	}
	p.Expect("signal", "a.b", "hi", fmt.Sprintf("ok %d", n+1))
	for _, l := range ls {
		expectUnordered(t, l, "sig a.b hi")
		l.Conn.Close()
	}
	eventually(t, "no receivers", func() bool {
		return receivers(t, p, "a.b") == 0 && receivers(t, p, "x.y") == 0
	})
	if _, sc := signalChannels(t, p); sc != "[]" {
		t.Fatalf("signal_channels = %s; want []", sc)
	}
	eventually(t, "pusher goroutines ended", func() bool { return pusherGoroutines() == pushers0 })
	eventually(t, "goroutines back to baseline", func() bool { return runtime.NumGoroutine() <= base })
}

// §7.2 with a stalled pusher: a listener that does not read (so its
// pusher is blocked writing) and then half-closes its side ends like any
// disconnect: the server closes the connection, drops its subscriptions
// and releases its lock, without waiting for the blocked write (with no
// write timeout that write would never finish).
func TestPubSub_HalfClosedStalledListenerCleanedUp(t *testing.T) {
	t.Parallel()
	ts := startSmallSendPS(t, Options{PushQueueBytes: 4 << 20})
	s := mustDialPS(t, ts.Addr)
	if line, err := s.do("l", "held", "0"); err != nil || !strings.HasPrefix(line, "ok ") {
		t.Fatalf("l = %q, %v", line, err)
	}
	mustExpect(t, s, "listen", "big", "", "ok")
	p := ts.dial(t)
	for i := range 30 { // ~1.8 MB: far more than the socket buffers hold, less than the queue
		p.Expect("signal", "big", bigPayload(i), "ok 1")
	}
	// Let the writer settle into a write that cannot complete (right
	// after the burst its current, small batch may still squeeze into
	// the peer's buffer). This pause only makes the test sensitive to a
	// regression; the passing outcome does not depend on it.
	time.Sleep(50 * time.Millisecond)
	if err := s.conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "lock released", func() bool { return !busy(ts.Engine) })
	eventually(t, "connection closed", func() bool { return ts.Connections() == 1 })
	p.Expect("signal", "big", "gone", "ok 0")
	if sc := slowConsumers(t, p); sc != 0 {
		t.Fatalf("slow_consumers = %d; want 0 (a disconnect, not an eviction)", sc)
	}
}

// --- pushes on a busy connection (§4.4, §1) ---------------------------------

// §1/§4.4, edge 28: a listener that pings more often than the read timeout
// stays connected well past it and keeps receiving frames (push and
// answer in either order); a listener that only receives is dropped at
// the read timeout (`error`, close) like any idle connection.
func TestPubSub_ListenerSurvivesReadTimeoutWithPing(t *testing.T) {
	t.Parallel()
	const rt = 300 * time.Millisecond
	ts := start(t, Options{ReadTimeout: rt}, core.Options{})
	l, silent, p := ts.dial(t), ts.dial(t), ts.dial(t)
	l.Expect("listen", "hb", "", "ok")
	silent.Expect("listen", "hb", "", "ok")
	t0 := time.Now()
	i := 0
	for ; time.Since(t0) < 4*rt; i++ {
		payload := strconv.Itoa(i)
		if line := p.Do("signal", "hb", payload); line != "ok 1" && line != "ok 2" {
			t.Fatalf("signal = %q", line)
		}
		l.Req("ping", "_", "")
		expectUnordered(t, l, "ok", "sig hb "+payload)
		time.Sleep(rt / 5)
	}
	ping(t, l)

	got := 0
	for {
		line := silent.ReadLine()
		if line == "error" {
			break
		}
		if line != "sig hb "+strconv.Itoa(got) {
			t.Fatalf("silent listener line %q; want frame %d", line, got)
		}
		got++
	}
	silent.ExpectClosed()
	if got == 0 || got >= i {
		t.Fatalf("silent listener got %d of %d frames before its read timeout", got, i)
	}
	// Its subscriptions were dropped before its socket was closed.
	p.Expect("signal", "hb", "last", "ok 1")
	expectLine(t, l, "sig hb last")
}

// §4.4: a push reaches a connection while its `l` is blocked on a held
// lock, before the answer to that `l`.
func TestPubSub_PushWhileBlockedInLock(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	h, l, p := ts.dial(t), ts.dial(t), ts.dial(t)
	tok := expectGrant(t, h.Do("l", "busy", "0"), "ok", "33")
	l.Expect("listen", "ch", "", "ok")
	l.Req("l", "busy", "5")
	eventually(t, "l queued", func() bool { return waitersOf(ts.Engine, "busy") == 1 })
	p.Expect("signal", "ch", "during", "ok 1")
	expectLine(t, l, "sig ch during")
	p.Expect("signal", "ch", "again", "ok 1")
	expectLine(t, l, "sig ch again")
	if w := waitersOf(ts.Engine, "busy"); w != 1 {
		t.Fatalf("waiters = %d; the l should still be blocked", w)
	}
	h.Expect("r", "busy", tok, "ok")
	expectGrant(t, l.ReadLine(), "ok", "33")

	// Same with a blocked l that times out.
	l.Req("l", "busy", "1")
	eventually(t, "l queued", func() bool { return waitersOf(ts.Engine, "busy") == 1 })
	p.Expect("signal", "ch", "before-timeout", "ok 1")
	expectLine(t, l, "sig ch before-timeout")
	expectLine(t, l, "timeout")
}

// §4.4: frames never split or interleave with answers. A listener
// pipelines 500 pings (10 per write) while a publisher sends it 500
// signals with payloads of varied size; every line is exactly `ok` or the
// expected next frame, and the counts match.
func TestPubSub_FramesNeverSplitOrInterleave(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{PushQueueBytes: 1 << 30}, core.Options{})
	c := mustDialPS(t, ts.Addr)
	mustExpect(t, c, "listen", "ch", "", "ok")
	p := mustDialPS(t, ts.Addr)
	const n = 500
	payload := func(i int) string {
		return strconv.Itoa(i) + ":" + strings.Repeat(string(rune('a'+i%26)), (i*37)%3000)
	}
	var fail errs
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // pinger
		defer wg.Done()
		batch := strings.Repeat("ping\n_\n\n", 10)
		for range n / 10 {
			if _, err := c.conn.Write([]byte(batch)); err != nil {
				fail.add(err)
				return
			}
			runtime.Gosched()
		}
	}()
	go func() { // publisher
		defer wg.Done()
		for i := range n {
			if line, err := p.do("signal", "ch", payload(i)); err != nil || line != "ok 1" {
				fail.add(fmt.Errorf("signal %d = %q, %v", i, line, err))
				return
			}
		}
	}()
	oks, next := 0, 0
	for oks+next < 2*n {
		line, err := c.readLine()
		if err != nil {
			wg.Wait()
			fail.check(t)
			t.Fatalf("after %d ok and %d frames: %v", oks, next, err)
		}
		switch {
		case line == "ok":
			oks++
		case line == "sig ch "+payload(next):
			next++
		default:
			t.Fatalf("line %.60q; want ok or frame %d", line, next)
		}
	}
	wg.Wait()
	fail.check(t)
	if oks != n || next != n {
		t.Fatalf("%d ok, %d frames; want %d each", oks, next, n)
	}
}

// §4.4: per-subscriber order equals publish order: two publishers each
// pipeline 2000 signals (100 per write) to one listener; each publisher's
// frames arrive in its sequence order.
func TestPubSub_FramesInPublishOrder(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{PushQueueBytes: 1 << 30}, core.Options{})
	l := mustDialPS(t, ts.Addr)
	mustExpect(t, l, "listen", "ord", "", "ok")
	const n, batch = 2000, 100
	var fail errs
	var wg sync.WaitGroup
	for _, name := range []string{"p", "q"} {
		w := mustDialPS(t, ts.Addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var sb strings.Builder
			for i := 0; i < n; i += batch {
				sb.Reset()
				for j := i; j < i+batch; j++ {
					fmt.Fprintf(&sb, "signal\nord\n%s %d\n", name, j)
				}
				if _, err := w.conn.Write([]byte(sb.String())); err != nil {
					fail.add(err)
					return
				}
				for j := i; j < i+batch; j++ {
					if line, err := w.readLine(); err != nil || line != "ok 1" {
						fail.add(fmt.Errorf("%s: signal %d = %q, %v", name, j, line, err))
						return
					}
				}
			}
		}()
	}
	next := map[string]int{"p": 0, "q": 0}
	for range 2 * n {
		line, err := l.readLine()
		if err != nil {
			wg.Wait()
			fail.check(t)
			t.Fatalf("listener: %v after %v", err, next)
		}
		f := strings.Fields(strings.TrimPrefix(line, "sig ord "))
		if len(f) != 2 || !strings.HasPrefix(line, "sig ord ") {
			t.Fatalf("line %q", line)
		}
		if seq, err := strconv.Atoi(f[1]); err != nil || seq != next[f[0]] {
			t.Fatalf("%s: frame %s; want %d", f[0], f[1], next[f[0]])
		}
		next[f[0]]++
	}
	wg.Wait()
	fail.check(t)
}

// --- edge 54 ----------------------------------------------------------------

// Edge 54: a payload of exactly 65536 − 4 − len(channel) − 1 bytes is
// accepted and delivered intact in a frame of exactly 64 KiB (without its
// LF); one byte more is refused with `error`, the connection stays open
// and nothing is delivered.
func TestPubSub_Edge54_MaxPayload(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{}, core.Options{})
	l, p := ts.dial(t), ts.dial(t)
	for _, ch := range []string{"a.b", strings.Repeat("c", 200)} {
		limit := 65536 - 4 - len(ch) - 1
		payload := " " + strings.Repeat("0123456789", limit/10+1)[:limit-2] + " " // spaces kept
		l.Expect("listen", ch, "", "ok")
		p.Expect("signal", ch, payload, "ok 1")
		line := l.ReadLine()
		if len(line) != 65536 || line != "sig "+ch+" "+payload {
			t.Fatalf("frame of %d bytes; want the 65536-byte frame", len(line))
		}
		p.Expect("signal", ch, payload+"x", "error")
		ping(t, p)
		p.Expect("signal", ch, "end", "ok 1")
		expectLine(t, l, "sig "+ch+" end")
		l.Expect("unlisten", ch, "", "ok")
	}
}

// --- concurrency ------------------------------------------------------------

// call sends a request on w and returns its answer, skipping push frames
// (checked against the known channels and payload shape).
func call(w *wire, cmd, key, arg string) (string, error) {
	if err := w.send(cmd, key, arg); err != nil {
		return "", err
	}
	for {
		line, err := w.readLine()
		if err != nil {
			return "", err
		}
		rest, ok := strings.CutPrefix(line, "sig ")
		if !ok {
			return line, nil
		}
		ch, payload, _ := strings.Cut(rest, " ")
		if !slices.Contains(raceChannels, ch) || !strings.HasPrefix(payload, "pub") {
			return "", fmt.Errorf("malformed frame %q", line)
		}
	}
}

var raceChannels = []string{"c.a", "c.b", "d.x.y", "e"}

// §4, §7.2 under -race: 10 listeners join and leave (listen, unlisten,
// close, redial) while 3 publishers signal for ~300 ms. Every answer is
// the expected one (bad patterns `error`, everything else `ok` / `ok N`);
// afterwards signal_channels is [] and nobody was counted as a slow
// consumer.
func TestPubSub_ConcurrentJoinLeavePublish(t *testing.T) {
	t.Parallel()
	ts := start(t, Options{PushQueueBytes: 1 << 30}, core.Options{})
	type sub struct{ pattern, group string }
	subs := []sub{
		{"c.a", ""}, {"c.*", ""}, {">", ""}, {"c.a", "g"}, {"c.>", "g"},
		{"d.>", ""}, {"d.*.y", "h"}, {"e", ""}, {"e", "g"}, {"*", "k"},
	}
	var (
		fail    errs
		wg      sync.WaitGroup
		stop    = make(chan struct{})
		signals atomic.Int64
		frames  atomic.Int64
	)
	for id := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(id), 11))
			var w *wire
			defer func() {
				if w != nil {
					w.close()
				}
			}()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if w == nil {
					var err error
					if w, err = dialPS(ts.Addr); err != nil {
						fail.add(err)
						return
					}
				}
				s := subs[rng.IntN(len(subs))]
				var cmd, key, want string
				switch r := rng.IntN(20); {
				case r < 8:
					cmd, key, want = "listen", s.pattern, "ok"
				case r < 14:
					cmd, key, want = "unlisten", s.pattern, "ok"
				case r < 16:
					cmd, key, want = "ping", "_", "ok"
				case r < 17:
					cmd, key, want = "listen", "c.>.a", "error"
				default:
					w.close() // leave without unlisten
					w = nil
					continue
				}
				line, err := call(w, cmd, key, s.group)
				if err != nil || line != want {
					fail.add(fmt.Errorf("listener %d: %s %q %q = %q, %v; want %q", id, cmd, key, s.group, line, err, want))
					return
				}
			}
		}()
	}
	for id := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(id), 13))
			w, err := dialPS(ts.Addr)
			if err != nil {
				fail.add(err)
				return
			}
			defer w.close()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ch := raceChannels[rng.IntN(len(raceChannels))]
				line, err := w.do("signal", ch, fmt.Sprintf("pub%d %d", id, i))
				if err != nil {
					fail.add(fmt.Errorf("publisher %d: %v", id, err))
					return
				}
				s, ok := strings.CutPrefix(line, "ok ")
				n, err := strconv.Atoi(s)
				if !ok || err != nil || n < 0 || n > 10*len(subs) {
					fail.add(fmt.Errorf("publisher %d: signal %s = %q", id, ch, line))
					return
				}
				signals.Add(1)
				frames.Add(int64(n))
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	fail.check(t)
	if signals.Load() == 0 || frames.Load() == 0 {
		t.Fatalf("%d signals, %d frames: nothing happened", signals.Load(), frames.Load())
	}
	mon := ts.dial(t)
	ping(t, mon) // admitted: counted from now on
	eventually(t, "all listeners gone", func() bool { return ts.Connections() == 1 })
	if _, sc := signalChannels(t, mon); sc != "[]" {
		t.Fatalf("signal_channels = %s after everyone left; want []", sc)
	}
	for _, ch := range raceChannels {
		if n := receivers(t, mon, ch); n != 0 {
			t.Fatalf("signal %s reaches %d receivers after everyone left", ch, n)
		}
	}
	if sc := slowConsumers(t, mon); sc != 0 {
		t.Fatalf("slow_consumers = %d; want 0 (listeners only disconnected)", sc)
	}
	t.Logf("%d signals, %d frames accepted", signals.Load(), frames.Load())
}

// --- pusher unit checks (white box) ----------------------------------------

// §4.5: only a refusal because the queue is full is a slow consumer. A
// pusher that was closed (its connection is ending), or whose writer
// failed, refuses frames, and the engine's Evict that follows must not be
// counted in stats.slow_consumers.
func TestPusher_RefusalAfterCloseIsNotSlowConsumer(t *testing.T) {
	t.Parallel()
	srv := New(Options{Engine: core.New(core.Options{})})

	c1, c2 := net.Pipe()
	defer c2.Close()
	p := newPusher(&session{srv: srv, conn: c1, id: 1}, 1<<20, 0)
	p.close()
	if p.Deliver([]byte("sig a x\n")) {
		t.Fatal("closed pusher accepted a frame")
	}
	p.Evict()
	if n := srv.slowConsumers.Load(); n != 0 {
		t.Fatalf("slow_consumers = %d after Evict of a closed pusher; want 0", n)
	}

	d1, d2 := net.Pipe()
	d2.Close() // every write fails
	p = newPusher(&session{srv: srv, conn: d1, id: 2}, 1<<20, 0)
	defer p.close()
	if !p.Deliver([]byte("sig a x\n")) {
		t.Fatal("fresh pusher refused a frame")
	}
	<-p.done // the failed write ended the writer
	for i := range 10 {
		if p.Deliver([]byte("sig a x\n")) {
			t.Fatalf("frame %d accepted after the writer failed", i)
		}
	}
	p.Evict()
	if n := srv.slowConsumers.Load(); n != 0 {
		t.Fatalf("slow_consumers = %d after a write failure; want 0", n)
	}
}

// --- byte-bounded push queues (issue 11, item 6) ----------------------------

// listenerPushers returns the pushers of the server's open sessions that
// have one (white box: the pointers stay valid after the sessions end).
func listenerPushers(s *Server) []*pusher {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*pusher
	for sess := range s.sessions {
		if sess.push != nil {
			out = append(out, sess.push)
		}
	}
	return out
}

// A listener that never reads, fed frames far larger than a small frame
// count would suggest, holds at most the byte bound pending (counting the
// writer's batch), then is evicted and counted as a slow consumer.
func TestPubSub_ByteBoundEvictsNeverReadingListener(t *testing.T) {
	t.Parallel()
	const bound = 256 << 10
	ts := startSmallSendPS(t, Options{PushQueueBytes: bound})
	s := mustDialPS(t, ts.Addr)
	mustExpect(t, s, "listen", "big", "", "ok")
	p := ts.dial(t)
	ping(t, p)
	ps := listenerPushers(ts.Server)
	if len(ps) != 1 {
		t.Fatalf("%d pushers; want 1", len(ps))
	}
	evictedAt := signalUntilZero(t, p, "big")
	if evictedAt < 0 {
		t.Fatal("2000 large signals to a listener that never reads: no eviction")
	}
	frame := len(bigPayloadFrame("big", 0)) + PushFrameOverhead
	if peak := ps[0].peakBytes(); peak > bound || peak < bound-frame {
		t.Fatalf("peak pending = %d bytes; want within one frame (%d) below the bound %d", peak, frame, bound)
	}
	if sc := slowConsumers(t, p); sc != 1 {
		t.Fatalf("slow_consumers = %d; want 1", sc)
	}
	eventually(t, "evicted connection forgotten", func() bool { return ts.Connections() == 1 })
	t.Logf("evicted at signal %d (%d-byte frames, bound %d)", evictedAt, frame, bound)
}

// A listener that reads, but not at the moment a burst arrives, is not a
// slow consumer: a burst of 3,000 small frames (far more than the old
// 64-frame queue) published while it does not read stays within the
// default byte bound, and it then reads every frame in order.
func TestPubSub_BurstWithinByteBoundNotEvicted(t *testing.T) {
	t.Parallel()
	ts := startSmallSendPS(t, Options{})
	l := mustDialPS(t, ts.Addr)
	mustExpect(t, l, "listen", "burst", "", "ok")
	p := mustDialPS(t, ts.Addr)
	const n = 3000
	payload := strings.Repeat("p", 80)
	var req strings.Builder
	for i := range n {
		fmt.Fprintf(&req, "signal\nburst\n%06d%s\n", i, payload)
	}
	if _, err := p.conn.Write([]byte(req.String())); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		line, err := p.readLine()
		if err != nil || line != "ok 1" {
			t.Fatalf("signal %d = %q, %v; want ok 1", i, line, err)
		}
	}
	// Only now does the listener read.
	for i := range n {
		line, err := l.readLine()
		if want := fmt.Sprintf("sig burst %06d%s", i, payload); err != nil || line != want {
			t.Fatalf("frame %d = %.40q, %v", i, line, err)
		}
	}
	c := ts.dial(t)
	if sc := slowConsumers(t, c); sc != 0 {
		t.Fatalf("slow_consumers = %d; want 0", sc)
	}
}

// A listener that stops reading while its queue still has room is closed
// by the write timeout, and that is counted as a slow consumer too.
func TestPubSub_WriteTimeoutCountsSlowConsumer(t *testing.T) {
	t.Parallel()
	ts := startSmallSendPS(t, Options{WriteTimeout: 200 * time.Millisecond, PushQueueBytes: 64 << 20})
	s := mustDialPS(t, ts.Addr)
	mustExpect(t, s, "listen", "big", "", "ok")
	p := ts.dial(t)
	// ~1.8 MB: more than the socket buffers hold, far less than the
	// queue. On a slow machine the timeout may close the listener before
	// the last of them (ok 0).
	for i := range 30 {
		if line := p.Do("signal", "big", bigPayload(i)); line == "ok 0" {
			break
		} else if line != "ok 1" {
			t.Fatalf("signal %d = %q", i, line)
		}
	}
	eventually(t, "listener closed by the write timeout", func() bool { return ts.Connections() == 1 })
	if sc := slowConsumers(t, p); sc != 1 {
		t.Fatalf("slow_consumers = %d after the write timeout; want 1", sc)
	}
}

// 200 listeners that never read, fed 128 signals of 64 KB: each holds at
// most the default bound (1 MiB) pending, every one of them is evicted,
// and every eviction is counted. Not parallel: its bursts of writes would
// starve the parallel tests that run on 300 ms timeouts.
func TestPubSub_ManyNeverReadingListenersBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("200 connections, ~250 MB written")
	}
	const listeners, signals = 200, 128
	ts := startSmallSendPS(t, Options{})
	for range listeners {
		s := mustDialPS(t, ts.Addr)
		mustExpect(t, s, "listen", "m", "", "ok")
	}
	p := ts.dial(t)
	ping(t, p)
	ps := listenerPushers(ts.Server)
	if len(ps) != listeners {
		t.Fatalf("%d pushers; want %d", len(ps), listeners)
	}
	payload := strings.Repeat("z", 64000)
	last := -1
	for i := range signals {
		line := p.Do("signal", "m", payload)
		if !strings.HasPrefix(line, "ok ") {
			t.Fatalf("signal %d = %q", i, line)
		}
		last, _ = strconv.Atoi(line[3:])
	}
	if last != 0 {
		t.Fatalf("the last of %d signals reached %d listeners; want 0 (all evicted)", signals, last)
	}
	total := 0
	for _, x := range ps {
		peak := x.peakBytes()
		if peak > DefaultPushQueueBytes {
			t.Fatalf("a listener had %d bytes pending; bound %d", peak, DefaultPushQueueBytes)
		}
		total += peak
	}
	if sc := slowConsumers(t, p); sc != listeners {
		t.Fatalf("slow_consumers = %d; want %d", sc, listeners)
	}
	eventually(t, "listeners forgotten", func() bool { return ts.Connections() == 1 })
	t.Logf("peak pending: %.1f MiB in all, %.2f MiB per listener", float64(total)/(1<<20), float64(total)/listeners/(1<<20))
}

// Each queued frame counts its bytes plus PushFrameOverhead against the
// bound, so a peer that never reads cannot make a listener hold many
// times the bound in tiny frames: with a bound of 100 × (8 + overhead)
// bytes exactly 100 frames of 8 bytes are accepted (the batch the writer
// is stuck on included), then frames are refused.
func TestPusher_TinyFramesCountOverhead(t *testing.T) {
	t.Parallel()
	srv := New(Options{Engine: core.New(core.Options{})})
	c1, c2 := net.Pipe() // nobody reads c2: the writer blocks
	defer c2.Close()
	frame := []byte("sig a b\n")
	const want = 100
	p := newPusher(&session{srv: srv, conn: c1, id: 1}, want*(len(frame)+PushFrameOverhead), 0)
	defer p.close()
	n := 0
	for p.Deliver(frame) {
		n++
		if n > 10*want {
			break
		}
	}
	if n != want {
		t.Fatalf("accepted %d frames of %d bytes; want %d", n, len(frame), want)
	}
}
