package lincheck

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
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

	"github.com/dflockd/dflockd/cluster"
	"github.com/dflockd/dflockd/internal/testcluster"
)

// The cluster run: clients against a 3-node testcluster (every raft link
// and relay through a fault proxy) while a schedule of faults runs, the
// history checked with ClusterModel. Named clients (sessions bound to
// one key each, TTL far beyond the run) keep their holds through
// failovers and resume on whichever node answers; unnamed clients use
// any key and lose what they hold when their connection drops. Every
// client connects to any node, leader or follower (relayed), and moves
// to the next node when its connection breaks.

// clusterKeys are the keys of a cluster run.
var clusterKeys = []keySpec{
	{name: "A", limit: 1},
	{name: "B", limit: 1},
	{name: "S", sem: true, limit: 2},
}

// namedSessionTTL is the TTL of the named sessions: far beyond a run, so
// that none expires (the model never expires them).
const namedSessionTTL = 120

// lostReturn is the return time of an operation whose answer was lost
// and that was never seen settled: unbounded, since a proposal in flight
// when its leader died may be committed by the next.
const lostReturn = math.MaxInt64

// clusterStats counts what a cluster run did.
type clusterStats struct {
	ops, lost, reconnects, resumes, grants, timeouts, errors, disconnects, unbounded atomic.Int64
}

// clusterHarness is a cluster, the history and the clock ticks.
type clusterHarness struct {
	t     *testing.T
	seed  int64
	c     *testcluster.Cluster
	start time.Time

	mu      sync.Mutex
	ops     []porcupine.Operation
	ticks   []time.Duration
	granted map[string]bool // every token a grant answered

	nextID atomic.Int64 // connection and owner ids
	st     clusterStats
}

func (h *clusterHarness) now() int64 { return int64(time.Since(h.start)) }

func (h *clusterHarness) record(client int, in Input, out Output, call, ret int64) {
	h.mu.Lock()
	if out.Token != "" {
		h.granted[out.Token] = true
	}
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
	h.mu.Unlock()
	h.st.ops.Add(1)
}

// tick records a reading of the clock.
func (h *clusterHarness) tick() {
	at := time.Since(h.start)
	h.mu.Lock()
	h.ticks = append(h.ticks, at)
	h.mu.Unlock()
}

// history returns the operations with the ticks, each tick knowing the
// next one.
func (h *clusterHarness) history(client int) []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	ops := slices.Clone(h.ops)
	for i, at := range h.ticks {
		next := time.Duration(math.MaxInt64)
		if i+1 < len(h.ticks) {
			next = h.ticks[i+1] + 1
		}
		ops = append(ops, porcupine.Operation{ClientId: client, Input: Input{Op: OpTick, At: at, Next: next},
			Output: Output{Status: "ok"}, Call: int64(at), Return: int64(at) + 1})
	}
	return ops
}

// cclient is one client of a cluster run.
type cclient struct {
	h     *clusterHarness
	id    int
	rng   *rand.Rand
	named bool
	key   keySpec // a named client's key

	owner       int
	sid, secret string

	conn     net.Conn
	rd       *bufio.Reader
	connID   int
	node     int   // the node to dial next
	lastCall int64 // call time of the connection's last request
	used     bool  // the connection sent a lock request (unnamed: it has an implicit session)
	opened   bool  // unnamed: its implicit session was opened by openImplicit

	held map[string][]string
}

// exec sends one request and reads its answer, recording the operation.
// An answer that never came, or an `error` after which the server closed
// the connection (its node is not the leader, or is stopping: the
// request may have been proposed), makes the operation lost; ok is then
// false and the connection is dropped.
func (c *cclient) exec(in Input, cmd, key, arg string) (Output, bool) {
	if c.closed() {
		// The server closed the connection (a failover, a broken
		// relay) while the client was idle: nothing was sent.
		c.drop()
		return Output{}, false
	}
	in.Owner, in.Conn = c.owner, c.connID
	call := c.h.now()
	c.lastCall = call
	if in.Key != "" && in.Op != OpSession && in.Op != OpResume {
		c.used = true
	}
	_ = c.conn.SetDeadline(time.Now().Add(20 * time.Second))
	_, err := c.conn.Write([]byte(cmd + "\n" + key + "\n" + arg + "\n"))
	var line string
	if err == nil {
		line, err = c.rd.ReadString('\n')
	}
	ret := c.h.now()
	var out Output
	if err == nil {
		out = parseAnswer(in.Op, line)
		if strings.HasPrefix(out.Status, "error") && !c.alive() {
			err = fmt.Errorf("closed after %q", strings.TrimSpace(line))
		}
	}
	if err != nil {
		remote := c.conn.LocalAddr().String()
		c.drop()
		if in.Op != OpSession && in.Op != OpResume && !c.bogus(in) {
			// A lost session or resume changes nothing the model sees
			// (the harness forgets a session whose naming was lost):
			// leaving it out spares the checker an op that floats.
			c.h.record(c.id, in, Output{Status: StatusLost}, call, c.h.settled(remote))
			c.h.st.lost.Add(1)
		}
		time.Sleep(20 * time.Millisecond)
		return Output{}, false
	}
	c.h.record(c.id, in, out, call, ret)
	return out, true
}

