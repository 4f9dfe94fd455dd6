package server

import (
	"strings"
	"testing"
)

// The bad-input table: malformed and hostile requests (§2.2, §6, the
// edge cases of §11 and what FuzzSession turned up), each with its exact
// raw bytes, the exact answer lines it gets and whether the connection
// stays open. TestBadInput runs the whole table over every transport of
// the conformance suite (tcp, tls, unix, quic). FuzzSession seeds its
// corpus from it.

// badTok is a well-formed token that no server ever granted.
const badTok = "0123456789abcdef0123456789abcdef"

// grantAny in a want line stands for any 32-hex-digit token.
const grantAny = "<token>"

// Whether the connection stays open after the row's answers.
const (
	stays  = true
	closes = false
)

// errorLine is the answer to one malformed request.
var errorLine = []string{"error"}

// badInputRow is one malformed request and the server's exact answer.
type badInputRow struct {
	name string
	raw  string   // sent as is, in one write
	want []string // answer lines in order; grantAny matches a token
	open bool     // a following ping is answered (else: closed)
}

var (
	longKey      = strings.Repeat("k", 257)
	maxPayload   = strings.Repeat("p", 65536-4-1-1) // channel "c": the frame is exactly 64 KiB
	overPayload  = maxPayload + "p"
	overLongLine = strings.Repeat("a", 64<<10+1)
)

