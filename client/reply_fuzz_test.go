package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/dflockd/dflockd/protocol"
)

// FuzzClientReplies plays an arbitrary byte stream as everything a server
// sends, to the client's two readers:
//
//   - a Conn (readReply, roundTrip, the result decoding of each method),
//     over net.Pipe, issuing every kind of call in turn until the
//     connection is closed. No call may panic, every call must end in a
//     well-formed success or an error that is one of the package's
//     sentinels or an I/O error of the stream, and no more calls may
//     succeed than the stream holds lines;
//   - a SignalConn's reader goroutine (over a Unix socket, since
//     NewSignalConn dials), with no command in flight. Every line must be
//     classified as a push frame (delivered on Signals, in order, exactly
//     as the reference split below says), an answer (at most one may wait
//     for a command; a second is out of step), or an error that ends the
//     connection; Err must then say why, as a known error.
func FuzzClientReplies(f *testing.F) {
	for _, s := range []string{
		"", "ok\n", "ok", "ok\r\n", "timeout\n", "error\n", "error_auth\n", "error_draining\nok\n",
		"ok 0123456789abcdef0123456789abcdef 33\n", "acquired 0123456789abcdef0123456789abcdef 33\nqueued\n",
		"ok 5\n", "ok -5\n", "ok tok -1\n", "ok {\"connections\":1}\n", "ok {\"connections\":\n", "ok [1]\n",
		"sig a.b hello\nok\n", "sig a.b  two  spaces \r\nsig c x\nok 1\n", "sig\n", "sig \n", "sig a\n", "sig  x\n",
		"sig a.b p\nok\nok\n", "sig a.b p\nok\nqueued\nsig late x\n", "OK\n", "ok \xff 1\n", "\xff\n", "\n",
		"error_max_locks\nerror_max_waiters\nerror_limit_mismatch\nerror_not_enqueued\nerror_already_enqueued\nerror_lease_expired\n",
		"ok\nok 1\nok t 2\nacquired t 3\nok t 4\nok t 5\nok 6\nok 7\nok {}\n",
		strings.Repeat("sig a b\n", 70) + "ok\n",
		"ok 0123456789abcdef 0123456789abcdef0123456789abcdef 15\n", "ok 0123456789abcdef 0123456789ABCDEF0123456789abcdef 15\n",
		"ok 0123456789abcdef 0123456789abcdef0123456789abcdef 0\n", "ok 0123456789abcdef 0123456789abcdef 15\n",
		"ok 0123456789abcdef 0123456789abcdef0123456789abcdef 15 x\n", "ok 0123456789abcdef 0123456789abcdef0123456789abcdef 015\n",
		"ok 1 0\n", "ok 0 3\n", "ok 1 99999999999\n", "ok -1 0\n", "ok 1\n", "ok 01 0\n", "ok 1 0 0\n", "error_session\n",
		"ok\nok 1\nok t 2\nacquired t 3\nok t 4\nok t 5\nok 6\nok 7\nok {}\nqueued\nok t 9\n" +
			"ok 0123456789abcdef 0123456789abcdef0123456789abcdef 15\nok 1 0\nok\n",
	} {
		f.Add([]byte(s))
	}
	dir, err := os.MkdirTemp("", "dflf")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { ln.Close() })
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzConnReplies(t, in)
		fuzzSignalReader(t, ln, "unix://"+path, in)
	})
}

