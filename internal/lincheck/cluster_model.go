package lincheck

// The cluster model: the lock and semaphore service of a replicated
// cluster (cluster.Replica behind a server on every node), as seen by
// clients that connect to any node and reconnect through failovers.
//
// It differs from the single-node model (Model) in time. A cluster runs
// on the real clock: only the leader times leases, evicting an expired
// holder by a proposal at a moment nobody observes, and a new leader
// re-arms every lease at its full length plus a grace. So a lease is a
// lower bound: a holder granted (or renewed) at time g with lease T holds
// at least until g+T, and may hold longer, by the grace and the time a
// failover takes, or more if failovers follow each other. The model keeps
// exactly that and nothing looser: each holder carries the earliest time
// its lease may end (Until), and may be evicted at any step whose real
// time may be past it, never before.
//
// Real time reaches the model through OpTick operations, instantaneous
// readings of the clock recorded by the harness: a tick says "now is At,
// and the next reading is at Next", so any operation linearized between
// two ticks took effect within [At, Next] (in the order the effects
// really happened, which is the one the model must accept). A grant or a
// renewal therefore starts its lease no earlier than At, and an eviction
// folded into a step happened no later than Next.
//
// Operations (all with Input.Owner, the owner they act for): try-locks
// (OpAcquire with timeout 0), OpRelease, OpRenew, OpSession (a named
// session for Owner, bound to one key so that a resume's count is this
// key's alone), OpResume (its held count must be what Owner holds),
// OpDisconnect (an unnamed connection's end: its implicit session closes
// and what it held is released; a named session's connection ending
// changes nothing, its session outlives it), OpBye (the named session
// ends, releasing what it held). Named sessions never expire in the
// model: the harness gives them a TTL far beyond a run.
//
// An operation whose answer was lost (StatusLost) may have taken any of
// its effects, or none. A proposal in flight when a leader dies may be
// committed by its successor, so the harness ends such an operation (and
// an unnamed connection's end) only where it saw that it can no longer
// take effect (see settled and implicitGone in cluster_harness_test.go),
// or never.

import (
	"cmp"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/dflockd/dflockd/core"
)

// ClusterHolder is one granted slot in the cluster model.
type ClusterHolder struct {
	Token string // "" when the history never revealed it (a lost grant)
	Owner int
	// Until is the earliest time (since the run's start) the lease may
	// end: the holder cannot be evicted before it.
	Until time.Duration
}

// ClusterSession is a named session of the cluster model.
type ClusterSession struct {
	Owner      int
	ID, Secret string
}

// ClusterState is the cluster model's state of one key. It is never
// mutated in place.
type ClusterState struct {
	// Now and Next bracket real time: the last tick linearized and the
	// one after it.
	Now, Next time.Duration
	Limit     int
	Holders   []ClusterHolder // sorted (a set)
	LastFence uint64          // highest fence known granted on the key
	Sessions  []ClusterSession
}

func clusterHolderCmp(a, b ClusterHolder) int {
	return cmp.Or(cmp.Compare(a.Owner, b.Owner), strings.Compare(a.Token, b.Token), cmp.Compare(a.Until, b.Until))
}

func (s ClusterState) clone() ClusterState {
	s.Holders = cloneSlice(s.Holders)
	s.Sessions = cloneSlice(s.Sessions)
	return s
}

func (s *ClusterState) add(h ClusterHolder) {
	s.Holders = append(s.Holders, h)
	slices.SortFunc(s.Holders, clusterHolderCmp)
}

func (s *ClusterState) find(tok string) int {
	if tok == "" {
		return -1
	}
	return slices.IndexFunc(s.Holders, func(h ClusterHolder) bool { return h.Token == tok })
}

func (s *ClusterState) releaseOwner(owner int) {
	s.Holders = slices.DeleteFunc(s.Holders, func(h ClusterHolder) bool { return h.Owner == owner })
}

func (s *ClusterState) held(owner int) int {
	n := 0
	for _, h := range s.Holders {
		if h.Owner == owner {
			n++
		}
	}
	return n
}

