package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/internal/testserver"
	"github.com/dflockd/dflockd/server"
)

// auth-guess counts the answered guesses, and the connections the
// server's failure limiter refused, for a fixed time.
func TestAuthGuessCommand(t *testing.T) {
	ts := testserver.Start(t, "tcp", testserver.Config{Server: server.Options{Auth: auth.Token("right")}})
	code, out, errOut := runBench(t, "auth-guess", "--server", ts.Addr, "--guessers", "3", "--duration", "1500ms", "--json")
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errOut)
	}
	var res AuthGuessResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	// 5 answered guesses (fewer only if the machine is very slow), then
	// the address is blocked for 5 s.
	if res.Guesses < 1 || res.Guesses > server.DefaultAuthFailures || res.Accepted != 0 || res.Guessers != 3 ||
		(res.Guesses == server.DefaultAuthFailures) != (res.Refused > 0) {
		t.Fatalf("result %+v; want %d guesses, then refused connections", res, server.DefaultAuthFailures)
	}
	code, out, _ = runBench(t, "auth-guess", "--server", ts.Addr, "--duration", "200ms")
	if code != 0 || !strings.Contains(out, "guesses answered:") || !strings.Contains(out, "refused unanswered:") {
		t.Fatalf("text output: exit %d\n%s", code, out)
	}
}

func TestAuthGuessInvalidFlags(t *testing.T) {
	for _, args := range [][]string{
		{"auth-guess", "--guessers", "0"},
		{"auth-guess", "--duration", "0s"},
		{"auth-guess", "--server", "bogus://x"},
	} {
		if code, _, _ := runBench(t, args...); code != 2 {
			t.Errorf("%v: exit %d; want 2", args, code)
		}
	}
}
