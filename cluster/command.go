package cluster

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/dflockd/dflockd/core"
)

// Command is one replicated state change. Every command carries At, the
// leader's clock (unix nanos) when it proposed it; those that may grant a
// slot also carry a Seed.
type Command interface {
	op() byte
}

// OpenSession creates a session, or names an existing one again (same id
// and secret: the TTL, identity and named flag are updated; an unnamed
// session may become named). Results: OK, SessionExists, MaxSessions.
type OpenSession struct {
	At       int64
	ID       SessionID
	Secret   Secret
	TTL      time.Duration
	Named    bool // false: the implicit session of an unnamed connection
	Identity string
}

// CloseSession ends a session (`bye`, the end of an unnamed connection, or
// a detached session's TTL run out, as decided by the leader): its places
// are dropped, its holds released (kept, with no session, under
// Policy.KeepOnDisconnect) and the freed slots granted. Results: OK, NoSession.
type CloseSession struct {
	At   int64
	Seed Seed
	ID   SessionID
}

// Acquire asks for a slot of Key for Session. A free slot with nobody
// queued is taken at once (Granted); otherwise Try answers Timeout and
// Queue/Enqueue join the tail of the FIFO (Queued). Place is chosen by the
// proposer, non-zero and unique: grants to it are reported under it.
// Results: Granted, Queued, Timeout, NoSession, MaxKeys, MaxWaiters,
// LimitMismatch, AlreadyEnqueued (Enqueue only), PlaceInUse.
type Acquire struct {
	At      int64
	Seed    Seed
	Session SessionID
	Kind    core.Kind
	Key     string
	Limit   int           // semaphores; locks always use 1
	TTL     time.Duration // 0 = Policy.DefaultTTL
	Mode    Mode
	Place   uint64
}

// Release gives back the slot named by Token and grants freed slots to
// the queue. Results: OK, NotHolder.
type Release struct {
	At    int64
	Seed  Seed
	Kind  core.Kind
	Key   string
	Token core.Token
}

// Cancel takes Place out of the queue: its wait timed out (KeepGrant) or
// was abandoned. If the place was granted meanwhile, KeepGrant keeps and
// returns the grant (collecting a two-phase one), and without it the
// grant is released and passed on: a grant is never leaked. Results:
// Canceled, Granted (KeepGrant), NotEnqueued.
type Cancel struct {
	At        int64
	Seed      Seed
	Kind      core.Kind
	Key       string
	Place     uint64
	KeepGrant bool
}

// Collect is the `w`/`sw` of a two-phase place whose grant is known to the
// leader: it clears the grant's pending mark, so the slot is the
// session's own like any other. Results: Granted, Queued (the place still
// waits; nothing changes), NotEnqueued. It is a log entry because the mark
// decides later answers on every replica (a second Enqueue for the key,
// and what a new leader answers to a `w`).
type Collect struct {
	At      int64
	Session SessionID
	Kind    core.Kind
	Key     string
}

// Park turns the queue place of a blocked `l`/`sl`, whose named session's
// connection dropped, into a two-phase place (as if `e`/`se` had been
// sent), so that after `resume` it is collected with `w`/`sw`; a grant
// that raced in becomes an uncollected two-phase grant. When the session
// already has a two-phase record for the key, the place is abandoned as
// by Cancel without KeepGrant. Results: Queued, Granted, Canceled, NotEnqueued.
type Park struct {
	At    int64
	Seed  Seed
	Kind  core.Kind
	Key   string
	Place uint64
}

// Evict removes exactly the holders named by Tokens, if they still hold
// (the leader's lease expiry: idempotent, it can never hit a newer
// holder), and grants freed slots. Result: OK with Count.
type Evict struct {
	At     int64
	Seed   Seed
	Kind   core.Kind
	Key    string
	Tokens []core.Token
}

// Retime records a new lease length for the holder of Token: a renew
// that asks for a TTL other than the one recorded. A renew keeping the
// recorded TTL is not logged (the leader resets its timer), but a new
// leader re-arms every lease at its recorded TTL, so without this entry a
// lease renewed from 10 s to an hour would be cut back to 10 s by a
// failover. Results: OK, NotHolder.
type Retime struct {
	At    int64
	Kind  core.Kind
	Key   string
	Token core.Token
	TTL   time.Duration
}

// SetPolicy replaces the replicated policy. Result: OK.
type SetPolicy struct {
	At     int64
	Policy Policy
}

