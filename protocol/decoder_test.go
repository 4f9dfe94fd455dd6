package protocol

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

const sec = time.Second

// follow is appended after every table input: when the row's request was
// fully consumed, the next ReadRequest must decode exactly this ping.
const follow = "ping\n_\n\n"

type reqCase struct {
	rule string // the grammar rule the row exercises
	in   string
	want view  // expected request on success; on error only Cmd matters
	err  error // expected sentinel, nil for success
}

// requestCases is the argument-grammar table (§2.2): every rule, every
// parse error code, the caps and their boundaries.
func requestCases() []reqCase {
	maxPay := MaxPayload(1) // channel "c"
	return []reqCase{
		// --- key / pattern / channel ---
		{"key: plain", "l\njob\n5\n", view{Cmd: CmdLock, Key: "job", Timeout: 5 * sec}, nil},
		{"key: empty -> 5", "l\n\n5\n", view{Cmd: CmdLock}, ErrBadKey},
		{"key: space -> 5", "l\na b\n5\n", view{Cmd: CmdLock}, ErrBadKey},
		{"key: leading space -> 5 (keys are not trimmed)", "l\n job\n5\n", view{Cmd: CmdLock}, ErrBadKey},
		{"key: TAB -> 5", "l\na\tb\n5\n", view{Cmd: CmdLock}, ErrBadKey},
		{"key: inner CR -> 5", "l\na\rb\n5\n", view{Cmd: CmdLock}, ErrBadKey},
		{"key: trailing CRs stripped", "l\njob\r\r\n5\n", view{Cmd: CmdLock, Key: "job", Timeout: 5 * sec}, nil},
		{"key: only CR -> empty -> 5", "l\n\r\n5\n", view{Cmd: CmdLock}, ErrBadKey},
		{"key: dots colons unicode allowed", "l\na.b:c/ü€\n5\n", view{Cmd: CmdLock, Key: "a.b:c/ü€", Timeout: 5 * sec}, nil},
		{"key: VT, FF and NBSP are not in the forbidden set", "l\na\vb\fc\u00a0d\n5\n", view{Cmd: CmdLock, Key: "a\vb\fc\u00a0d", Timeout: 5 * sec}, nil},
		{"key: wildcards fine for l", "l\na.*.>\n5\n", view{Cmd: CmdLock, Key: "a.*.>", Timeout: 5 * sec}, nil},
		{"key: 256 bytes fits the cap", "l\n" + rep("k", 256) + "\n5\n", view{Cmd: CmdLock, Key: rep("k", 256), Timeout: 5 * sec}, nil},
		{"key: checked before args (bad key and bad timeout -> 5)", "l\n\nx\n", view{Cmd: CmdLock}, ErrBadKey},
		{"key: validated for every keyed verb (sr)", "sr\n\ntok\n", view{Cmd: CmdSemRelease}, ErrBadKey},
		{"key: validated for listen", "listen\na b\n\n", view{Cmd: CmdListen}, ErrBadKey},
		{"key: validated for unlisten", "unlisten\n\n\n", view{Cmd: CmdUnlisten}, ErrBadKey},

		// --- integers ---
		{"int: leading plus", "l\nk\n+5\n", view{Cmd: CmdLock, Key: "k", Timeout: 5 * sec}, nil},
		{"int: leading zeros", "l\nk\n007 0030\n", view{Cmd: CmdLock, Key: "k", Timeout: 7 * sec, TTL: 30 * sec}, nil},
		{"int: minus zero is zero", "l\nk\n-0\n", view{Cmd: CmdLock, Key: "k"}, nil},
		{"int: letters -> 4", "l\nk\nabc\n", view{Cmd: CmdLock}, ErrNotInteger},
		{"int: decimal -> 4", "l\nk\n1.5\n", view{Cmd: CmdLock}, ErrNotInteger},
		{"int: hex -> 4", "l\nk\n0x10\n", view{Cmd: CmdLock}, ErrNotInteger},
		{"int: underscore -> 4", "l\nk\n1_000\n", view{Cmd: CmdLock}, ErrNotInteger},
		{"int: sign only -> 4", "l\nk\n+\n", view{Cmd: CmdLock}, ErrNotInteger},
		{"int: double sign -> 4", "l\nk\n--1\n", view{Cmd: CmdLock}, ErrNotInteger},
		{"int: trailing junk -> 4", "l\nk\n5s\n", view{Cmd: CmdLock}, ErrNotInteger},
		{"int: int64 overflow -> 4", "l\nk\n9223372036854775808\n", view{Cmd: CmdLock}, ErrNotInteger},
		{"int: int64 underflow -> 4", "l\nk\n-9223372036854775809\n", view{Cmd: CmdLock}, ErrNotInteger},
		{"int: zero-width space is not whitespace -> 4", "l\nk\n5\u200b6\n", view{Cmd: CmdLock}, ErrNotInteger},
		{"fields: runs of whitespace", "l\nk\n \t 10 \t  60 \v\f\n", view{Cmd: CmdLock, Key: "k", Timeout: 10 * sec, TTL: 60 * sec}, nil},
		{"fields: unicode whitespace separates (NBSP, U+2003)", "l\nk\n10\u00a060\u2003\n", view{Cmd: CmdLock, Key: "k", Timeout: 10 * sec, TTL: 60 * sec}, nil},

		// --- timeout_s ---
		{"timeout: zero means try once", "l\nk\n0\n", view{Cmd: CmdLock, Key: "k"}, nil},
		{"timeout: negative -> 6", "l\nk\n-1\n", view{Cmd: CmdLock}, ErrBadTimeout},
		{"timeout: MaxSeconds ok", "l\nk\n9223372036\n", view{Cmd: CmdLock, Key: "k", Timeout: MaxSeconds * sec}, nil},
		{"timeout: MaxSeconds+1 -> 6", "l\nk\n9223372037\n", view{Cmd: CmdLock}, ErrBadTimeout},
		{"timeout: MaxInt64 -> 6", "l\nk\n9223372036854775807\n", view{Cmd: CmdLock}, ErrBadTimeout},
		{"timeout: MinInt64 -> 6", "l\nk\n-9223372036854775808\n", view{Cmd: CmdLock}, ErrBadTimeout},
		{"timeout: checked before lease (-1 0 -> 6)", "l\nk\n-1 0\n", view{Cmd: CmdLock}, ErrBadTimeout},

		// --- lease_ttl_s ---
		{"lease: 1 ok", "l\nk\n5 1\n", view{Cmd: CmdLock, Key: "k", Timeout: 5 * sec, TTL: sec}, nil},
		{"lease: zero -> 9", "l\nk\n5 0\n", view{Cmd: CmdLock}, ErrBadLease},
		{"lease: negative -> 9", "l\nk\n5 -5\n", view{Cmd: CmdLock}, ErrBadLease},
		{"lease: MaxSeconds ok", "l\nk\n5 9223372036\n", view{Cmd: CmdLock, Key: "k", Timeout: 5 * sec, TTL: MaxSeconds * sec}, nil},
		{"lease: MaxSeconds+1 -> 9", "l\nk\n5 9223372037\n", view{Cmd: CmdLock}, ErrBadLease},
		{"lease: not integer -> 4", "l\nk\n5 abc\n", view{Cmd: CmdLock}, ErrNotInteger},

		// --- l: 1 or 2 fields ---
		{"l: timeout only", "l\nk\n10\n", view{Cmd: CmdLock, Key: "k", Timeout: 10 * sec}, nil},
		{"l: timeout and lease", "l\nk\n10 60\n", view{Cmd: CmdLock, Key: "k", Timeout: 10 * sec, TTL: 60 * sec}, nil},
		{"l: empty arg -> 8", "l\nk\n\n", view{Cmd: CmdLock}, ErrArgCount},
		{"l: blank arg -> 8", "l\nk\n \t \n", view{Cmd: CmdLock}, ErrArgCount},
		{"l: three fields -> 8", "l\nk\n1 2 3\n", view{Cmd: CmdLock}, ErrArgCount},
		{"l: many fields -> 8", "l\nk\n1 2 3 4 5 6\n", view{Cmd: CmdLock}, ErrArgCount},
		{"l: count checked before values (a b c -> 8)", "l\nk\na b c\n", view{Cmd: CmdLock}, ErrArgCount},
		{"l: unicode-separated fields counted (4 -> 8)", "l\nk\n1\u00a02\u20003\u00854\n", view{Cmd: CmdLock}, ErrArgCount},
		{"sl: unicode-separated fields", "sl\nk\n\u00a01\u00a02\u00a03\u00a0\n", view{Cmd: CmdSemLock, Key: "k", Timeout: sec, Limit: 2, TTL: 3 * sec}, nil},

		// --- sl: 2 or 3 fields ---
		{"sl: timeout limit", "sl\npool\n10 3\n", view{Cmd: CmdSemLock, Key: "pool", Timeout: 10 * sec, Limit: 3}, nil},
		{"sl: timeout limit lease", "sl\npool\n10 3 60\n", view{Cmd: CmdSemLock, Key: "pool", Timeout: 10 * sec, Limit: 3, TTL: 60 * sec}, nil},
		{"sl: one field -> 8", "sl\npool\n10\n", view{Cmd: CmdSemLock}, ErrArgCount},
		{"sl: empty -> 8", "sl\npool\n\n", view{Cmd: CmdSemLock}, ErrArgCount},
		{"sl: four fields -> 8", "sl\npool\n1 2 3 4\n", view{Cmd: CmdSemLock}, ErrArgCount},
		{"sl: limit zero -> 13", "sl\npool\n10 0\n", view{Cmd: CmdSemLock}, ErrBadLimit},
		{"sl: limit negative -> 13", "sl\npool\n10 -3\n", view{Cmd: CmdSemLock}, ErrBadLimit},
		{"sl: limit not integer -> 4", "sl\npool\n10 x\n", view{Cmd: CmdSemLock}, ErrNotInteger},
		{"sl: limit overflow -> 4", "sl\npool\n10 99999999999999999999\n", view{Cmd: CmdSemLock}, ErrNotInteger},
		{"sl: negative timeout -> 6", "sl\npool\n-1 3\n", view{Cmd: CmdSemLock}, ErrBadTimeout},
		{"sl: zero lease -> 9", "sl\npool\n10 3 0\n", view{Cmd: CmdSemLock}, ErrBadLease},

		// --- r, sr: whole trimmed arg is the token ---
		{"r: token", "r\nk\nabc123\n", view{Cmd: CmdRelease, Key: "k", Token: "abc123"}, nil},
		{"r: surrounding whitespace trimmed", "r\nk\n \t abc123 \t \n", view{Cmd: CmdRelease, Key: "k", Token: "abc123"}, nil},
		{"r: inner spaces kept", "r\nk\n a b  c \n", view{Cmd: CmdRelease, Key: "k", Token: "a b  c"}, nil},
		{"r: unicode whitespace trimmed too", "r\nk\n\u00a0tok\u2003\u00a0\n", view{Cmd: CmdRelease, Key: "k", Token: "tok"}, nil},
		{"r: invalid UTF-8 is not whitespace", "r\nk\n\xfftok\xc2\n", view{Cmd: CmdRelease, Key: "k", Token: "\xfftok\xc2"}, nil},
		{"r: empty -> 7", "r\nk\n\n", view{Cmd: CmdRelease}, ErrEmptyToken},
		{"r: blank -> 7", "r\nk\n  \t\n", view{Cmd: CmdRelease}, ErrEmptyToken},
		{"sr: token", "sr\npool\ntok\n", view{Cmd: CmdSemRelease, Key: "pool", Token: "tok"}, nil},
		{"sr: empty -> 7", "sr\npool\n\n", view{Cmd: CmdSemRelease}, ErrEmptyToken},

		// --- n, sn: token [lease] ---
		{"n: token only (lease 0 = server default)", "n\nk\ntok\n", view{Cmd: CmdRenew, Key: "k", Token: "tok"}, nil},
		{"n: token and lease", "n\nk\ntok 45\n", view{Cmd: CmdRenew, Key: "k", Token: "tok", TTL: 45 * sec}, nil},
		{"n: whitespace around fields", "n\nk\n  tok \t 45  \n", view{Cmd: CmdRenew, Key: "k", Token: "tok", TTL: 45 * sec}, nil},
		{"n: empty arg -> 8", "n\nk\n\n", view{Cmd: CmdRenew}, ErrArgCount},
		{"n: blank arg -> 8", "n\nk\n   \n", view{Cmd: CmdRenew}, ErrArgCount},
		{"n: three fields -> 8", "n\nk\ntok 45 x\n", view{Cmd: CmdRenew}, ErrArgCount},
		{"n: lease not integer -> 4", "n\nk\ntok abc\n", view{Cmd: CmdRenew}, ErrNotInteger},
		{"n: lease zero -> 9", "n\nk\ntok 0\n", view{Cmd: CmdRenew}, ErrBadLease},
		{"sn: token and lease", "sn\npool\ntok 10\n", view{Cmd: CmdSemRenew, Key: "pool", Token: "tok", TTL: 10 * sec}, nil},
		{"sn: empty -> 8", "sn\npool\n\n", view{Cmd: CmdSemRenew}, ErrArgCount},

		// --- e: [lease], whole trimmed arg ---
		{"e: empty = default lease", "e\nk\n\n", view{Cmd: CmdEnqueue, Key: "k"}, nil},
		{"e: blank = default lease", "e\nk\n \t \n", view{Cmd: CmdEnqueue, Key: "k"}, nil},
		{"e: lease", "e\nk\n30\n", view{Cmd: CmdEnqueue, Key: "k", TTL: 30 * sec}, nil},
		{"e: lease trimmed", "e\nk\n  30  \n", view{Cmd: CmdEnqueue, Key: "k", TTL: 30 * sec}, nil},
		{"e: '30 junk' -> 4", "e\nk\n30 junk\n", view{Cmd: CmdEnqueue}, ErrNotInteger},
		{"e: '30 40' -> 4 (single integer, not a field count)", "e\nk\n30 40\n", view{Cmd: CmdEnqueue}, ErrNotInteger},
		{"e: zero -> 9", "e\nk\n0\n", view{Cmd: CmdEnqueue}, ErrBadLease},
		{"e: too large -> 9", "e\nk\n9223372037\n", view{Cmd: CmdEnqueue}, ErrBadLease},

		// --- se: limit [lease] ---
		{"se: limit", "se\npool\n3\n", view{Cmd: CmdSemEnqueue, Key: "pool", Limit: 3}, nil},
		{"se: limit lease", "se\npool\n3 60\n", view{Cmd: CmdSemEnqueue, Key: "pool", Limit: 3, TTL: 60 * sec}, nil},
		{"se: empty -> 8", "se\npool\n\n", view{Cmd: CmdSemEnqueue}, ErrArgCount},
		{"se: three fields -> 8", "se\npool\n3 60 1\n", view{Cmd: CmdSemEnqueue}, ErrArgCount},
		{"se: limit zero -> 13", "se\npool\n0\n", view{Cmd: CmdSemEnqueue}, ErrBadLimit},
		{"se: limit not integer -> 4", "se\npool\nx\n", view{Cmd: CmdSemEnqueue}, ErrNotInteger},
		{"se: lease zero -> 9", "se\npool\n3 0\n", view{Cmd: CmdSemEnqueue}, ErrBadLease},

		// --- w, sw: one timeout, whole trimmed arg ---
		{"w: timeout", "w\nk\n5\n", view{Cmd: CmdWait, Key: "k", Timeout: 5 * sec}, nil},
		{"w: zero (destructive poll)", "w\nk\n0\n", view{Cmd: CmdWait, Key: "k"}, nil},
		{"w: trimmed", "w\nk\n  5 \t\n", view{Cmd: CmdWait, Key: "k", Timeout: 5 * sec}, nil},
		{"w: empty -> 8", "w\nk\n\n", view{Cmd: CmdWait}, ErrArgCount},
		{"w: blank -> 8", "w\nk\n  \n", view{Cmd: CmdWait}, ErrArgCount},
		{"w: two fields -> 4", "w\nk\n5 6\n", view{Cmd: CmdWait}, ErrNotInteger},
		{"w: negative -> 6", "w\nk\n-1\n", view{Cmd: CmdWait}, ErrBadTimeout},
		{"w: too large -> 6", "w\nk\n9223372037\n", view{Cmd: CmdWait}, ErrBadTimeout},
		{"sw: timeout", "sw\npool\n7\n", view{Cmd: CmdSemWait, Key: "pool", Timeout: 7 * sec}, nil},
		{"sw: empty -> 8", "sw\npool\n\n", view{Cmd: CmdSemWait}, ErrArgCount},

		// --- listen, unlisten: trimmed group ---
		{"listen: no group", "listen\njobs.>\n\n", view{Cmd: CmdListen, Key: "jobs.>"}, nil},
		{"listen: blank group = no group", "listen\njobs.*\n  \n", view{Cmd: CmdListen, Key: "jobs.*"}, nil},
		{"listen: group", "listen\njobs.>\nworkers\n", view{Cmd: CmdListen, Key: "jobs.>", Group: "workers"}, nil},
		{"listen: group trimmed, inner spaces kept", "listen\njobs.>\n  my group \n", view{Cmd: CmdListen, Key: "jobs.>", Group: "my group"}, nil},
		{"listen: pattern syntax is not checked here", "listen\na.>.b\n\n", view{Cmd: CmdListen, Key: "a.>.b"}, nil},
		{"unlisten: group", "unlisten\n>\nw\n", view{Cmd: CmdUnlisten, Key: ">", Group: "w"}, nil},

		// --- signal ---
		{"signal: payload", "signal\njobs.new\nhello\n", view{Cmd: CmdSignal, Key: "jobs.new", Payload: "hello"}, nil},
		{"signal: payload not trimmed", "signal\nc\n  hello world \t\n", view{Cmd: CmdSignal, Key: "c", Payload: "  hello world \t"}, nil},
		{"signal: payload CRs stripped", "signal\nc\nhi\r\r\n", view{Cmd: CmdSignal, Key: "c", Payload: "hi"}, nil},
		{"signal: empty payload -> 8", "signal\nc\n\n", view{Cmd: CmdSignal}, ErrArgCount},
		{"signal: blank payload -> 8", "signal\nc\n \t \n", view{Cmd: CmdSignal}, ErrArgCount},
		{"signal: unicode-blank payload -> 8", "signal\nc\n\u00a0\u2003\n", view{Cmd: CmdSignal}, ErrArgCount},
		{"signal: '*' in channel -> 5", "signal\na.*\nhi\n", view{Cmd: CmdSignal}, ErrBadKey},
		{"signal: '>' in channel -> 5", "signal\na.>\nhi\n", view{Cmd: CmdSignal}, ErrBadKey},
		{"signal: embedded '*' -> 5", "signal\nab*c\nhi\n", view{Cmd: CmdSignal}, ErrBadKey},
		{"signal: bad key checked before payload", "signal\na b\n\n", view{Cmd: CmdSignal}, ErrBadKey},
		{"signal: payload 256 bytes", "signal\nc\n" + rep("p", 256) + "\n", view{Cmd: CmdSignal, Key: "c", Payload: rep("p", 256)}, nil},
		{"signal: payload 257 bytes (long cap)", "signal\nc\n" + rep("p", 257) + "\n", view{Cmd: CmdSignal, Key: "c", Payload: rep("p", 257)}, nil},
		{"signal: payload 5000 bytes (beyond read buffer)", "signal\nc\n" + rep("p", 5000) + "\n", view{Cmd: CmdSignal, Key: "c", Payload: rep("p", 5000)}, nil},
		{"signal: payload at MaxPayload", "signal\nc\n" + rep("p", maxPay) + "\n", view{Cmd: CmdSignal, Key: "c", Payload: rep("p", maxPay)}, nil},
		{"signal: payload MaxPayload+1 -> 8", "signal\nc\n" + rep("p", maxPay+1) + "\n", view{Cmd: CmdSignal}, ErrArgCount},
		{"signal: MaxPayload depends on channel length", "signal\ncc\n" + rep("p", maxPay) + "\n", view{Cmd: CmdSignal}, ErrArgCount},
		{"signal: payload line at 64 KiB cap -> 8", "signal\nc\n" + rep("p", MaxLongLine) + "\n", view{Cmd: CmdSignal}, ErrArgCount},
		{"signal: MaxPayload counts after CR strip", "signal\nc\n" + rep("p", maxPay) + "\r\r\n", view{Cmd: CmdSignal, Key: "c", Payload: rep("p", maxPay)}, nil},
		{"signal: 64 KiB+1 line -> 12", "signal\nc\n" + rep("p", MaxLongLine+1) + "\n", view{Cmd: CmdSignal}, ErrLineTooLong},
		{"signal: 64 KiB + CR -> 12 (CR counted)", "signal\nc\n" + rep("p", MaxLongLine) + "\r\n", view{Cmd: CmdSignal}, ErrLineTooLong},

		// --- auth ---
		{"auth: token, key ignored", "auth\n_\ns3cret\n", view{Cmd: CmdAuth, Token: "s3cret"}, nil},
		{"auth: token trimmed", "auth\n_\n  s3cret \t\n", view{Cmd: CmdAuth, Token: "s3cret"}, nil},
		{"auth: empty key and bad-looking key are fine", "auth\n a b \ns3cret\n", view{Cmd: CmdAuth, Token: "s3cret"}, nil},
		{"auth: empty token is not a parse error", "auth\n\n\n", view{Cmd: CmdAuth}, nil},
		{"auth: 64 KiB token", "auth\n_\n" + rep("t", MaxLongLine) + "\n", view{Cmd: CmdAuth, Token: rep("t", MaxLongLine)}, nil},
		{"auth: 64 KiB+1 -> 12", "auth\n_\n" + rep("t", MaxLongLine+1) + "\n", view{Cmd: CmdAuth}, ErrLineTooLong},

		// --- ping, stats ---
		{"ping: key and arg ignored", "ping\n\nwhatever you like\n", view{Cmd: CmdPing}, nil},
		{"ping: conventional form", "ping\n_\n_\n", view{Cmd: CmdPing}, nil},
		{"ping: arg still capped at 256", "ping\n_\n" + rep("x", 257) + "\n", view{Cmd: CmdPing}, ErrLineTooLong},
		{"stats: key and arg ignored", "stats\n a b \n1 2 3\n", view{Cmd: CmdStats}, nil},

		// --- inspect, name (dflockd extensions) ---
		{"inspect: empty arg is the lock namespace", "inspect\njob\n\n", view{Cmd: CmdInspect, Key: "job"}, nil},
		{"inspect: lock", "inspect\njob\n lock \n", view{Cmd: CmdInspect, Key: "job"}, nil},
		{"inspect: sem", "inspect\npool\nsem\n", view{Cmd: CmdInspect, Key: "pool", Sem: true}, nil},
		{"inspect: other word -> 8", "inspect\npool\nsemaphore\n", view{Cmd: CmdInspect}, ErrArgCount},
		{"inspect: two words -> 8", "inspect\npool\nsem lock\n", view{Cmd: CmdInspect}, ErrArgCount},
		{"inspect: key validated -> 5", "inspect\na b\n\n", view{Cmd: CmdInspect}, ErrBadKey},
		{"name: plain", "name\n_\nbackup-job-7\n", view{Cmd: CmdName, Name: "backup-job-7"}, nil},
		{"name: trimmed, inner spaces kept, key ignored", "name\n a b \n  backup job 7 \t\n", view{Cmd: CmdName, Name: "backup job 7"}, nil},
		{"name: 64 bytes", "name\n_\n" + rep("n", 64) + "\n", view{Cmd: CmdName, Name: rep("n", 64)}, nil},
		{"name: 65 bytes -> 14", "name\n_\n" + rep("n", 65) + "\n", view{Cmd: CmdName}, ErrBadName},
		{"name: empty -> 14", "name\n_\n \n", view{Cmd: CmdName}, ErrBadName},
		{"name: not ASCII -> 14", "name\n_\njob-\u00e9\n", view{Cmd: CmdName}, ErrBadName},
		{"name: control byte -> 14", "name\n_\na\x01b\n", view{Cmd: CmdName}, ErrBadName},

		// --- session, resume, bye (the session extension) ---
		{"session: no ttl, key ignored", "session\n\n\n", view{Cmd: CmdSession}, nil},
		{"session: ttl", "session\n_\n 30 \n", view{Cmd: CmdSession, TTL: 30 * sec}, nil},
		{"session: ttl 0 -> 9", "session\n_\n0\n", view{Cmd: CmdSession}, ErrBadLease},
		{"session: ttl not a number -> 4", "session\n_\nsoon\n", view{Cmd: CmdSession}, ErrNotInteger},
		{"session: two fields -> 4", "session\n_\n1 2\n", view{Cmd: CmdSession}, ErrNotInteger},
		{"resume: sid and secret", "resume\nab12\n ffee \n", view{Cmd: CmdResume, Key: "ab12", Token: "ffee"}, nil},
		{"resume: no secret -> 7", "resume\nab12\n\n", view{Cmd: CmdResume}, ErrEmptyToken},
		{"resume: sid validated as a key -> 5", "resume\na b\nffee\n", view{Cmd: CmdResume}, ErrBadKey},
		{"bye: key and arg ignored", "bye\nx\ny\n", view{Cmd: CmdBye}, nil},

		// --- cluster (the replicated mode) ---
		{"cluster: status", "cluster\n_\n\n", view{Cmd: CmdCluster}, nil},
		{"cluster: operation trimmed, key ignored", "cluster\na b\n  add n4 127.0.0.1:7004 \n", view{Cmd: CmdCluster, Op: "add n4 127.0.0.1:7004"}, nil},

		// --- unknown commands ---
		{"unknown: verb -> 3", "frob\nx\ny\n", view{}, ErrUnknownCommand},
		{"unknown: case-sensitive -> 3", "L\nk\n5\n", view{}, ErrUnknownCommand},
		{"unknown: trailing space not trimmed -> 3", "l \nk\n5\n", view{}, ErrUnknownCommand},
		{"unknown: leading space -> 3", " l\nk\n5\n", view{}, ErrUnknownCommand},
		{"unknown: empty command line -> 3", "\n\n\n", view{}, ErrUnknownCommand},
		{"unknown: key not validated", "frob\n\n\n", view{}, ErrUnknownCommand},
		{"unknown: redis-feats verbs do not exist", "incr\nk\n1\n", view{}, ErrUnknownCommand},
		{"unknown: arg capped at 256 -> 12", "frob\nx\n" + rep("y", 257) + "\n", view{}, ErrLineTooLong},
		{"unknown: 256-byte arg fine", "frob\nx\n" + rep("y", 256) + "\n", view{}, ErrUnknownCommand},
		{"command line: CRs stripped", "l\r\nk\n5\n", view{Cmd: CmdLock, Key: "k", Timeout: 5 * sec}, nil},

		// --- line caps (256, CR counted, LF not) ---
		{"cap: 256-byte arg ok", "l\nk\n5" + rep(" ", 255) + "\n", view{Cmd: CmdLock, Key: "k", Timeout: 5 * sec}, nil},
		{"cap: 257-byte arg -> 12", "l\nk\n5" + rep(" ", 256) + "\n", view{Cmd: CmdLock}, ErrLineTooLong},
		{"cap: 255 bytes + CR = 256 ok", "l\n" + rep("k", 255) + "\r\n5\n", view{Cmd: CmdLock, Key: rep("k", 255), Timeout: 5 * sec}, nil},
		{"cap: 256 bytes + CR = 257 -> 12", "l\n" + rep("k", 256) + "\r\n5\n", view{Cmd: CmdLock}, ErrLineTooLong},
		{"cap: 254 bytes + CRCR ok", "l\n" + rep("k", 254) + "\r\r\n5\n", view{Cmd: CmdLock, Key: rep("k", 254), Timeout: 5 * sec}, nil},
		{"cap: 257-byte key -> 12", "l\n" + rep("k", 257) + "\n5\n", view{Cmd: CmdLock}, ErrLineTooLong},
		{"cap: 5000-byte key (beyond read buffer) -> 12", "l\n" + rep("k", 5000) + "\n5\n", view{Cmd: CmdLock}, ErrLineTooLong},
		{"cap: 257-byte command line -> 12", rep("l", 257) + "\nk\n5\n", view{}, ErrLineTooLong},
		{"cap: 256-byte command line is just unknown", rep("l", 256) + "\nk\n5\n", view{}, ErrUnknownCommand},
		{"cap: key line is 256 even for signal", "signal\n" + rep("c", 257) + "\nhi\n", view{Cmd: CmdSignal}, ErrLineTooLong},
		{"cap: listen group line is 256", "listen\na\n" + rep("g", 257) + "\n", view{Cmd: CmdListen}, ErrLineTooLong},
		{"cap: listen group 256 ok", "listen\na\n" + rep("g", 256) + "\n", view{Cmd: CmdListen, Key: "a", Group: rep("g", 256)}, nil},
		{"cap: r token line is 256", "r\nk\n" + rep("t", 257) + "\n", view{Cmd: CmdRelease}, ErrLineTooLong},
	}
}

