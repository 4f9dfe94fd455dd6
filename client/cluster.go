package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dflockd/dflockd/protocol"
	"github.com/dflockd/dflockd/transport"
)

// ClusterStatus is a member's view of its replicated cluster: the answer
// to the `cluster` request (Conn.ClusterStatus).
type ClusterStatus struct {
	// Node is the id of the member that answered.
	Node string `json:"node"`
	// Role is its raft role: leader, follower, candidate or shutdown.
	Role string `json:"role"`
	// Serving is true on a leader that has caught up and serves clients.
	Serving bool `json:"serving"`
	// Leader is the leader this member knows of; nil when none.
	Leader *ClusterMember `json:"leader"`
	// Term is the member's raft term.
	Term uint64 `json:"term"`
	// CommitIndex, AppliedIndex and LastIndex are its raft log indexes.
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	LastIndex    uint64 `json:"last_index"`
	// LastContactMS is how long ago the member last heard from the
	// leader, in milliseconds: 0 on the leader, -1 never.
	LastContactMS int64 `json:"last_contact_ms"`
	// Members is the cluster's configuration.
	Members []ClusterMember `json:"members"`
}

// ClusterMember is one member of a cluster's configuration.
type ClusterMember struct {
	// ID is the member's node id.
	ID string `json:"id"`
	// Raft is its raft address.
	Raft string `json:"raft"`
	// Voter is false for a non-voting member.
	Voter bool `json:"voter"`
	// Endpoints are the URLs its clients connect to
	// ("tcp://10.0.0.1:6388"); empty while not known yet.
	Endpoints []string `json:"endpoints"`
}

// Member returns the member of id in the configuration, if any.
func (s *ClusterStatus) Member(id string) (ClusterMember, bool) {
	for _, m := range s.Members {
		if m.ID == id {
			return m, true
		}
	}
	return ClusterMember{}, false
}

// ClusterStatusRaw returns the server's answer to `cluster` as raw JSON.
// A server that is not in the replicated mode answers `error`: the error
// then wraps ErrUnsupported.
func (c *Conn) ClusterStatusRaw(ctx context.Context) (json.RawMessage, error) {
	resp, err := c.roundTrip(ctx, protocol.CmdCluster, "_", "", wantOK)
	if err != nil {
		return nil, unsupported(c, err)
	}
	if resp.Body == nil || !json.Valid(resp.Body) {
		return nil, fmt.Errorf("%w: cluster answer is not JSON", ErrServer)
	}
	return json.RawMessage(resp.Body), nil
}

// ClusterStatus returns the server's view of its cluster (`cluster`),
// decoded; see ClusterStatusRaw.
func (c *Conn) ClusterStatus(ctx context.Context) (*ClusterStatus, error) {
	raw, err := c.ClusterStatusRaw(ctx)
	if err != nil {
		return nil, err
	}
	var st ClusterStatus
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("%w: cluster: %w", ErrServer, err)
	}
	return &st, nil
}

// AddMember asks the cluster to add the node id, whose raft address is
// raftAddr, as a voter or not (`cluster add`). A follower relays the
// connection to the leader, which makes the change: from then on this
// Conn talks to the leader. The server allows it only to an
// authenticated connection; a refusal, or a failed change, is a plain
// `error` (ErrServer): the server's log says why.
func (c *Conn) AddMember(ctx context.Context, id, raftAddr string, voter bool) error {
	if err := checkWord("node id", id); err != nil {
		return err
	}
	if err := checkWord("raft address", raftAddr); err != nil {
		return err
	}
	op := "add " + id + " " + raftAddr
	if !voter {
		op += " nonvoter"
	}
	return c.clusterChange(ctx, op)
}

// RemoveMember asks the cluster to remove the node id (`cluster remove`),
// as AddMember.
func (c *Conn) RemoveMember(ctx context.Context, id string) error {
	if err := checkWord("node id", id); err != nil {
		return err
	}
	return c.clusterChange(ctx, "remove "+id)
}

// TransferLeadership asks the leader to hand leadership to the node id,
// or to the most up-to-date follower when id is empty (`cluster
// transfer`), as AddMember. The connection stays open for the answer.
func (c *Conn) TransferLeadership(ctx context.Context, id string) error {
	op := "transfer"
	if id != "" {
		if err := checkWord("node id", id); err != nil {
			return err
		}
		op += " " + id
	}
	return c.clusterChange(ctx, op)
}

