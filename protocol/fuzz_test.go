package protocol

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// refResult is one outcome of the reference decoder.
type refResult struct {
	v   view
	err error
}

// refDecode is a deliberately naive second implementation of the request
// grammar, written straight from §1/§2.2 with the strings and strconv
// packages the 1.x reference server uses. The fuzzer checks the Decoder
// against it. It stops after the first I/O or fatal error.
func refDecode(in string) []refResult {
	var out []refResult
	for {
		r, stop := refOne(&in)
		out = append(out, r)
		if stop {
			return out
		}
	}
}

// refLine consumes one line from *s.
func refLine(s *string, max int, first bool) (string, error) {
	if *s == "" {
		if first {
			return "", io.EOF
		}
		return "", io.ErrUnexpectedEOF
	}
	i := strings.IndexByte(*s, '\n')
	if i < 0 { // the stream ends inside the line
		n := len(*s)
		*s = ""
		if n > max {
			return "", ErrLineTooLong
		}
		return "", io.ErrUnexpectedEOF
	}
	line := (*s)[:i]
	*s = (*s)[i+1:]
	if len(line) > max {
		return "", ErrLineTooLong
	}
	return strings.TrimRight(line, "\r"), nil
}

func refOne(s *string) (refResult, bool) {
	var r refResult
	c, err := refLine(s, MaxLine, true)
	if err != nil {
		return refResult{err: err, v: view{KeyNil: true}}, true
	}
	r.v.Cmd = ParseCommand([]byte(c))
	argCap := MaxLine
	if c == "signal" || c == "auth" {
		argCap = MaxLongLine
	}
	key, err := refLine(s, MaxLine, false)
	if err != nil {
		return refResult{err: err, v: view{Cmd: r.v.Cmd, KeyNil: true}}, true
	}
	arg, err := refLine(s, argCap, false)
	if err != nil {
		return refResult{err: err, v: view{Cmd: r.v.Cmd, KeyNil: true}}, true
	}
	if err := refParse(&r.v, c, key, arg); err != nil {
		return refResult{err: err, v: view{Cmd: r.v.Cmd, KeyNil: true}}, false
	}
	r.v.KeyNil = r.v.Key == ""
	return r, false
}

func refInt(s string) (int64, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, ErrNotInteger
	}
	return v, nil
}

func refTimeout(s string) (time.Duration, error) {
	v, err := refInt(s)
	if err != nil {
		return 0, err
	}
	if v < 0 || v > 9223372036 {
		return 0, ErrBadTimeout
	}
	return time.Duration(v) * time.Second, nil
}

func refLease(s string) (time.Duration, error) {
	v, err := refInt(s)
	if err != nil {
		return 0, err
	}
	if v <= 0 || v > 9223372036 {
		return 0, ErrBadLease
	}
	return time.Duration(v) * time.Second, nil
}

func refLimit(s string) (int, error) {
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, ErrNotInteger
	}
	if v <= 0 {
		return 0, ErrBadLimit
	}
	return v, nil
}