// decodeOne runs ReadRequest once on in and returns the request view and
// the error.
func decodeOne(t *testing.T, d *Decoder) (view, error) {
	t.Helper()
	var req Request
	err := d.ReadRequest(&req)
	return viewOf(&req), err
}

func checkCase(t *testing.T, tc reqCase, in string, d *Decoder) {
	t.Helper()
	got, err := decodeOne(t, d)
	if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
		t.Fatalf("%s: input %q: err = %v, want %v", tc.rule, short(in), err, tc.err)
	}
	want := tc.want
	want.KeyNil = want.Key == ""
	if got != want {
		t.Fatalf("%s: input %q:\n got  %+v\n want %+v", tc.rule, short(in), shortView(got), shortView(want))
	}
	var perr *Error
	if errors.As(err, &perr) && perr.Fatal() {
		return // the rest of the request is deliberately left unread
	}
	// The whole request must have been consumed: the follow-up ping decodes.
	next, err := decodeOne(t, d)
	if err != nil || next != (view{Cmd: CmdPing, KeyNil: true}) {
		t.Fatalf("%s: request not fully consumed: next = %+v, %v", tc.rule, next, err)
	}
	if _, err := decodeOne(t, d); err != io.EOF {
		t.Fatalf("%s: want io.EOF at the end, got %v", tc.rule, err)
	}
}

