// Package lincheck checks dflockd's lock and semaphore service for
// linearizability with porcupine. This file holds the sequential model;
// the tests record histories against a real server (see lincheck_test.go).
//
// The model is per key (one porcupine partition per namespace+key). Its
// state carries the virtual time of the server's test clock, the holders
// of the key (token, owning connection, lease end), the FIFO of queued
// two-phase enqueue records and the highest fencing number granted
// directly. Time only moves through explicit OpAdvance operations, and
// expired leases are evicted where the server evicts them: by OpSweep, by
// acquire/enqueue on the key, by renew or wait of the expired token.
//
// Tokens cannot be predicted, so the model learns them from the history:
// a successful acquire adds the token it returned; release/renew with a
// token succeed iff that token is currently a holder. A two-phase record
// granted while queued holds a slot whose token is unknown until its wait
// returns it.
//
// Blocking acquires (l/sl with a timeout) are atomic in the model: the
// grant may be linearized anywhere in the call, and a `timeout` answer is
// "did not get it". Single-phase waiters are therefore not part of the
// state, which is sound only if a key never mixes blocking single-phase
// acquires with two-phase enqueues (their relative FIFO order would be
// unobservable); the workload keeps those on separate keys. Try-locks
// (timeout 0) are exact: `timeout` requires every slot taken or someone
// queued.
//
// Operations whose answer was lost (connection cut or closed mid-request)
// may have taken any of their possible effects or none; an OpDisconnect
// then removes everything the connection held or queued, somewhere
// between the close and the moment the server was seen to forget the
// connection.
package lincheck

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/dflockd/dflockd/core"
)

// OpKind names a modelled operation.
type OpKind uint8

// Operations of the model.
const (
	// OpAcquire is l / sl with Input.Timeout seconds (0 = try-lock).
	OpAcquire OpKind = iota
	// OpRelease is r / sr with Input.Token.
	OpRelease
	// OpRenew is n / sn with Input.Token and lease Input.TTL.
	OpRenew
	// OpEnqueue is e / se with lease Input.TTL.
	OpEnqueue
	// OpWait is w / sw with Input.Timeout seconds.
	OpWait
	// OpAdvance moves the test clock forward by Input.D. It applies to
	// every key.
	OpAdvance
	// OpSweep is Engine.ExpireDue followed by Engine.Sweep: every expired
	// holder of every key is evicted and its slot handed on.
	OpSweep
	// OpExpireDue is Engine.ExpireDue alone: only keys registered in the
	// deadline heap are swept, which the model does not track, so each
	// key may or may not be swept.
	OpExpireDue
	// OpDisconnect is the end of connection Input.Conn as observed by the
	// server: its queued records are dropped and its slots released.
	OpDisconnect
	// OpEvict is the eviction of expired holders that a blocking acquire
	// (l/sl with a timeout) performs when it arrives. It is recorded as
	// its own operation over the acquire's interval, because a queued
	// waiter is granted later, by whoever frees a slot, without a second
	// eviction: folding both into one point would evict leases that
	// expired in between.
	OpEvict
)

var opNames = [...]string{"acquire", "release", "renew", "enqueue", "wait", "advance", "sweep", "expiredue", "disconnect", "evict"}

// String returns the operation's name.
func (k OpKind) String() string {
	if int(k) < len(opNames) {
		return opNames[k]
	}
	return fmt.Sprintf("op(%d)", uint8(k))
}

// StatusLost is the Output.Status of an operation whose answer never
// arrived because its connection was cut or closed.
const StatusLost = "lost"

// Input is the input of one operation.
type Input struct {
	Op OpKind
	// Key is the partition key: Namespace(sem, name); empty for the
	// global operations (advance, sweep, expiredue, disconnect).
	Key string
	// Limit is the key's number of slots (1 for locks).
	Limit int
	// Conn identifies the connection that issued the operation (unique
	// per connection, not per client: a reconnecting client gets a new
	// one). For OpDisconnect it is the connection that ended.
	Conn int
	// Timeout is the acquire/wait timeout in seconds.
	Timeout int
	// TTL is the effective lease length (the default when the request
	// named none).
	TTL time.Duration
	// Token is the token of a release or renew.
	Token string
	// D is the clock advance of OpAdvance.
	D time.Duration
}

// Output is the answer of one operation.
type Output struct {
	// Status is the wire status word ("ok", "timeout", "acquired",
	// "queued", "error", "error_not_enqueued", ...) or StatusLost.
	Status string
	// Token is the granted token of ok/acquired answers.
	Token string
	// TTL is the lease in seconds echoed by grants and renewals.
	TTL int64
}

// Namespace returns the partition key of key in the lock or semaphore
// namespace.
func Namespace(sem bool, key string) string {
	if sem {
		return "sem:" + key
	}
	return "lock:" + key
}