func (c *Conn) clusterChange(ctx context.Context, op string) error {
	_, err := c.roundTrip(ctx, protocol.CmdCluster, "_", op, wantBare)
	return err
}

// checkWord validates one word of a cluster operation.
func checkWord(what, s string) error {
	if s == "" || len(s) > protocol.MaxLine || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return invalid("%s %q: want 1 to %d bytes without whitespace", what, s, protocol.MaxLine)
	}
	return nil
}

// ErrNoLeader is what a *NoLeaderError matches with errors.Is: no member
// of a cluster could be reached that knew of a leader the client could
// reach.
var ErrNoLeader = errors.New("client: no leader reachable")

// errNotLeader is the cause of a connection that a node closed because it
// stopped leading.
var errNotLeader = errors.New("the node no longer leads the cluster")

// NoLeaderError is the error of connecting to a cluster when no leader
// could be reached: every member was unreachable, or those that answered
// knew of no leader (an election in progress, a lost majority), or the
// leader they named could not be reached. It matches ErrNoLeader, and
// unwraps to what each member said.
type NoLeaderError struct {
	// Tried is what was tried, one entry per member address and per
	// leader endpoint dialled, in the order of Members.
	Tried []Attempt
}

// Attempt is one member (or leader endpoint) tried while looking for a
// cluster's leader.
type Attempt struct {
	// Addr is the address dialled.
	Addr string
	// Err is why it did not lead anywhere: a dial error, or "no leader
	// known" for a member that answered without knowing a leader.
	Err error
}

// Error implements error: "client: no leader reachable (1 of 3 members
// reachable): 127.0.0.1:6388: connection refused; ...".
func (e *NoLeaderError) Error() string {
	var b strings.Builder
	b.WriteString(ErrNoLeader.Error())
	fmt.Fprintf(&b, " (%d of %d members reachable)", e.Reachable(), e.Members())
	for i, a := range e.Tried {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(a.String())
	}
	return b.String()
}

// String describes the attempt briefly: "127.0.0.1:6390: connection
// refused", "127.0.0.1:6389: no leader known".
func (a Attempt) String() string { return a.Addr + ": " + describeAttempt(a.Err) }

// Reachable counts the members that answered.
func (e *NoLeaderError) Reachable() int {
	n := 0
	for _, a := range e.Tried {
		if _, ok := errors.AsType[*memberAnswer](a.Err); ok {
			n++
		}
	}
	return n
}

// Members counts the member addresses tried (leader endpoints left out).
func (e *NoLeaderError) Members() int {
	n := 0
	for _, a := range e.Tried {
		if _, ok := errors.AsType[*leaderDialError](a.Err); !ok {
			n++
		}
	}
	return n
}

// Is reports whether target is ErrNoLeader.
func (e *NoLeaderError) Is(target error) bool { return target == ErrNoLeader }

// Unwrap returns what each attempt failed with.
func (e *NoLeaderError) Unwrap() []error {
	out := make([]error, 0, len(e.Tried))
	for _, a := range e.Tried {
		out = append(out, a.Err)
	}
	return out
}

// memberAnswer is the Attempt error of a member that answered: it knew
// no leader, or named one that could not be reached.
type memberAnswer struct{ leader string }

func (e *memberAnswer) Error() string {
	if e.leader == "" {
		return "no leader known"
	}
	return "names leader " + e.leader
}

// leaderDialError is the Attempt error of a leader endpoint that could
// not be dialled.
type leaderDialError struct {
	leader string
	err    error
}

func (e *leaderDialError) Error() string {
	return "leader " + e.leader + " unreachable: " + describeAttempt(e.err)
}
func (e *leaderDialError) Unwrap() error { return e.err }

// describeAttempt describes one attempt's error briefly.
func describeAttempt(err error) string {
	if de, ok := errors.AsType[*DialError](err); ok {
		cause := Cause(de.Err)
		if de.Timeout > 0 && errors.Is(de.Err, context.DeadlineExceeded) {
			cause += " after " + de.Timeout.String()
		}
		return cause
	}
	if _, ok := errors.AsType[*leaderDialError](err); ok {
		return err.Error()
	}
	if _, ok := errors.AsType[*memberAnswer](err); ok {
		return err.Error()
	}
	return Cause(err)
}

