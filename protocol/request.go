package protocol

import (
	"strconv"
	"time"
)

// Line caps and numeric bounds (§1, §2.2).
const (
	// MaxLine is the cap of every request line, in bytes, counting any CR
	// but not the LF.
	MaxLine = 256
	// MaxLongLine is the cap of the arg line of signal and auth.
	MaxLongLine = 64 << 10
	// MaxSeconds is the largest timeout or lease, in seconds, that fits in a
	// time.Duration.
	MaxSeconds = 9223372036
)

// Request is one decoded request. Which fields are set depends on Cmd; the
// others are zero. Byte-slice fields alias the Decoder's internal buffers
// and are valid only until the next call to ReadRequest or ReadLine: copy
// (or convert to string) anything that must outlive that.
type Request struct {
	Cmd     Command
	Key     []byte        // key, pattern or channel (raw, CR-stripped); resume: the session id; nil for auth, ping, stats, name, session, bye
	Timeout time.Duration // l, sl, w, sw: whole seconds, 0..MaxSeconds
	TTL     time.Duration // l, sl, n, sn, e, se: lease; session: session TTL; whole seconds; 0 = not given (server default)
	Limit   int           // sl, se: >= 1
	Token   []byte        // r, sr, n, sn: the lease token; auth: the trimmed credential (may be empty); resume: the session secret
	Group   []byte        // listen, unlisten: trimmed queue-group name; empty = no group
	Payload []byte        // signal: the arg line verbatim (not trimmed), never blank
	Name    []byte        // name: the trimmed connection name, 1..MaxName printable ASCII bytes
	Sem     bool          // inspect: the semaphore namespace (arg "sem"); false = locks
	Op      []byte        // cluster: the trimmed arg (empty = status), split by the server
}

// MaxName is the longest connection name (the name extension), in bytes.
const MaxName = 64