func shortView(v view) view {
	v.Key, v.Token, v.Group, v.Payload = short(v.Key), short(v.Token), short(v.Group), short(v.Payload)
	return v
}

func TestReadRequestGrammar(t *testing.T) {
	for _, tc := range requestCases() {
		t.Run(tc.rule, func(t *testing.T) {
			in := tc.in + follow
			checkCase(t, tc, in, NewDecoder(strings.NewReader(in)))
		})
	}
}

// TestReadRequestSlowReaders decodes the table through readers that return
// one byte, or half of what was asked, per Read, and through a 16-byte read
// buffer: line assembly must not depend on how the stream is chunked.
func TestReadRequestSlowReaders(t *testing.T) {
	for _, tc := range requestCases() {
		t.Run(tc.rule, func(t *testing.T) {
			in := tc.in + follow
			if len(tc.in) < 8000 { // keep the one-byte reader fast
				checkCase(t, tc, in, NewDecoder(iotest.OneByteReader(strings.NewReader(in))))
			}
			checkCase(t, tc, in, NewDecoder(iotest.HalfReader(strings.NewReader(in))))
			checkCase(t, tc, in, newDecoderSize(strings.NewReader(in), 16))
		})
	}
}

// TestReadRequestCRLF: every request terminated with CRLF behaves exactly
// like its LF twin (rows whose lines sit at a cap boundary are skipped,
// since the CR counts toward the cap).
func TestReadRequestCRLF(t *testing.T) {
	for _, tc := range requestCases() {
		longest := 0
		for _, l := range strings.Split(tc.in, "\n") {
			longest = max(longest, len(l))
		}
		if longest > 200 {
			continue
		}
		t.Run(tc.rule, func(t *testing.T) {
			in := toCRLF(tc.in + follow)
			checkCase(t, tc, in, NewDecoder(strings.NewReader(in)))
		})
	}
}