// Holder is one granted slot in the model.
type Holder struct {
	Token   string // "" when the history never revealed it
	Conn    int
	Expires time.Duration // virtual time
	TTL     time.Duration // lease length, used by a record's wait
	Rec     bool          // still bound to a two-phase enqueue record
}

// Waiter is a queued two-phase enqueue record.
type Waiter struct {
	Conn int
	TTL  time.Duration
}

// State is the model state of one key. It is never mutated in place.
type State struct {
	Now       time.Duration // virtual time since the clock's start
	Limit     int           // 0 until the first keyed operation
	Holders   []Holder      // sorted (a set)
	Queue     []Waiter      // FIFO
	LastFence uint64        // highest fence of a direct grant
}

func (s State) clone() State {
	s.Holders = slices.Clone(s.Holders)
	s.Queue = slices.Clone(s.Queue)
	return s
}

func holderLess(a, b Holder) int {
	switch {
	case a.Conn != b.Conn:
		return a.Conn - b.Conn
	case a.Token != b.Token:
		return strings.Compare(a.Token, b.Token)
	case a.Expires != b.Expires:
		if a.Expires < b.Expires {
			return -1
		}
		return 1
	case a.TTL != b.TTL:
		if a.TTL < b.TTL {
			return -1
		}
		return 1
	case a.Rec != b.Rec:
		if !a.Rec {
			return -1
		}
		return 1
	}
	return 0
}

func (s *State) addHolder(h Holder) {
	s.Holders = append(s.Holders, h)
	slices.SortFunc(s.Holders, holderLess)
}

func (s *State) removeHolder(i int) {
	s.Holders = slices.Delete(s.Holders, i, i+1)
}

// free reports whether a newcomer would be granted at once: a slot is
// free and nobody is queued.
func (s *State) free() bool { return len(s.Holders) < s.Limit && len(s.Queue) == 0 }

// grant hands free slots to queued records in FIFO order.
func (s *State) grant() {
	for len(s.Holders) < s.Limit && len(s.Queue) > 0 {
		w := s.Queue[0]
		s.Queue = slices.Delete(s.Queue, 0, 1)
		s.addHolder(Holder{Conn: w.Conn, Expires: s.Now + w.TTL, TTL: w.TTL, Rec: true})
	}
}

// evict drops expired holders (their records with them) and hands the
// slots on.
func (s *State) evict() {
	n := 0
	for _, h := range s.Holders {
		if h.Expires > s.Now {
			s.Holders[n] = h
			n++
		}
	}
	s.Holders = s.Holders[:n]
	s.grant()
}

func (s *State) findToken(tok string) int {
	if tok == "" {
		return -1
	}
	for i, h := range s.Holders {
		if h.Token == tok {
			return i
		}
	}
	return -1
}

// record finds conn's enqueue record: a holder index, or a queue index.
func (s *State) record(conn int) (holder, queued int) {
	holder, queued = -1, -1
	for i, h := range s.Holders {
		if h.Rec && h.Conn == conn {
			holder = i
		}
	}
	for i, w := range s.Queue {
		if w.Conn == conn {
			queued = i
		}
	}
	return holder, queued
}

func secs(d time.Duration) int64 { return int64(d / time.Second) }

// newGrant checks a directly granted token (fence strictly above every
// earlier direct grant of the key, not a current holder) and returns the
// fence. An unknown token ("") always passes.
func (s *State) newGrant(tok string) bool {
	if tok == "" {
		return true
	}
	f, ok := core.FenceFromToken(tok)
	if !ok || f <= s.LastFence || s.findToken(tok) >= 0 {
		return false
	}
	s.LastFence = f
	return true
}

// lostOutcomes lists the answers an operation might have had, for an
// operation whose answer was lost. Grants use the unknown token "".
func lostOutcomes(op OpKind) []Output {
	switch op {
	case OpAcquire:
		return []Output{{Status: "ok"}, {Status: "timeout"}, {Status: "error_lease_expired"}}
	case OpRelease:
		return []Output{{Status: "ok"}, {Status: "error"}}
	case OpRenew:
		return []Output{{Status: "ok"}, {Status: "error"}}
	case OpEnqueue:
		return []Output{{Status: "acquired"}, {Status: "queued"}, {Status: "error_already_enqueued"}}
	case OpWait:
		return []Output{{Status: "ok"}, {Status: "timeout"}, {Status: "error_lease_expired"}, {Status: "error_not_enqueued"}}
	}
	return nil
}

