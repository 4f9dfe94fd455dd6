package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/dflockd/dflockd/client"
	"github.com/dflockd/dflockd/transport"
)

// ClusterCmd groups the commands of a replicated cluster (dflockd
// --data-dir --peers). Each talks to whatever member it reaches among
// the addresses given with --cluster (or --server).
type ClusterCmd struct {
	Status   ClusterStatusCmd   `cmd:"" help:"Show every member: id, role, raft address, client endpoints, voter, last contact, term, commit and applied index."`
	Add      ClusterAddCmd      `cmd:"" help:"Add a node to the cluster (start it first with --join and an empty data dir)."`
	Remove   ClusterRemoveCmd   `cmd:"" help:"Remove a node from the cluster."`
	Transfer ClusterTransferCmd `cmd:"" help:"Hand leadership to a node, or to the most up-to-date follower."`
}

// ClusterStatusCmd shows the cluster's members.
type ClusterStatusCmd struct {
	JSON bool `name:"json" help:"Print each reachable member's raw JSON answer to the cluster request, one per line, instead of a table."`
}

// Help implements kong.HelpProvider.
func (ClusterStatusCmd) Help() string {
	return `Asks every address given (--cluster, or --server) for its view of the
cluster, then the members it did not reach yet at their client
endpoints, and prints one row per member of the configuration: ROLE,
TERM, COMMIT and APPLIED come from the member's own answer (unreachable
when it did not answer), LAST CONTACT is how long ago it heard from the
leader. A member whose client endpoints are not known yet (every node
publishes its own through the leader; one that has not reached a leader
since it joined has none yet) and whose address was not given is shown
as unknown. Exit status 3 when no member answers.`
}

// ClusterAddCmd adds a member.
type ClusterAddCmd struct {
	ID       string `arg:"" name:"id" help:"The new node's id (its --node-id)."`
	RaftAddr string `arg:"" name:"raftaddr" help:"The new node's raft address (its --raft-advertise, or --raft-listen)."`
	NonVoter bool   `name:"non-voter" help:"Add it as a non-voter: it receives the log but does not vote."`
}

// ClusterRemoveCmd removes a member.
type ClusterRemoveCmd struct {
	ID string `arg:"" name:"id" help:"The id of the node to remove."`
}

// ClusterTransferCmd moves leadership.
type ClusterTransferCmd struct {
	ID string `arg:"" optional:"" name:"id" help:"The node to hand leadership to (default: the most up-to-date follower)."`
}

// clusterHelp is the detailed help of add, remove and transfer.
const clusterHelp = `The change is made by the leader, found through the addresses given
(--cluster, or --server). The server allows it only to an authenticated
connection (--auth-token, a client certificate or an allowed Unix uid).`

// Help implements kong.HelpProvider.
func (ClusterAddCmd) Help() string { return clusterHelp }

// Help implements kong.HelpProvider.
func (ClusterRemoveCmd) Help() string { return clusterHelp }

// Help implements kong.HelpProvider.
func (ClusterTransferCmd) Help() string {
	return clusterHelp + "\n\nIt waits (up to --command-timeout) for the new leader and names it."
}

// clusterTarget is the cluster the cluster commands talk to.
type clusterTarget struct {
	members []string // addresses given
	srv     target   // options and timeouts; addr unused
}

// memberAnswer is one member's answer to the cluster request.
type memberAnswer struct {
	addr string
	raw  json.RawMessage
	st   *client.ClusterStatus
	err  error
}