var badInputRows = []badInputRow{
	// code 3: unknown command (edge 29)
	{"upper-case verb", "L\nk\n0\n", errorLine, stays},
	{"unknown verb", "lock\nk\n0\n", errorLine, stays},
	{"empty verb", "\nk\n0\n", errorLine, stays},
	{"verbs are case-sensitive", "PING\n_\n\n", errorLine, stays},
	{"leading space in verb", " l\nk\n0\n", errorLine, stays},
	{"trailing space in verb", "l \nk\n0\n", errorLine, stays},
	// code 5: bad key
	{"l: empty key", "l\n\n0\n", errorLine, stays},
	{"l: space in key", "l\na b\n0\n", errorLine, stays},
	{"tab in key", "l\na\tb\n0\n", errorLine, stays},
	{"CR inside key", "l\na\rb\n0\n", errorLine, stays},
	{"keys are not trimmed", "l\n k\n0\n", errorLine, stays},
	{"r: empty key", "r\n\n" + badTok + "\n", errorLine, stays},
	{"n: empty key", "n\n\n" + badTok + "\n", errorLine, stays},
	{"e: empty key", "e\n\n\n", errorLine, stays},
	{"w: empty key", "w\n\n1\n", errorLine, stays},
	{"sl: empty key", "sl\n\n0 2\n", errorLine, stays},
	{"sr: space in key", "sr\na b\n" + badTok + "\n", errorLine, stays},
	{"sn: empty key", "sn\n\n" + badTok + "\n", errorLine, stays},
	{"se: empty key", "se\n\n2\n", errorLine, stays},
	{"sw: empty key", "sw\n\n1\n", errorLine, stays},
	// code 4: not an integer (edge 25)
	{"timeout abc", "l\nk\nabc\n", errorLine, stays},
	{"fractional timeout", "l\nk\n1.5\n", errorLine, stays},
	{"hex timeout", "l\nk\n0x10\n", errorLine, stays},
	{"lease abc", "l\nk\n0 abc\n", errorLine, stays},
	{"bare sign", "l\nk\n+\n", errorLine, stays},
	{"limit x", "sl\nk\n0 x\n", errorLine, stays},
	{"e takes one integer", "e\nk\n30 junk\n", errorLine, stays},
	{"e lease abc", "e\nk\nabc\n", errorLine, stays},
	{"w timeout word", "w\nk\nsoon\n", errorLine, stays},
	{"n lease x", "n\nk\n" + badTok + " x\n", errorLine, stays},
	// code 6: bad timeout (edges 25, 26)
	{"negative timeout", "l\nk\n-1\n", errorLine, stays},
	{"timeout overflow", "l\nk\n9223372037\n", errorLine, stays},
	{"timeout beyond int64", "l\nk\n99999999999999999999\n", errorLine, stays},
	{"negative sl timeout", "sl\nk\n-1 2\n", errorLine, stays},
	{"sl timeout overflow", "sl\nk\n9223372037 2\n", errorLine, stays},
	{"negative w timeout", "w\nk\n-1\n", errorLine, stays},
	{"sw timeout overflow", "sw\nk\n9223372037\n", errorLine, stays},
	// code 7: empty token
	{"empty r token", "r\nk\n\n", errorLine, stays},
	{"blank r token", "r\nk\n  \t \n", errorLine, stays},
	{"empty sr token", "sr\nk\n\n", errorLine, stays},
	// code 8: field count
	{"l without timeout", "l\nk\n\n", errorLine, stays},
	{"l with three fields", "l\nk\n0 5 5\n", errorLine, stays},
	{"sl without limit", "sl\nk\n0\n", errorLine, stays},
	{"sl with four fields", "sl\nk\n0 2 5 5\n", errorLine, stays},
	{"n without token", "n\nk\n\n", errorLine, stays},
	{"n with three fields", "n\nk\n" + badTok + " 5 5\n", errorLine, stays},
	{"sn without token", "sn\nk\n  \n", errorLine, stays},
	{"se without limit", "se\nk\n\n", errorLine, stays},
	{"se with three fields", "se\nk\n2 5 5\n", errorLine, stays},
	{"w without timeout", "w\nk\n\n", errorLine, stays},
	{"w with two fields", "w\nk\n1 2\n", errorLine, stays},
	{"sw without timeout", "sw\nk\n \n", errorLine, stays},
	// code 9: bad lease (edges 25, 26)
	{"lease 0", "l\nk\n0 0\n", errorLine, stays},
	{"negative lease", "l\nk\n0 -5\n", errorLine, stays},
	{"lease overflow", "l\nk\n0 9223372037\n", errorLine, stays},
	{"e lease 0", "e\nk\n0\n", errorLine, stays},
	{"e lease overflow", "e\nk\n9223372037\n", errorLine, stays},
	{"n lease 0", "n\nk\n" + badTok + " 0\n", errorLine, stays},
	{"sn lease overflow", "sn\nk\n" + badTok + " 9223372037\n", errorLine, stays},
	{"sl lease 0", "sl\nk\n0 2 0\n", errorLine, stays},
	{"se negative lease", "se\nk\n2 -1\n", errorLine, stays},
	// code 13: bad limit (edge 24)
	{"sl limit 0", "sl\nk\n0 0\n", errorLine, stays},
	{"sl negative limit", "sl\nk\n0 -3\n", errorLine, stays},
	{"se limit 0", "se\nk\n0\n", errorLine, stays},
	{"se negative limit", "se\nk\n-1 5\n", errorLine, stays},
	// More from §2.2: signal, listen, unlisten, auth.
	{"signal: * in channel", "signal\na.*\nx\n", errorLine, stays},
	{"signal: > in channel", "signal\na>\nx\n", errorLine, stays},
	{"signal: empty channel", "signal\n\nx\n", errorLine, stays},
	{"signal: empty payload", "signal\nc\n\n", errorLine, stays},
	{"signal: blank payload", "signal\nc\n \t \n", errorLine, stays},
	{"signal: CR-only payload", "signal\nc\n\r\r\n", errorLine, stays},
	{"signal: payload one byte over the frame cap", "signal\nc\n" + overPayload + "\n", errorLine, stays},
	{"signal: payload at the frame cap", "signal\nc\n" + maxPayload + "\n", []string{"ok 0"}, stays},
	{"listen: > not last", "listen\na.>.b\n\n", errorLine, stays},
	{"listen: * inside a token", "listen\na.b*\n\n", errorLine, stays},
	{"listen: > inside a token", "listen\nx>\n\n", errorLine, stays},
	{"listen: empty pattern", "listen\n\ng\n", errorLine, stays},
	{"listen: space in pattern", "listen\na b\n\n", errorLine, stays},
	{"unlisten: > not last", "unlisten\na.>.b\n\n", errorLine, stays},
	{"unlisten: * inside a token", "unlisten\na.b*\n\n", errorLine, stays},
	{"auth: no token configured", "auth\n_\nsecret\n", errorLine, stays},
	// Semantic refusals of well-formed requests.
	{"r: token nobody holds", "r\nk\n" + badTok + "\n", errorLine, stays},
	{"n: token nobody holds", "n\nk\n" + badTok + "\n", errorLine, stays},
	{"r: token with an inner space", "r\nk\n 0123 4567 \n", errorLine, stays},
	{"w: nothing enqueued", "w\nk\n0\n", []string{"error_not_enqueued"}, stays},
	{"sw: nothing enqueued", "sw\nk\n5\n", []string{"error_not_enqueued"}, stays},
	{"e: twice on one connection", "e\nk\n\ne\nk\n\n", []string{"acquired " + grantAny + " 33", "error_already_enqueued"}, stays},
	{"sl: limit differs from the key's", "sl\ns\n0 2\nsl\ns\n0 3\n", []string{"ok " + grantAny + " 33", "error_limit_mismatch"}, stays},
	// Framing (§1): empty lines, NUL bytes, invalid UTF-8.
	{"three empty lines", "\n\n\n", errorLine, stays},
	{"NUL verb", "\x00\nk\n0\n", errorLine, stays},
	{"NUL after the verb", "l\x00\nk\n0\n", errorLine, stays},
	{"NUL in a timeout", "l\nk\n0\x00\n", errorLine, stays},
	{"NUL in a limit", "sl\nk\n0 2\x00\n", errorLine, stays},
	{"NUL in a key is a byte like any other", "l\nk\x00\n0 5\n", []string{"ok " + grantAny + " 5"}, stays},
	{"ping ignores NUL key and arg", "ping\n\x00\n\x00\n", []string{"ok"}, stays},
	{"invalid UTF-8 verb", "\xff\xfe\nk\n0\n", errorLine, stays},
	{"invalid UTF-8 timeout", "l\nk\n\xc3\x28\n", errorLine, stays},
	{"invalid UTF-8 after a timeout", "l\nk\n1\xc2\n", errorLine, stays},
	{"invalid UTF-8 key is passed through", "l\n\xff\xfe\n0 6\n", []string{"ok " + grantAny + " 6"}, stays},
	{"invalid UTF-8 payload is passed through", "signal\nc\n\xff\xfe\n", []string{"ok 0"}, stays},
	{"Unicode space separates fields", "l\nk\n0\u00a07\n", []string{"ok " + grantAny + " 7"}, stays},
	{"zero-width space is not a separator", "l\nk\n0\u200b7\n", errorLine, stays},
	{"CR line endings only", "ping\r_\r\rping\n_\n\n", errorLine, stays},
	// Oversized lines (§1, edge 27): error, then the connection closes.
	{"key of 257 bytes", "l\n" + longKey + "\n0\n", errorLine, closes},
	{"key of 256 bytes plus CR", "l\n" + longKey[1:] + "\r\n0\n", errorLine, closes},
	{"verb of 257 bytes", longKey + "\nk\n0\n", errorLine, closes},
	{"arg of 257 bytes", "l\nk\n0" + strings.Repeat(" ", 256) + "\n", errorLine, closes},
	{"ping key of 257 bytes", "ping\n" + longKey + "\n\n", errorLine, closes},
	{"auth arg over 64 KiB", "auth\n_\n" + overLongLine + "\n", errorLine, closes},
	{"signal arg over 64 KiB", "signal\nc\n" + overLongLine + "\n", errorLine, closes},
	{"auth key of 257 bytes", "auth\n" + longKey + "\nx\n", errorLine, closes},
	{"10 KiB line of NULs", "l\n" + strings.Repeat("\x00", 10<<10) + "\n0\n", errorLine, closes},
	{"oversized line after a good request", "ping\n_\n\nl\n" + longKey + "\n0\nping\n_\n\n", []string{"ok", "error"}, closes},
}