// Step returns every state the key can be in after the operation, or
// none if the answer is impossible from s.
func Step(s State, in Input, out Output) []State {
	if in.Limit > 0 && s.Limit == 0 {
		s.Limit = in.Limit
	}
	if out.Status == StatusLost && in.Op == OpEvict {
		e := s.clone()
		e.evict()
		return []State{s, e}
	}
	if out.Status == StatusLost {
		next := []State{s} // the request may never have been executed
		for _, o := range lostOutcomes(in.Op) {
			o.TTL = -1 // not checked
			next = append(next, step(s, in, o)...)
		}
		return next
	}
	return step(s, in, out)
}

func ttlOK(out Output, ttl time.Duration) bool { return out.TTL < 0 || out.TTL == secs(ttl) }

func step(s State, in Input, out Output) []State {
	s = s.clone()
	switch in.Op {
	case OpAdvance:
		s.Now += in.D
		return []State{s}
	case OpSweep:
		s.evict()
		return []State{s}
	case OpExpireDue:
		swept := s.clone()
		swept.evict()
		return []State{s, swept}
	case OpDisconnect:
		s.Queue = slices.DeleteFunc(s.Queue, func(w Waiter) bool { return w.Conn == in.Conn })
		s.Holders = slices.DeleteFunc(s.Holders, func(h Holder) bool { return h.Conn == in.Conn })
		s.grant()
		return []State{s}

	case OpEvict:
		s.evict()
		return []State{s}

	case OpAcquire:
		if in.Timeout == 0 {
			s.evict() // else the separate OpEvict did it
		}
		switch out.Status {
		case "ok":
			if !s.free() || !ttlOK(out, in.TTL) || !s.newGrant(out.Token) {
				return nil
			}
			s.addHolder(Holder{Token: out.Token, Conn: in.Conn, Expires: s.Now + in.TTL, TTL: in.TTL})
			return []State{s}
		case "timeout":
			if in.Timeout == 0 && s.free() {
				return nil // a try-lock only fails when it must
			}
			return []State{s}
		case "error_lease_expired":
			// Granted, then the lease ran out before the waiter saw it.
			// Nobody knows that token: an anonymous holder of this
			// connection, or already gone.
			next := []State{s}
			if s.free() {
				g := s.clone()
				g.addHolder(Holder{Conn: in.Conn, Expires: s.Now + in.TTL, TTL: in.TTL})
				next = append(next, g)
			}
			return next
		}
		return nil

	case OpRelease:
		i := s.findToken(in.Token)
		switch out.Status {
		case "ok":
			if i < 0 {
				return nil
			}
			s.removeHolder(i)
			s.grant()
			return []State{s}
		case "error":
			if i >= 0 {
				return nil
			}
			return []State{s}
		}
		return nil

	case OpRenew:
		i := s.findToken(in.Token)
		switch out.Status {
		case "ok":
			if i < 0 || s.Holders[i].Expires <= s.Now || !ttlOK(out, in.TTL) {
				return nil
			}
			s.Holders[i].Expires = s.Now + in.TTL
			return []State{s}
		case "error":
			if i >= 0 {
				if s.Holders[i].Expires > s.Now {
					return nil
				}
				s.removeHolder(i) // expired: evicted, never revived
				s.grant()
			}
			return []State{s}
		}
		return nil

	case OpEnqueue:
		h, q := s.record(in.Conn)
		if h >= 0 || q >= 0 {
			if out.Status == "error_already_enqueued" {
				return []State{s}
			}
			return nil
		}
		s.evict()
		switch out.Status {
		case "acquired":
			if !s.free() || !ttlOK(out, in.TTL) || !s.newGrant(out.Token) {
				return nil
			}
			s.addHolder(Holder{Token: out.Token, Conn: in.Conn, Expires: s.Now + in.TTL, TTL: in.TTL, Rec: true})
			return []State{s}
		case "queued":
			if s.free() {
				return nil
			}
			s.Queue = append(s.Queue, Waiter{Conn: in.Conn, TTL: in.TTL})
			return []State{s}
		}
		return nil

	case OpWait:
		h, q := s.record(in.Conn)
		switch {
		case h >= 0:
			hd := s.Holders[h]
			if hd.Expires <= s.Now {
				if out.Status != "error_lease_expired" {
					return nil
				}
				s.removeHolder(h)
				s.grant()
				return []State{s}
			}
			if out.Status != "ok" || !ttlOK(out, hd.TTL) {
				return nil
			}
			if hd.Token != "" && out.Token != "" && hd.Token != out.Token {
				return nil
			}
			if hd.Token == "" && out.Token != "" && s.findToken(out.Token) >= 0 {
				return nil
			}
			s.removeHolder(h)
			hd.Rec = false
			hd.Expires = s.Now + hd.TTL
			if hd.Token == "" {
				hd.Token = out.Token
			}
			s.addHolder(hd)
			return []State{s}
		case q >= 0:
			if out.Status != "timeout" {
				return nil
			}
			s.Queue = slices.Delete(s.Queue, q, q+1)
			return []State{s}
		default:
			if out.Status != "error_not_enqueued" {
				return nil
			}
			return []State{s}
		}
	}
	return nil
}