// knownError reports whether err is one the client documents: a status
// sentinel, ErrClosed, or an I/O error of the stream.
func knownError(err error) bool {
	for _, e := range []error{
		ErrTimeout, ErrMaxLocks, ErrMaxWaiters, ErrLimitMismatch, ErrNotQueued, ErrAlreadyQueued,
		ErrLeaseExpired, ErrAuth, ErrDraining, ErrServer, ErrClosed, ErrSessionGone,
		io.EOF, io.ErrUnexpectedEOF, io.ErrClosedPipe, protocol.ErrLineTooLong,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// goodToken reports whether a granted token is usable: non-empty, no
// whitespace.
func goodToken(tok string) bool {
	return tok != "" && strings.IndexFunc(tok, unicode.IsSpace) < 0
}

// fuzzConnReplies runs the Conn half of FuzzClientReplies.
func fuzzConnReplies(t *testing.T, in []byte) {
	cli, srv := net.Pipe()
	c := newConn(cli, "fuzz")
	drained := make(chan struct{})
	go func() { // the server never reads requests: drop them
		defer close(drained)
		_, _ = io.Copy(io.Discard, srv)
	}()
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		_, _ = srv.Write(in) // returns once the client read it all, or closed
		srv.Close()
	}()
	defer func() {
		c.Close()
		<-wrote
		<-drained
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const key, tok = "k", "0123456789abcdef0123456789abcdef"
	calls := []func() (string, error){
		func() (string, error) { return "", c.Ping(ctx) },
		func() (string, error) { tk, _, err := c.Acquire(ctx, key, time.Second); return tk, err },
		func() (string, error) { return "", c.Release(ctx, key, tok) },
		func() (string, error) { _, err := c.Renew(ctx, key, tok); return "", err },
		func() (string, error) {
			st, tk, _, err := c.Enqueue(ctx, key)
			if err == nil && st != "acquired" && st != "queued" {
				t.Fatalf("Enqueue status %q", st)
			}
			if st == "queued" {
				tk = "queued"
			}
			return tk, err
		},
		func() (string, error) { tk, _, err := c.Wait(ctx, key, time.Second); return tk, err },
		func() (string, error) { tk, _, err := c.SemAcquire(ctx, key, 0, 3); return tk, err },
		func() (string, error) { _, err := c.Emit(ctx, "ch", "payload"); return "", err },
		func() (string, error) { _, err := c.Stats(ctx); return "", err },
		func() (string, error) { _, _, _, err := c.SemEnqueue(ctx, key, 2); return "", err },
		func() (string, error) { tk, _, err := c.SemWait(ctx, key, 0); return tk, err },
		func() (string, error) {
			s, err := c.Session(ctx, 20*time.Second)
			if err == nil && (!validSessionWord(s.ID, 1, maxSessionID) ||
				!validSessionWord(s.Secret, minSessionSecret, maxSessionSecret) || s.TTL < time.Second || s.TTL > 21*time.Second) {
				t.Fatalf("Session = %+v", s)
			}
			if strings.Contains(s.String(), s.Secret) && s.Secret != "" {
				t.Fatalf("Session.String() shows the secret: %s", s)
			}
			return "", err
		},
		func() (string, error) {
			held, queued, err := c.Resume(ctx, "0123456789abcdef", "0123456789abcdef0123456789abcdef")
			if err == nil && (held < 0 || queued < 0) {
				t.Fatalf("Resume = %d, %d", held, queued)
			}
			return "", err
		},
		func() (string, error) { return "", c.Bye(ctx) },
	}
	succeeded := 0
	for i := 0; ; i++ {
		if i > 4*len(calls)+bytes.Count(in, []byte{'\n'}) {
			t.Fatalf("%d calls and the connection is still open", i)
		}
		tk, err := calls[i%len(calls)]()
		if err != nil {
			if !knownError(err) {
				t.Fatalf("call %d: unclassified error %v", i, err)
			}
			if errors.Is(err, ErrInvalid) {
				t.Fatalf("call %d: valid arguments refused: %v", i, err)
			}
			if errors.Is(err, ErrClosed) {
				break
			}
			continue
		}
		succeeded++
		if tk != "" && !goodToken(tk) {
			t.Fatalf("call %d: granted token %q", i, tk)
		}
	}
	if lines := bytes.Count(in, []byte{'\n'}); succeeded > lines {
		t.Fatalf("%d calls succeeded on %d lines", succeeded, lines)
	}
}

// fuzzSignalReader runs the SignalConn half of FuzzClientReplies: the
// server end (accepted from ln) writes in and closes.
func fuzzSignalReader(t *testing.T, ln net.Listener, addr string, in []byte) {
	want, _ := referenceSignals(in)
	served := make(chan error, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		_, _ = nc.Write(in)
		served <- nc.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := NewSignalConn(ctx, addr, Options{}, WithHeartbeatInterval(0), WithSignalBuffer(len(want)+1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got []Signal
	timeout := time.After(10 * time.Second)
	for done := false; !done; {
		select {
		case sig, ok := <-s.Signals():
			if !ok {
				done = true
				break
			}
			got = append(got, sig)
		case <-timeout:
			t.Fatal("Signals not closed within 10s of the stream's end")
		}
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if err := s.Err(); err == nil || !knownError(err) {
		t.Fatalf("Err after the stream ended = %v; want a known error", err)
	}
	if d := s.DroppedSignals(); d != 0 {
		t.Fatalf("%d signals dropped with room for all", d)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d signals %q; want %d %q", len(got), got, len(want), want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("signal %d = %+v; want %+v", i, got[i], want[i])
		}
	}
}

// referenceSignals is the reader's contract, written from §4.4 without
// the client code: lines are LF-terminated, trailing CRs dropped; "sig "
// followed by a non-empty channel, a space and the payload verbatim is a
// push frame; any other valid response line answers a command, and with
// none in flight only one may wait; the reader stops at the first invalid
// line, the second unrequested answer, or the end of the stream (a final
// line without LF is not delivered). It returns the frames delivered
// before the stop and the number of lines read.
func referenceSignals(in []byte) ([]Signal, int) {
	var out []Signal
	answers, n := 0, 0
	for {
		i := bytes.IndexByte(in, '\n')
		if i < 0 {
			return out, n
		}
		line := bytes.TrimRight(in[:i], "\r")
		in = in[i+1:]
		n++
		if i > MaxResponseLine {
			return out, n
		}
		if rest, ok := bytes.CutPrefix(line, []byte("sig ")); ok {
			ch, payload, ok := bytes.Cut(rest, []byte{' '})
			if !ok || len(ch) == 0 {
				return out, n
			}
			out = append(out, Signal{Channel: string(ch), Payload: string(payload)})
			continue
		}
		var resp protocol.Response
		if protocol.ParseResponse(line, &resp) != nil {
			return out, n
		}
		if answers++; answers == 2 {
			return out, n
		}
	}
}
