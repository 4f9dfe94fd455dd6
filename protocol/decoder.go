package protocol

import (
	"bufio"
	"bytes"
	"io"
)

// ReadBufferSize is the size of a Decoder's read buffer, the "4 KiB read
// buffer" of §1, and so the most that Buffered can report. Lines longer
// than this are assembled in a separate, reused buffer.
const ReadBufferSize = 4096

// Decoder reads requests (server side) or response lines (client side) from
// a byte stream. It enforces the line caps while reading: an oversized line
// is discarded as it arrives, so a peer can never make it hold more than the
// cap of the line being read plus its 4 KiB read buffer.
//
// A Decoder is not safe for concurrent use. It never touches deadlines; see
// SetLineHook for arming a per-line read deadline.
type Decoder struct {
	br   *bufio.Reader
	src  hookReader
	long []byte // assembly buffer for lines longer than the bufio buffer
	// key holds a copy of the key line of the last request: reading the arg
	// line may refill the read buffer over the bytes the key came from.
	key [MaxLine]byte
}

// hookReader sits between the bufio.Reader and the stream and calls hook
// before the first Read of each line.
type hookReader struct {
	r     io.Reader
	hook  func()
	fresh bool // a new line has started and hook has not run for it yet
}

func (h *hookReader) Read(p []byte) (int, error) {
	if h.fresh {
		h.fresh = false
		if h.hook != nil {
			h.hook()
		}
	}
	return h.r.Read(p)
}

// NewDecoder returns a Decoder that reads from r through a 4 KiB buffer.
func NewDecoder(r io.Reader) *Decoder {
	d := &Decoder{src: hookReader{r: r}}
	d.br = bufio.NewReaderSize(&d.src, ReadBufferSize)
	return d
}

// Reset discards any buffered data and makes d read from r, keeping its
// buffers and line hook, so Decoders can be pooled.
func (d *Decoder) Reset(r io.Reader) {
	d.src.r = r
	d.src.fresh = false
	d.br.Reset(&d.src)
}

// SetLineHook makes d call fn before it reads from the stream for a new
// line, at most once per line and only when the line is not already fully
// buffered. A server uses it to arm a fresh read deadline per line (§1: the
// read timeout applies to each line, not to the whole request), keeping this
// package free of net. A nil fn removes the hook.
func (d *Decoder) SetLineHook(fn func()) { d.src.hook = fn }

// Buffered returns the number of bytes already read from the stream and not
// yet consumed.
func (d *Decoder) Buffered() int { return d.br.Buffered() }

// TakeBuffered returns a copy of the bytes received and not yet decoded,
// and forgets them: the caller takes over the rest of the stream (a
// connection relayed elsewhere after some requests were served).
func (d *Decoder) TakeBuffered() []byte {
	n := d.br.Buffered()
	if n == 0 {
		return nil
	}
	b, _ := d.br.Peek(n)
	out := append([]byte(nil), b...)
	_, _ = d.br.Discard(n)
	return out
}

// ReadRequest reads one request, exactly three lines, into req, which is
// reset first (fields of the previous request never leak into the next).
//
// On success it returns nil. On a parse error (ErrUnknownCommand,
// ErrNotInteger, ErrBadKey, ErrBadTimeout, ErrEmptyToken, ErrArgCount,
// ErrBadLease, ErrBadLimit) all three lines have been consumed, req.Cmd
// holds the parsed command (CmdUnknown for an unknown verb), the other
// fields are zero, and the connection stays usable. When a line exceeds its
// cap, the rest of that line is read and discarded up to its LF (or a read
// error), the remaining lines of the request are not read, and
// ErrLineTooLong is returned; the caller must answer and close.
//
// Read errors are returned as they come from the stream, except that a
// stream ending inside a request yields io.ErrUnexpectedEOF; a stream that
// ends cleanly between requests yields io.EOF.
//
// ReadRequest does not allocate in steady state.
func (d *Decoder) ReadRequest(req *Request) error {
	*req = Request{}
	if key, arg, ok := d.readBuffered(req); ok {
		return d.finish(req, key, arg)
	}
	line, err := d.readLine(MaxLine)
	if err != nil {
		return err
	}
	cmd := ParseCommand(line)
	req.Cmd = cmd

	line, err = d.readLine(MaxLine)
	if err != nil {
		return midRequest(err)
	}
	key := d.key[:copy(d.key[:], line)]

	line, err = d.readLine(cmd.argCap())
	if err != nil {
		return midRequest(err)
	}
	// The arg line is the last one read, so it may keep aliasing the read
	// buffer (or d.long): nothing reads from the stream before the next
	// ReadRequest or ReadLine, which is where the documented validity ends.
	return d.finish(req, key, line)
}