// ValidName reports whether name is a valid connection name: 1 to MaxName
// bytes of printable ASCII (space to '~'), without leading or trailing
// space. The decoder trims the arg line before checking it.
func ValidName(name []byte) bool {
	if len(name) == 0 || len(name) > MaxName || name[0] == ' ' || name[len(name)-1] == ' ' {
		return false
	}
	for _, c := range name {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// AppendRequest appends the three request lines "<verb>\n<key>\n<arg>\n" to
// dst and returns the extended slice. It does not validate anything: key
// and arg must not contain LF (see ValidKey, ValidChannel and MaxPayload).
func AppendRequest(dst []byte, cmd Command, key, arg string) []byte {
	dst = append(dst, cmd.String()...)
	dst = append(dst, '\n')
	dst = append(dst, key...)
	dst = append(dst, '\n')
	dst = append(dst, arg...)
	return append(dst, '\n')
}

// AppendRequestOf appends the wire form of a decoded request: what a
// client could have sent to get req (not necessarily its bytes: spacing
// and leading zeros are normalised). Reading it back gives req again.
func AppendRequestOf(dst []byte, req *Request) []byte {
	secs := func(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }
	key := "_"
	if req.Key != nil {
		key = string(req.Key)
	}
	var arg string
	switch req.Cmd {
	case CmdLock:
		arg = secs(req.Timeout)
		if req.TTL > 0 {
			arg += " " + secs(req.TTL)
		}
	case CmdSemLock:
		arg = secs(req.Timeout) + " " + strconv.Itoa(req.Limit)
		if req.TTL > 0 {
			arg += " " + secs(req.TTL)
		}
	case CmdRelease, CmdSemRelease, CmdAuth, CmdResume:
		arg = string(req.Token)
	case CmdRenew, CmdSemRenew:
		arg = string(req.Token)
		if req.TTL > 0 {
			arg += " " + secs(req.TTL)
		}
	case CmdEnqueue, CmdSession:
		if req.TTL > 0 {
			arg = secs(req.TTL)
		}
	case CmdSemEnqueue:
		arg = strconv.Itoa(req.Limit)
		if req.TTL > 0 {
			arg += " " + secs(req.TTL)
		}
	case CmdWait, CmdSemWait:
		arg = secs(req.Timeout)
	case CmdListen, CmdUnlisten:
		arg = string(req.Group)
	case CmdSignal:
		arg = string(req.Payload)
	case CmdInspect:
		if req.Sem {
			arg = "sem"
		}
	case CmdName:
		arg = string(req.Name)
	case CmdCluster:
		arg = string(req.Op)
	}
	return AppendRequest(dst, req.Cmd, key, arg)
}

// parseArgs validates key and arg for cmd and fills req. key and arg must
// already be stable (owned by the decoder). It returns nil or one of the
// *Error parse sentinels.
func parseArgs(req *Request, key, arg []byte) error {
	cmd := req.Cmd
	if cmd.hasKey() {
		if !validKey(key) {
			return ErrBadKey
		}
		req.Key = key
	}
	var f [maxFields][]byte
	switch cmd {
	case CmdLock: // <timeout> [<lease>]
		n := fields(arg, &f)
		if n < 1 || n > 2 {
			return ErrArgCount
		}
		if err := parseTimeout(f[0], &req.Timeout); err != nil {
			return err
		}
		if n == 2 {
			return parseLease(f[1], &req.TTL)
		}
	case CmdSemLock: // <timeout> <limit> [<lease>]
		n := fields(arg, &f)
		if n < 2 || n > 3 {
			return ErrArgCount
		}
		if err := parseTimeout(f[0], &req.Timeout); err != nil {
			return err
		}
		if err := parseLimit(f[1], &req.Limit); err != nil {
			return err
		}
		if n == 3 {
			return parseLease(f[2], &req.TTL)
		}
	case CmdRelease, CmdSemRelease: // <token...>
		tok := trimSpace(arg)
		if len(tok) == 0 {
			return ErrEmptyToken
		}
		req.Token = tok
	case CmdRenew, CmdSemRenew: // <token> [<lease>]
		n := fields(arg, &f)
		if n < 1 || n > 2 {
			return ErrArgCount
		}
		req.Token = f[0]
		if n == 2 {
			return parseLease(f[1], &req.TTL)
		}
	case CmdEnqueue: // [<lease>]
		if a := trimSpace(arg); len(a) > 0 {
			return parseLease(a, &req.TTL)
		}
	case CmdSemEnqueue: // <limit> [<lease>]
		n := fields(arg, &f)
		if n < 1 || n > 2 {
			return ErrArgCount
		}
		if err := parseLimit(f[0], &req.Limit); err != nil {
			return err
		}
		if n == 2 {
			return parseLease(f[1], &req.TTL)
		}
	case CmdWait, CmdSemWait: // <timeout>
		a := trimSpace(arg)
		if len(a) == 0 {
			return ErrArgCount
		}
		return parseTimeout(a, &req.Timeout)
	case CmdListen, CmdUnlisten: // [<group>]
		if g := trimSpace(arg); len(g) > 0 {
			req.Group = g
		}
	case CmdSignal: // <payload>
		if !literalChannel(key) {
			return ErrBadKey
		}
		if len(trimSpace(arg)) == 0 || len(arg) > MaxPayload(len(key)) {
			return ErrArgCount
		}
		req.Payload = arg
	case CmdAuth:
		req.Token = trimSpace(arg)
	case CmdInspect: // [lock|sem]
		switch a := trimSpace(arg); string(a) {
		case "", "lock":
		case "sem":
			req.Sem = true
		default:
			return ErrArgCount
		}
	case CmdName: // <name>; the key line is ignored
		n := trimSpace(arg)
		if !ValidName(n) {
			return ErrBadName
		}
		req.Name = n
	case CmdSession: // [<ttl>]; the key line is ignored
		if a := trimSpace(arg); len(a) > 0 {
			return parseLease(a, &req.TTL)
		}
	case CmdResume: // <secret>; the key is the session id
		sec := trimSpace(arg)
		if len(sec) == 0 {
			return ErrEmptyToken
		}
		req.Token = sec
	case CmdCluster: // [<operation> <args...>]; the key line is ignored
		if op := trimSpace(arg); len(op) > 0 {
			req.Op = op
		}
	case CmdPing, CmdStats, CmdBye:
		// key and arg are ignored
	default:
		return ErrUnknownCommand
	}
	return nil
}

// parseTimeout parses a timeout_s field: an integer in [0, MaxSeconds].
func parseTimeout(b []byte, d *time.Duration) error {
	v, ok := parseInt(b)
	if !ok {
		return ErrNotInteger
	}
	if v < 0 || v > MaxSeconds {
		return ErrBadTimeout
	}
	*d = time.Duration(v) * time.Second
	return nil
}

// parseLease parses a lease_ttl_s field: an integer in [1, MaxSeconds].
func parseLease(b []byte, d *time.Duration) error {
	v, ok := parseInt(b)
	if !ok {
		return ErrNotInteger
	}
	if v < 1 || v > MaxSeconds {
		return ErrBadLease
	}
	*d = time.Duration(v) * time.Second
	return nil
}

// maxInt is the largest int; on 32-bit platforms it is below MaxInt64.
const maxInt = int64(^uint(0) >> 1)

// parseLimit parses a limit field: an integer >= 1. A value that does not
// fit in an int (only possible on 32-bit platforms) is ErrNotInteger, the
// answer strconv.Atoi gives in the reference server.
func parseLimit(b []byte, limit *int) error {
	v, ok := parseInt(b)
	if !ok || v > maxInt {
		return ErrNotInteger
	}
	if v < 1 {
		return ErrBadLimit
	}
	*limit = int(v)
	return nil
}