func refParse(v *view, c, key, arg string) (err error) {
	switch c {
	case "auth":
		v.Token = strings.TrimSpace(arg)
		return nil
	case "ping", "stats", "bye":
		return nil
	case "cluster":
		v.Op = strings.TrimSpace(arg)
		return nil
	case "session":
		if a := strings.TrimSpace(arg); a != "" {
			v.TTL, err = refLease(a)
		}
		return err
	case "name":
		n := strings.TrimSpace(arg)
		if n == "" || len(n) > 64 {
			return ErrBadName
		}
		for i := 0; i < len(n); i++ {
			if n[i] < ' ' || n[i] > '~' {
				return ErrBadName
			}
		}
		v.Name = n
		return nil
	case "inspect", "resume":
	case "l", "r", "n", "e", "w", "sl", "sr", "sn", "se", "sw", "listen", "unlisten", "signal":
	default:
		return ErrUnknownCommand
	}
	if key == "" || strings.ContainsAny(key, " \t\r\n") {
		return ErrBadKey
	}
	v.Key = key
	f := strings.Fields(arg)
	switch c {
	case "l":
		if len(f) < 1 || len(f) > 2 {
			return ErrArgCount
		}
		if v.Timeout, err = refTimeout(f[0]); err != nil {
			return err
		}
		if len(f) == 2 {
			v.TTL, err = refLease(f[1])
		}
	case "sl":
		if len(f) < 2 || len(f) > 3 {
			return ErrArgCount
		}
		if v.Timeout, err = refTimeout(f[0]); err != nil {
			return err
		}
		if v.Limit, err = refLimit(f[1]); err != nil {
			return err
		}
		if len(f) == 3 {
			v.TTL, err = refLease(f[2])
		}
	case "r", "sr", "resume":
		if v.Token = strings.TrimSpace(arg); v.Token == "" {
			return ErrEmptyToken
		}
	case "n", "sn":
		if len(f) < 1 || len(f) > 2 {
			return ErrArgCount
		}
		v.Token = f[0]
		if len(f) == 2 {
			v.TTL, err = refLease(f[1])
		}
	case "e":
		if a := strings.TrimSpace(arg); a != "" {
			v.TTL, err = refLease(a)
		}
	case "se":
		if len(f) < 1 || len(f) > 2 {
			return ErrArgCount
		}
		if v.Limit, err = refLimit(f[0]); err != nil {
			return err
		}
		if len(f) == 2 {
			v.TTL, err = refLease(f[1])
		}
	case "w", "sw":
		a := strings.TrimSpace(arg)
		if a == "" {
			return ErrArgCount
		}
		v.Timeout, err = refTimeout(a)
	case "listen", "unlisten":
		v.Group = strings.TrimSpace(arg)
	case "inspect":
		switch strings.TrimSpace(arg) {
		case "", "lock":
		case "sem":
			v.Sem = true
		default:
			return ErrArgCount
		}
	case "signal":
		if strings.ContainsAny(key, "*>") {
			return ErrBadKey
		}
		if strings.TrimSpace(arg) == "" || len(arg) > 65536-4-len(key)-1 {
			return ErrArgCount
		}
		v.Payload = arg
	}
	return err
}

// countingReader counts the bytes it has delivered.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// decodeAll runs the Decoder over r until an I/O or fatal error, checking
// progress and the per-request invariants on the way.
func decodeAll(t *testing.T, r io.Reader, bufSize int) []refResult {
	var out []refResult
	cr := &countingReader{r: r}
	d := newDecoderSize(cr, bufSize)
	var req Request
	last := 0
	for {
		err := d.ReadRequest(&req)
		out = append(out, refResult{v: viewOf(&req), err: err})
		checkInvariants(t, &req, err)
		if err == nil {
			checkReencode(t, &req)
		}
		var perr *Error
		if err != nil && (!errors.As(err, &perr) || perr.Fatal()) {
			return out
		}
		// Every request consumes at least its three LFs.
		consumed := cr.n - d.Buffered()
		if consumed < last+3 {
			t.Fatalf("no progress: consumed %d bytes after %d", consumed, last)
		}
		last = consumed
	}
}

func checkInvariants(t *testing.T, req *Request, err error) {
	t.Helper()
	if err != nil {
		var perr *Error
		if errors.As(err, &perr) && !perr.Fatal() {
			if v := viewOf(req); v != (view{Cmd: req.Cmd, KeyNil: true}) {
				t.Fatalf("fields left after %v: %+v", err, v)
			}
		}
		return
	}
	if req.Cmd == CmdUnknown {
		t.Fatal("CmdUnknown without error")
	}
	if req.Cmd.hasKey() {
		if !validKey(req.Key) || len(req.Key) > MaxLine {
			t.Fatalf("invalid key %q accepted for %v", req.Key, req.Cmd)
		}
	} else if req.Key != nil {
		t.Fatalf("%v returned a key", req.Cmd)
	}
	if req.Timeout < 0 || req.Timeout > MaxSeconds*time.Second || req.Timeout%time.Second != 0 {
		t.Fatalf("timeout %v out of range", req.Timeout)
	}
	if req.TTL != 0 && (req.TTL < time.Second || req.TTL > MaxSeconds*time.Second || req.TTL%time.Second != 0) {
		t.Fatalf("lease %v out of range", req.TTL)
	}
	switch req.Cmd {
	case CmdSemLock, CmdSemEnqueue:
		if req.Limit < 1 {
			t.Fatalf("limit %d accepted", req.Limit)
		}
	case CmdRelease, CmdSemRelease, CmdRenew, CmdSemRenew, CmdResume:
		if len(req.Token) == 0 || len(trimSpace(req.Token)) != len(req.Token) {
			t.Fatalf("token %q accepted", req.Token)
		}
	case CmdName:
		if !ValidName(req.Name) {
			t.Fatalf("name %q accepted", req.Name)
		}
	case CmdSignal:
		if !literalChannel(req.Key) || len(trimSpace(req.Payload)) == 0 || len(req.Payload) > MaxPayload(len(req.Key)) {
			t.Fatalf("signal %q %q accepted", req.Key, req.Payload)
		}
		if bytes.HasSuffix(req.Payload, []byte("\r")) {
			t.Fatalf("payload keeps a CR: %q", req.Payload)
		}
	}
}