// SetMember records a node's client endpoints; no endpoints forgets the
// node. Result: OK.
type SetMember struct {
	At        int64
	Node      string
	Endpoints []string
}

// Wire format (all integers uvarint, minimal length):
//
//	version(1) op(1) at [seed(16)] fields...
//
// Strings are a length then bytes; ids and secrets fixed bytes; tokens
// 16 bytes (the fence and salt behind their 32 hex characters); booleans,
// kinds and modes one byte each.
const (
	commandVersion = 1

	opOpenSession  = 1
	opCloseSession = 2
	opAcquire      = 3
	opRelease      = 4
	opCancel       = 5
	opCollect      = 6
	opPark         = 7
	opEvict        = 8
	opSetPolicy    = 9
	opSetMember    = 10
	opRetime       = 11
)

// Bounds checked by Encode and Decode.
const (
	maxIdentityLen = 1024
	maxNodeLen     = 256
	maxEndpoints   = 16
	maxEndpointLen = 256
	maxTokens      = 1 << 16
)

func (*OpenSession) op() byte  { return opOpenSession }
func (*CloseSession) op() byte { return opCloseSession }
func (*Acquire) op() byte      { return opAcquire }
func (*Release) op() byte      { return opRelease }
func (*Cancel) op() byte       { return opCancel }
func (*Collect) op() byte      { return opCollect }
func (*Park) op() byte         { return opPark }
func (*Evict) op() byte        { return opEvict }
func (*SetPolicy) op() byte    { return opSetPolicy }
func (*SetMember) op() byte    { return opSetMember }
func (*Retime) op() byte       { return opRetime }

// ErrCommand is wrapped by every Encode and Decode error.
var ErrCommand = errors.New("cluster: bad command")

// Encode returns the log bytes of c. It refuses a command that Decode
// would refuse (a bad kind or mode, an empty or over-long key, ...).
func Encode(c Command) ([]byte, error) {
	return AppendCommand(make([]byte, 0, 64), c)
}

// AppendCommand appends the log bytes of c to dst (see Encode).
func AppendCommand(dst []byte, c Command) ([]byte, error) {
	if err := validate(c); err != nil {
		return dst, err
	}
	dst = append(dst, commandVersion, c.op())
	switch c := c.(type) {
	case *OpenSession:
		dst = appendInt(dst, c.At)
		dst = append(dst, c.ID[:]...)
		dst = append(dst, c.Secret[:]...)
		dst = appendInt(dst, int64(c.TTL))
		dst = appendBool(dst, c.Named)
		dst = appendString(dst, c.Identity)
	case *CloseSession:
		dst = appendInt(dst, c.At)
		dst = append(dst, c.Seed[:]...)
		dst = append(dst, c.ID[:]...)
	case *Acquire:
		dst = appendInt(dst, c.At)
		dst = append(dst, c.Seed[:]...)
		dst = append(dst, c.Session[:]...)
		dst = append(dst, byte(c.Kind))
		dst = appendString(dst, c.Key)
		dst = binary.AppendUvarint(dst, uint64(c.Limit))
		dst = appendInt(dst, int64(c.TTL))
		dst = append(dst, byte(c.Mode))
		dst = binary.AppendUvarint(dst, c.Place)
	case *Release:
		dst = appendInt(dst, c.At)
		dst = append(dst, c.Seed[:]...)
		dst = append(dst, byte(c.Kind))
		dst = appendString(dst, c.Key)
		dst = appendToken(dst, c.Token)
	case *Cancel:
		dst = appendInt(dst, c.At)
		dst = append(dst, c.Seed[:]...)
		dst = append(dst, byte(c.Kind))
		dst = appendString(dst, c.Key)
		dst = binary.AppendUvarint(dst, c.Place)
		dst = appendBool(dst, c.KeepGrant)
	case *Collect:
		dst = appendInt(dst, c.At)
		dst = append(dst, c.Session[:]...)
		dst = append(dst, byte(c.Kind))
		dst = appendString(dst, c.Key)
	case *Park:
		dst = appendInt(dst, c.At)
		dst = append(dst, c.Seed[:]...)
		dst = append(dst, byte(c.Kind))
		dst = appendString(dst, c.Key)
		dst = binary.AppendUvarint(dst, c.Place)
	case *Evict:
		dst = appendInt(dst, c.At)
		dst = append(dst, c.Seed[:]...)
		dst = append(dst, byte(c.Kind))
		dst = appendString(dst, c.Key)
		dst = binary.AppendUvarint(dst, uint64(len(c.Tokens)))
		for _, t := range c.Tokens {
			dst = appendToken(dst, t)
		}
	case *Retime:
		dst = appendInt(dst, c.At)
		dst = append(dst, byte(c.Kind))
		dst = appendString(dst, c.Key)
		dst = appendToken(dst, c.Token)
		dst = appendInt(dst, int64(c.TTL))
	case *SetPolicy:
		dst = appendInt(dst, c.At)
		dst = appendPolicy(dst, &c.Policy)
	case *SetMember:
		dst = appendInt(dst, c.At)
		dst = appendString(dst, c.Node)
		dst = binary.AppendUvarint(dst, uint64(len(c.Endpoints)))
		for _, e := range c.Endpoints {
			dst = appendString(dst, e)
		}
	}
	return dst, nil
}

