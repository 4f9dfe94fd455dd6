package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/dflockd/dflockd/client"
)

// InspectCmd shows who holds one key and who waits for it.
type InspectCmd struct {
	Key       string `arg:"" name:"key" help:"Lock or semaphore key."`
	Semaphore bool   `name:"semaphore" help:"Inspect the semaphore KEY (semaphores and locks are separate namespaces)."`
	JSON      bool   `name:"json" help:"Print the server's raw JSON answer instead of a table."`
}

// Help implements kong.HelpProvider.
func (InspectCmd) Help() string {
	return `Shows the key's limit, each holder (fencing number, connection, name,
remote address, identity, lease left, held for) and the waiters in the
order they will be served (connection, name, remote, identity, waiting
for). Connections name themselves with --name (or the Go client's
Options.Name). Lease tokens are never shown, only their fencing numbers.

The server lists at most --stats-max-items holders and waiters (1000 by
default); the headings then say "truncated (showing N of M)".

inspect is a dflockd extension: a 1.x server does not support it, and
dflockctl then says so and exits with status 3.`
}

// run asks the server about the key and prints a table, or the raw JSON
// with --json.
func (c *InspectCmd) run(ctx context.Context, srv target, stdout io.Writer) error {
	conn, err := srv.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	rctx, cancel := srv.request(ctx, "inspect")
	defer cancel()
	raw, err := conn.InspectRaw(rctx, c.Key, c.Semaphore)
	if errors.Is(err, client.ErrUnsupported) {
		return &hinted{err: err, msg: fmt.Sprintf("the server at %s does not support inspect (dflockd 1.x?)", srv.endpoint)}
	}
	if err != nil {
		return srv.failed("inspect", err)
	}
	var out bytes.Buffer
	if c.JSON {
		out.Write(raw)
		out.WriteByte('\n')
	} else {
		var ki client.KeyInfo
		if err := json.Unmarshal(raw, &ki); err != nil {
			return fmt.Errorf("decode inspect answer: %w", err)
		}
		writeInspect(&out, &ki)
	}
	if _, err := stdout.Write(out.Bytes()); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// writeInspect prints ki: a summary line, then the holders and the
// waiters (in queue order) as aligned tables.
func writeInspect(w io.Writer, ki *client.KeyInfo) {
	if !ki.Exists {
		fmt.Fprintf(w, "%s %s: no such key (never used, or collected while idle)\n", ki.Kind, ki.Key)
		return
	}
	fmt.Fprintf(w, "%s %s   limit %d   holders %d   waiters %d\n", ki.Kind, ki.Key, ki.Limit, ki.Totals.Holders, ki.Totals.Waiters)
	section(w, "Holders", len(ki.Holders), ki.Totals.Holders, "FENCE\tCONN\tNAME\tREMOTE\tIDENTITY\tLEASE LEFT\tHELD FOR\tVIA", func(tw io.Writer) {
		for _, h := range ki.Holders {
			via := "acquire"
			if h.Enqueued {
				via = "enqueue (not yet claimed by wait)"
			}
			fmt.Fprintf(tw, "  %d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Fence, h.ConnID, dash(h.Name), dash(h.Remote),
				dash(h.Identity), seconds(h.LeaseLeftS), seconds(h.HeldForS), via)
		}
	})
	section(w, "Waiters", len(ki.Waiters), ki.Totals.Waiters, "#\tCONN\tNAME\tREMOTE\tIDENTITY\tWAITING\tVIA", func(tw io.Writer) {
		for i, q := range ki.Waiters {
			via := "acquire"
			if q.Enqueued {
				via = "enqueue"
			}
			fmt.Fprintf(tw, "  %d\t%d\t%s\t%s\t%s\t%s\t%s\n", i+1, q.ConnID, dash(q.Name), dash(q.Remote),
				dash(q.Identity), seconds(q.WaitingS), via)
		}
	})
}
