package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dflockd/dflockd/client"
	"github.com/dflockd/dflockd/protocol"
)

// tooFew is the error of a signal that fewer than --min-receivers
// listeners received (exit status 1).
type tooFew struct{ got, want int }

func (e *tooFew) Error() string {
	return fmt.Sprintf("%d listeners received the signal, fewer than --min-receivers %d", e.got, e.want)
}

// run sends the signal and prints the number of receivers.
func (c *SignalCmd) run(ctx context.Context, srv target, stdin io.Reader, stdout io.Writer) error {
	payload := strings.Join(c.Payload, " ")
	if len(c.Payload) == 1 && c.Payload[0] == "-" {
		var err error
		if payload, err = readPayload(stdin, c.Channel); err != nil {
			return err
		}
	}
	conn, err := srv.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	rctx, cancel := srv.request(ctx, "signal")
	defer cancel()
	n, err := conn.Emit(rctx, c.Channel, payload)
	if err != nil {
		return srv.failed("signal", err)
	}
	if _, err := fmt.Fprintln(stdout, n); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	if n < c.MinReceivers {
		return &tooFew{got: n, want: c.MinReceivers}
	}
	return nil
}

// readPayload reads the payload of `signal CHANNEL -` from stdin: one
// line, its line ending removed. More than one line is a usage error, as
// is a payload too long for a frame.
func readPayload(stdin io.Reader, channel string) (string, error) {
	limit := protocol.MaxPayload(len(channel))
	r := bufio.NewReader(io.LimitReader(stdin, int64(limit)+3)) // + CR, LF and one byte too many
	b, err := io.ReadAll(r)
	if err != nil {
		return "", fmt.Errorf("read payload from standard input: %w", err)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	switch {
	case strings.ContainsAny(s, "\r\n"):
		return "", usagef("signal: the payload read from standard input has more than one line")
	case len(s) > limit:
		return "", usagef("signal: the payload read from standard input is longer than %d bytes", limit)
	}
	return s, nil
}

// listenBuffer is how many received signals may wait to be printed;
// beyond it the client drops them (and listen warns on stderr).
const listenBuffer = 1024

// signalJSON is one line of `listen --json`.
type signalJSON struct {
	Time    string `json:"time"` // RFC 3339 with nanoseconds, UTC, when it arrived
	Channel string `json:"channel"`
	Payload string `json:"payload"`
}

// run subscribes to the pattern and prints "channel payload" (or a JSON
// object) per signal until ctx ends (a clean exit), --count signals have
// arrived, or the connection fails. Signals dropped because stdout was
// too slow are counted in a warning on stderr.
func (c *ListenCmd) run(ctx context.Context, srv target, stdout, stderr io.Writer) error {
	sc, err := client.NewSignalConn(ctx, srv.addr, srv.opts, client.WithSignalBuffer(listenBuffer))
	if err != nil {
		return err
	}
	defer sc.Close()
	defer func() {
		if d := sc.DroppedSignals(); d > 0 {
			fmt.Fprintf(stderr, "dflockctl: warning: %d signals were dropped because output was too slow\n", d)
		}
	}()
	var lopts []client.ListenOption
	if c.Group != "" {
		lopts = append(lopts, client.WithGroup(c.Group))
	}
	rctx, cancel := srv.request(ctx, "listen")
	err = sc.Listen(rctx, c.Pattern, lopts...)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return srv.failed("listen", err)
	}
	for n := 0; c.Count == 0 || n < c.Count; n++ {
		select {
		case <-ctx.Done():
			return nil
		case sig, ok := <-sc.Signals():
			if !ok {
				if err := sc.Err(); err != nil {
					return fmt.Errorf("listen %s: %w", c.Pattern, err)
				}
				return fmt.Errorf("listen %s: %w", c.Pattern, client.ErrClosed)
			}
			if err := c.print(stdout, sig.Channel, sig.Payload); err != nil {
				return fmt.Errorf("write output: %w", err)
			}
		}
	}
	return nil
}

// print writes one received signal.
func (c *ListenCmd) print(w io.Writer, channel, payload string) error {
	if !c.JSON {
		_, err := fmt.Fprintf(w, "%s %s\n", channel, payload)
		return err
	}
	b, err := json.Marshal(signalJSON{Time: time.Now().UTC().Format(time.RFC3339Nano), Channel: channel, Payload: payload})
	if err != nil {
		return fmt.Errorf("encode signal: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
