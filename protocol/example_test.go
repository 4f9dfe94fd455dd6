package protocol_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dflockd/dflockd/protocol"
)

// A server reads requests in a loop, answers parse errors with "error" and
// closes on fatal ones.
func ExampleDecoder_ReadRequest() {
	in := "l\njob\n10 60\n" + "frob\nx\ny\n" + "r\njob\n0123abcd\n"
	d := protocol.NewDecoder(strings.NewReader(in))
	var req protocol.Request
	var out []byte
	for {
		err := d.ReadRequest(&req)
		var perr *protocol.Error
		switch {
		case errors.Is(err, io.EOF):
			fmt.Print(string(out))
			return
		case errors.As(err, &perr):
			out = protocol.AppendStatus(out, protocol.StatusError)
			if perr.Fatal() {
				fmt.Print(string(out))
				return
			}
		case err != nil:
			return // I/O error: close without answering
		case req.Cmd == protocol.CmdLock:
			fmt.Printf("lock %s timeout=%v lease=%v\n", req.Key, req.Timeout, req.TTL)
			out = protocol.AppendGrant(out, protocol.StatusOK, "0123abcd", req.TTL)
		case req.Cmd == protocol.CmdRelease:
			fmt.Printf("release %s token=%s\n", req.Key, req.Token)
			out = protocol.AppendStatus(out, protocol.StatusOK)
		}
	}
	// Output:
	// lock job timeout=10s lease=1m0s
	// release job token=0123abcd
	// ok 0123abcd 60
	// error
	// ok
}

// A client writes requests with AppendRequest and reads each line with
// ReadLine, routing push frames apart from responses.
func ExampleParseResponse() {
	req := protocol.AppendRequest(nil, protocol.CmdSignal, "jobs.new", " hello")
	fmt.Printf("%q\n", req)

	stream := "sig jobs.new  hello\nok 1\nok 0123abcd 30\n"
	d := protocol.NewDecoder(strings.NewReader(stream))
	for {
		line, err := d.ReadLine(1 << 20)
		if err != nil {
			return
		}
		var resp protocol.Response
		if err := protocol.ParseResponse(line, &resp); err != nil {
			fmt.Println(err)
			return
		}
		switch {
		case resp.Status == protocol.StatusSignal:
			fmt.Printf("push on %s: %q\n", resp.Channel, resp.Payload)
		case resp.HasN:
			fmt.Printf("%v %d\n", resp.Status, resp.N)
		default:
			fmt.Printf("%v token=%s ttl=%v\n", resp.Status, resp.Token, resp.TTL)
		}
	}
	// Output:
	// "signal\njobs.new\n hello\n"
	// push on jobs.new: " hello"
	// ok 1
	// ok token=0123abcd ttl=30s
}

func ExampleAppendGrant() {
	fmt.Printf("%q\n", protocol.AppendGrant(nil, protocol.StatusAcquired, "0123abcd", 1500*time.Millisecond))
	// Output: "acquired 0123abcd 2\n"
}
