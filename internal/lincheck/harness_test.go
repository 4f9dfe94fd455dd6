package lincheck

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/internal/faultproxy"
	"github.com/dflockd/dflockd/internal/testserver"
	"github.com/dflockd/dflockd/internal/testutil"
	"github.com/dflockd/dflockd/server"
)

// defaultTTL is the engine's lease for requests that name none.
const defaultTTL = 10 * time.Second

// noticeLimit bounds the wait for the server to forget a closed
// connection (§7.2 says tens of milliseconds; -race on a busy machine is
// slower).
const noticeLimit = 10 * time.Second

// keySpec is one key of a run. Blocking keys see l/sl with timeouts;
// two-phase keys see e/w and try-locks (see the model's doc for why the
// two never share a key, unless the key is tracked: then its blocking
// acquires are recorded with their arrival, OpJoin, and every kind of
// request may use it).
type keySpec struct {
	name     string
	sem      bool
	limit    int
	twoPhase bool
	tracked  bool
}

func (k keySpec) part() string { return Namespace(k.sem, k.name) }

var runKeys = []keySpec{
	{name: "L", limit: 1},
	{name: "S", sem: true, limit: 2},
	{name: "E", limit: 1, twoPhase: true},
	{name: "F", sem: true, limit: 2, twoPhase: true},
}

// stats counts what a run did.
type stats struct {
	ops, lost, disconnects                   atomic.Int64
	cuts, cutAlls, vanishWait, vanishHolding atomic.Int64
	slowHolds, staleAnswers, expiries        atomic.Int64
	advances, sweeps                         atomic.Int64
	// The session run.
	named, resumed, resumeRefused, wrongResumes atomic.Int64
	byes, takeovers, abandoned, sessExpired     atomic.Int64
}

// harness is a server behind a fault proxy, a test clock and a history.
type harness struct {
	t     testing.TB
	seed  int64
	ts    *testserver.Server
	clk   *testutil.Clock
	proxy *faultproxy.Proxy
	start time.Time

	mu  sync.Mutex
	ops []porcupine.Operation

	keys []keySpec // the keys clients pick from
	// sessions: the clock also ends detached sessions (OpExpireSessions).
	sessions bool

	nextConn atomic.Int64
	// quiet counts connections of a cut-all whose disconnect is not yet
	// recorded; the clock stands still meanwhile, so that a dozen lost
	// answers do not each straddle dozens of ticks (the checker's search
	// would grow with the product).
	quiet atomic.Int64

	tokMu  sync.Mutex
	tokens map[string][]string // recent tokens per partition key

	obsMu sync.Mutex
	obs   net.Conn
	obsR  *bufio.Reader

	st stats
}

func newHarness(t testing.TB, seed int64) *harness {
	return newHarnessFor(t, seed, runKeys, false)
}

// newHarnessFor is newHarness with the keys clients use, and with named
// sessions expiring on the test clock when sessions is set.
func newHarnessFor(t testing.TB, seed int64, keys []keySpec, sessions bool) *harness {
	t.Helper()
	clk := testutil.NewClock()
	ts := testserver.Start(t, "tcp", testserver.Config{
		Engine: core.Options{Now: clk.Now, DefaultTTL: defaultTTL},
		Server: server.Options{ReadTimeout: time.Hour, WriteTimeout: 10 * time.Second,
			SessionTTL: sessionTTL, SessionTTLMax: sessionTTLMax},
		NoRun: true,
	})
	p, err := faultproxy.Listen(t.Context(), ts.Endpoint.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	h := &harness{t: t, seed: seed, ts: ts, clk: clk, proxy: p, start: time.Now(), tokens: map[string][]string{},
		keys: keys, sessions: sessions}
	h.obs = ts.DialT(t)
	h.obsR = bufio.NewReader(h.obs)
	return h
}

// now is the history's timestamp: monotonic nanoseconds since the start.
func (h *harness) now() int64 { return int64(time.Since(h.start)) }

func (h *harness) record(client int, in Input, out Output, call, ret int64) {
	h.mu.Lock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
	h.mu.Unlock()
	h.st.ops.Add(1)
}

func (h *harness) history() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]porcupine.Operation(nil), h.ops...)
}