// mayEnd reports whether h's lease may have ended by now.
func (s *ClusterState) mayEnd(h ClusterHolder) bool { return h.Until <= s.Next }

// newGrant checks a granted token (fence above every fence known granted
// on the key, not a current holder) and records its fence; "" passes.
func (s *ClusterState) newGrant(tok string) bool {
	if tok == "" {
		return true
	}
	f, ok := core.FenceFromToken(tok)
	if !ok || f <= s.LastFence || s.find(tok) >= 0 {
		return false
	}
	s.LastFence = f
	return true
}

// evictions returns s with every subset of the holders whose leases may
// have ended evicted: the leader's timer fires at a moment nobody sees.
func (s ClusterState) evictions() []ClusterState {
	var ending []int
	for i, h := range s.Holders {
		if s.mayEnd(h) {
			ending = append(ending, i)
		}
	}
	if len(ending) == 0 {
		return []ClusterState{s}
	}
	out := make([]ClusterState, 0, 1<<len(ending))
	for mask := range 1 << len(ending) {
		e := s.clone()
		e.Holders = e.Holders[:0]
		for i, h := range s.Holders {
			if j := slices.Index(ending, i); j >= 0 && mask&(1<<j) != 0 {
				continue
			}
			e.Holders = append(e.Holders, h)
		}
		out = append(out, e)
	}
	return out
}

var clusterLost = map[OpKind][]Output{
	OpAcquire: {{Status: "ok"}, {Status: "timeout"}},
	OpRelease: {{Status: "ok"}, {Status: "error"}},
	OpRenew:   {{Status: "ok"}, {Status: "error"}},
	OpResume:  {{Status: "ok"}},
	OpBye:     {{Status: "ok"}},
}

// ClusterStep returns every state the key can be in after the operation,
// or none if the answer is impossible from s.
func ClusterStep(s ClusterState, in Input, out Output) []ClusterState {
	if in.Limit > 0 && s.Limit == 0 {
		s.Limit = in.Limit
	}
	switch in.Op {
	case OpTick:
		s.Now, s.Next = in.At, in.Next
		return []ClusterState{s}
	case OpSession:
		if out.Status != "ok" {
			return []ClusterState{s} // lost: the harness forgets that owner
		}
		if slices.ContainsFunc(s.Sessions, func(x ClusterSession) bool { return x.Owner == in.Owner || x.ID == out.SID }) {
			return nil
		}
		s = s.clone()
		s.Sessions = append(s.Sessions, ClusterSession{Owner: in.Owner, ID: out.SID, Secret: out.Secret})
		slices.SortFunc(s.Sessions, func(a, b ClusterSession) int { return cmp.Compare(a.Owner, b.Owner) })
		return []ClusterState{s}
	case OpDisconnect:
		s = s.clone()
		s.releaseOwner(in.Owner)
		return []ClusterState{s}
	}
	var next []ClusterState
	for _, e := range s.evictions() {
		if out.Status != StatusLost {
			next = append(next, e.step(in, out)...)
			continue
		}
		next = append(next, e) // never executed
		for _, o := range clusterLost[in.Op] {
			o.TTL, o.Held, o.Queued = -1, -1, -1
			next = append(next, e.step(in, o)...)
		}
	}
	return dedupeStates(next)
}

func dedupeStates(states []ClusterState) []ClusterState {
	out := states[:0:0]
	for _, st := range states {
		if !slices.ContainsFunc(out, st.Equal) {
			out = append(out, st)
		}
	}
	return out
}