func TestReadRequestEveryErrorCode(t *testing.T) {
	// One minimal trigger per parse error code; all but 12 keep the
	// connection usable.
	tests := []struct {
		in    string
		code  int
		fatal bool
	}{
		{"nope\nk\n\n", 3, false},
		{"l\nk\nx\n", 4, false},
		{"l\n\n1\n", 5, false},
		{"l\nk\n-1\n", 6, false},
		{"r\nk\n\n", 7, false},
		{"l\nk\n\n", 8, false},
		{"l\nk\n1 0\n", 9, false},
		{rep("x", 300) + "\n", 12, true},
		{"sl\nk\n1 0\n", 13, false},
	}
	for _, tt := range tests {
		var req Request
		err := NewDecoder(strings.NewReader(tt.in)).ReadRequest(&req)
		var perr *Error
		if !errors.As(err, &perr) {
			t.Fatalf("%q: err = %v, want *Error", tt.in, err)
		}
		if perr.Code != tt.code || perr.Fatal() != tt.fatal {
			t.Errorf("%q: code %d fatal %v, want %d %v", short(tt.in), perr.Code, perr.Fatal(), tt.code, tt.fatal)
		}
		if !strings.HasPrefix(perr.Error(), "protocol: ") {
			t.Errorf("message %q lacks the package prefix", perr.Error())
		}
	}
	if !(&Error{Code: 10}).Fatal() {
		t.Error("code 10 (read timeout) must be fatal")
	}
}