func sameResults(a, b []refResult) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].v != b[i].v || a[i].err != b[i].err {
			return false
		}
	}
	return true
}

func fuzzSeeds() []string {
	seeds := []string{
		"", "\n", "\n\n\n", "\r\n\r\n\r\n", "l", "l\n", "l\nk\n", "l\nk\n5",
		follow, "ping\n_\n_\n", "stats\n_\n\n", "auth\n_\ns3cret\n", "auth\n\n  \n",
		"frob\nx\ny\n", "L\nk\n5\n", "l \nk\n5\n",
		"listen\njobs.>\nworkers\n", "unlisten\na.*\n\n", "signal\njobs.new\n  hello world \n",
		"signal\na.*\nx\n", "signal\nc\n \t\n",
		"l\nk\n10\n", "l\nk\n10 60\n", "l\nk\n+007 -0\n", "l\nk\n1 2 3\n", "l\nk\n9223372036 9223372036\n",
		"l\nk\n9223372037\n", "l\nk\n9223372036854775808\n", "l\nk\n-9223372036854775808\n",
		"l\nk\n10\u00a060\n", "l\nk\n10\u200b60\n", "l\nk\n\xff 1\n", "l\nk\n1\xc2\n",
		"r\nk\n tok en \n", "r\nk\n\n", "sr\nk\ntok\n",
		"n\nk\ntok\n", "n\nk\ntok 5\n", "n\nk\n\n", "sn\nk\ntok 0\n",
		"e\nk\n\n", "e\nk\n30 junk\n", "se\nk\n3\n", "se\nk\n3 60\n", "se\nk\n0\n",
		"w\nk\n5\n", "w\nk\n\n", "w\nk\n5 6\n", "sw\nk\n0\n",
		"sl\nk\n10 3\n", "sl\nk\n10 3 60\n", "sl\nk\n10 0\n", "sl\nk\n10\n",
		"l\na b\n5\n", "l\n\n5\n", "l\na\rb\n5\n", "l\r\nk\r\n5\r\n",
		"l\n" + rep("k", 256) + "\n5\n", "l\n" + rep("k", 257) + "\n5\nping\n_\n\n",
		"l\n" + rep("k", 255) + "\r\n5\n", "l\n" + rep("k", 256) + "\r\n5\n",
		rep("x", 300) + "\nl\nk\n5\n",
		"inspect\njob\n\n", "inspect\njob\nsem\n", "inspect\njob\n lock \n", "inspect\njob\nsemaphore\n",
		"inspect\n\n\n", "name\n_\nbackup-job-7\n", "name\n_\n  a b  \n", "name\n_\n\n",
		"name\n\n\xff\n", "name\n_\n" + rep("n", 65) + "\n",
		"session\n_\n\n", "session\n_\n30\n", "session\n\n0\n", "session\n_\n1 2\n",
		"resume\n0123456789abcdef\n00112233445566778899aabbccddeeff\n", "resume\nab\n\n", "resume\n\nx\n",
		"bye\n_\n\n", "bye\n\nsee you\n",
		"cluster\n_\n\n", "cluster\n_\nadd n4 127.0.0.1:7004\n", "cluster\n\n transfer \n",
	}
	// Pipelined mixes.
	seeds = append(seeds, strings.Join(seeds[10:30], ""), toCRLF(strings.Join(seeds[30:50], "")))
	return seeds
}

// FuzzReadRequest feeds arbitrary bytes to the Decoder. It must never
// panic, must always make progress, must agree with the naive reference
// decoder (refDecode) on every request and error, must be independent of
// how the stream is chunked, and every accepted request must satisfy the
// grammar's invariants.
func FuzzReadRequest(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		want := refDecode(string(in))
		got := decodeAll(t, bytes.NewReader(in), ReadBufferSize)
		if !sameResults(got, want) {
			t.Fatalf("decoder and reference disagree on %q:\n got  %+v\n want %+v", in, got, want)
		}
		// The same stream delivered one byte per Read, and through a 16-byte
		// read buffer (every line longer than that takes the assembly path).
		if len(in) <= 4096 {
			slow := decodeAll(t, iotest.OneByteReader(bytes.NewReader(in)), ReadBufferSize)
			if !sameResults(slow, want) {
				t.Fatalf("one-byte reader differs on %q:\n got  %+v\n want %+v", in, slow, want)
			}
		}
		small := decodeAll(t, bytes.NewReader(in), 16)
		if !sameResults(small, want) {
			t.Fatalf("16-byte buffer differs on %q:\n got  %+v\n want %+v", in, small, want)
		}
	})
}