// step is one answered operation from s (evictions already chosen).
func (s ClusterState) step(in Input, out Output) []ClusterState {
	s = s.clone()
	switch in.Op {
	case OpAcquire:
		if in.Timeout != 0 {
			return nil // the cluster workload only try-locks
		}
		free := len(s.Holders) < s.Limit
		switch out.Status {
		case "ok":
			if !free || !ttlOK(out, in.TTL) || !s.newGrant(out.Token) {
				return nil
			}
			s.add(ClusterHolder{Token: out.Token, Owner: in.Owner, Until: s.Now + in.TTL})
			return []ClusterState{s}
		case "timeout":
			if free {
				return nil
			}
			return []ClusterState{s}
		}
	case OpRelease:
		i := s.find(in.Token)
		switch out.Status {
		case "ok":
			if i < 0 {
				return nil
			}
			s.Holders = slices.Delete(s.Holders, i, i+1)
			return []ClusterState{s}
		case "error":
			if i >= 0 {
				return nil
			}
			return []ClusterState{s}
		}
	case OpRenew:
		i := s.find(in.Token)
		switch out.Status {
		case "ok":
			if i < 0 || !ttlOK(out, in.TTL) {
				return nil
			}
			s.Holders[i].Until = s.Now + in.TTL
			slices.SortFunc(s.Holders, clusterHolderCmp)
			return []ClusterState{s}
		case "error":
			// Refused: no such holder, or its lease ran out on the
			// leader (it is evicted soon, or, if the eviction is not
			// committed before a failover, re-armed by the next leader).
			if i >= 0 && !s.mayEnd(s.Holders[i]) {
				return nil
			}
			return []ClusterState{s}
		}
	case OpResume:
		i := slices.IndexFunc(s.Sessions, func(x ClusterSession) bool { return x.ID == in.SID })
		if out.Status != "ok" || i < 0 || s.Sessions[i].Secret != in.Secret || s.Sessions[i].Owner != in.Owner {
			return nil
		}
		if out.Held >= 0 && (out.Held != s.held(in.Owner) || out.Queued != 0) {
			return nil
		}
		return []ClusterState{s}
	case OpBye:
		if out.Status != "ok" {
			return nil
		}
		s.releaseOwner(in.Owner)
		s.Sessions = slices.DeleteFunc(s.Sessions, func(x ClusterSession) bool { return x.Owner == in.Owner })
		return []ClusterState{s}
	}
	return nil
}

// Equal reports whether two states are the same.
func (s ClusterState) Equal(o ClusterState) bool {
	return s.Now == o.Now && s.Next == o.Next && s.Limit == o.Limit && s.LastFence == o.LastFence &&
		slices.Equal(s.Holders, o.Holders) && slices.Equal(s.Sessions, o.Sessions)
}

// Hash returns a hash consistent with Equal.
func (s ClusterState) Hash() uint64 {
	var h maphash.Hash
	h.SetSeed(hashSeed)
	maphash.WriteComparable(&h, [4]int64{int64(s.Now), int64(s.Next), int64(s.Limit), int64(s.LastFence)})
	for _, x := range s.Holders {
		maphash.WriteComparable(&h, x)
	}
	h.WriteByte('|')
	for _, x := range s.Sessions {
		maphash.WriteComparable(&h, x)
	}
	return h.Sum64()
}

// String describes the state for porcupine's visualisation and errors.
func (s ClusterState) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "t=%v..%v fence>=%d", s.Now, s.Next, s.LastFence)
	for _, h := range s.Holders {
		tok := shortToken(h.Token)
		if tok == "" {
			tok = "?"
		}
		fmt.Fprintf(&b, " H[o%d %s until>=%v]", h.Owner, tok, h.Until)
	}
	for _, x := range s.Sessions {
		fmt.Fprintf(&b, " S[%s o%d]", shortSID(x.ID), x.Owner)
	}
	return b.String()
}

// DescribeCluster describes one operation of the cluster model.
func DescribeCluster(in Input, out Output) string {
	if in.Op == OpTick {
		return Describe(in, out)
	}
	return fmt.Sprintf("o%d %s", in.Owner, Describe(in, out))
}

// ClusterModel returns the porcupine model of a replicated cluster's
// lock and semaphore service (see ClusterState).
func ClusterModel() porcupine.Model {
	return nondeterministic(ClusterState{}, ClusterStep, DescribeCluster)
}