// TestBadInput sends every row of the table on a fresh connection, over
// every transport, and checks the exact answers and whether the
// connection is still served afterwards. When every connection is gone
// the engine holds nothing: malformed requests create no key, and the
// few well-formed rows' grants went with their connections.
func TestBadInput(t *testing.T) {
	if len(badInputRows) < 60 {
		t.Fatalf("bad-input table has %d rows; want at least 60", len(badInputRows))
	}
	for _, name := range []string{"tcp", "tls", "unix", "quic"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ts := serveConformance(t, name, Options{})
			for _, row := range badInputRows {
				c := ts.dial(t)
				c.Send(row.raw)
				for i, want := range row.want {
					got := c.ReadLine()
					if !answerMatches(got, want) {
						t.Fatalf("%s: answer %d = %q; want %q (request %.80q)", row.name, i, got, want, row.raw)
					}
				}
				if row.open {
					if got := c.Do("ping", "_", ""); got != "ok" {
						t.Fatalf("%s: ping after the answers = %q; want ok", row.name, got)
					}
				} else {
					c.ExpectClosed()
				}
				c.Conn.Close()
			}
			eventually(t, "all sessions gone", func() bool { return ts.Connections() == 0 })
			if busy(ts.Engine) {
				t.Fatalf("holders or waiters left: %+v", ts.Engine.Stats())
			}
		})
	}
}

// answerMatches compares an answer with a want line of the table.
func answerMatches(got, want string) bool {
	pre, post, ok := strings.Cut(want, grantAny)
	if !ok {
		return got == want
	}
	return grantRE.MatchString(got) && strings.HasPrefix(got, pre) && strings.HasSuffix(got, post) &&
		len(got) == len(pre)+32+len(post)
}