// TestReferenceAgreesOnTable keeps the fuzz oracle honest: it must agree
// with the hand-written grammar table.
func TestReferenceAgreesOnTable(t *testing.T) {
	for _, tc := range requestCases() {
		got := refDecode(tc.in)
		want := tc.want
		want.KeyNil = want.Key == ""
		if got[0].v != want || got[0].err != tc.err {
			t.Errorf("%s: reference gives %+v %v", tc.rule, shortView(got[0].v), got[0].err)
		}
	}
}

// FuzzParseResponse feeds arbitrary lines to ParseResponse. It must never
// panic; on success the result must not alias the input, and re-encoding it
// with the server encoders must parse back to the same Response (and, for
// shapes that are lossless, reproduce the line byte for byte).
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		"", "ok", "ok ", "ok 3", "ok -3", "ok +03", "ok 9223372036854775808",
		"ok 0123456789abcdef0123456789abcdef 30", "acquired tok 60", "acquired tok", "acquired",
		"acquired tok 9223372037", "ok tok -1", `ok {"json":1}`, `ok {"a b": 5}`, "ok [1]", "ok a b c",
		"queued", "timeout", "error", "error_auth", "error_max_locks", "error_max_waiters",
		"error_limit_mismatch", "error_not_enqueued", "error_already_enqueued", "error_lease_expired",
		"error_draining", "error_session", "ok 0123456789abcdef 00112233445566778899aabbccddeeff 15", "ok 2 1",
		"timeout x", "sig", "sig ", "sig a", "sig a ", "sig a.b  payload with spaces",
		"sig  x", "OK", "ok\r", "\xff", "ok \xff 1",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var resp Response
		err := ParseResponse(line, &resp)
		if err != nil {
			if !errors.Is(err, ErrBadResponse) || !reflect.DeepEqual(resp, Response{}) {
				t.Fatalf("%q: err %v, resp %+v", line, err, resp)
			}
			return
		}
		if !resp.Status.valid() {
			t.Fatalf("%q: invalid status %d", line, resp.Status)
		}
		saved := resp
		saved.Body = bytes.Clone(resp.Body)
		saved.Payload = bytes.Clone(resp.Payload)
		orig := bytes.Clone(line)
		for i := range line {
			line[i] ^= 0xff
		}
		if !reflect.DeepEqual(resp, saved) {
			t.Fatalf("%q: result aliases the input", orig)
		}
		line = orig

		var enc []byte
		exact := true
		switch {
		case resp.Status == StatusSignal:
			enc = AppendSignal(nil, []byte(resp.Channel), resp.Payload)
		case resp.Token != "":
			enc, exact = AppendGrant(nil, resp.Status, resp.Token, resp.TTL), false
		case resp.HasN:
			enc, exact = AppendOKInt(nil, resp.N), false
		case resp.Body != nil:
			enc = AppendOKBody(nil, resp.Body)
		default:
			enc = AppendStatus(nil, resp.Status)
		}
		enc = enc[:len(enc)-1] // drop the LF
		if exact && !bytes.Equal(enc, line) {
			t.Fatalf("%q re-encodes as %q", line, enc)
		}
		var again Response
		if err := ParseResponse(enc, &again); err != nil || !reflect.DeepEqual(again, resp) {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", line, resp, enc, again, err)
		}
	})
}

// checkReencode: AppendRequestOf gives bytes that decode back to req.
func checkReencode(t *testing.T, req *Request) {
	t.Helper()
	b := AppendRequestOf(nil, req)
	var again Request
	if err := NewDecoder(bytes.NewReader(b)).ReadRequest(&again); err != nil {
		t.Fatalf("re-encoded %+v as %q, which does not decode: %v", viewOf(req), b, err)
	}
	if viewOf(&again) != viewOf(req) {
		t.Fatalf("re-encoded %q decodes to %+v; want %+v", b, viewOf(&again), viewOf(req))
	}
}