func TestReadRequestOversizedLineDrain(t *testing.T) {
	// After ErrLineTooLong the decoder stands right after the drained line;
	// the rest of that request is not read.
	for _, n := range []int{257, 4095, 4096, 4097, 10000, 200000} {
		in := "l\n" + rep("k", n) + "\n5\n" + follow
		d := NewDecoder(strings.NewReader(in))
		var req Request
		if err := d.ReadRequest(&req); err != ErrLineTooLong {
			t.Fatalf("n=%d: err = %v", n, err)
		}
		if req.Cmd != CmdLock {
			t.Fatalf("n=%d: Cmd = %v, want l", n, req.Cmd)
		}
		// The next "request" starts at "5\n": an unknown command whose key
		// and arg lines are "ping" and "_".
		if err := d.ReadRequest(&req); err != ErrUnknownCommand {
			t.Fatalf("n=%d: after drain: err = %v", n, err)
		}
		line, err := d.ReadLine(0)
		if err != nil || string(line) != "" {
			t.Fatalf("n=%d: remaining line %q, %v", n, line, err)
		}
	}
}

func TestReadRequestOversizedThenEOF(t *testing.T) {
	for _, in := range []string{
		rep("x", 257),
		rep("x", 5000),
		"l\n" + rep("k", 257),
		"signal\nc\n" + rep("p", MaxLongLine+1),
		"signal\nc\n" + rep("p", MaxLongLine+10000),
	} {
		var req Request
		if err := NewDecoder(strings.NewReader(in)).ReadRequest(&req); err != ErrLineTooLong {
			t.Errorf("%q: err = %v, want ErrLineTooLong", short(in), err)
		}
	}
}