// closed reports, without sending anything, whether the server has
// closed the connection (an end of file is waiting to be read).
func (c *cclient) closed() bool {
	if c.rd.Buffered() > 0 {
		return false
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(time.Millisecond))
	_, err := c.rd.Peek(1)
	_ = c.conn.SetReadDeadline(time.Time{})
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// bogus reports whether in releases or renews a token no grant ever
// had (the workload's made-up tokens): lost, it can have had no effect,
// and leaving it out spares the checker an operation that floats.
func (c *cclient) bogus(in Input) bool {
	if in.Op != OpRelease && in.Op != OpRenew {
		return false
	}
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	return !c.h.granted[in.Token]
}

// alive pings: false when the server closed the connection.
func (c *cclient) alive() bool {
	_ = c.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.conn.Write([]byte("ping\n_\n\n")); err != nil {
		return false
	}
	line, err := c.rd.ReadString('\n')
	return err == nil && line == "ok\n"
}

// drop closes the connection. An unnamed connection's end is recorded:
// its implicit session closes at some moment after its last request
// (when the leader sees it go, or a grace after a failover), unbounded.
func (c *cclient) drop() {
	if c.conn == nil {
		return
	}
	c.conn.Close()
	c.conn = nil
	if !c.named && c.used {
		ret := int64(lostReturn)
		if c.opened {
			ret = c.h.implicitGone()
		}
		c.h.record(c.id, Input{Op: OpDisconnect, Owner: c.owner, Conn: c.connID}, Output{Status: "ok"}, c.lastCall, ret)
		c.h.st.disconnects.Add(1)
	}
	c.node++
}

// implicitGone waits until the serving leader (of the highest term) has
// no implicit session left, and returns the history time it saw that
// (unbounded if it never does within noticeLimit). The run has a single
// unnamed client, and it calls this before it reconnects, so the only
// implicit session there can be is that of the connection that ended,
// which was opened before anything it did (see openImplicit): its close
// is committed after every request of the connection took effect or was
// dropped for good.
func (h *clusterHarness) implicitGone() int64 {
	deadline := time.Now().Add(noticeLimit)
	for time.Now().Before(deadline) {
		if n, term := h.servingLeader(); n != nil {
			implicit := slices.ContainsFunc(n.Replica().State().Sessions(), func(s cluster.SessionInfo) bool { return !s.Named })
			if again, t2 := h.servingLeader(); !implicit && again == n && t2 == term {
				return h.now()
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.st.unbounded.Add(1)
	return lostReturn
}

// servingLeader returns the node that serves as leader in the highest
// term any running node knows, and that term; nil while there is none.
func (h *clusterHarness) servingLeader() (*testcluster.Node, uint64) {
	var best *testcluster.Node
	var term uint64
	for _, n := range h.c.Nodes {
		if rep := n.Replica(); rep != nil {
			if st := rep.Status(); st.Term > term || st.Term == term && st.Serving {
				best, term = n, st.Term
			}
		}
	}
	if best == nil || !best.Leading() {
		return nil, 0
	}
	return best, term
}

// settled waits until a request sent on a connection that ended (its
// local address remote) can no longer take effect, and returns the
// history time it saw that; unbounded if it does not within noticeLimit.
// That is when the serving leader of the highest term no longer lists
// the connection (as a client of its own or relayed): if that leader
// served it, the request was done or refused, in this leader's term; if
// another did, this leader's term is later and began with a barrier, so
// the entry is committed, or never will be. (It assumes the leader has
// admitted, by the time the client sees its connection end, a relay
// whose request bytes reached it: its accept loop does that at once,
// and a relaying node closes its clients only as it stops.)
func (h *clusterHarness) settled(remote string) int64 {
	deadline := time.Now().Add(noticeLimit)
	for time.Now().Before(deadline) {
		if n, term := h.servingLeader(); n != nil {
			has, err := statsHas(n.Addr, remote)
			if again, t2 := h.servingLeader(); err == nil && !has && again == n && t2 == term {
				return h.now()
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.st.unbounded.Add(1)
	return lostReturn
}

// statsHas reports whether the server at addr lists a client from
// remote in its stats.
func statsHas(addr, remote string) (bool, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("stats\n_\n\n")); err != nil {
		return false, err
	}
	line, err := bufio.NewReaderSize(conn, 1<<20).ReadString('\n')
	if err != nil {
		return false, err
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
		return false, err
	}
	return slices.ContainsFunc(st.Clients, func(c struct {
		Remote string `json:"remote"`
	}) bool {
		return c.Remote == remote
	}), nil
}

// openImplicit opens the implicit session of a fresh unnamed connection
// with a try-lock and a release on a key of its own (not part of the
// history: nobody else uses it), so that none of its recorded requests
// opens it. It reports whether both were answered.
func (c *cclient) openImplicit() bool {
	key := "U" + strconv.Itoa(c.connID)
	_ = c.conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.conn.Write([]byte("l\n" + key + "\n0 5\n")); err != nil {
		return false
	}
	line, err := c.rd.ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 3 || f[0] != "ok" {
		return false
	}
	if _, err := c.conn.Write([]byte("r\n" + key + "\n" + f[1] + "\n")); err != nil {
		return false
	}
	line, err = c.rd.ReadString('\n')
	return err == nil && line == "ok\n"
}

// connect dials nodes in turn until one answers, then names or resumes
// the client's session (named clients). It gives up at deadline.
func (c *cclient) connect(deadline time.Time) bool {
	addrs := c.h.c.Addrs()
	for time.Now().Before(deadline) {
		if c.conn == nil {
			i := c.node % len(addrs)
			if !c.h.c.Ready(i) {
				c.node++
				time.Sleep(10 * time.Millisecond)
				continue
			}
			conn, err := net.DialTimeout("tcp", addrs[i], time.Second)
			if err != nil {
				c.node++
				time.Sleep(20 * time.Millisecond)
				continue
			}
			c.conn, c.rd = conn, bufio.NewReader(conn)
			c.connID = int(c.h.nextID.Add(1))
			c.used = false
			c.lastCall = c.h.now()
			if !c.named {
				c.owner = c.connID
				c.held = map[string][]string{}
			}
			c.h.st.reconnects.Add(1)
		}
		if !c.named {
			c.opened = c.openImplicit()
			c.used = true // the implicit session exists, or may
			if !c.opened {
				c.drop()
				time.Sleep(20 * time.Millisecond)
				continue
			}
			return true
		}
		k := c.key
		if c.sid == "" {
			c.owner = int(c.h.nextID.Add(1))
			out, ok := c.exec(Input{Op: OpSession, Key: k.part(), Limit: k.limit}, "session", "_", strconv.Itoa(namedSessionTTL))
			if !ok {
				continue
			}
			if out.Status != "ok" {
				c.h.t.Errorf("client %d: session: %q", c.id, out.Status)
				return false
			}
			c.sid, c.secret = out.SID, out.Secret
			return true
		}
		out, ok := c.exec(Input{Op: OpResume, Key: k.part(), Limit: k.limit, SID: c.sid, Secret: c.secret}, "resume", c.sid, c.secret)
		if !ok {
			continue
		}
		c.h.st.resumes.Add(1)
		if out.Status != "ok" {
			c.h.t.Errorf("client %d: resume of its session refused: %q", c.id, out.Status)
			return false
		}
		return true
	}
	c.h.t.Errorf("client %d: no node answered", c.id)
	return false
}

func (c *cclient) leaseArg() (string, time.Duration) {
	s := 1 + c.rng.Intn(3)
	return strconv.Itoa(s), time.Duration(s) * time.Second
}

// step runs one random request: a try-lock, a release or a renew.
func (c *cclient) step() {
	k := c.key
	if !c.named {
		k = clusterKeys[c.rng.Intn(len(clusterKeys))]
	}
	r := c.rng.Intn(100)
	part := k.part()
	switch {
	case r < 45:
		lease, ttl := c.leaseArg()
		in := Input{Op: OpAcquire, Key: part, Limit: k.limit, TTL: ttl}
		cmd, arg := "l", "0 "+lease
		if k.sem {
			cmd, arg = "sl", fmt.Sprintf("0 %d %s", k.limit, lease)
		}
		out, ok := c.exec(in, cmd, k.name, arg)
		switch {
		case ok && out.Status == "ok":
			c.h.st.grants.Add(1)
			c.held[part] = append(c.held[part], out.Token)
		case ok && out.Status == "timeout":
			c.h.st.timeouts.Add(1)
		}
	case r < 75:
		tok := c.pick(part)
		cmd := "r"
		if k.sem {
			cmd = "sr"
		}
		if out, ok := c.exec(Input{Op: OpRelease, Key: part, Limit: k.limit, Token: tok}, cmd, k.name, tok); ok {
			c.forget(part, tok)
			if out.Status != "ok" {
				c.h.st.errors.Add(1)
			}
		}
	default:
		tok := c.pick(part)
		lease, ttl := c.leaseArg()
		cmd := "n"
		if k.sem {
			cmd = "sn"
		}
		if out, ok := c.exec(Input{Op: OpRenew, Key: part, Limit: k.limit, Token: tok, TTL: ttl}, cmd, k.name, tok+" "+lease); ok && out.Status != "ok" {
			c.forget(part, tok)
			c.h.st.errors.Add(1)
		}
	}
}

// pick returns a token to release or renew: mostly one of the client's
// own, sometimes a stale one.
func (c *cclient) pick(part string) string {
	l := c.held[part]
	if len(l) > 0 && c.rng.Intn(8) > 0 {
		return l[c.rng.Intn(len(l))]
	}
	return fmt.Sprintf("%016x%016x", c.rng.Intn(1000)+1, c.rng.Uint64())
}

func (c *cclient) forget(part, tok string) {
	c.held[part] = slices.DeleteFunc(c.held[part], func(t string) bool { return t == tok })
}

// finish ends the client: a named session says bye (a lost bye is
// recorded as such), an unnamed connection is closed.
func (c *cclient) finish() {
	if c.named && c.conn != nil {
		k := c.key
		c.exec(Input{Op: OpBye, Key: k.part(), Limit: k.limit}, "bye", "_", "")
	}
	c.drop()
}

// clusterConfig sizes a cluster run.
type clusterConfig struct {
	seed           int64
	named, unnamed int
	// faults is the schedule (see runFault), settle the steady load
	// between two faults.
	faults []string
	settle time.Duration
	check  time.Duration
}

// runClusterRun drives the workload through the fault schedule and
// checks the history.
func runClusterRun(t *testing.T, cfg clusterConfig) {
	t.Logf("seed %d, %d named + %d unnamed clients, faults %v", cfg.seed, cfg.named, cfg.unnamed, cfg.faults)
	c := testcluster.Start(t, testcluster.Config{})
	c.Leader(t)
	h := &clusterHarness{t: t, seed: cfg.seed, c: c, start: time.Now(), granted: map[string]bool{}}
	h.tick()
	master := rand.New(rand.NewSource(cfg.seed))
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	tickDone := make(chan struct{})
	go func() { // the clock readings
		defer wg.Done()
		for {
			select {
			case <-tickDone:
				h.tick()
				return
			case <-time.After(5 * time.Millisecond):
				h.tick()
			}
		}
	}()
	var clients sync.WaitGroup
	n := cfg.named + cfg.unnamed
	for i := range n {
		cl := &cclient{h: h, id: i, rng: rand.New(rand.NewSource(master.Int63())), named: i < cfg.named,
			key: clusterKeys[i%len(clusterKeys)], node: i, held: map[string][]string{}}
		clients.Add(1)
		go func() {
			defer clients.Done()
			for !stop.Load() && !t.Failed() {
				if cl.conn == nil && !cl.connect(time.Now().Add(30*time.Second)) {
					return
				}
				cl.step()
				time.Sleep(time.Duration(5+cl.rng.Intn(15)) * time.Millisecond)
			}
			if cl.conn == nil {
				cl.connect(time.Now().Add(30 * time.Second))
			}
			cl.finish()
		}()
	}
	faultRng := rand.New(rand.NewSource(master.Int63()))
	time.Sleep(cfg.settle)
	for _, f := range cfg.faults {
		if t.Failed() {
			break
		}
		runFault(t, h, f, faultRng)
		time.Sleep(cfg.settle)
	}
	stop.Store(true)
	clients.Wait()
	close(tickDone)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	ops := h.history(n)
	begin := time.Now()
	res, info := porcupine.CheckOperationsVerbose(ClusterModel(), ops, cfg.check)
	s := &h.st
	t.Logf("porcupine: %d operations (%d clock ticks) in %d partitions: %s in %v", len(ops), len(h.ticks), len(Partition(ops)), res,
		time.Since(begin).Round(time.Millisecond))
	t.Logf("%d requests, %d lost answers, %d connections, %d resumes, %d grants, %d try-lock timeouts, %d refused releases/renews, %d unnamed disconnects, %d ends never seen settled",
		s.ops.Load(), s.lost.Load(), s.reconnects.Load(), s.resumes.Load(), s.grants.Load(), s.timeouts.Load(), s.errors.Load(), s.disconnects.Load(), s.unbounded.Load())
	if res == porcupine.Ok {
		return
	}
	if res == porcupine.Illegal {
		explainCluster(t, ops)
	}
	dump := filepath.Join(os.TempDir(), fmt.Sprintf("lincheck-cluster-%d.json", cfg.seed))
	if b, err := json.Marshal(ops); err == nil && os.WriteFile(dump, b, 0o644) == nil {
		t.Logf("history written to %s", dump)
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("lincheck-cluster-%d.html", cfg.seed))
	if err := porcupine.VisualizePath(ClusterModel(), info, path); err == nil {
		t.Logf("visualisation written to %s", path)
	}
	t.Fatalf("history is %s (seed %d)", res, cfg.seed)
}

// runFault injects one fault of the schedule (testcluster.Inject) and
// logs when it came and how long it took.
func runFault(t *testing.T, h *clusterHarness, name string, rng *rand.Rand) {
	t0 := time.Now()
	h.c.Inject(t, name, rng)
	t.Logf("fault %s at %v took %v", name, t0.Sub(h.start).Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
}

// explainCluster logs, for the first partition porcupine rejects, the end
// of the longest linearizable prefix, the states it leads to and the
// earliest operations that could not follow.
func explainCluster(t *testing.T, ops []porcupine.Operation) {
	m := ClusterModel()
	m.Partition = nil
	for _, part := range Partition(ops) {
		res, info := porcupine.CheckOperationsVerbose(m, part, 20*time.Second)
		if res != porcupine.Illegal {
			continue
		}
		best := longestLinearization(info)
		states := statesAfter(ClusterState{}, ClusterStep, best)
		var shown []porcupine.Operation
		for _, op := range best {
			if op.Input.(Input).Op != OpTick {
				shown = append(shown, op)
			}
		}
		for _, op := range shown[max(0, len(shown)-25):] {
			t.Logf("  lin [%d,%d] cl%d %s", op.Call, op.Return, op.ClientId, DescribeCluster(op.Input.(Input), op.Output.(Output)))
		}
		for i, s := range states {
			if i < 8 {
				t.Logf("  state %s", s)
			}
		}
		done := make(map[[2]int64]bool)
		for _, op := range best {
			done[[2]int64{op.Call, int64(op.ClientId)}] = true
		}
		var rest []porcupine.Operation
		for _, op := range part {
			if !done[[2]int64{op.Call, int64(op.ClientId)}] && op.Input.(Input).Op != OpTick {
				rest = append(rest, op)
			}
		}
		slices.SortFunc(rest, func(a, b porcupine.Operation) int { return cmp.Compare(a.Call, b.Call) })
		for _, op := range rest[:min(12, len(rest))] {
			t.Logf("  next [%d,%d] cl%d %s", op.Call, op.Return, op.ClientId, DescribeCluster(op.Input.(Input), op.Output.(Output)))
		}
		return
	}
}

// TestLinearizableCluster runs clients against a 3-node cluster through
// leader and follower kills, partitions that isolate the leader or a
// follower, and a restart of every node, and requires porcupine to
// accept the history. LINCHECK_LONG=1 runs longer rounds with random
// schedules.
func TestLinearizableCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster run takes seconds")
	}
	base := runSeed()
	cfg := clusterConfig{seed: base, named: 4, unnamed: 1, settle: 400 * time.Millisecond, check: time.Minute,
		faults: []string{"kill-leader", "isolate-follower", "isolate-leader", "kill-follower", "restart-all"}}
	rounds := 1
	if longMode() {
		rounds = 4
		cfg.named, cfg.settle, cfg.check = 6, time.Second, 5*time.Minute
	}
	all := []string{"kill-leader", "kill-follower", "isolate-leader", "isolate-follower", "restart-all"}
	for r := range rounds {
		cfg.seed = base + int64(r)
		if r > 0 {
			rng := rand.New(rand.NewSource(cfg.seed))
			cfg.faults = nil
			for range 10 {
				cfg.faults = append(cfg.faults, all[rng.Intn(len(all))])
			}
		}
		t.Run(fmt.Sprintf("round%d", r), func(t *testing.T) { runClusterRun(t, cfg) })
	}
}
