package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dflockd/dflockd/internal/tlsflags"
	"github.com/dflockd/dflockd/transport"
)

// AuthGuessCmd measures how fast a client can guess a server's auth token:
// each guesser opens a connection, sends `auth` with a wrong token, reads
// the answer and starts over, for a fixed time. It reports the guesses
// answered (error_auth) per second, and the connections the server closed
// without an answer (refused by the failure limiter).
type AuthGuessCmd struct {
	Server        string        `name:"server" default:"127.0.0.1:6388" placeholder:"ENDPOINT" help:"Server to guess against (host:port, tls://host:port, unix:///path.sock, quic://host:port)."`
	Guessers      int           `name:"guessers" default:"1" help:"Guessers running in parallel, one connection each at a time (> 0)."`
	Duration      time.Duration `name:"duration" default:"10s" help:"How long to guess."`
	RefusedPause  time.Duration `name:"refused-pause" default:"10ms" help:"How long a guesser waits after a connection was refused or could not be made (0 = retry at once)."`
	TLSCA         string        `name:"tls-ca" placeholder:"FILE" help:"PEM CA certificates to verify the server with (default: system roots)."`
	TLSServerName string        `name:"tls-server-name" placeholder:"NAME" help:"Name to verify the server certificate against."`
	JSON          bool          `name:"json" help:"Print the result as JSON."`
}

// AuthGuessResult is what auth-guess measured.
type AuthGuessResult struct {
	Server   string  `json:"server"`
	Guessers int     `json:"guessers"`
	Seconds  float64 `json:"seconds"`
	// Guesses were answered error_auth.
	Guesses int64 `json:"guesses"`
	// Accepted were answered ok (the guess was right).
	Accepted int64 `json:"accepted"`
	// Refused connections were closed without an answer.
	Refused int64 `json:"refused"`
	// DialErrors are connections that could not be made.
	DialErrors     int64   `json:"dial_errors"`
	GuessesPerSec  float64 `json:"guesses_per_sec"`
	RefusedPerSec  float64 `json:"refused_per_sec"`
	FirstDialError string  `json:"first_dial_error,omitempty"`
}

type guessTally struct {
	guesses, accepted, refused, dialErrors atomic.Int64
	firstErr                               sync.Once
	firstMsg                               string
}

func (a *AuthGuessCmd) run(ctx context.Context, stdout io.Writer) error {
	if a.Guessers <= 0 || a.Duration <= 0 || a.RefusedPause < 0 {
		return usagef("auth-guess: --guessers and --duration must be > 0, --refused-pause >= 0")
	}
	s := strings.TrimSpace(a.Server)
	if !strings.Contains(s, "://") {
		s = "tcp://" + s
	}
	ep, err := transport.ParseEndpoint(s)
	if err != nil {
		return usagef("auth-guess: --server: %v", err)
	}
	tlsCfg, err := tlsflags.Client{CA: a.TLSCA, ServerName: a.TLSServerName}.Config()
	if err != nil {
		return &usageError{err}
	}
	opts := transport.Options{TLS: tlsCfg}

	var tally guessTally
	start := time.Now()
	end := start.Add(a.Duration)
	runCtx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	var wg sync.WaitGroup
	for g := range a.Guessers {
		wg.Go(func() { guessLoop(runCtx, g, ep, opts, end, a.RefusedPause, &tally) })
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	if secs > a.Duration.Seconds() {
		secs = a.Duration.Seconds() // attempts that ended after the deadline are not counted
	}
	res := AuthGuessResult{
		Server: ep.String(), Guessers: a.Guessers, Seconds: secs,
		Guesses: tally.guesses.Load(), Accepted: tally.accepted.Load(),
		Refused: tally.refused.Load(), DialErrors: tally.dialErrors.Load(),
		FirstDialError: tally.firstMsg,
	}
	res.GuessesPerSec = float64(res.Guesses) / secs
	res.RefusedPerSec = float64(res.Refused) / secs
	if a.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(stdout, "server %s, %d guesser(s), %.1f s\n", res.Server, res.Guessers, res.Seconds)
	fmt.Fprintf(stdout, "guesses answered:  %d (%.1f/s)\n", res.Guesses, res.GuessesPerSec)
	fmt.Fprintf(stdout, "refused unanswered: %d (%.1f/s)\n", res.Refused, res.RefusedPerSec)
	if res.Accepted > 0 {
		fmt.Fprintf(stdout, "accepted (right guess!): %d\n", res.Accepted)
	}
	if res.DialErrors > 0 {
		fmt.Fprintf(stdout, "dial errors: %d (first: %s)\n", res.DialErrors, res.FirstDialError)
	}
	return nil
}

// guessLoop makes one guess per connection until ctx ends. Only attempts
// that end before end are counted.
func guessLoop(ctx context.Context, g int, ep transport.Endpoint, opts transport.Options, end time.Time,
	pause time.Duration, tally *guessTally) {
	wait := func() {
		if pause <= 0 {
			return
		}
		t := time.NewTimer(pause)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	for i := 0; ctx.Err() == nil; i++ {
		c, err := transport.Dial(ctx, ep, opts)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			tally.dialErrors.Add(1)
			tally.firstErr.Do(func() { tally.firstMsg = err.Error() })
			wait()
			continue
		}
		if l, ok := c.(interface{ SetLinger(int) error }); ok {
			// Reset instead of TIME_WAIT, so a fast run does not use up
			// the ephemeral ports.
			_ = l.SetLinger(0)
		}
		_ = c.SetDeadline(end.Add(time.Second))
		line, err := guessOnce(c, fmt.Sprintf("wrong-guess-%d-%d", g, i))
		c.Close()
		if time.Now().After(end) {
			return
		}
		switch {
		case err == nil && line == "error_auth":
			tally.guesses.Add(1)
		case err == nil && line == "ok":
			tally.accepted.Add(1)
		case err != nil && !isDeadline(err):
			tally.refused.Add(1)
			wait()
		}
	}
}

// guessOnce sends one wrong auth request and reads the answer line.
func guessOnce(c io.ReadWriter, token string) (string, error) {
	if _, err := io.WriteString(c, "auth\n_\n"+token+"\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func isDeadline(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}