// Equal reports whether two states are the same.
func (s State) Equal(o State) bool {
	return s.Now == o.Now && s.Limit == o.Limit && s.LastFence == o.LastFence &&
		slices.Equal(s.Holders, o.Holders) && slices.Equal(s.Queue, o.Queue)
}

// Hash returns a hash consistent with Equal.
func (s State) Hash() uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d|%d|%d|", s.Now, s.Limit, s.LastFence)
	for _, x := range s.Holders {
		fmt.Fprintf(h, "%s,%d,%d,%d,%t;", x.Token, x.Conn, x.Expires, x.TTL, x.Rec)
	}
	h.Write([]byte{'|'})
	for _, w := range s.Queue {
		fmt.Fprintf(h, "%d,%d;", w.Conn, w.TTL)
	}
	return h.Sum64()
}

// String describes the state for porcupine's visualisation and errors.
func (s State) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "t=%v", s.Now)
	for _, h := range s.Holders {
		tok := shortToken(h.Token)
		if tok == "" {
			tok = "?"
		}
		fmt.Fprintf(&b, " H[c%d %s exp=%v", h.Conn, tok, h.Expires)
		if h.Rec {
			b.WriteString(" rec")
		}
		b.WriteString("]")
	}
	for _, w := range s.Queue {
		fmt.Fprintf(&b, " Q[c%d]", w.Conn)
	}
	return b.String()
}

// Describe describes one operation.
func Describe(in Input, out Output) string {
	switch in.Op {
	case OpAdvance:
		return fmt.Sprintf("advance %v", in.D)
	case OpSweep, OpExpireDue:
		return in.Op.String()
	case OpEvict:
		return fmt.Sprintf("c%d evict(entry of a blocking acquire) %s -> %s", in.Conn, in.Key, out.Status)
	case OpDisconnect:
		return fmt.Sprintf("disconnect c%d", in.Conn)
	}
	tok := shortToken(out.Token)
	arg := ""
	if in.Token != "" {
		arg = " " + shortToken(in.Token)
	}
	return fmt.Sprintf("c%d %s %s%s t=%d ttl=%v -> %s %s", in.Conn, in.Op, in.Key, arg, in.Timeout, in.TTL, out.Status, tok)
}

// Partition splits a history by key. Clock operations go to every key;
// a disconnect goes to every key its connection used.
func Partition(history []porcupine.Operation) [][]porcupine.Operation {
	keyOrder := []string{}
	byKey := map[string][]porcupine.Operation{}
	connKeys := map[int]map[string]bool{}
	for _, op := range history {
		in := op.Input.(Input)
		if in.Key == "" {
			continue
		}
		if _, ok := byKey[in.Key]; !ok {
			keyOrder = append(keyOrder, in.Key)
			byKey[in.Key] = nil
		}
		byKey[in.Key] = append(byKey[in.Key], op)
		if connKeys[in.Conn] == nil {
			connKeys[in.Conn] = map[string]bool{}
		}
		connKeys[in.Conn][in.Key] = true
	}
	for _, op := range history {
		in := op.Input.(Input)
		if in.Key != "" {
			continue
		}
		for _, k := range keyOrder {
			if in.Op == OpDisconnect && !connKeys[in.Conn][k] {
				continue
			}
			byKey[k] = append(byKey[k], op)
		}
	}
	out := make([][]porcupine.Operation, 0, len(keyOrder))
	for _, k := range keyOrder {
		out = append(out, byKey[k])
	}
	return out
}

// Model returns the porcupine model of the lock and semaphore service.
func Model() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition: Partition,
		Init:      func() []interface{} { return []interface{}{State{}} },
		Step: func(state, input, output interface{}) []interface{} {
			next := Step(state.(State), input.(Input), output.(Output))
			out := make([]interface{}, len(next))
			for i, s := range next {
				out[i] = s
			}
			return out
		},
		Equal: func(a, b interface{}) bool { return a.(State).Equal(b.(State)) },
		Hash:  func(s interface{}) uint64 { return s.(State).Hash() },
		DescribeOperation: func(input, output interface{}) string {
			return Describe(input.(Input), output.(Output))
		},
		DescribeState: func(s interface{}) string { return s.(State).String() },
	}
	return nm.ToModel()
}

// shortToken abbreviates a token to the low digits of its fence, which
// tell grants apart (the high digits are shared by a whole run).
func shortToken(tok string) string {
	if f, ok := core.FenceFromToken(tok); ok {
		return fmt.Sprintf("#%d", f%1000000)
	}
	return tok
}