// finish validates the key and arg lines of a request whose command is
// already in req.Cmd.
func (d *Decoder) finish(req *Request, key, arg []byte) error {
	if req.Cmd == CmdUnknown {
		return ErrUnknownCommand
	}
	if err := parseArgs(req, key, arg); err != nil {
		*req = Request{Cmd: req.Cmd}
		return err
	}
	return nil
}

// readBuffered is the fast path of ReadRequest: when the read buffer
// already holds a whole request within the caps, it consumes it without any
// read, sets req.Cmd, returns the key and arg lines (CR-stripped) and true.
// The lines alias the read buffer, which is safe because nothing reads from
// the stream before the request has been parsed. Otherwise it consumes
// nothing and returns false; the line-by-line path then takes over.
func (d *Decoder) readBuffered(req *Request) (key, arg []byte, ok bool) {
	buf, _ := d.br.Peek(d.br.Buffered())
	i1 := bytes.IndexByte(buf, '\n')
	if i1 < 0 || i1 > MaxLine {
		return nil, nil, false
	}
	rest := buf[i1+1:]
	i2 := bytes.IndexByte(rest, '\n')
	if i2 < 0 || i2 > MaxLine {
		return nil, nil, false
	}
	cmd := ParseCommand(trimCR(buf[:i1]))
	tail := rest[i2+1:]
	i3 := bytes.IndexByte(tail, '\n')
	if i3 < 0 || i3 > cmd.argCap() {
		return nil, nil, false
	}
	_, _ = d.br.Discard(i1 + 1 + i2 + 1 + i3 + 1)
	req.Cmd = cmd
	return trimCR(rest[:i2]), trimCR(tail[:i3]), true
}

// ReadLine reads one LF-terminated line of at most max bytes (CR counted, LF
// not) and returns it without its trailing CRs. max <= 0 means MaxLine. The
// returned slice is valid until the next call to ReadLine or ReadRequest.
// An oversized line is drained up to its LF and reported as ErrLineTooLong.
// A stream that ends before the first byte yields io.EOF, one that ends
// inside the line io.ErrUnexpectedEOF. Clients use it for response lines
// (stats answers can be large: pass e.g. 1 MiB).
func (d *Decoder) ReadLine(max int) ([]byte, error) {
	if max <= 0 {
		max = MaxLine
	}
	return d.readLine(max)
}

// midRequest converts a clean EOF into io.ErrUnexpectedEOF for a line that
// is not the first of a request.
func midRequest(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readLine reads one line of at most max bytes and returns it without its
// LF and trailing CRs. The result aliases either the bufio buffer or d.long.
// A clean EOF before any byte is io.EOF; EOF inside the line is
// io.ErrUnexpectedEOF.
func (d *Decoder) readLine(max int) ([]byte, error) {
	d.src.fresh = true
	line, err := d.br.ReadSlice('\n')
	if err == nil { // fast path: the whole line was in the buffer
		n := len(line) - 1
		if n > max {
			return nil, ErrLineTooLong
		}
		return trimCR(line[:n]), nil
	}
	return d.readLineSlow(line, err, max)
}

// readLineSlow finishes readLine when ReadSlice did not return a whole line:
// the buffer filled up (the line is longer than the buffer) or the stream
// failed.
func (d *Decoder) readLineSlow(line []byte, err error, max int) ([]byte, error) {
	total := len(line) // bytes of this line so far, no LF among them
	if err != bufio.ErrBufferFull {
		return nil, partialLine(total, err, max)
	}
	if total > max {
		return nil, d.discard()
	}
	d.long = append(d.long[:0], line...)
	for {
		line, err = d.br.ReadSlice('\n')
		total += len(line)
		switch {
		case err == nil:
			if total-1 > max {
				return nil, ErrLineTooLong
			}
			d.long = append(d.long, line[:len(line)-1]...)
			return trimCR(d.long), nil
		case err != bufio.ErrBufferFull:
			return nil, partialLine(total, err, max)
		case total > max:
			return nil, d.discard()
		}
		d.long = append(d.long, line...)
	}
}

// partialLine maps a read error that ended a line without LF after total
// bytes. A line that already broke its cap is reported as too long: the
// drain ended at the read error.
func partialLine(total int, err error, max int) error {
	switch {
	case total > max:
		return ErrLineTooLong
	case total == 0:
		return err
	case err == io.EOF:
		return io.ErrUnexpectedEOF
	}
	return err
}

// discard reads and drops bytes up to and including the next LF, or until a
// read error, and returns ErrLineTooLong.
func (d *Decoder) discard() error {
	for {
		_, err := d.br.ReadSlice('\n')
		if err != bufio.ErrBufferFull {
			return ErrLineTooLong
		}
	}
}

// trimCR removes all trailing '\r' bytes.
func trimCR(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	return b
}