// ask asks each address for its view of the cluster, all at once.
func (ct clusterTarget) ask(ctx context.Context, addrs []string) []memberAnswer {
	out := make([]memberAnswer, len(addrs))
	var wg sync.WaitGroup
	for i, addr := range addrs {
		wg.Go(func() {
			a := memberAnswer{addr: addr}
			defer func() { out[i] = a }()
			c, err := client.Dial(ctx, addr, ct.srv.opts)
			if err != nil {
				a.err = err
				return
			}
			defer c.Close()
			rctx, cancel := ct.srv.request(ctx, "cluster")
			defer cancel()
			raw, err := c.ClusterStatusRaw(rctx)
			if err != nil {
				a.err = err
				if errors.Is(err, client.ErrUnsupported) {
					a.err = &hinted{err: err, msg: "not in the replicated mode (started without --data-dir?)"}
				}
				return
			}
			var st client.ClusterStatus
			if err := json.Unmarshal(raw, &st); err != nil {
				a.err = fmt.Errorf("decode cluster answer: %w", err)
				return
			}
			a.raw, a.st = raw, &st
		})
	}
	wg.Wait()
	return out
}

// gather asks the addresses given, then the members not heard from at
// their client endpoints.
func (ct clusterTarget) gather(ctx context.Context) []memberAnswer {
	answers := ct.ask(ctx, ct.members)
	heard := map[string]bool{}
	tried := map[string]bool{}
	for _, a := range answers {
		tried[a.addr] = true
		if a.st != nil {
			heard[a.st.Node] = true
		}
	}
	var more []string
	if best := bestView(answers); best != nil {
		for _, m := range best.Members {
			if heard[m.ID] {
				continue
			}
			if e := ct.endpointFor(m.Endpoints); e != "" && !tried[e] {
				tried[e] = true
				more = append(more, e)
			}
		}
	}
	return append(answers, ct.ask(ctx, more)...)
}

// endpointFor picks the endpoint of a member to dial: one of the
// transport the given addresses use, else the first this client knows.
func (ct clusterTarget) endpointFor(endpoints []string) string {
	want := ""
	if e, err := transport.ParseAddr(ct.members[0], "tcp"); err == nil && ct.srv.opts.Transport == "" && ct.srv.opts.TLS == nil {
		want = e.Transport
	}
	first := ""
	for _, s := range endpoints {
		e, err := transport.ParseEndpoint(s)
		if err != nil {
			continue
		}
		if _, err := transport.Lookup(e.Transport); err != nil {
			continue
		}
		if ct.srv.opts.Transport != "" && strings.EqualFold(e.Transport, ct.srv.opts.Transport) ||
			ct.srv.opts.TLS != nil && e.Transport == "tls" || want != "" && e.Transport == want {
			return s
		}
		if first == "" {
			first = s
		}
	}
	return first
}

// bestView is the configuration to show: the serving leader's own
// answer, else the answer of the highest term.
func bestView(answers []memberAnswer) *client.ClusterStatus {
	var best *client.ClusterStatus
	for _, a := range answers {
		switch {
		case a.st == nil:
		case a.st.Serving && a.st.Leader != nil && a.st.Leader.ID == a.st.Node:
			return a.st
		case best == nil || a.st.Term > best.Term:
			best = a.st
		}
	}
	return best
}

// noMember is the error when no member answered.
func noMember(answers []memberAnswer) error {
	parts := make([]string, 0, len(answers))
	var first error
	for _, a := range answers {
		if first == nil {
			first = a.err
		}
		parts = append(parts, a.addr+": "+describe(a.err))
	}
	return &hinted{err: first, msg: fmt.Sprintf("no member reachable (%s)", strings.Join(parts, "; "))}
}