func (h *harness) addToken(part, tok string) {
	h.tokMu.Lock()
	l := append(h.tokens[part], tok)
	if len(l) > 16 {
		l = l[len(l)-16:]
	}
	h.tokens[part] = l
	h.tokMu.Unlock()
}

func (h *harness) randomToken(rng *rand.Rand, part string) string {
	h.tokMu.Lock()
	defer h.tokMu.Unlock()
	l := h.tokens[part]
	if len(l) == 0 {
		return "00000000000000000000000000000000"
	}
	return l[rng.Intn(len(l))]
}

// serverHas reports whether the server still lists a connection from
// remote, using `stats` on a direct (unproxied) connection.
func (h *harness) serverHas(remote string) (bool, error) {
	h.obsMu.Lock()
	defer h.obsMu.Unlock()
	_ = h.obs.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := h.obs.Write([]byte("stats\n_\n\n")); err != nil {
		return false, fmt.Errorf("stats write: %w", err)
	}
	line, err := h.obsR.ReadString('\n')
	if err != nil {
		return false, fmt.Errorf("stats read: %w", err)
	}
	body, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "ok ")
	if !ok {
		return false, fmt.Errorf("stats answer %q", line)
	}
	var st struct {
		Clients []struct {
			Remote string `json:"remote"`
		} `json:"clients"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		return false, fmt.Errorf("stats json: %w", err)
	}
	for _, c := range st.Clients {
		if c.Remote == remote {
			return true, nil
		}
	}
	return false, nil
}

// waitGone polls until the server has forgotten the connection whose
// remote address is remote, and returns the history time at which it was
// seen gone. The server releases a connection's state before forgetting
// it, so the disconnect's effect lies before that time.
func (h *harness) waitGone(remote string) int64 {
	deadline := time.Now().Add(noticeLimit)
	for {
		has, err := h.serverHas(remote)
		if err != nil {
			h.t.Errorf("polling for disconnect of %s: %v", remote, err)
			return h.now()
		}
		if !has {
			return h.now()
		}
		if time.Now().After(deadline) {
			h.t.Errorf("server still lists %s %v after the close", remote, noticeLimit)
			return h.now()
		}
		time.Sleep(time.Millisecond)
	}
}

// tick advances the test clock by d and, per mode, sweeps: 0 = nothing,
// 1 = ExpireDue + Sweep (in a session run, first ExpireSessions, which
// ends the detached sessions whose TTL passed, as the server's Run loop
// does), 2 = ExpireDue only.
func (h *harness) tick(client int, d time.Duration, mode int) {
	call := h.now()
	h.clk.Advance(d)
	h.record(client, Input{Op: OpAdvance, D: d}, Output{Status: "ok"}, call, h.now())
	h.st.advances.Add(1)
	if h.sessions && mode == 1 {
		call = h.now()
		before := h.ts.Engine.SessionStats().Expired
		h.ts.Engine.ExpireSessions()
		h.st.sessExpired.Add(int64(h.ts.Engine.SessionStats().Expired - before))
		h.record(client, Input{Op: OpExpireSessions}, Output{Status: "ok"}, call, h.now())
	}
	switch mode {
	case 1:
		call = h.now()
		h.ts.Engine.ExpireDue()
		n := h.ts.Engine.Sweep()
		h.record(client, Input{Op: OpSweep}, Output{Status: "ok"}, call, h.now())
		h.st.sweeps.Add(1)
		h.st.expiries.Add(int64(n))
	case 2:
		call = h.now()
		h.ts.Engine.ExpireDue()
		h.record(client, Input{Op: OpExpireDue}, Output{Status: "ok"}, call, h.now())
	}
}

// check runs porcupine over the history and fails the test (writing a
// visualisation) unless it is linearizable.
func (h *harness) check(timeout time.Duration) {
	h.t.Helper()
	ops := h.history()
	begin := time.Now()
	res, info := porcupine.CheckOperationsVerbose(Model(), ops, timeout)
	h.t.Logf("porcupine: %d operations in %d partitions: %s in %v", len(ops), len(Partition(ops)), res, time.Since(begin).Round(time.Millisecond))
	if res == porcupine.Ok {
		return
	}
	if res == porcupine.Illegal {
		explain(h.t, ops)
	}
	dump := filepath.Join(os.TempDir(), fmt.Sprintf("lincheck-%d.json", h.seed))
	if b, err := json.Marshal(ops); err == nil && os.WriteFile(dump, b, 0o644) == nil {
		h.t.Logf("history written to %s (check it again with LINCHECK_REPLAY=%s go test -run TestReplay)", dump, dump)
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("lincheck-%d.html", h.seed))
	if err := porcupine.VisualizePath(Model(), info, path); err != nil {
		h.t.Logf("visualisation: %v", err)
	} else {
		h.t.Logf("visualisation written to %s", path)
	}
	h.t.Fatalf("history is %s (seed %d)", res, h.seed)
}

// client is one connection-holding actor of the history.
type client struct {
	h   *harness
	id  int // porcupine ClientId
	rng *rand.Rand

	mu     sync.Mutex // guards the fields below against the fault injector
	conn   net.Conn
	rd     *bufio.Reader
	connID int
	info   faultproxy.ConnInfo
	cut    bool  // the connection was cut or closed on purpose
	cutAt  int64 // history time just before the cut
	quiet  bool  // the cut was a cut-all that holds the clock

	held map[string][]string // tokens this client believes it holds, per partition

	// Named sessions (the session run): bound is the one key the
	// client's sessions use (nil: the client never names one); sid and
	// secret the session it may resume; attached whether this
	// connection is attached to it; resume that the connection is fresh
	// after a cut and should resume first.
	bound       *keySpec
	sid, secret string
	attached    bool
	resume      bool
}

func (h *harness) newClient(id int, rng *rand.Rand) *client {
	c := &client{h: h, id: id, rng: rng, held: map[string][]string{}}
	if err := c.connect(); err != nil {
		h.t.Fatalf("client %d: %v", id, err)
	}
	return c
}

// connect opens a fresh proxied connection and learns its server-side
// address (a ping makes sure the proxy has registered the pair).
func (c *client) connect() error {
	// Hold mu throughout, so that a cut-all never kills a pair this
	// client has not yet adopted.
	c.mu.Lock()
	defer c.mu.Unlock()
	conn, err := net.DialTimeout("tcp", c.h.proxy.Addr(), 5*time.Second)
	if err != nil {
		return fmt.Errorf("dial proxy: %w", err)
	}
	rd := bufio.NewReader(conn)
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("ping\n_\n\n")); err != nil {
		conn.Close()
		return fmt.Errorf("ping: %w", err)
	}
	if line, err := rd.ReadString('\n'); err != nil || line != "ok\n" {
		conn.Close()
		return fmt.Errorf("ping answer %q: %w", line, err)
	}
	info, ok := c.h.proxy.Find(conn.LocalAddr().String())
	if !ok {
		conn.Close()
		return fmt.Errorf("proxy does not know %s", conn.LocalAddr())
	}
	c.conn, c.rd, c.info, c.cut = conn, rd, info, false
	c.connID = int(c.h.nextConn.Add(1))
	c.attached = false
	return nil
}

// cutBy marks the connection cut at the current history time and runs
// kill (which closes it) unless it is already cut. It reports whether
// it cut.
func (c *client) cutBy(kill func(faultproxy.ConnInfo, net.Conn)) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut || c.conn == nil {
		return false
	}
	c.cut = true
	c.cutAt = c.h.now()
	kill(c.info, c.conn)
	return true
}

// disconnected records the end of a cut connection: the pending
// operation (if any) as lost, and the disconnect, both ending when the
// server was seen to forget the connection. Then it reconnects.
func (c *client) disconnected(pending *porcupine.Operation) {
	c.ended(pending)
	if err := c.connect(); err != nil {
		c.h.t.Errorf("client %d reconnect: %v", c.id, err)
	}
	c.afterCut()
}

// ended is disconnected without the reconnect.
func (c *client) ended(pending *porcupine.Operation) {
	c.mu.Lock()
	cutAt, info, connID, quiet := c.cutAt, c.info, c.connID, c.quiet
	c.quiet = false
	c.conn.Close()
	c.mu.Unlock()
	if quiet {
		defer c.h.quiet.Add(-1)
	}
	gone := c.h.waitGone(info.Upstream)
	if pending != nil {
		pending.Return = gone
		pending.Output = Output{Status: StatusLost}
		c.h.record(c.id, pending.Input.(Input), Output{Status: StatusLost}, pending.Call, pending.Return)
		c.recordEntry(pending, StatusLost)
		c.h.st.lost.Add(1)
	}
	c.h.record(c.id, Input{Op: OpDisconnect, Conn: connID}, Output{Status: "ok"}, cutAt, gone)
	c.h.st.disconnects.Add(1)
}

func (c *client) isCut() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cut
}

// parse turns an answer line into an Output.
func parse(line string) Output {
	f := strings.Fields(line)
	if len(f) == 0 {
		return Output{Status: "<empty>"}
	}
	out := Output{Status: f[0]}
	switch len(f) {
	case 2:
		out.TTL, _ = strconv.ParseInt(f[1], 10, 64)
	case 3:
		out.Token = f[1]
		out.TTL, _ = strconv.ParseInt(f[2], 10, 64)
	}
	return out
}

// parseAnswer turns the answer line of an op into an Output. The
// answers of session and resume have shapes of their own; a malformed
// one gets a status no model step accepts.
func parseAnswer(op OpKind, line string) Output {
	f := strings.Fields(line)
	bad := Output{Status: "malformed: " + strings.TrimSpace(line)}
	switch {
	case op == OpSession && len(f) > 0 && f[0] == "ok":
		if len(f) != 4 || !isHex(f[1], 16) || !isHex(f[2], 32) {
			return bad
		}
		ttl, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil || ttl < 1 {
			return bad
		}
		return Output{Status: "ok", SID: f[1], Secret: f[2], TTL: ttl}
	case op == OpResume && len(f) > 0 && f[0] == "ok":
		if len(f) != 3 {
			return bad
		}
		held, err1 := strconv.Atoi(f[1])
		queued, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || held < 0 || queued < 0 {
			return bad
		}
		return Output{Status: "ok", Held: held, Queued: queued}
	}
	return parse(line)
}

// isHex reports whether s is n lowercase hex digits.
func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, r := range s {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return false
		}
	}
	return true
}

// send writes one request, whose key line is the key of in; it returns
// the operation with its call time.
func (c *client) send(in Input, cmd, arg string) (*porcupine.Operation, error) {
	return c.sendLine(in, cmd, in.Key[strings.IndexByte(in.Key, ':')+1:], arg)
}

// sendLine is send with an explicit key line.
func (c *client) sendLine(in Input, cmd, key, arg string) (*porcupine.Operation, error) {
	in.Conn = c.connID
	op := &porcupine.Operation{ClientId: c.id, Input: in, Call: c.h.now()}
	_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.conn.Write([]byte(cmd + "\n" + key + "\n" + arg + "\n"))
	return op, err
}

// receive reads the answer of op within wait. ok false means no answer
// (err says why).
func (c *client) receive(op *porcupine.Operation, wait time.Duration) (Output, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(wait))
	line, err := c.rd.ReadString('\n')
	if err != nil {
		return Output{}, err
	}
	op.Return = c.h.now()
	op.Output = parseAnswer(op.Input.(Input).Op, line)
	return op.Output.(Output), nil
}

// do runs one request and records it. A cut connection makes the
// operation lost (and reconnects); ok is false then.
func (c *client) do(in Input, cmd, arg string) (Output, bool) {
	return c.doLine(in, cmd, in.Key[strings.IndexByte(in.Key, ':')+1:], arg)
}

// doLine is do with an explicit key line.
func (c *client) doLine(in Input, cmd, key, arg string) (Output, bool) {
	op, err := c.sendLine(in, cmd, key, arg)
	var out Output
	if err == nil {
		out, err = c.receive(op, time.Duration(in.Timeout)*time.Second+15*time.Second)
	}
	if err != nil {
		if !c.isCut() {
			c.h.t.Errorf("client %d: %s %s %q: no answer and no fault injected: %v", c.id, cmd, in.Key, arg, err)
			c.cutBy(func(_ faultproxy.ConnInfo, conn net.Conn) { conn.Close() })
		}
		c.disconnected(op)
		return Output{}, false
	}
	c.h.record(c.id, op.Input.(Input), out, op.Call, op.Return)
	c.recordEntry(op, "ok")
	return out, true
}

// recordEntry adds the arrival of a blocking acquire (OpEvict, or
// OpJoin when tracked) over the acquire's interval.
func (c *client) recordEntry(op *porcupine.Operation, status string) {
	in := op.Input.(Input)
	if in.Op != OpAcquire || in.Timeout == 0 {
		return
	}
	entry := OpEvict
	if in.Tracked {
		entry = OpJoin
	}
	c.h.record(c.id, Input{Op: entry, Key: in.Key, Limit: in.Limit, Conn: in.Conn, TTL: in.TTL}, Output{Status: status}, op.Call, op.Return)
}

// Request builders. TTLs are whole seconds on the wire; omitted means
// the engine default.

func (c *client) leaseArg() (string, time.Duration) {
	if c.h.sessions {
		// Shorter, never the default: the waits behind a lease are
		// shorter, and so are the blocking requests' intervals (see
		// sessionTTL).
		s := 1 + c.rng.Intn(6)
		return " " + strconv.Itoa(s), time.Duration(s) * time.Second
	}
	if c.rng.Intn(5) == 0 {
		return "", defaultTTL
	}
	s := 2 + c.rng.Intn(12)
	return " " + strconv.Itoa(s), time.Duration(s) * time.Second
}

func (c *client) acquire(k keySpec, timeout int) (Output, bool) {
	lease, ttl := c.leaseArg()
	in := Input{Op: OpAcquire, Key: k.part(), Limit: k.limit, Timeout: timeout, TTL: ttl, Tracked: k.tracked && timeout > 0}
	cmd, arg := "l", strconv.Itoa(timeout)+lease
	if k.sem {
		cmd, arg = "sl", fmt.Sprintf("%d %d%s", timeout, k.limit, lease)
	}
	out, ok := c.do(in, cmd, arg)
	if ok && out.Status == "ok" {
		c.held[k.part()] = append(c.held[k.part()], out.Token)
		c.h.addToken(k.part(), out.Token)
	}
	return out, ok
}

// pickToken returns a token to release or renew: usually one this client
// holds, sometimes anyone's recent token (often stale), rarely a token of
// another key.
func (c *client) pickToken(k keySpec) (tok string, mine bool) {
	mineList := c.held[k.part()]
	switch r := c.rng.Intn(10); {
	case r < 7 && len(mineList) > 0:
		i := c.rng.Intn(len(mineList))
		return mineList[i], true
	case r < 9:
		return c.h.randomToken(c.rng, k.part()), false
	default:
		other := c.h.keys[c.rng.Intn(len(c.h.keys))]
		return c.h.randomToken(c.rng, other.part()), false
	}
}

func (c *client) forget(part, tok string) {
	l := c.held[part]
	for i, t := range l {
		if t == tok {
			c.held[part] = append(l[:i:i], l[i+1:]...)
			return
		}
	}
}

func (c *client) release(k keySpec) {
	tok, mine := c.pickToken(k)
	cmd := "r"
	if k.sem {
		cmd = "sr"
	}
	out, ok := c.do(Input{Op: OpRelease, Key: k.part(), Limit: k.limit, Token: tok}, cmd, tok)
	if ok {
		c.forget(k.part(), tok)
		if mine && out.Status != "ok" {
			c.h.st.staleAnswers.Add(1)
		}
	}
}

func (c *client) renew(k keySpec) {
	tok, mine := c.pickToken(k)
	lease, ttl := c.leaseArg()
	cmd := "n"
	if k.sem {
		cmd = "sn"
	}
	out, ok := c.do(Input{Op: OpRenew, Key: k.part(), Limit: k.limit, Token: tok, TTL: ttl}, cmd, tok+lease)
	if ok && mine && out.Status != "ok" {
		c.forget(k.part(), tok)
		c.h.st.staleAnswers.Add(1)
	}
}

func (c *client) enqueue(k keySpec) (Output, bool) {
	lease, ttl := c.leaseArg()
	in := Input{Op: OpEnqueue, Key: k.part(), Limit: k.limit, TTL: ttl}
	cmd, arg := "e", strings.TrimSpace(lease)
	if k.sem {
		cmd, arg = "se", strconv.Itoa(k.limit)+lease
	}
	out, ok := c.do(in, cmd, arg)
	if ok && out.Status == "acquired" {
		c.h.addToken(k.part(), out.Token)
	}
	return out, ok
}

func (c *client) wait(k keySpec, timeout int) (Output, bool) {
	cmd := "w"
	if k.sem {
		cmd = "sw"
	}
	out, ok := c.do(Input{Op: OpWait, Key: k.part(), Limit: k.limit, Timeout: timeout}, cmd, strconv.Itoa(timeout))
	if ok && out.Status == "ok" {
		c.held[k.part()] = append(c.held[k.part()], out.Token)
		c.h.addToken(k.part(), out.Token)
	}
	return out, ok
}

// vanish sends a blocking request (l/sl, or e then w on two-phase keys),
// waits briefly for its answer and closes the connection: mid-wait if
// the answer has not come, else while (possibly) holding the slot.
func (c *client) vanish(k keySpec) {
	var in Input
	var cmd, arg string
	lease, ttl := c.leaseArg()
	if k.twoPhase && (!k.tracked || c.rng.Intn(2) == 0) {
		if out, ok := c.enqueue(k); !ok || (out.Status != "queued" && out.Status != "acquired") {
			return
		}
		in = Input{Op: OpWait, Key: k.part(), Limit: k.limit, Timeout: 5}
		cmd, arg = "w", "5"
		if k.sem {
			cmd = "sw"
		}
	} else {
		in = Input{Op: OpAcquire, Key: k.part(), Limit: k.limit, Timeout: 5, TTL: ttl, Tracked: k.tracked}
		cmd, arg = "l", "5"+lease
		if k.sem {
			cmd, arg = "sl", fmt.Sprintf("5 %d%s", k.limit, lease)
		}
	}
	op, err := c.send(in, cmd, arg)
	var out Output
	if err == nil {
		out, err = c.receive(op, time.Duration(1+c.rng.Intn(20))*time.Millisecond)
	}
	answered := err == nil
	if answered {
		c.h.record(c.id, op.Input.(Input), out, op.Call, op.Return)
		c.recordEntry(op, "ok")
	}
	if !c.cutBy(func(_ faultproxy.ConnInfo, conn net.Conn) { conn.Close() }) && answered {
		// The injector cut it first; the next request notices.
		return
	}
	if answered {
		c.h.st.vanishHolding.Add(1)
		c.disconnected(nil)
		return
	}
	c.h.st.vanishWait.Add(1)
	c.disconnected(op)
}

// step runs one random action.
func (c *client) step(faults bool) {
	if c.h.sessions {
		c.sessionStep(faults)
		return
	}
	k := c.h.keys[c.rng.Intn(len(c.h.keys))]
	r := c.rng.Intn(100)
	if faults && r < 4 {
		c.vanish(k)
		return
	}
	if !k.twoPhase {
		switch {
		case r < 45:
			out, ok := c.acquire(k, c.rng.Intn(2))
			if ok && out.Status == "ok" && c.rng.Intn(8) == 0 {
				// A slow holder: do nothing while the clock runs.
				c.h.st.slowHolds.Add(1)
				time.Sleep(time.Duration(5+c.rng.Intn(25)) * time.Millisecond)
			}
		case r < 75:
			c.release(k)
		default:
			c.renew(k)
		}
		return
	}
	switch {
	case r < 40:
		out, ok := c.enqueue(k)
		if ok && (out.Status == "queued" || out.Status == "acquired") && c.rng.Intn(5) > 0 {
			if c.rng.Intn(6) == 0 {
				c.h.st.slowHolds.Add(1)
				time.Sleep(time.Duration(5+c.rng.Intn(25)) * time.Millisecond)
			}
			c.wait(k, c.rng.Intn(2))
		}
	case r < 50:
		c.wait(k, c.rng.Intn(2))
	case r < 60:
		c.acquire(k, 0)
	case r < 82:
		c.release(k)
	default:
		c.renew(k)
	}
}

// finish closes the client's connection and records the disconnect (the
// server releases what the connection held, and the history must say so).
func (c *client) finish() {
	c.cutBy(func(_ faultproxy.ConnInfo, conn net.Conn) { conn.Close() })
	c.ended(nil)
}

// runConfig sizes a random run.
type runConfig struct {
	seed     int64
	clients  int
	duration time.Duration
	faults   bool
	// sessions runs the session workload (session_harness_test.go): all
	// clients but two name sessions bound to one key each.
	sessions bool
}

// run drives a random workload and checks the history.
func run(t *testing.T, cfg runConfig, checkTimeout time.Duration) *harness {
	t.Logf("seed %d (replay the choices with -lincheck.seed=%d), %d clients, %v, faults %t, sessions %t",
		cfg.seed, cfg.seed, cfg.clients, cfg.duration, cfg.faults, cfg.sessions)
	h := newHarness(t, cfg.seed)
	if cfg.sessions {
		h = newHarnessFor(t, cfg.seed, sessionKeys, true)
	}
	master := rand.New(rand.NewSource(cfg.seed))
	clients := make([]*client, cfg.clients)
	for i := range clients {
		clients[i] = h.newClient(i, rand.New(rand.NewSource(master.Int63())))
		if cfg.sessions && i < cfg.clients-2 {
			clients[i].bound = &sessionKeys[i%len(sessionKeys)]
		}
	}
	tickRng := rand.New(rand.NewSource(master.Int63()))
	faultRng := rand.New(rand.NewSource(master.Int63()))
	stop := time.Now().Add(cfg.duration)
	var wg, active sync.WaitGroup
	var finished atomic.Bool
	for _, c := range clients {
		active.Add(1)
		go func() {
			defer active.Done()
			for time.Now().Before(stop) && !t.Failed() {
				c.step(cfg.faults)
			}
			c.finish()
		}()
	}
	wg.Add(1)
	go func() { // the clients are done when their last requests are
		defer wg.Done()
		active.Wait()
		finished.Store(true)
	}()
	wg.Add(1)
	go func() { // the clock, until the last client is done: a request
		// still waiting at the stop is granted as leases and sessions
		// run out, instead of waiting out its timeout
		defer wg.Done()
		for time.Now().Before(stop) || !finished.Load() {
			time.Sleep(time.Duration(500+tickRng.Intn(3000)) * time.Microsecond)
			if h.quiet.Load() > 0 {
				continue
			}
			h.tick(cfg.clients, time.Duration(200+tickRng.Intn(2300))*time.Millisecond, tickRng.Intn(3))
		}
	}()
	if cfg.faults {
		wg.Add(1)
		go func() { // the proxy's scissors
			defer wg.Done()
			for time.Now().Before(stop.Add(-50 * time.Millisecond)) {
				time.Sleep(time.Duration(10+faultRng.Intn(40)) * time.Millisecond)
				if faultRng.Intn(12) == 0 {
					cutAll(h, clients)
					continue
				}
				c := clients[faultRng.Intn(len(clients))]
				if c.cutBy(func(info faultproxy.ConnInfo, _ net.Conn) { h.proxy.Cut(info.ID) }) {
					h.st.cuts.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if cfg.sessions {
		h.endSessions(cfg.clients)
	}
	if t.Failed() {
		t.FailNow()
	}
	h.check(checkTimeout)
	s := &h.st
	t.Logf("checked %d operations from %d clients (+1 clock client: %d advances, %d full sweeps, %d leases swept)",
		len(h.history()), cfg.clients, s.advances.Load(), s.sweeps.Load(), s.expiries.Load())
	t.Logf("faults: %d proxy cuts, %d cut-all events, %d vanished mid-wait, %d vanished after the answer, %d lost answers, %d disconnects recorded; %d slow holders, %d error answers to a client's own token",
		s.cuts.Load(), s.cutAlls.Load(), s.vanishWait.Load(), s.vanishHolding.Load(), s.lost.Load(), s.disconnects.Load(), s.slowHolds.Load(), s.staleAnswers.Load())
	if cfg.sessions {
		t.Logf("sessions: %d named, %d resumed, %d resumes refused, %d wrong resumes, %d byes, %d take-overs, %d abandoned, %d expired",
			s.named.Load(), s.resumed.Load(), s.resumeRefused.Load(), s.wrongResumes.Load(), s.byes.Load(), s.takeovers.Load(), s.abandoned.Load(), s.sessExpired.Load())
	}
	return h
}

// cutAll cuts every client's connection at once through the proxy.
func cutAll(h *harness, clients []*client) {
	call := h.now()
	var locked []*client
	for _, c := range clients {
		c.mu.Lock()
		locked = append(locked, c)
	}
	for _, c := range locked {
		if !c.cut && c.conn != nil {
			c.cut, c.cutAt, c.quiet = true, call, true
			h.quiet.Add(1)
		}
	}
	h.proxy.CutAll()
	for _, c := range locked {
		c.mu.Unlock()
	}
	h.st.cutAlls.Add(1)
}

// longestLinearization returns the longest linearizable prefix
// porcupine found in a rejected partition.
func longestLinearization(info porcupine.LinearizationInfo) []porcupine.Operation {
	var best []porcupine.Operation
	for _, p := range info.PartialLinearizationsOperations() {
		for _, l := range p {
			if len(l) > len(best) {
				best = l
			}
		}
	}
	return best
}

// statesAfter returns the distinct model states ops can lead to from init.
func statesAfter[S modelState[S]](init S, step func(S, Input, Output) []S, ops []porcupine.Operation) []S {
	states := []S{init}
	for _, op := range ops {
		var next []S
		for _, s := range states {
			for _, n := range step(s, op.Input.(Input), op.Output.(Output)) {
				if !slices.ContainsFunc(next, n.Equal) {
					next = append(next, n)
				}
			}
		}
		states = next
	}
	return states
}

// explain logs, for the first partition porcupine rejects, the end of the
// longest linearizable prefix, the model states it leads to, and the
// earliest operations that could not be appended.
func explain(t testing.TB, ops []porcupine.Operation) {
	t.Helper()
	m := Model()
	single := m
	single.Partition = nil
	for _, part := range Partition(ops) {
		if porcupine.CheckOperationsTimeout(single, part, 10*time.Second) != porcupine.Illegal {
			continue
		}
		res, info := porcupine.CheckOperationsVerbose(single, part, 10*time.Second)
		if res != porcupine.Illegal {
			continue
		}
		best := longestLinearization(info)
		states := statesAfter(State{}, Step, best)
		from := max(0, len(best)-25)
		for _, op := range best[from:] {
			t.Logf("  lin [%d,%d] cl%d %s", op.Call, op.Return, op.ClientId, Describe(op.Input.(Input), op.Output.(Output)))
		}
		for i, s := range states {
			if i < 8 {
				t.Logf("  state %s", s)
			}
		}
		seen := make(map[int64]bool)
		for _, op := range best {
			seen[op.Call*1000+int64(op.ClientId)] = true
		}
		var rest []porcupine.Operation
		for _, op := range part {
			if !seen[op.Call*1000+int64(op.ClientId)] {
				rest = append(rest, op)
			}
		}
		slices.SortFunc(rest, func(a, b porcupine.Operation) int { return cmp.Compare(a.Call, b.Call) })
		for _, op := range rest[:min(12, len(rest))] {
			t.Logf("  next [%d,%d] cl%d %s", op.Call, op.Return, op.ClientId, Describe(op.Input.(Input), op.Output.(Output)))
		}
		return
	}
}