func TestReadRequestEOF(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"clean EOF before any byte", "", io.EOF},
		{"EOF inside the command line", "l", io.ErrUnexpectedEOF},
		{"EOF after the command line", "l\n", io.ErrUnexpectedEOF},
		{"EOF inside the key line", "l\nke", io.ErrUnexpectedEOF},
		{"EOF after the key line", "l\nk\n", io.ErrUnexpectedEOF},
		{"EOF inside the arg line", "l\nk\n5", io.ErrUnexpectedEOF},
		{"EOF inside a long arg line", "signal\nc\n" + rep("p", 9000), io.ErrUnexpectedEOF},
		{"EOF after a lone CR", "\r", io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req Request
			err := NewDecoder(strings.NewReader(tt.in)).ReadRequest(&req)
			if err != tt.want {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}

	// After a complete request, a clean EOF satisfies errors.Is(err, io.EOF).
	d := NewDecoder(strings.NewReader("ping\n_\n\n"))
	var req Request
	if err := d.ReadRequest(&req); err != nil {
		t.Fatal(err)
	}
	if err := d.ReadRequest(&req); !errors.Is(err, io.EOF) {
		t.Fatalf("err = %v, want io.EOF", err)
	}
}

func TestReadRequestReadError(t *testing.T) {
	boom := errors.New("boom")
	for _, prefix := range []string{"", "l", "l\n", "l\nk\n5"} {
		r := io.MultiReader(strings.NewReader(prefix), iotest.ErrReader(boom))
		var req Request
		if err := NewDecoder(r).ReadRequest(&req); !errors.Is(err, boom) {
			t.Errorf("prefix %q: err = %v, want boom", prefix, err)
		}
	}
	// A timeout (or any error other than EOF) inside a line is passed
	// through as is, not turned into io.ErrUnexpectedEOF.
	r := iotest.TimeoutReader(strings.NewReader("p"))
	d := NewDecoder(iotest.OneByteReader(r))
	if _, err := d.ReadLine(0); err != iotest.ErrTimeout {
		t.Fatalf("err = %v, want iotest.ErrTimeout", err)
	}
}

func TestReadRequestPipelined(t *testing.T) {
	in := "l\njob\n10 30\n" +
		"frob\nx\ny\n" +
		"r\r\njob\r\ntok1\r\n" +
		"sl\npool\n0 3\n" +
		"l\njob\n-1\n" +
		"signal\nev.a\n payload \n" +
		"e\njob\n\n" +
		"w\njob\n5\n" +
		"ping\n_\n\n"
	want := []struct {
		v   view
		err error
	}{
		{view{Cmd: CmdLock, Key: "job", Timeout: 10 * sec, TTL: 30 * sec}, nil},
		{view{KeyNil: true}, ErrUnknownCommand},
		{view{Cmd: CmdRelease, Key: "job", Token: "tok1"}, nil},
		{view{Cmd: CmdSemLock, Key: "pool", Limit: 3}, nil},
		{view{Cmd: CmdLock, KeyNil: true}, ErrBadTimeout},
		{view{Cmd: CmdSignal, Key: "ev.a", Payload: " payload "}, nil},
		{view{Cmd: CmdEnqueue, Key: "job"}, nil},
		{view{Cmd: CmdWait, Key: "job", Timeout: 5 * sec}, nil},
		{view{Cmd: CmdPing, KeyNil: true}, nil},
	}
	d := NewDecoder(strings.NewReader(in))
	if d.Buffered() != 0 {
		t.Fatalf("Buffered before reading = %d", d.Buffered())
	}
	var req Request
	for i, w := range want {
		err := d.ReadRequest(&req)
		if err != w.err {
			t.Fatalf("request %d: err = %v, want %v", i, err, w.err)
		}
		if got := viewOf(&req); got != w.v {
			t.Fatalf("request %d:\n got  %+v\n want %+v", i, got, w.v)
		}
		if i == 0 && d.Buffered() != len(in)-len("l\njob\n10 30\n") {
			t.Fatalf("Buffered after first request = %d", d.Buffered())
		}
	}
	if d.Buffered() != 0 {
		t.Fatalf("Buffered at end = %d", d.Buffered())
	}
	if err := d.ReadRequest(&req); err != io.EOF {
		t.Fatalf("err = %v, want io.EOF", err)
	}
}

// TestReadRequestReset: no field of a previous request survives into the
// next one, successful or not.
func TestReadRequestReset(t *testing.T) {
	in := "sl\npool\n10 3 60\n" + // sets Key Timeout Limit TTL
		"r\nk\ntok\n" + // sets Token only
		"listen\np\ngrp\n" + // sets Group
		"signal\nc\npay\n" + // sets Payload
		"ping\n_\n\n" + // nothing
		"n\nk\ntok 0\n" // error: everything but Cmd zero
	want := []view{
		{Cmd: CmdSemLock, Key: "pool", Timeout: 10 * sec, Limit: 3, TTL: 60 * sec},
		{Cmd: CmdRelease, Key: "k", Token: "tok"},
		{Cmd: CmdListen, Key: "p", Group: "grp"},
		{Cmd: CmdSignal, Key: "c", Payload: "pay"},
		{Cmd: CmdPing, KeyNil: true},
		{Cmd: CmdRenew, KeyNil: true},
	}
	d := NewDecoder(strings.NewReader(in))
	req := Request{Token: []byte("stale"), Limit: 99}
	for i, w := range want {
		_ = d.ReadRequest(&req)
		if got := viewOf(&req); got != w {
			t.Fatalf("request %d:\n got  %+v\n want %+v", i, got, w)
		}
	}
}