// validate checks what the encoding cannot express or Decode refuses.
func validate(c Command) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %T: %s", ErrCommand, c, fmt.Sprintf(format, a...))
	}
	checkKey := func(k core.Kind, key string) error {
		if k > core.KindSemaphore {
			return bad("kind %d", k)
		}
		if len(key) == 0 || len(key) > MaxKeyLen {
			return bad("key of %d bytes (1 to %d)", len(key), MaxKeyLen)
		}
		return nil
	}
	switch c := c.(type) {
	case nil:
		return fmt.Errorf("%w: nil", ErrCommand)
	case *OpenSession:
		if c.ID == (SessionID{}) {
			return bad("zero session id")
		}
		if c.TTL < 0 || c.At < 0 {
			return bad("negative time")
		}
		if len(c.Identity) > maxIdentityLen {
			return bad("identity of %d bytes (max %d)", len(c.Identity), maxIdentityLen)
		}
	case *CloseSession:
		if c.ID == (SessionID{}) {
			return bad("zero session id")
		}
		if c.At < 0 {
			return bad("negative time")
		}
	case *Acquire:
		if c.Session == (SessionID{}) {
			return bad("zero session id")
		}
		if c.TTL < 0 || c.At < 0 {
			return bad("negative time")
		}
		if c.Limit < 0 || c.Limit > math.MaxInt32 {
			return bad("limit %d", c.Limit)
		}
		if c.Mode > Enqueue {
			return bad("mode %d", c.Mode)
		}
		if c.Place == 0 {
			return bad("place 0")
		}
		return checkKey(c.Kind, c.Key)
	case *Release:
		if c.At < 0 {
			return bad("negative time")
		}
		if _, ok := tokenBytes(c.Token); !ok {
			return bad("token %q", c.Token.String())
		}
		return checkKey(c.Kind, c.Key)
	case *Cancel:
		if c.At < 0 {
			return bad("negative time")
		}
		if c.Place == 0 {
			return bad("place 0")
		}
		return checkKey(c.Kind, c.Key)
	case *Collect:
		if c.Session == (SessionID{}) {
			return bad("zero session id")
		}
		if c.At < 0 {
			return bad("negative time")
		}
		return checkKey(c.Kind, c.Key)
	case *Park:
		if c.At < 0 {
			return bad("negative time")
		}
		if c.Place == 0 {
			return bad("place 0")
		}
		return checkKey(c.Kind, c.Key)
	case *Evict:
		if c.At < 0 {
			return bad("negative time")
		}
		if len(c.Tokens) == 0 || len(c.Tokens) > maxTokens {
			return bad("%d tokens (1 to %d)", len(c.Tokens), maxTokens)
		}
		for _, t := range c.Tokens {
			if _, ok := tokenBytes(t); !ok {
				return bad("token %q", t.String())
			}
		}
		return checkKey(c.Kind, c.Key)
	case *Retime:
		if c.At < 0 || c.TTL <= 0 {
			return bad("time %d, ttl %v", c.At, c.TTL)
		}
		if _, ok := tokenBytes(c.Token); !ok {
			return bad("token %q", c.Token.String())
		}
		return checkKey(c.Kind, c.Key)
	case *SetPolicy:
		p := &c.Policy
		if c.At < 0 || p.DefaultTTL < 0 {
			return bad("negative time")
		}
		for _, v := range []int{p.MaxKeys, p.MaxWaiters, p.MaxSessions} {
			if v < 0 || v > math.MaxInt32 {
				return bad("cap %d (0 to %d)", v, math.MaxInt32)
			}
		}
	case *SetMember:
		if c.At < 0 {
			return bad("negative time")
		}
		if len(c.Node) == 0 || len(c.Node) > maxNodeLen {
			return bad("node id of %d bytes (1 to %d)", len(c.Node), maxNodeLen)
		}
		if len(c.Endpoints) > maxEndpoints {
			return bad("%d endpoints (max %d)", len(c.Endpoints), maxEndpoints)
		}
		for _, e := range c.Endpoints {
			if len(e) == 0 || len(e) > maxEndpointLen {
				return bad("endpoint of %d bytes (1 to %d)", len(e), maxEndpointLen)
			}
		}
	default:
		return fmt.Errorf("%w: unknown type %T", ErrCommand, c)
	}
	return nil
}

