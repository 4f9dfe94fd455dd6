// Package protocol is the wire codec of dflockd: it turns bytes into typed
// requests and responses and back, for the line protocol of dflockd 1.x
// (v1.16.1 rules). It knows nothing about sockets, deadlines or lock state;
// the full specification, including semantics, lives in docs/protocol.md.
//
// # Framing
//
// A request is exactly three LF-terminated lines:
//
//	<command>\n<key>\n<arg>\n
//
// After a line is read all trailing CRs are removed, so CRLF clients work.
// Every line is capped at MaxLine (256) bytes, counting CRs but not the LF;
// the arg line of signal and auth is capped at MaxLongLine (65536) bytes. A
// longer line is drained to its LF and yields ErrLineTooLong, after which the
// server answers "error" and closes. All three lines are read before the
// command is looked at, so even an unknown command consumes three lines.
//
// A response is one LF-terminated line, in request order. The server may in
// addition push "sig <channel> <payload>\n" frames at any time between
// responses; no response starts with "sig ".
//
// # Argument grammar
//
// The key line of every command except auth, ping and stats is a key,
// pattern or channel: non-empty, no space, TAB, CR or LF (ErrBadKey). Numeric
// fields are split from the arg line on runs of Unicode whitespace and are
// base-10 integers with an optional sign (ErrNotInteger). Timeouts are in
// [0, MaxSeconds] (ErrBadTimeout), leases in [1, MaxSeconds] (ErrBadLease),
// limits >= 1 (ErrBadLimit); a wrong field count is ErrArgCount.
//
//	cmd       key       arg                          notes
//	auth      ignored   <token>                      arg trimmed
//	l         key       <timeout> [<lease>]
//	r         key       <token>                      arg trimmed; empty: ErrEmptyToken
//	n         key       <token> [<lease>]            empty: ErrArgCount
//	e         key       [<lease>]                    trimmed arg is one integer
//	w         key       <timeout>                    trimmed arg is one integer; empty: ErrArgCount
//	sl        key       <timeout> <limit> [<lease>]
//	sr        key       <token>                      as r
//	sn        key       <token> [<lease>]            as n
//	se        key       <limit> [<lease>]
//	sw        key       <timeout>                    as w
//	listen    pattern   [<group>]                    trimmed arg; empty = no group
//	unlisten  pattern   [<group>]                    as listen
//	signal    channel   <payload>                    no '*' or '>' in channel; payload raw,
//	                                                 not blank, at most MaxPayload(len(channel))
//	ping      ignored   ignored
//	stats     ignored   ignored
//	inspect   key       [lock|sem]                   extension; trimmed arg, empty = lock;
//	                                                 another word: ErrArgCount
//	name      ignored   <name>                       extension; trimmed, 1..MaxName printable
//	                                                 ASCII bytes, else ErrBadName
//
// The two extensions are dflockd additions: a 1.x server answers them
// "error" (unknown command), which is how a client tells the two apart.
//
// Parse errors other than ErrLineTooLong leave the connection usable; on the
// wire every one of them is answered with the single word "error".
//
// # Examples
//
// One exchange per verb, request bytes then response line (tokens shortened):
//
//	auth\n_\ns3cret\n                  ok\n
//	l\njob\n10\n                       ok 9f86d081884c7d65 30\n   (or timeout\n)
//	l\njob\n10 60\n                    ok 9f86d081884c7d65 60\n
//	r\njob\n9f86d081884c7d65\n         ok\n
//	n\njob\n9f86d081884c7d65 45\n      ok 45\n
//	e\njob\n\n                         acquired 2c26b46b68ffc68f 30\n   (or queued\n)
//	w\njob\n5\n                        ok 2c26b46b68ffc68f 30\n   (or timeout\n)
//	sl\npool\n10 3\n                   ok fcde2b2edba56bf4 30\n
//	sr\npool\nfcde2b2edba56bf4\n       ok\n
//	sn\npool\nfcde2b2edba56bf4\n       ok 30\n
//	se\npool\n3 60\n                   queued\n
//	sw\npool\n0\n                      timeout\n
//	listen\njobs.>\nworkers\n          ok\n
//	unlisten\njobs.>\nworkers\n        ok\n
//	signal\njobs.new\nhello world\n    ok 2\n
//	                                   (each receiver gets: sig jobs.new hello world\n)
//	ping\n_\n\n                        ok\n
//	stats\n_\n\n                       ok {"connections":1,"locks":[],...}\n
//	inspect\njob\n\n                   ok {"kind":"lock","limit":1,"holders":[...],...}\n
//	name\n_\nbackup-job-7\n            ok\n
//	frob\nx\ny\n                       error\n   (ErrUnknownCommand; connection stays open)
//
// # Use
//
// Servers decode with Decoder.ReadRequest, which allocates nothing in steady
// state, and encode with AppendStatus, AppendGrant, AppendOKInt,
// AppendOKBody and AppendSignal. Byte slices in a Request alias the
// Decoder's buffers until the next read, so copy what outlives it. The read
// timeout of §1 applies per line: Decoder.SetLineHook lets the session arm
// a deadline exactly when a line has to wait for the network.
//
// Clients encode with AppendRequest (after checking keys with ValidKey or
// ValidChannel and payloads against MaxPayload) and decode with
// Decoder.ReadLine and ParseResponse; a line whose Status is StatusSignal is
// a push frame, not the answer to the outstanding request.
package protocol