// chunkReader returns one chunk per Read (as much of it as fits).
type chunkReader struct{ chunks []string }

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; c.chunks[0] == "" {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

// TestRequestFieldsStable: Key and the arg fields stay intact when reading
// a later line of the same request refills the read buffer over the bytes
// the earlier line was read from.
func TestRequestFieldsStable(t *testing.T) {
	key := rep("k", 250)
	for _, tc := range []struct {
		cmd, arg string
		check    func(*Request) bool
	}{
		{"r", rep("t", 250), func(r *Request) bool { return string(r.Token) == rep("t", 250) }},
		{"signal", rep("p", 250), func(r *Request) bool { return string(r.Payload) == rep("p", 250) }},
		{"listen", rep("g", 250), func(r *Request) bool { return string(r.Group) == rep("g", 250) }},
	} {
		// Chunk 1 ends exactly after the key line; chunk 2 (the arg line and
		// a long tail) overwrites the whole read buffer when it arrives.
		chunk1 := "r\n" + key + "\n"
		chunk1 = rep("ping\n_\n\n", (ReadBufferSize-len(chunk1))/9) + tc.cmd + "\n" + key + "\n"
		chunk2 := tc.arg + "\n" + rep("ping\n_\n\n", 1000)
		d := NewDecoder(&chunkReader{chunks: []string{chunk1, chunk2}})
		var req Request
		for req.Cmd != ParseCommand([]byte(tc.cmd)) {
			if err := d.ReadRequest(&req); err != nil {
				t.Fatal(err)
			}
		}
		if string(req.Key) != key || !tc.check(&req) {
			t.Fatalf("%s: fields corrupted: %+v", tc.cmd, shortView(viewOf(&req)))
		}
	}
}

func TestReadLine(t *testing.T) {
	big := rep("j", 300000)
	in := "ok\n" + "timeout\r\n" + "\n" + "ok " + big + "\n" + rep("x", 300) + "\n" + "tail"
	d := NewDecoder(strings.NewReader(in))
	for i, want := range []string{"ok", "timeout", "", "ok " + big} {
		line, err := d.ReadLine(1 << 20)
		if err != nil || string(line) != want {
			t.Fatalf("line %d: %q, %v", i, short(string(line)), err)
		}
	}
	if _, err := d.ReadLine(0); err != ErrLineTooLong { // max <= 0 means MaxLine
		t.Fatalf("want ErrLineTooLong, got %v", err)
	}
	if _, err := d.ReadLine(10); err != io.ErrUnexpectedEOF {
		t.Fatalf("want io.ErrUnexpectedEOF, got %v", err)
	}
	if _, err := d.ReadLine(10); err != io.EOF {
		t.Fatalf("want io.EOF, got %v", err)
	}

	// Exact boundaries for an arbitrary max.
	for _, tt := range []struct {
		line string
		max  int
		ok   bool
	}{
		{rep("a", 10), 10, true},
		{rep("a", 11), 10, false},
		{rep("a", 9) + "\r", 10, true},
		{rep("a", 10) + "\r", 10, false},
		{rep("a", 5000), 5000, true},
		{rep("a", 5001), 5000, false},
		{rep("a", 4999) + "\r", 5000, true},
		{rep("a", 5000) + "\r", 5000, false},
	} {
		d := NewDecoder(strings.NewReader(tt.line + "\nnext\n"))
		line, err := d.ReadLine(tt.max)
		if tt.ok != (err == nil) {
			t.Fatalf("len %d max %d: err = %v", len(tt.line), tt.max, err)
		}
		if tt.ok && string(line) != strings.TrimRight(tt.line, "\r") {
			t.Fatalf("len %d max %d: wrong line", len(tt.line), tt.max)
		}
		if next, err := d.ReadLine(0); err != nil || string(next) != "next" {
			t.Fatalf("len %d max %d: next line %q, %v", len(tt.line), tt.max, next, err)
		}
	}
}

func TestLineHook(t *testing.T) {
	// With a stream that delivers one byte per Read, the hook runs exactly
	// once per line: a per-line deadline, not a per-Read one.
	in := "l\nk\n5\n" + "r\nk\ntok\n"
	calls := 0
	d := NewDecoder(iotest.OneByteReader(strings.NewReader(in)))
	d.SetLineHook(func() { calls++ })
	var req Request
	for range 2 {
		if err := d.ReadRequest(&req); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 6 {
		t.Fatalf("hook calls = %d, want 6", calls)
	}

	// With everything already buffered, lines need no read and no hook.
	calls = 0
	d = NewDecoder(strings.NewReader(in))
	d.SetLineHook(func() { calls++ })
	for range 2 {
		if err := d.ReadRequest(&req); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 1 { // only the first fill
		t.Fatalf("hook calls = %d, want 1", calls)
	}

	// Reset keeps the hook; nil removes it.
	d.Reset(strings.NewReader(in))
	if err := d.ReadRequest(&req); err != nil || req.Cmd != CmdLock {
		t.Fatalf("after Reset: %v %v", req.Cmd, err)
	}
	if calls != 2 {
		t.Fatalf("hook calls after Reset = %d, want 2", calls)
	}
	d.SetLineHook(nil)
	d.Reset(strings.NewReader(in))
	if err := d.ReadRequest(&req); err != nil || calls != 2 {
		t.Fatalf("nil hook: calls = %d, err = %v", calls, err)
	}
}

func TestParseCommand(t *testing.T) {
	for c := CmdUnknown + 1; int(c) < numCommands; c++ {
		if got := ParseCommand([]byte(c.String())); got != c {
			t.Errorf("ParseCommand(%q) = %v", c.String(), got)
		}
	}
	for _, s := range []string{"", "unknown", "L", "Auth", "lock", " l", "l ", "l\r", "sig", "ok", "s", "listenx"} {
		if got := ParseCommand([]byte(s)); got != CmdUnknown {
			t.Errorf("ParseCommand(%q) = %v, want CmdUnknown", s, got)
		}
	}
	if CmdUnknown.String() != "unknown" || Command(200).String() != "Command(200)" {
		t.Errorf("String of non-verbs: %q %q", CmdUnknown.String(), Command(200).String())
	}
	want := map[Command]string{
		CmdAuth: "auth", CmdLock: "l", CmdRelease: "r", CmdRenew: "n", CmdEnqueue: "e", CmdWait: "w",
		CmdSemLock: "sl", CmdSemRelease: "sr", CmdSemRenew: "sn", CmdSemEnqueue: "se", CmdSemWait: "sw",
		CmdListen: "listen", CmdUnlisten: "unlisten", CmdSignal: "signal", CmdPing: "ping", CmdStats: "stats",
		CmdInspect: "inspect", CmdName: "name", CmdSession: "session", CmdResume: "resume", CmdBye: "bye", CmdCluster: "cluster",
	}
	if len(want) != numCommands-1 {
		t.Fatalf("table covers %d verbs, have %d", len(want), numCommands-1)
	}
	for c, s := range want {
		if c.String() != s {
			t.Errorf("%d.String() = %q, want %q", c, c.String(), s)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = ParseCommand([]byte("unlisten")) }); n != 0 {
		t.Errorf("ParseCommand allocates %v", n)
	}
}

// TestRoundTrip: AppendRequest produces bytes that ReadRequest decodes
// back, for every verb.
func TestRoundTrip(t *testing.T) {
	tests := []struct {
		cmd      Command
		key, arg string
		want     view
	}{
		{CmdAuth, "_", "s3cret", view{Cmd: CmdAuth, Token: "s3cret"}},
		{CmdLock, "job", "10 60", view{Cmd: CmdLock, Key: "job", Timeout: 10 * sec, TTL: 60 * sec}},
		{CmdRelease, "job", "0123456789abcdef0123456789abcdef", view{Cmd: CmdRelease, Key: "job", Token: "0123456789abcdef0123456789abcdef"}},
		{CmdRenew, "job", "tok 45", view{Cmd: CmdRenew, Key: "job", Token: "tok", TTL: 45 * sec}},
		{CmdEnqueue, "job", "", view{Cmd: CmdEnqueue, Key: "job"}},
		{CmdWait, "job", "5", view{Cmd: CmdWait, Key: "job", Timeout: 5 * sec}},
		{CmdSemLock, "pool", "10 3", view{Cmd: CmdSemLock, Key: "pool", Timeout: 10 * sec, Limit: 3}},
		{CmdSemRelease, "pool", "tok", view{Cmd: CmdSemRelease, Key: "pool", Token: "tok"}},
		{CmdSemRenew, "pool", "tok", view{Cmd: CmdSemRenew, Key: "pool", Token: "tok"}},
		{CmdSemEnqueue, "pool", "3 60", view{Cmd: CmdSemEnqueue, Key: "pool", Limit: 3, TTL: 60 * sec}},
		{CmdSemWait, "pool", "0", view{Cmd: CmdSemWait, Key: "pool"}},
		{CmdListen, "jobs.>", "workers", view{Cmd: CmdListen, Key: "jobs.>", Group: "workers"}},
		{CmdUnlisten, "jobs.>", "", view{Cmd: CmdUnlisten, Key: "jobs.>"}},
		{CmdSignal, "jobs.new", " hello world ", view{Cmd: CmdSignal, Key: "jobs.new", Payload: " hello world "}},
		{CmdPing, "_", "", view{Cmd: CmdPing}},
		{CmdStats, "_", "", view{Cmd: CmdStats}},
		{CmdInspect, "pool", "sem", view{Cmd: CmdInspect, Key: "pool", Sem: true}},
		{CmdName, "_", "backup-job-7", view{Cmd: CmdName, Name: "backup-job-7"}},
		{CmdSession, "_", "30", view{Cmd: CmdSession, TTL: 30 * sec}},
		{CmdResume, "0123456789abcdef", "00112233445566778899aabbccddeeff", view{Cmd: CmdResume, Key: "0123456789abcdef", Token: "00112233445566778899aabbccddeeff"}},
		{CmdBye, "_", "", view{Cmd: CmdBye}},
		{CmdCluster, "_", "transfer n2", view{Cmd: CmdCluster, Op: "transfer n2"}},
	}
	var buf []byte
	for _, tt := range tests {
		buf = AppendRequest(buf, tt.cmd, tt.key, tt.arg)
	}
	d := NewDecoder(bytes.NewReader(buf))
	var req Request
	for _, tt := range tests {
		if err := d.ReadRequest(&req); err != nil {
			t.Fatalf("%v: %v", tt.cmd, err)
		}
		want := tt.want
		want.KeyNil = want.Key == ""
		if got := viewOf(&req); got != want {
			t.Fatalf("%v:\n got  %+v\n want %+v", tt.cmd, got, want)
		}
	}
	if got := string(AppendRequest([]byte("x"), CmdLock, "k", "5")); got != "xl\nk\n5\n" {
		t.Fatalf("AppendRequest = %q", got)
	}
}

func TestKeyHelpers(t *testing.T) {
	for _, tt := range []struct {
		s           string
		key, chanOK bool
	}{
		{"a", true, true},
		{"a.b.c", true, true},
		{"a.*", true, false},
		{"a.>", true, false},
		{"", false, false},
		{"a b", false, false},
		{"a\tb", false, false},
		{"a\rb", false, false},
		{"a\nb", false, false},
		{rep("k", 256), true, true},
		{rep("k", 257), false, false},
	} {
		if ValidKey(tt.s) != tt.key || ValidChannel(tt.s) != tt.chanOK {
			t.Errorf("%q: ValidKey %v ValidChannel %v", short(tt.s), ValidKey(tt.s), ValidChannel(tt.s))
		}
	}
	if MaxPayload(1) != 65530 {
		t.Errorf("MaxPayload(1) = %d", MaxPayload(1))
	}
}

func TestParseInt(t *testing.T) {
	for _, s := range []string{
		"0", "-0", "+0", "7", "+7", "-7", "007", "9223372036854775807", "-9223372036854775808",
		"9223372036854775808", "-9223372036854775809", "99999999999999999999", "", "+", "-",
		"1a", "a1", " 1", "1 ", "0x1", "1_0", "١", "+-1", "18446744073709551615", "18446744073709551616",
	} {
		want, werr := strconvParseInt(s)
		got, ok := parseInt([]byte(s))
		if ok != (werr == nil) || (ok && got != want) {
			t.Errorf("parseInt(%q) = %d, %v; strconv: %d, %v", s, got, ok, want, werr)
		}
	}
}

// allocCases are requests of every kind whose decoding must not allocate.
var allocCases = []struct {
	name, in string
}{
	{"l", "l\nsome-lock-key\n10 30\n"},
	{"r", "r\nsome-lock-key\n0123456789abcdef0123456789abcdef\n"},
	{"sl", "sl\nsome-sem-key\n10 3 30\n"},
	{"n", "n\nsome-lock-key\n0123456789abcdef0123456789abcdef 30\n"},
	{"e", "e\nk\n30\n"},
	{"w", "w\nk\n5\n"},
	{"listen", "listen\njobs.>\nworkers\n"},
	{"signal", "signal\njobs.new\nhello world\n"},
	{"signal-long", "signal\njobs.new\n" + rep("p", 20000) + "\n"},
	{"auth", "auth\n_\ns3cret\n"},
	{"crlf", "l\r\nk\r\n10\r\n"},
	{"parse-error", "l\nk\nabc\n"},
	{"unknown", "frob\nx\ny\n"},
}

func TestReadRequestNoAllocs(t *testing.T) {
	for _, tc := range allocCases {
		d := NewDecoder(&repeatReader{data: []byte(tc.in)})
		var req Request
		_ = d.ReadRequest(&req) // warm up: grows the long-line buffer once
		n := testing.AllocsPerRun(1000, func() {
			err := d.ReadRequest(&req)
			if err != nil && tc.name != "parse-error" && tc.name != "unknown" {
				panic(err)
			}
		})
		if n != 0 {
			t.Errorf("%s: %v allocs per ReadRequest, want 0", tc.name, n)
		}
	}
}