func (c *ClusterStatusCmd) run(ctx context.Context, ct clusterTarget, stdout io.Writer) error {
	answers := ct.gather(ctx)
	best := bestView(answers)
	if best == nil {
		return noMember(answers)
	}
	var out bytes.Buffer
	if c.JSON {
		for _, a := range answers {
			if a.raw != nil {
				out.Write(a.raw)
				out.WriteByte('\n')
			}
		}
	} else {
		writeClusterStatus(&out, best, answers)
	}
	if _, err := stdout.Write(out.Bytes()); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// writeClusterStatus prints the members of view's configuration, each
// with its own answer when it gave one, then the nodes that answered but
// are not members.
func writeClusterStatus(w io.Writer, view *client.ClusterStatus, answers []memberAnswer) {
	own := map[string]*client.ClusterStatus{}
	for _, a := range answers {
		if a.st != nil {
			own[a.st.Node] = a.st
		}
	}
	// A member not heard from is unreachable, unless nothing failed:
	// then it was never asked.
	failed := slices.ContainsFunc(answers, func(a memberAnswer) bool { return a.err != nil })
	if view.Leader != nil {
		fmt.Fprintf(w, "leader: %s (term %d)\n", view.Leader.ID, view.Term)
	} else {
		fmt.Fprintf(w, "leader: none known (term %d)\n", view.Term)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tRAFT\tENDPOINTS\tVOTER\tLAST CONTACT\tTERM\tCOMMIT\tAPPLIED")
	row := func(id, raft string, endpoints []string, voter string, st *client.ClusterStatus) {
		eps := strings.Join(endpoints, ",")
		if eps == "" {
			eps = "-"
		}
		if st == nil {
			// Not heard from: unreachable, or not asked when its client
			// endpoints are not known (every node publishes its own
			// through the leader, once it reaches one) and no address
			// given was its.
			role := "unreachable"
			if len(endpoints) == 0 && !failed {
				role = "unknown"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t-\t-\t-\t-\n", id, role, raft, eps, voter)
			return
		}
		role := st.Role
		if st.Role == "leader" && !st.Serving {
			role = "leader (catching up)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n", id, role, raft, eps, voter,
			lastContact(st), st.Term, st.CommitIndex, st.AppliedIndex)
	}
	for _, m := range view.Members {
		voter := "yes"
		if !m.Voter {
			voter = "no"
		}
		row(m.ID, m.Raft, m.Endpoints, voter, own[m.ID])
	}
	var others []string
	for id := range own {
		if _, ok := view.Member(id); !ok {
			others = append(others, id)
		}
	}
	slices.Sort(others)
	for _, id := range others {
		row(id, "-", nil, "not a member", own[id])
	}
	tw.Flush()
}

// lastContact renders a member's last contact with the leader.
func lastContact(st *client.ClusterStatus) string {
	switch {
	case st.Role == "leader":
		return "-"
	case st.LastContactMS < 0:
		return "never"
	}
	return (time.Duration(st.LastContactMS) * time.Millisecond).String()
}

// leader connects to the cluster's leader and returns its view.
func (ct clusterTarget) leader(ctx context.Context) (*client.Conn, *client.ClusterStatus, error) {
	opts := ct.srv.opts
	opts.Cluster = ct.members
	c, err := client.Dial(ctx, "", opts)
	if err != nil {
		return nil, nil, err
	}
	rctx, cancel := ct.srv.request(ctx, "cluster")
	defer cancel()
	st, err := c.ClusterStatus(rctx)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, st, nil
}

// describeAttempts lists what each attempt of a NoLeaderError said.
func describeAttempts(nl *client.NoLeaderError) string {
	parts := make([]string, 0, len(nl.Tried))
	for _, a := range nl.Tried {
		parts = append(parts, a.String())
	}
	return strings.Join(parts, "; ")
}

// change runs one membership operation on the leader.
func (ct clusterTarget) change(ctx context.Context, what string, check func(*client.ClusterStatus) error,
	op func(context.Context, *client.Conn) error) (*client.ClusterStatus, error) {
	c, st, err := ct.leader(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := check(st); err != nil {
		return nil, err
	}
	rctx, cancel := ct.srv.request(ctx, "cluster "+what)
	defer cancel()
	if err := op(rctx, c); err != nil {
		if errors.Is(err, client.ErrServer) {
			hint := "the leader's log says why"
			if ct.srv.opts.AuthToken == "" {
				hint = "membership changes need an authenticated connection: give --auth-token (or a client certificate); else the leader's log says why"
			}
			return nil, &hinted{err: err, msg: fmt.Sprintf("the leader %s refused `cluster %s`", st.Node, what), hint: hint}
		}
		return nil, err
	}
	return st, nil
}

func (c *ClusterAddCmd) run(ctx context.Context, ct clusterTarget, stdout io.Writer) error {
	what := "add " + c.ID + " " + c.RaftAddr
	_, err := ct.change(ctx, what, func(st *client.ClusterStatus) error {
		if m, ok := st.Member(c.ID); ok {
			return fmt.Errorf("%s is already a member (raft %s)", c.ID, m.Raft)
		}
		for _, m := range st.Members {
			if m.Raft == c.RaftAddr {
				return fmt.Errorf("%s is already the raft address of %s", c.RaftAddr, m.ID)
			}
		}
		return nil
	}, func(ctx context.Context, conn *client.Conn) error {
		return conn.AddMember(ctx, c.ID, c.RaftAddr, !c.NonVoter)
	})
	if err != nil {
		return err
	}
	kind := "a voter"
	if c.NonVoter {
		kind = "a non-voter"
	}
	_, err = fmt.Fprintf(stdout, "added %s (raft %s) as %s\n", c.ID, c.RaftAddr, kind)
	return err
}

func (c *ClusterRemoveCmd) run(ctx context.Context, ct clusterTarget, stdout io.Writer) error {
	_, err := ct.change(ctx, "remove "+c.ID, func(st *client.ClusterStatus) error {
		if _, ok := st.Member(c.ID); !ok {
			return notMember(c.ID, st)
		}
		return nil
	}, func(ctx context.Context, conn *client.Conn) error {
		return conn.RemoveMember(ctx, c.ID)
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "removed %s\n", c.ID)
	return err
}

func (c *ClusterTransferCmd) run(ctx context.Context, ct clusterTarget, stdout io.Writer) error {
	what := "transfer"
	if c.ID != "" {
		what += " " + c.ID
	}
	st, err := ct.change(ctx, what, func(st *client.ClusterStatus) error {
		if c.ID == "" {
			return nil
		}
		m, ok := st.Member(c.ID)
		switch {
		case !ok:
			return notMember(c.ID, st)
		case c.ID == st.Node:
			return fmt.Errorf("%s leads already", c.ID)
		case !m.Voter:
			return fmt.Errorf("%s is a non-voter: it cannot lead", c.ID)
		}
		return nil
	}, func(ctx context.Context, conn *client.Conn) error {
		return conn.TransferLeadership(ctx, c.ID)
	})
	if err != nil {
		return err
	}
	// Wait for the new leader to be known, to name it.
	wctx, cancel := ct.srv.request(ctx, "cluster transfer")
	defer cancel()
	for {
		if c2, st2, err := ct.leader(wctx); err == nil {
			c2.Close()
			if st2.Node != st.Node && st2.Serving {
				_, err := fmt.Fprintf(stdout, "leadership moved from %s to %s (term %d)\n", st.Node, st2.Node, st2.Term)
				return err
			}
		}
		select {
		case <-wctx.Done():
			_, err := fmt.Fprintf(stdout, "%s handed leadership over; the new leader is not known yet\n", st.Node)
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// notMember is the error for an id that is not in the configuration.
func notMember(id string, st *client.ClusterStatus) error {
	ids := make([]string, 0, len(st.Members))
	for _, m := range st.Members {
		ids = append(ids, m.ID)
	}
	return fmt.Errorf("%s is not a member (members: %s)", id, strings.Join(ids, ", "))
}

// clusterMembers returns the addresses the cluster commands talk to:
// every --cluster address, else every --server address.
func (c *CLI) clusterMembers() []string {
	if len(c.Cluster) == 0 {
		return c.Server
	}
	var out []string
	for _, entry := range c.Cluster {
		for _, a := range strings.Split(entry, ",") {
			if a = strings.TrimSpace(a); a != "" {
				out = append(out, a)
			}
		}
	}
	return out
}