// Decode parses log bytes made by Encode. It accepts exactly the
// encodings Encode produces: an unknown version or op, truncation,
// trailing bytes, a non-minimal integer, a bad kind, mode or boolean, an
// empty or over-long key and the like are errors wrapping ErrCommand.
func Decode(b []byte) (Command, error) {
	r := reader{b: b}
	if v := r.byte(); r.err == nil && v != commandVersion {
		return nil, fmt.Errorf("%w: unknown format version %d", ErrCommand, v)
	}
	op := r.byte()
	var c Command
	switch op {
	case opOpenSession:
		x := &OpenSession{At: r.int()}
		r.session(&x.ID)
		r.fixed(x.Secret[:])
		x.TTL = time.Duration(r.int())
		x.Named = r.bool()
		x.Identity = r.string(maxIdentityLen, false)
		c = x
	case opCloseSession:
		x := &CloseSession{At: r.int()}
		r.fixed(x.Seed[:])
		r.session(&x.ID)
		c = x
	case opAcquire:
		x := &Acquire{At: r.int()}
		r.fixed(x.Seed[:])
		r.session(&x.Session)
		x.Kind = r.kind()
		x.Key = r.key()
		x.Limit = int(r.uint(math.MaxInt32))
		x.TTL = time.Duration(r.int())
		x.Mode = Mode(r.byte())
		if r.err == nil && x.Mode > Enqueue {
			r.fail("mode %d", x.Mode)
		}
		x.Place = r.place()
		c = x
	case opRelease:
		x := &Release{At: r.int()}
		r.fixed(x.Seed[:])
		x.Kind = r.kind()
		x.Key = r.key()
		x.Token = r.token()
		c = x
	case opCancel:
		x := &Cancel{At: r.int()}
		r.fixed(x.Seed[:])
		x.Kind = r.kind()
		x.Key = r.key()
		x.Place = r.place()
		x.KeepGrant = r.bool()
		c = x
	case opCollect:
		x := &Collect{At: r.int()}
		r.session(&x.Session)
		x.Kind = r.kind()
		x.Key = r.key()
		c = x
	case opPark:
		x := &Park{At: r.int()}
		r.fixed(x.Seed[:])
		x.Kind = r.kind()
		x.Key = r.key()
		x.Place = r.place()
		c = x
	case opRetime:
		x := &Retime{At: r.int()}
		x.Kind = r.kind()
		x.Key = r.key()
		x.Token = r.token()
		x.TTL = time.Duration(r.int())
		c = x
	case opEvict:
		x := &Evict{At: r.int()}
		r.fixed(x.Seed[:])
		x.Kind = r.kind()
		x.Key = r.key()
		n := r.uint(maxTokens)
		if r.err == nil && n == 0 {
			r.fail("no tokens")
		}
		// Each token takes 16 bytes: refuse a count the input cannot hold
		// before allocating for it.
		if r.err == nil && n > uint64(len(r.b)-r.off)/16 {
			r.fail("truncated")
		}
		if r.err == nil {
			x.Tokens = make([]core.Token, n)
			for i := range x.Tokens {
				x.Tokens[i] = r.token()
			}
		}
		c = x
	case opSetPolicy:
		x := &SetPolicy{At: r.int()}
		x.Policy = r.policy()
		c = x
	case opSetMember:
		x := &SetMember{At: r.int()}
		x.Node = r.string(maxNodeLen, true)
		n := r.uint(maxEndpoints)
		if r.err == nil && n > 0 {
			x.Endpoints = make([]string, n)
			for i := range x.Endpoints {
				x.Endpoints[i] = r.string(maxEndpointLen, true)
			}
		}
		c = x
	default:
		if r.err == nil {
			return nil, fmt.Errorf("%w: unknown op %d", ErrCommand, op)
		}
	}
	if r.err == nil && r.off != len(r.b) {
		r.fail("%d trailing bytes", len(r.b)-r.off)
	}
	if r.err != nil {
		return nil, r.err
	}
	return c, nil
}