// clusterMembers returns the members of the cluster that addr and opts
// name (opts.Cluster, or an addr listing several addresses separated by
// commas), or nil when they name one server.
func clusterMembers(addr string, opts Options) ([]string, error) {
	var members []string
	switch {
	case len(opts.Cluster) > 0 && addr != "":
		return nil, invalid("address %q given with Options.Cluster: leave it empty", addr)
	case len(opts.Cluster) > 0:
		members = opts.Cluster
	case strings.Contains(addr, ","):
		members = strings.Split(addr, ",")
	default:
		return nil, nil
	}
	out := make([]string, 0, len(members))
	for _, m := range members {
		m = strings.TrimSpace(m)
		if m == "" {
			return nil, invalid("empty member address in cluster %q", strings.Join(members, ","))
		}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	if opts.QUIC != nil {
		return nil, invalid("Options.QUIC cannot be used with a cluster")
	}
	return out, nil
}

// Cluster discovery timing.
const (
	// betterAnswerWait is how long discovery waits, after a member named
	// a leader, for the leader's own answer (which is never stale).
	betterAnswerWait = 100 * time.Millisecond
)

// dialCluster connects to the leader of the cluster of members: it asks
// every member at once for the leader (`cluster`), dials the leader's
// client endpoint (or, failing that, the member that named it, which
// relays), and retries with back-off while members answer but know no
// leader, within ctx and opts.DialTimeout. When no member can be reached
// at all it fails at once. A refused auth token, or a TLS certificate
// that does not verify, fails at once too.
func dialCluster(ctx context.Context, members []string, opts Options) (*Conn, error) {
	parent := ctx
	if d := opts.dialTimeout(); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	member := opts
	member.Cluster, member.Name = nil, ""
	backoff := reconnectMinBackoff
	for {
		c, nl, err := discoverOnce(ctx, members, member, opts)
		if c != nil || err != nil {
			return c, err
		}
		if parent.Err() != nil {
			return nil, fmt.Errorf("client: dial cluster: %w", context.Cause(parent))
		}
		if nl.Reachable() == 0 || ctx.Err() != nil {
			return nil, nl
		}
		d := backoff - time.Duration(rand.Int64N(int64(backoff)/4+1))
		backoff = min(2*backoff, reconnectMaxBackoff)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			if parent.Err() != nil {
				return nil, fmt.Errorf("client: dial cluster: %w", context.Cause(parent))
			}
			return nil, nl
		case <-t.C:
		}
	}
}

// statusAnswer is one member's answer to discovery.
type statusAnswer struct {
	i   int
	st  *ClusterStatus
	err error
}

// discoverOnce asks every member for the leader and dials it. It returns
// the connection, or a *NoLeaderError describing the round, or a final
// error (auth, TLS verification, an invalid option).
func discoverOnce(ctx context.Context, members []string, member, opts Options) (*Conn, *NoLeaderError, error) {
	qctx, cancel := context.WithCancel(ctx)
	answers := make(chan statusAnswer, len(members))
	var wg sync.WaitGroup
	for i, addr := range members {
		wg.Go(func() {
			c, err := dialServer(qctx, addr, member)
			if err != nil {
				answers <- statusAnswer{i: i, err: err}
				return
			}
			st, err := c.ClusterStatus(qctx)
			c.Close()
			answers <- statusAnswer{i: i, st: st, err: err}
		})
	}
	got := make([]statusAnswer, len(members))
	for i := range got {
		got[i].i = -1
	}
	var (
		best  *statusAnswer
		grace <-chan time.Time
	)
collect:
	for n := 0; n < len(members); n++ {
		var a statusAnswer
		select {
		case a = <-answers:
		case <-grace:
			break collect
		}
		got[a.i] = a
		if a.err != nil {
			if final(a.err) {
				cancel()
				wg.Wait()
				return nil, nil, fmt.Errorf("client: dial cluster member %s: %w", members[a.i], a.err)
			}
			continue
		}
		if a.st.Leader == nil {
			continue
		}
		if best == nil || a.st.Term > best.st.Term || selfLeader(a.st) && !selfLeader(best.st) {
			best = &got[a.i]
		}
		if selfLeader(a.st) {
			break
		}
		if grace == nil {
			grace = time.After(betterAnswerWait)
		}
	}
	cancel()
	wg.Wait()
	nl := &NoLeaderError{}
	for i, a := range got {
		switch {
		case a.i < 0:
			nl.Tried = append(nl.Tried, Attempt{Addr: members[i], Err: errors.New("no answer in time")})
		case a.err != nil:
			nl.Tried = append(nl.Tried, Attempt{Addr: members[i], Err: a.err})
		case a.st.Leader == nil:
			nl.Tried = append(nl.Tried, Attempt{Addr: members[i], Err: &memberAnswer{}})
		default:
			nl.Tried = append(nl.Tried, Attempt{Addr: members[i], Err: &memberAnswer{leader: a.st.Leader.ID}})
		}
	}
	if best == nil {
		return nil, nl, nil
	}
	// Dial the leader's endpoint, else a member that named it (it
	// relays).
	leader := best.st.Leader
	candidates := leaderEndpoints(leader.Endpoints, members, opts)
	via := len(candidates)
	for _, a := range got {
		if a.st != nil && a.st.Leader != nil && a.st.Leader.ID == leader.ID && !selfLeader(a.st) {
			candidates = append(candidates, members[a.i])
		}
	}
	lopts := opts
	lopts.Cluster = nil
	for k, addr := range candidates {
		o := lopts
		if k < via {
			o.Transport = "" // the endpoint's scheme says it
		}
		c, err := dialServer(ctx, addr, o)
		if err == nil {
			c.leader = true
			return c, nil, nil
		}
		if final(err) {
			return nil, nil, fmt.Errorf("client: dial cluster leader %s: %w", addr, err)
		}
		if ctx.Err() != nil {
			break
		}
		nl.Tried = append(nl.Tried, Attempt{Addr: addr, Err: &leaderDialError{leader: leader.ID, err: err}})
	}
	// Members that named an unreachable leader count as reachable, but
	// the round found none.
	return nil, nl, nil
}

