package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/dflockd/dflockd/client"
)

// run sends the signal and prints the number of receivers.
func (c *SignalCmd) run(ctx context.Context, addr string, opts client.Options, stdout io.Writer) error {
	conn, err := client.Dial(ctx, addr, opts)
	if err != nil {
		return err
	}
	defer conn.Close()
	n, err := conn.Emit(ctx, c.Channel, strings.Join(c.Payload, " "))
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(stdout, n); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// listenBuffer is how many received signals may wait to be printed;
// beyond it the client drops them (and listen warns on stderr).
const listenBuffer = 1024

// run subscribes to the pattern and prints "channel payload" per signal
// until ctx ends (a clean exit), --count signals have arrived, or the
// connection fails. Signals dropped because stdout was too slow are
// counted in a warning on stderr.
func (c *ListenCmd) run(ctx context.Context, addr string, opts client.Options, stdout, stderr io.Writer) error {
	sc, err := client.NewSignalConn(ctx, addr, opts, client.WithSignalBuffer(listenBuffer))
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
	if err := sc.Listen(ctx, c.Pattern, lopts...); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
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
			if _, err := fmt.Fprintf(stdout, "%s %s\n", sig.Channel, sig.Payload); err != nil {
				return fmt.Errorf("write output: %w", err)
			}
		}
	}
	return nil
}