// ---- encoding helpers ----

func appendInt(dst []byte, v int64) []byte { return binary.AppendUvarint(dst, uint64(v)) }

func appendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// tokenBytes returns the 16 bytes behind a token's hex text.
func tokenBytes(t core.Token) (raw [16]byte, ok bool) {
	for i := 0; i < 32; i++ {
		c := t[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return raw, false
		}
	}
	_, err := hex.Decode(raw[:], t[:])
	return raw, err == nil
}

func appendToken(dst []byte, t core.Token) []byte {
	raw, _ := tokenBytes(t) // validated before
	return append(dst, raw[:]...)
}

func appendPolicy(dst []byte, p *Policy) []byte {
	dst = appendInt(dst, int64(p.DefaultTTL))
	dst = binary.AppendUvarint(dst, uint64(p.MaxKeys))
	dst = binary.AppendUvarint(dst, uint64(p.MaxWaiters))
	dst = binary.AppendUvarint(dst, uint64(p.MaxSessions))
	return appendBool(dst, p.KeepOnDisconnect)
}

// reader decodes with sticky errors: after the first failure every read
// returns a zero value.
type reader struct {
	b    []byte
	off  int
	err  error
	base error // wrapped by every error: ErrCommand, or ErrSnapshot
}

func (r *reader) fail(format string, a ...any) {
	if r.err == nil {
		base := r.base
		if base == nil {
			base = ErrCommand
		}
		r.err = fmt.Errorf("%w: at byte %d: %s", base, r.off, fmt.Sprintf(format, a...))
	}
}

// session reads a session id, which is never zero.
func (r *reader) session(id *SessionID) {
	r.fixed(id[:])
	if r.err == nil && *id == (SessionID{}) {
		r.fail("zero session id")
	}
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.fail("truncated")
		return 0
	}
	v := r.b[r.off]
	r.off++
	return v
}

func (r *reader) fixed(dst []byte) {
	if r.err != nil {
		return
	}
	if len(r.b)-r.off < len(dst) {
		r.fail("truncated")
		return
	}
	copy(dst, r.b[r.off:])
	r.off += len(dst)
}

// uint reads a minimal uvarint no greater than max.
func (r *reader) uint(max uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	switch {
	case n == 0:
		r.fail("truncated")
		return 0
	case n < 0:
		r.fail("integer overflows 64 bits")
		return 0
	case n > 1 && r.b[r.off+n-1] == 0:
		r.fail("non-minimal integer")
		return 0
	case v > max:
		r.fail("integer %d above %d", v, max)
		return 0
	}
	r.off += n
	return v
}

// int reads a non-negative int64 (a time or a duration).
func (r *reader) int() int64 { return int64(r.uint(math.MaxInt64)) }

func (r *reader) bool() bool {
	switch v := r.byte(); v {
	case 0:
		return false
	case 1:
		return true
	default:
		r.fail("boolean byte %d", v)
		return false
	}
}

func (r *reader) kind() core.Kind {
	k := core.Kind(r.byte())
	if r.err == nil && k > core.KindSemaphore {
		r.fail("kind %d", k)
	}
	return k
}

func (r *reader) string(max int, nonEmpty bool) string {
	n := r.uint(uint64(max))
	if r.err != nil {
		return ""
	}
	if nonEmpty && n == 0 {
		r.fail("empty string")
		return ""
	}
	if uint64(len(r.b)-r.off) < n {
		r.fail("truncated")
		return ""
	}
	s := string(r.b[r.off : r.off+int(n)])
	r.off += int(n)
	return s
}

func (r *reader) key() string { return r.string(MaxKeyLen, true) }

func (r *reader) place() uint64 {
	p := r.uint(math.MaxUint64)
	if r.err == nil && p == 0 {
		r.fail("place 0")
	}
	return p
}

func (r *reader) token() (t core.Token) {
	var raw [16]byte
	r.fixed(raw[:])
	if r.err == nil {
		hex.Encode(t[:], raw[:])
	}
	return t
}

func (r *reader) policy() (p Policy) {
	p.DefaultTTL = time.Duration(r.int())
	p.MaxKeys = int(r.uint(math.MaxInt32))
	p.MaxWaiters = int(r.uint(math.MaxInt32))
	p.MaxSessions = int(r.uint(math.MaxInt32))
	p.KeepOnDisconnect = r.bool()
	return p
}