// selfLeader reports whether st comes from the leader itself, serving.
func selfLeader(st *ClusterStatus) bool {
	return st.Serving && st.Leader != nil && st.Leader.ID == st.Node
}

// leaderEndpoints orders a leader's client endpoints for dialling: those
// of the transport the members are reached with first, then any other
// transport this client knows. Unknown schemes are left out.
func leaderEndpoints(endpoints, members []string, opts Options) []string {
	want := map[string]bool{}
	for _, m := range members {
		if e, err := opts.endpoint(m); err == nil {
			want[e.Transport] = true
		}
	}
	var first, rest []string
	for _, s := range endpoints {
		e, err := transport.ParseEndpoint(s)
		if err != nil {
			continue
		}
		if _, err := transport.Lookup(e.Transport); err != nil {
			continue
		}
		if opts.Transport != "" && !strings.EqualFold(opts.Transport, e.Transport) {
			rest = append(rest, s)
			continue
		}
		if want[e.Transport] {
			first = append(first, s)
		} else {
			rest = append(rest, s)
		}
	}
	return append(first, rest...)
}

// final reports whether err is not worth retrying on another member or
// later: the server refused the auth token, an argument is invalid, or
// the server's TLS certificate does not verify (or ours was refused).
func final(err error) bool {
	if errors.Is(err, ErrAuth) || errors.Is(err, ErrInvalid) {
		return true
	}
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return true
	}
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return true
	}
	if _, ok := errors.AsType[x509.HostnameError](err); ok {
		return true
	}
	if _, ok := errors.AsType[tls.AlertError](err); ok {
		return true // the server refused our certificate
	}
	return false
}

// needsLeader reports whether a replicated server serves cmd on the leader
// only (a node that does not lead refuses it when it has no leader to
// relay to).
func needsLeader(cmd protocol.Command) bool {
	switch cmd {
	case protocol.CmdPing, protocol.CmdAuth, protocol.CmdCluster:
		return false
	}
	return true
}

// leaderProbeTimeout bounds the ping that tells a node that stopped
// leading from a genuine `error` answer.
const leaderProbeTimeout = 2 * time.Second

// leaderGone tells, after a plain `error` answer on a connection to a
// cluster's leader, whether the node refused the request because it no
// longer leads: it then closes the connection, so a ping gets no answer.
// The caller holds c.sem.
func (c *Conn) leaderGone() bool {
	_ = c.nc.SetDeadline(time.Now().Add(leaderProbeTimeout))
	defer func() {
		if !c.closed.Load() {
			_ = c.nc.SetDeadline(time.Time{})
		}
	}()
	c.buf = protocol.AppendRequest(c.buf[:0], protocol.CmdPing, "_", "")
	if _, err := c.nc.Write(c.buf); err != nil {
		return true
	}
	resp, err := c.recv()
	return err != nil || resp.Status != protocol.StatusOK
}
