package protocol

import (
	"bufio"
	"io"
	"strconv"
	"strings"
	"time"
)

// repeatReader cycles over data forever; it never returns an error and
// never allocates, so it feeds allocation tests and benchmarks.
type repeatReader struct {
	data []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.data[r.off:])
		n += c
		r.off = (r.off + c) % len(r.data)
	}
	return n, nil
}

// view is a comparable, printable copy of a Request.
type view struct {
	Cmd     Command
	Key     string
	KeyNil  bool
	Timeout time.Duration
	TTL     time.Duration
	Limit   int
	Token   string
	Group   string
	Payload string
	Name    string
	Sem     bool
	Op      string
}

func viewOf(r *Request) view {
	return view{
		Cmd:     r.Cmd,
		Key:     string(r.Key),
		KeyNil:  r.Key == nil,
		Timeout: r.Timeout,
		TTL:     r.TTL,
		Limit:   r.Limit,
		Token:   string(r.Token),
		Group:   string(r.Group),
		Payload: string(r.Payload),
		Name:    string(r.Name),
		Sem:     r.Sem,
		Op:      string(r.Op),
	}
}

// short abbreviates long strings in failure messages.
func short(s string) string {
	if len(s) > 80 {
		return s[:60] + "...(" + strconv.Itoa(len(s)) + " bytes)"
	}
	return s
}

// toCRLF rewrites every LF in s as CRLF.
func toCRLF(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// rep returns n copies of c.
func rep(c string, n int) string { return strings.Repeat(c, n) }

func strconvParseInt(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }

// newDecoderSize is NewDecoder with a read buffer of size bytes (minimum
// 16), so that tests and the fuzzer can drive the long-line path with
// short inputs.
func newDecoderSize(r io.Reader, size int) *Decoder {
	d := &Decoder{src: hookReader{r: r}}
	d.br = bufio.NewReaderSize(&d.src, size)
	return d
}
